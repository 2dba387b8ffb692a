//! Limits that keep a busy server responsive: past its bound of calls in
//! progress it refuses new ones at once instead of queueing them, and each
//! API key and user gets a rate limit (GCRA), shared by replicas through
//! Redis.

use std::time::{Duration, Instant};

use plinth_api::auth::v1::{
    CreateApiKeyRequest, ListApiKeysRequest, LoginRequest, RateLimit, RevokeApiKeyRequest,
    SetApiKeyRateLimitRequest, WhoAmIRequest,
};
use plinth_tests::{
    Backend, Clients, Credentials, Sandbox, all_at_once, assert_invalid, assert_refusal,
    cluster::PrivateRedis, error_metadata, error_reason,
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::tokens::{sign_up, tokens};

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

/// A key of the `finance` module with `limit` of its own, made by the
/// operator.
pub async fn limited_key(sandbox: &Sandbox, limit: Option<RateLimit>) -> (String, String) {
    let created = sandbox
        .operator()
        .await
        .auth
        .create_api_key(CreateApiKeyRequest {
            name: "limited".to_owned(),
            module_id: "finance".to_owned(),
            rate_limit: limit,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (created.api_key.unwrap().id, created.secret)
}

pub fn limit(calls_per_second: u32, burst: u32) -> Option<RateLimit> {
    Some(RateLimit {
        calls_per_second,
        burst,
    })
}

/// Calls WhoAmI `count` times one after another; the refusals.
pub async fn who_am_i_times(clients: &Clients, count: usize) -> Vec<tonic::Status> {
    let mut auth = clients.auth.clone();
    let mut refusals = Vec::new();
    for _ in 0..count {
        if let Err(status) = auth.who_am_i(WhoAmIRequest {}).await {
            refusals.push(status);
        }
    }
    refusals
}

/// Asserts a rate-limit refusal of `scope` telling when to retry.
fn assert_rate_limited(status: &tonic::Status, scope: &str, at_most: Duration) {
    assert_refusal(status, Code::ResourceExhausted, "ERROR_REASON_RATE_LIMITED");
    assert_eq!(error_metadata(status, "scope").as_deref(), Some(scope));
    let delay = status
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        !delay.is_zero() && delay <= at_most,
        "retry after {delay:?}"
    );
}

crate::on_both_backends!(
    a_key_past_its_burst_is_refused_until_its_rate_allows_again,
    a_users_calls_spend_the_users_budget_directly_or_through_a_module,
    a_keys_limit_can_be_set_and_cleared_and_applies_at_once,
    only_the_platform_gives_rate_limits,
    bad_rate_limits_are_refused_field_by_field,
);

async fn a_key_past_its_burst_is_refused_until_its_rate_allows_again(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    // One a second: no refill comes between calls on a busy machine.
    let (_, secret) = limited_key(&sandbox, limit(1, 3)).await;
    let clients = sandbox.clients(&secret).await;

    let refusals = who_am_i_times(&clients, 4).await;

    assert_eq!(refusals.len(), 1, "three admitted, the fourth refused");
    assert_rate_limited(&refusals[0], "api_key", Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(1010)).await;
    assert!(who_am_i_times(&clients, 1).await.is_empty());
}

async fn a_users_calls_spend_the_users_budget_directly_or_through_a_module(backend: Backend) {
    let sandbox = Sandbox::start_with(backend, |config| {
        config.user_calls_per_second = 1;
        config.user_burst = 2;
    })
    .await;
    sign_up(&sandbox, "acme").await;
    let token = tokens(&sandbox, "acme", "admin@acme.example")
        .await
        .access_token;
    let (_, module_key) = limited_key(&sandbox, None).await;

    let directly = sandbox.clients_with(Credentials::bearer(&token)).await;
    assert!(who_am_i_times(&directly, 2).await.is_empty());
    let through_module = sandbox
        .clients_with(Credentials::module_for_user(&module_key, &token))
        .await;
    let refusals = who_am_i_times(&through_module, 1).await;

    assert_eq!(refusals.len(), 1);
    assert_rate_limited(&refusals[0], "user", Duration::from_secs(1));
    assert!(
        who_am_i_times(&sandbox.clients(&module_key).await, 1)
            .await
            .is_empty(),
        "the module's own budget is untouched by its user's"
    );
}

async fn a_keys_limit_can_be_set_and_cleared_and_applies_at_once(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let (id, secret) = limited_key(&sandbox, None).await;
    let clients = sandbox.clients(&secret).await;
    assert!(who_am_i_times(&clients, 5).await.is_empty());
    let mut operator = sandbox.operator().await;

    let set = operator
        .auth
        .set_api_key_rate_limit(SetApiKeyRateLimitRequest {
            id: id.clone(),
            rate_limit: limit(1, 1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.api_key.unwrap().rate_limit, limit(1, 1));
    assert_eq!(who_am_i_times(&clients, 2).await.len(), 1);

    let cleared = operator
        .auth
        .set_api_key_rate_limit(SetApiKeyRateLimitRequest {
            id: id.clone(),
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.api_key.unwrap().rate_limit, None);
    assert!(
        who_am_i_times(&clients, 5).await.is_empty(),
        "the server's default for keys applies again"
    );
    let listed = operator
        .auth
        .list_api_keys(ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(
        listed
            .iter()
            .any(|key| key.id == id && key.rate_limit.is_none())
    );
}

async fn only_the_platform_gives_rate_limits(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let tenant_id = sign_up(&sandbox, "acme").await;
    let token = tokens(&sandbox, "acme", "admin@acme.example")
        .await
        .access_token;
    let mut tenant_admin = sandbox.clients_with(Credentials::bearer(&token)).await;
    let tenant_key = CreateApiKeyRequest {
        name: "acme worker".to_owned(),
        module_id: "finance".to_owned(),
        tenant_id,
        ..Default::default()
    };

    let lifted = tenant_admin
        .auth
        .create_api_key(CreateApiKeyRequest {
            rate_limit: limit(1_000_000, 1_000_000),
            ..tenant_key.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(lifted.code(), Code::PermissionDenied, "{lifted:?}");
    let own = tenant_admin
        .auth
        .create_api_key(tenant_key)
        .await
        .expect("a tenant admin creates its keys, at the default limit")
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(own.rate_limit, None);
    let raised = tenant_admin
        .auth
        .set_api_key_rate_limit(SetApiKeyRateLimitRequest {
            id: own.id.clone(),
            rate_limit: limit(1_000_000, 1_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(raised.code(), Code::PermissionDenied, "{raised:?}");
    let (_, module_key) = limited_key(&sandbox, None).await;
    let (other_id, _) = limited_key(&sandbox, None).await;
    let by_module = sandbox
        .clients(&module_key)
        .await
        .auth
        .set_api_key_rate_limit(SetApiKeyRateLimitRequest {
            id: other_id,
            rate_limit: limit(1, 1),
        })
        .await
        .unwrap_err();
    assert_eq!(by_module.code(), Code::PermissionDenied, "{by_module:?}");
}

async fn bad_rate_limits_are_refused_field_by_field(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let (id, _) = limited_key(&sandbox, None).await;

    for (case, request, fields) in [
        (
            "zero and too large",
            SetApiKeyRateLimitRequest {
                id: "not-a-uuid".to_owned(),
                rate_limit: limit(0, 1_000_001),
            },
            &["id", "rate_limit.calls_per_second", "rate_limit.burst"][..],
        ),
        (
            "the largest u32",
            SetApiKeyRateLimitRequest {
                id: id.clone(),
                rate_limit: limit(u32::MAX, u32::MAX),
            },
            &["rate_limit.calls_per_second", "rate_limit.burst"][..],
        ),
    ] {
        let status = operator
            .auth
            .set_api_key_rate_limit(request)
            .await
            .unwrap_err();
        assert_invalid(&status, fields, &case);
    }
    let created = operator
        .auth
        .create_api_key(CreateApiKeyRequest {
            name: "limited".to_owned(),
            rate_limit: limit(5, 0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&created, &["rate_limit.burst"], &"create with a zero burst");

    let unknown = operator
        .auth
        .set_api_key_rate_limit(SetApiKeyRateLimitRequest {
            id: uuid::Uuid::now_v7().to_string(),
            rate_limit: limit(1, 1),
        })
        .await
        .unwrap_err();
    assert_refusal(&unknown, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    operator
        .auth
        .revoke_api_key(RevokeApiKeyRequest { id: id.clone() })
        .await
        .unwrap();
    let revoked = operator
        .auth
        .set_api_key_rate_limit(SetApiKeyRateLimitRequest {
            id,
            rate_limit: limit(1, 1),
        })
        .await
        .unwrap_err();
    assert_refusal(&revoked, Code::NotFound, "ERROR_REASON_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_a_replica_applies_the_limit_on_its_own() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url.clone();
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| {
        config.redis_url = Some(url);
    })
    .await;
    let (_, secret) = limited_key(&sandbox, limit(1, 3)).await;
    let clients = sandbox.clients(&secret).await;
    assert_eq!(who_am_i_times(&clients, 4).await.len(), 1, "Redis's budget");

    redis.kill();
    // Past the wait Redis asked for: the replica remembers that refusal.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let refusals = who_am_i_times(&clients, 4).await;

    // The replica's own budget was never spent while Redis kept it.
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_rate_limited(&refusals[0], "api_key", Duration::from_secs(1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no waiting on Redis: {:?}",
        started.elapsed()
    );
}
