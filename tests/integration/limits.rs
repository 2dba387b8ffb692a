//! Limits that keep a busy server responsive: past its bound of calls in
//! progress it refuses new ones at once instead of queueing them.

use plinth_api::auth::v1::LoginRequest;
use plinth_tests::{Backend, Credentials, Sandbox, all_at_once, error_reason};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

fn wrong_login() -> LoginRequest {
    LoginRequest {
        tenant_code: "acme".to_owned(),
        email: "nobody@acme.example".to_owned(),
        password: "a password that is wrong".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_bound_of_calls_a_server_refuses_at_once_and_health_still_answers() {
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| {
        config.max_concurrent_calls = 1;
        config.login_free_failures_per_peer = 1000;
        config.login_free_failures_per_account = 1000;
    })
    .await;
    // Each login hashes a password (tens of milliseconds), one at a time.
    let auth = sandbox.clients_with(Credentials::default()).await.auth;
    let burst = all_at_once(12, |_| {
        let mut auth = auth.clone();
        async move { auth.login(wrong_login()).await }
    });
    let health = async {
        HealthClient::new(sandbox.channel().await)
            .check(HealthCheckRequest::default())
            .await
            .map(|answer| answer.into_inner().status())
    };
    let ((served, refusals), health) = tokio::join!(burst, health);
    assert_eq!(
        health.unwrap(),
        ServingStatus::Serving,
        "health is never shed"
    );

    assert_eq!(
        served, 0,
        "a wrong password is refused, one way or the other"
    );
    let overloaded: Vec<_> = refusals
        .iter()
        .filter(|status| status.code() == Code::Unavailable)
        .collect();
    assert!(!overloaded.is_empty(), "{refusals:?}");
    for status in &overloaded {
        assert_eq!(
            error_reason(status).as_deref(),
            Some("ERROR_REASON_OVERLOADED")
        );
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert!(retry.retry_delay.is_some_and(|delay| !delay.is_zero()));
    }
    assert!(
        refusals
            .iter()
            .any(|status| status.code() == Code::Unauthenticated),
        "some logins were served: {refusals:?}"
    );
    let after = auth.clone().login(wrong_login()).await.unwrap_err();
    assert_eq!(
        after.code(),
        Code::Unauthenticated,
        "admitted again: {after:?}"
    );
}
