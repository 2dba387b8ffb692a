//! TLS and mTLS with certificates made at test time by the dev CA.

use plinth_client::auth::v1::{
    WhoAmIRequest, WhoAmIResponse, auth_service_client::AuthServiceClient,
};
use plinth_platform::{certs::DevCa, identity::api_keys::NewApiKey};
use plinth_tests::{Backend, Credentials, Sandbox, create_key, error_reason, tls_config};
use tonic::{
    Code,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

struct MutualTls {
    sandbox: Sandbox,
    ca_pem: String,
    ca: DevCa,
}

/// A server requiring client certificates from its dev CA.
async fn start_mutual_tls() -> MutualTls {
    plinth_tests::install_crypto_provider();
    let ca = DevCa::generate("test ca").unwrap();
    let server = ca.server_certificate().unwrap();
    let directory = tempfile::tempdir().unwrap().keep();
    let write = |name: &str, contents: &str| {
        let path = directory.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let tls = tls_config(
        write("server.pem", &server.certificate),
        write("server.key", &server.private_key),
        Some(write("ca.pem", ca.certificate_pem())),
    );
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| config.tls = tls).await;
    MutualTls {
        sandbox,
        ca_pem: ca.certificate_pem().to_owned(),
        ca,
    }
}

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

async fn module_key(sandbox: &Sandbox, module: &str) -> String {
    create_key(
        sandbox,
        NewApiKey {
            name: module.to_owned(),
            module_id: Some(module.to_owned()),
            ..NewApiKey::default()
        },
    )
    .await
    .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_dev_ca_is_accepted_and_names_the_module() {
    let server = start_mutual_tls().await;
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
    let server = start_mutual_tls().await;
    let key = module_key(&server.sandbox, "inventory").await;

    let refused = call_who_am_i(&server, None, &key).await;

    assert!(
        refused.is_err(),
        "mTLS server answered a client without a certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let server = start_mutual_tls().await;
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
    let server = start_mutual_tls().await;
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
