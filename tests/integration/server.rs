//! Health, request ids, limits and start-up behaviour of the real server.

use std::time::{Duration, Instant};

use plinth_api::{
    auth::v1::{VerifyTokenRequest, WhoAmIRequest, auth_service_client::AuthServiceClient},
    registry::v1::{WatchInstancesRequest, watch_instances_response::Event},
};
use plinth_platform::identity::api_keys::bootstrap_operator_key;
use plinth_tests::{Backend, Credentials, Sandbox, assert_refusal, error_reason};
use tonic::{Code, Request};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

crate::on_both_backends!(
    health_answers_without_credentials_for_every_core_service,
    the_callers_request_id_is_echoed,
    a_request_id_is_generated_when_none_is_sent,
    an_oversized_message_is_refused_and_the_server_keeps_serving,
    no_second_bootstrap_key_is_made_while_one_is_usable,
);

const CORE_SERVICES: [&str; 5] = [
    "plinth.auth.v1.AuthService",
    "plinth.rbac.v1.RbacService",
    "plinth.tenant.v1.TenantService",
    "plinth.audit.v1.AuditService",
    "plinth.registry.v1.ModuleRegistryService",
];

async fn health_of(sandbox: &Sandbox, service: &str) -> ServingStatus {
    HealthClient::new(sandbox.channel().await)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status()
}

async fn health_answers_without_credentials_for_every_core_service(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    for service in [""].into_iter().chain(CORE_SERVICES) {
        assert_eq!(
            health_of(&sandbox, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
}

async fn the_callers_request_id_is_echoed(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut request = Request::new(WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());

    let response = AuthServiceClient::with_interceptor(
        sandbox.channel().await,
        Credentials::api_key(&sandbox.operator_key),
    )
    .who_am_i(request)
    .await
    .unwrap();

    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "trace-me-42"
    );
    assert_eq!(response.into_inner().request_id, "trace-me-42");
}

async fn a_request_id_is_generated_when_none_is_sent(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    let status = AuthServiceClient::new(sandbox.channel().await)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();

    let request_id = status
        .metadata()
        .get("x-request-id")
        .expect("refusals carry a request id too");
    assert!(uuid::Uuid::parse_str(request_id.to_str().unwrap()).is_ok());
}

async fn an_oversized_message_is_refused_and_the_server_keeps_serving(backend: Backend) {
    let sandbox = Sandbox::start_with(backend, |config| config.max_message_bytes = 1024).await;
    let mut client = AuthServiceClient::with_interceptor(
        sandbox.channel().await,
        Credentials::api_key(&sandbox.operator_key),
    );

    let status = client
        .verify_token(VerifyTokenRequest {
            access_token: "x".repeat(4096),
        })
        .await
        .unwrap_err();

    // The gRPC spec's code for an oversized message, with the error contract
    // every other error keeps.
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_MESSAGE_TOO_LARGE")
    );
    client
        .who_am_i(WhoAmIRequest {})
        .await
        .expect("still serving on the same connection");
}

async fn no_second_bootstrap_key_is_made_while_one_is_usable(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let store = sandbox.database.open_store().await;

    let issued_again = bootstrap_operator_key(&store).await.unwrap();

    assert!(issued_again.is_none());
    let key_file = sandbox
        .config
        .data_dir
        .join(core_server::BOOTSTRAP_KEY_FILE);
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        sandbox.operator_key
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_when_the_database_goes_away() {
    let sandbox = Sandbox::start(Backend::Postgres).await;
    assert_eq!(
        health_of(&sandbox, "plinth.auth.v1.AuthService").await,
        ServingStatus::Serving
    );

    sandbox.database.drop_now().await;

    let mut status = ServingStatus::Serving;
    for _ in 0..50 {
        status = health_of(&sandbox, "plinth.auth.v1.AuthService").await;
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    assert_eq!(health_of(&sandbox, "").await, ServingStatus::NotServing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_the_listener_is_closed() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let address = sandbox.address;

    sandbox.stop().await;

    let reconnect = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await;
    assert!(reconnect.is_err(), "the listener is closed after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_serves_on_its_own_against_the_core_store() {
    let core = Sandbox::start(Backend::Postgres).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = tokio::spawn(registry_server::run(core.config.clone(), listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "plinth.registry.v1.ModuleRegistryService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut registry_client =
        plinth_api::registry::v1::module_registry_service_client::ModuleRegistryServiceClient::with_interceptor(
            channel,
            Credentials::api_key(&core.operator_key),
        );
    let manifest = plinth_api::registry::v1::ModuleManifest {
        id: "crm".to_owned(),
        version: "1.0.0".to_owned(),
        display_name: "CRM".to_owned(),
        ..Default::default()
    };
    registry_client
        .register_module(plinth_api::registry::v1::RegisterModuleRequest {
            manifest: Some(manifest),
        })
        .await
        .expect("the core's operator key registers through the standalone registry");
    let through_core = core
        .operator()
        .await
        .registry
        .get_module(plinth_api::registry::v1::GetModuleRequest {
            module_id: "crm".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch = registry_client
        .watch_instances(WatchInstancesRequest {
            module_ids: vec!["crm".to_owned()],
            ..Default::default()
        })
        .await
        .expect("the standalone registry serves watches")
        .into_inner();
    let snapshot = watch.message().await.unwrap().unwrap();

    let stopping = Instant::now();
    stop.send(()).unwrap();
    let last = watch.message().await.unwrap().unwrap();
    let end = watch.message().await.unwrap_err();
    registry.await.unwrap().unwrap();

    assert_eq!(health.status(), ServingStatus::Serving);
    assert_eq!(through_core.module.unwrap().display_name, "CRM");
    assert!(matches!(snapshot.event, Some(Event::Snapshot(_))));
    assert!(
        matches!(last.event, Some(Event::Checkpoint(_))),
        "a watch ends with a checkpoint: {last:?}"
    );
    assert_eq!(last.revision, snapshot.revision);
    assert_refusal(&end, Code::Unavailable, "ERROR_REASON_SHUTTING_DOWN");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "open watches do not hold the shutdown"
    );
}
