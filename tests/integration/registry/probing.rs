//! Active health probing over gRPC: a real `grpc.health.v1` server as the
//! instance, stopped while the registry probes it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use plinth_api::{
    prost_types,
    registry::v1::{
        DiscoverInstancesRequest, HealthCheck, InstanceStatus, ModuleManifest,
        RegisterInstanceRequest, RegisterModuleRequest,
    },
};
use plinth_platform::{certs::DevCa, identity::certificate::CertificateIdentity};
use plinth_tests::{Backend, Clients, Credentials, Sandbox, tls_config};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use super::instances::{discovered, discovery, heartbeat, module_clients, register, registration};

crate::on_both_backends!(
    a_stopped_instance_is_probed_not_serving_within_three_intervals,
    a_probed_down_instance_that_answers_again_is_serving_within_three_intervals,
);

/// Probes every second, time out after 300 ms, two failures mark down.
const INTERVAL: Duration = Duration::from_secs(1);

/// A `grpc.health.v1` server on `address` answering SERVING until `stop`
/// is sent.
async fn healthy_instance(address: SocketAddr) -> tokio::sync::oneshot::Sender<()> {
    healthy_instance_with(address, None).await
}

/// Like [`healthy_instance`], over TLS when `tls` is given.
async fn healthy_instance_with(
    address: SocketAddr,
    tls: Option<ServerTlsConfig>,
) -> tokio::sync::oneshot::Sender<()> {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    tokio::spawn(async move {
        let _reporter = reporter;
        builder
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
    });
    stop
}

/// Waits up to ten intervals for `found` to list the instance; how long.
async fn until_listed(crm: &mut Clients, found: DiscoverInstancesRequest, id: &str) -> Duration {
    let started = Instant::now();
    while !discovered(crm, found.clone())
        .await
        .iter()
        .any(|listed| listed == id)
        && started.elapsed() < 10 * INTERVAL
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// `crm` probed as [`INTERVAL`] says, with a serving instance at a health
/// server of its own: the module's clients, the instance's id and address,
/// and what stops the health server.
async fn probed_instance(
    sandbox: &Sandbox,
) -> (
    Clients,
    String,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    register_probed_crm(&mut sandbox.operator().await).await;
    let mut crm = module_clients(sandbox, "crm").await;
    let address = free_address().await;
    let stop = healthy_instance(address).await;
    let id = register(
        &mut crm,
        RegisterInstanceRequest {
            endpoint: format!("http://{address}"),
            ..registration("probed")
        },
    )
    .await;
    heartbeat(&mut crm, &id, InstanceStatus::Serving)
        .await
        .unwrap();
    (crm, id, address, stop)
}

async fn free_address() -> SocketAddr {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Registers `crm`, probed as [`INTERVAL`] says.
async fn register_probed_crm(operator: &mut Clients) {
    operator
        .registry
        .register_module(RegisterModuleRequest {
            manifest: Some(ModuleManifest {
                id: "crm".to_owned(),
                version: "1.0.0".to_owned(),
                display_name: "CRM".to_owned(),
                health_check: Some(HealthCheck {
                    interval: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                    timeout: Some(prost_types::Duration {
                        seconds: 0,
                        nanos: 300_000_000,
                    }),
                    failure_threshold: 2,
                    service: String::new(),
                }),
                ..ModuleManifest::default()
            }),
        })
        .await
        .unwrap();
}

async fn a_stopped_instance_is_probed_not_serving_within_three_intervals(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let (mut crm, id, _, stop) = probed_instance(&sandbox).await;
    tokio::time::sleep(2 * INTERVAL).await;
    let while_up = discovered(&mut crm, discovery(&[])).await;

    stop.send(()).unwrap();
    let marked_after = until_listed(&mut crm, discovery(&[InstanceStatus::NotServing]), &id).await;

    assert_eq!(
        while_up,
        std::slice::from_ref(&id),
        "probes that pass keep it serving"
    );
    assert!(
        marked_after <= 3 * INTERVAL,
        "marked not serving after {marked_after:?}"
    );
}

async fn a_probed_down_instance_that_answers_again_is_serving_within_three_intervals(
    backend: Backend,
) {
    let sandbox = Sandbox::start(backend).await;
    let (mut crm, id, address, stop) = probed_instance(&sandbox).await;
    stop.send(()).unwrap();
    let marked_down = until_listed(&mut crm, discovery(&[InstanceStatus::NotServing]), &id).await;

    let _answering = healthy_instance(address).await;
    let recovered_after = until_listed(&mut crm, discovery(&[InstanceStatus::Serving]), &id).await;

    assert!(
        marked_down <= 3 * INTERVAL,
        "marked down after {marked_down:?}"
    );
    assert!(
        recovered_after <= 3 * INTERVAL,
        "serving again after {recovered_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_probed_over_mtls_with_the_cores_certificate() {
    plinth_tests::install_crypto_provider();
    let ca = DevCa::generate("plinth ca").unwrap();
    let stranger = DevCa::generate("another ca").unwrap();
    let directory = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: &str| {
        let path = directory.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let server = ca.server_certificate().unwrap();
    let tls = tls_config(
        write("server.pem", &server.certificate),
        write("server.key", &server.private_key),
        Some(write("ca.pem", ca.certificate_pem())),
    );
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| config.tls = tls).await;
    let operator_certificate = ca
        .client_certificate(&CertificateIdentity::Operator("ops".to_owned()))
        .unwrap();
    let channel = Endpoint::from_shared(format!("https://{}", sandbox.address))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.certificate_pem()))
                .domain_name("localhost")
                .identity(Identity::from_pem(
                    operator_certificate.certificate,
                    operator_certificate.private_key,
                )),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut operator = Clients::over(channel, Credentials::api_key(&sandbox.operator_key));
    register_probed_crm(&mut operator).await;
    let mut instances = Vec::new();
    for (key, trusted) in [("trusts-the-core", &ca), ("trusts-another-ca", &stranger)] {
        let address = free_address().await;
        let instance = ca.server_certificate().unwrap();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                instance.certificate,
                instance.private_key,
            ))
            .client_ca_root(Certificate::from_pem(trusted.certificate_pem()));
        let stop = healthy_instance_with(address, Some(tls)).await;
        let id = register(
            &mut operator,
            RegisterInstanceRequest {
                endpoint: format!("https://{address}"),
                ..registration(key)
            },
        )
        .await;
        heartbeat(&mut operator, &id, InstanceStatus::Serving)
            .await
            .unwrap();
        instances.push((id, stop));
    }

    tokio::time::sleep(3 * INTERVAL + Duration::from_millis(500)).await;

    let serving = discovered(&mut operator, discovery(&[InstanceStatus::Serving])).await;
    let not_serving = discovered(&mut operator, discovery(&[InstanceStatus::NotServing])).await;
    assert_eq!(
        serving,
        [instances[0].0.clone()],
        "the instance that trusts the core's CA answers its probes"
    );
    assert_eq!(
        not_serving,
        [instances[1].0.clone()],
        "one that trusts another CA refuses the core's certificate"
    );
}
