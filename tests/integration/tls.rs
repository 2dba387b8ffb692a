//! TLS and mTLS with certificates made at test time by the dev CA.

use std::path::Path;

use plinth_api::auth::v1::{
    CreateApiKeyRequest, PrincipalKind, WhoAmIRequest, WhoAmIResponse,
    auth_service_client::AuthServiceClient,
};
use plinth_platform::{
    certs::{DevCa, write_dev_certificates},
    identity::certificate::CertificateIdentity,
};
use plinth_tests::{
    Backend, Credentials, MutualTls, Sandbox, error_reason, module_key, tls_config,
};
use tonic::{
    Code,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};
use x509_parser::prelude::{FromDer, X509Certificate};

async fn call_who_am_i(
    server: &MutualTls,
    client_identity: Option<Identity>,
    key: &str,
) -> Result<WhoAmIResponse, tonic::Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server.ca_pem))
        .domain_name("localhost");
    if let Some(identity) = client_identity {
        tls = tls.identity(identity);
    }
    let endpoint = Endpoint::from_shared(format!("https://{}", server.sandbox.address))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    // A refused handshake may surface on connect or on the first call.
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    AuthServiceClient::with_interceptor(channel, Credentials::api_key(key))
        .who_am_i(WhoAmIRequest {})
        .await
        .map(tonic::Response::into_inner)
}

fn module_identity(ca: &DevCa, module: &str) -> Identity {
    let pair = ca.module_certificate(module).unwrap();
    Identity::from_pem(pair.certificate, pair.private_key)
}

fn operator_identity(ca: &DevCa) -> Identity {
    let pair = ca
        .client_certificate(&CertificateIdentity::Operator("ops".to_owned()))
        .unwrap();
    Identity::from_pem(pair.certificate, pair.private_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_dev_ca_is_accepted_and_names_the_module() {
    let server = MutualTls::start().await;
    let key = module_key(&server.sandbox, "inventory").await;

    let me = call_who_am_i(
        &server,
        Some(module_identity(&server.ca, "inventory")),
        &key,
    )
    .await
    .unwrap();

    assert_eq!(me.certificate_module_id, "inventory");
    assert_eq!(me.module_id, "inventory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let server = MutualTls::start().await;
    let key = module_key(&server.sandbox, "inventory").await;

    let refused = call_who_am_i(&server, None, &key).await;

    assert!(
        refused.is_err(),
        "mTLS server answered a client without a certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let server = MutualTls::start().await;
    let key = module_key(&server.sandbox, "inventory").await;
    let stranger = DevCa::generate("another ca").unwrap();

    let refused = call_who_am_i(&server, Some(module_identity(&stranger, "inventory")), &key).await;

    assert!(
        refused.is_err(),
        "a certificate from an unknown CA was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_for_another_module_than_the_certificate_is_refused() {
    let server = MutualTls::start().await;
    let finance_key = module_key(&server.sandbox, "finance").await;

    let status = call_who_am_i(
        &server,
        Some(module_identity(&server.ca, "inventory")),
        &finance_key,
    )
    .await
    .unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_CERTIFICATE_MODULE_MISMATCH")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_works_with_any_client_certificate_of_the_ca() {
    let server = MutualTls::start().await;

    for identity in [
        operator_identity(&server.ca),
        module_identity(&server.ca, "inventory"),
    ] {
        let me = call_who_am_i(&server, Some(identity), &server.sandbox.operator_key)
            .await
            .expect("an operator key has no module to mismatch");
        assert_eq!(me.kind(), PrincipalKind::Operator);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_key_with_an_operator_certificate_is_a_mismatch() {
    let server = MutualTls::start().await;
    let key = module_key(&server.sandbox, "inventory").await;

    let status = call_who_am_i(&server, Some(operator_identity(&server.ca)), &key)
        .await
        .unwrap_err();

    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_CERTIFICATE_MODULE_MISMATCH")
    );
}

fn validity_days(pem: &str) -> i64 {
    let der = rustls_pemfile_der(pem);
    let (_, certificate) = X509Certificate::from_der(&der).unwrap();
    let validity = certificate.validity();
    (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400
}

fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    let mut reader = pem.as_bytes();
    rustls_pemfile::certs(&mut reader)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn read(directory: &Path, name: &str) -> String {
    std::fs::read_to_string(directory.join(name)).unwrap()
}

#[test]
fn certs_dev_adds_modules_to_an_existing_ca_with_bounded_validity() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path();
    write_dev_certificates(out, &[CertificateIdentity::Module("finance".to_owned())]).unwrap();
    let (ca, server) = (read(out, "ca.pem"), read(out, "server.pem"));

    write_dev_certificates(out, &[CertificateIdentity::Module("crm".to_owned())]).unwrap();

    assert_eq!(read(out, "ca.pem"), ca, "the CA is kept");
    assert_eq!(
        read(out, "server.pem"),
        server,
        "the server certificate is kept"
    );
    for name in ["finance", "crm", "operator"] {
        assert!(
            validity_days(&read(out, &format!("{name}.pem"))) <= 91,
            "{name}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(out.join(format!("{name}.key")))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert!(validity_days(&server) <= 91);
    assert!(validity_days(&ca) <= 366);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_readmes_mtls_setup_the_operator_creates_module_keys() {
    plinth_tests::install_crypto_provider();
    let directory = tempfile::tempdir().unwrap().keep();
    write_dev_certificates(
        &directory,
        &[CertificateIdentity::Module("finance".to_owned())],
    )
    .unwrap();
    let tls = tls_config(
        directory.join("server.pem"),
        directory.join("server.key"),
        Some(directory.join("ca.pem")),
    );
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| config.tls = tls).await;
    let endpoint = Endpoint::from_shared(format!("https://{}", sandbox.address))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&directory, "ca.pem")))
                .identity(Identity::from_pem(
                    read(&directory, "operator.pem"),
                    read(&directory, "operator.key"),
                ))
                .domain_name("localhost"),
        )
        .unwrap();
    let channel = endpoint.connect().await.unwrap();

    let created =
        AuthServiceClient::with_interceptor(channel, Credentials::api_key(&sandbox.operator_key))
            .create_api_key(CreateApiKeyRequest {
                name: "finance".to_owned(),
                module_id: "finance".to_owned(),
                ..Default::default()
            })
            .await
            .expect("the operator is not locked out")
            .into_inner();

    assert_eq!(created.api_key.unwrap().module_id, "finance");
}
