//! Active health probing over gRPC: a real `grpc.health.v1` server as the
//! instance, stopped while the registry probes it.

use std::time::{Duration, Instant};

use plinth_client::{
    prost_types,
    registry::v1::{
        HealthCheck, InstanceStatus, ModuleManifest, RegisterInstanceRequest, RegisterModuleRequest,
    },
};
use plinth_tests::{Backend, Sandbox};

use super::instances::{discovered, discovery, heartbeat, module_clients, register, registration};

crate::on_both_backends!(a_stopped_instance_is_probed_not_serving_within_three_intervals);

/// A `grpc.health.v1` server answering SERVING until `stop` is sent.
async fn healthy_instance() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
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
    (format!("http://{address}"), stop)
}

async fn a_stopped_instance_is_probed_not_serving_within_three_intervals(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let interval = Duration::from_secs(1);
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
    let mut crm = module_clients(&sandbox, "crm").await;
    let (endpoint, stop) = healthy_instance().await;
    let id = register(
        &mut crm,
        RegisterInstanceRequest {
            endpoint,
            ..registration("probed")
        },
    )
    .await;
    heartbeat(&mut crm, &id, InstanceStatus::Serving)
        .await
        .unwrap();
    tokio::time::sleep(2 * interval).await;
    let while_up = discovered(&mut crm, discovery(&[])).await;

    stop.send(()).unwrap();
    let stopped_at = Instant::now();
    let not_serving = discovery(&[InstanceStatus::NotServing]);
    while discovered(&mut crm, not_serving.clone()).await.is_empty()
        && stopped_at.elapsed() < 10 * interval
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marked_after = stopped_at.elapsed();

    assert_eq!(
        while_up,
        std::slice::from_ref(&id),
        "probes that pass keep it serving"
    );
    assert!(
        marked_after <= 3 * interval,
        "marked not serving after {marked_after:?}"
    );
}
