//! The admin HTTP port: Prometheus metrics of every call, cache and gauge,
//! liveness, and readiness that follows the database.

use std::time::Duration;

use plinth_api::auth::v1::WhoAmIRequest;
use plinth_tests::{Backend, Sandbox, bench::free_address, http_get};
use tonic::Code;

/// The value of the first sample whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_method_and_code_caches_and_gauges() {
    let admin = free_address().unwrap();
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| config.admin_listen = admin).await;
    let mut operator = sandbox.operator().await;
    for _ in 0..3 {
        operator.auth.who_am_i(WhoAmIRequest {}).await.unwrap();
    }
    let refused = sandbox
        .clients("plk_not-a-key")
        .await
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let (status, metrics) = http_get(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let who_am_i =
        r#"grpc_type="unary",grpc_service="plinth.auth.v1.AuthService",grpc_method="WhoAmI""#;
    let value = |series: String| {
        sample(&metrics, &series).unwrap_or_else(|| panic!("{series} in {metrics}"))
    };
    assert_eq!(
        value(format!("grpc_server_started_total{{{who_am_i}}}")),
        4.0
    );
    assert_eq!(
        value(format!(
            r#"grpc_server_handled_total{{{who_am_i},grpc_code="OK"}}"#
        )),
        3.0
    );
    assert_eq!(
        value(format!(
            r#"grpc_server_handled_total{{{who_am_i},grpc_code="Unauthenticated"}}"#
        )),
        1.0
    );
    assert_eq!(
        value(format!("grpc_server_handling_seconds_count{{{who_am_i}}}")),
        4.0
    );
    let bucket = format!(r#"grpc_server_handling_seconds_bucket{{le="0.005",{who_am_i}}}"#);
    assert!(metrics.contains(&bucket), "{bucket} in {metrics}");
    assert!(value(r#"plinth_cache_hits_total{cache="api_keys"}"#.to_owned()) >= 2.0);
    assert!(value(r#"plinth_cache_misses_total{cache="api_keys"}"#.to_owned()) >= 1.0);
    assert!(value(r#"plinth_database_connections{of="max"}"#.to_owned()) >= 1.0);
    assert_eq!(
        value(r#"plinth_callback_backlog{of="outbox"}"#.to_owned()),
        0.0
    );
    assert_eq!(
        value(r#"plinth_registry_leases{of="serving"}"#.to_owned()),
        0.0
    );
    assert!(metrics.trim_end().ends_with("# EOF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_answers_liveness_and_readiness_and_nothing_else() {
    let admin = free_address().unwrap();
    let _sandbox = Sandbox::start_with(Backend::Sqlite, |config| config.admin_listen = admin).await;
    assert_eq!(http_get(admin, "GET", "/livez").await.0, 200);
    assert_eq!(http_get(admin, "GET", "/readyz").await.0, 200);
    assert_eq!(http_get(admin, "POST", "/metrics").await.0, 405);
    assert_eq!(http_get(admin, "GET", "/../../etc/passwd").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_off_while_the_database_is_gone_and_liveness_stays() {
    let admin = free_address().unwrap();
    let sandbox =
        Sandbox::start_with(Backend::Postgres, |config| config.admin_listen = admin).await;
    assert_eq!(http_get(admin, "GET", "/readyz").await.0, 200);
    sandbox.database.drop_now().await;
    let mut ready = 200;
    for _ in 0..50 {
        ready = http_get(admin, "GET", "/readyz").await.0;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready, 503);
    assert_eq!(http_get(admin, "GET", "/livez").await.0, 200);
}
