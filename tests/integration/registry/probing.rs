//! Active health probing over gRPC: a real `grpc.health.v1` server as the
//! instance, stopped while the registry probes it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use plinth_client::{
    prost_types,
    registry::v1::{
        DiscoverInstancesRequest, HealthCheck, InstanceStatus, ModuleManifest,
        RegisterInstanceRequest, RegisterModuleRequest,
    },
};
use plinth_tests::{Backend, Clients, Sandbox};

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
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _reporter = reporter;
        tonic::transport::Server::builder()
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
    let mut operator = sandbox.operator().await;
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
    let mut crm = module_clients(sandbox, "crm").await;
    let address = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
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
