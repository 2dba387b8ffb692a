//! Two replicas on one PostgreSQL database and one Redis (a single server,
//! or a three-node Redis Cluster): revocations, login failures and rate
//! limits on one are honoured by the other within a bounded time.

use std::time::{Duration, Instant};

use plinth_api::auth::v1::{
    CreateApiKeyRequest, LoginRequest, LogoutRequest, RevokeApiKeyRequest, VerifyTokenRequest,
    WhoAmIRequest,
};
use plinth_api::tenant::v1::SignupRequest;
use plinth_tests::{Backend, Credentials, Sandbox, TestRedis, error_reason};
use tonic::Code;

use crate::limits::{limit, limited_key, who_am_i_times};

/// Each behaviour on one Redis, and on a Redis Cluster of three nodes
/// (started by the test).
macro_rules! on_redis_and_cluster {
    ($($test:ident),+ $(,)?) => {
        mod single_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&plinth_tests::TestRedis::new()).await;
                }
            )+
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let cluster = plinth_tests::cluster::PrivateRedisCluster::start().await;
                    super::$test(&plinth_tests::TestRedis::at(&cluster.url)).await;
                }
            )+
        }
    };
}

on_redis_and_cluster!(
    a_key_revoked_on_one_replica_stops_working_on_the_other,
    a_logout_on_one_replica_stops_the_token_on_the_other,
    login_failures_count_across_replicas,
    a_rate_limit_budget_is_shared_across_replicas,
);

/// How long a change on one replica may take to reach the other.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

async fn two_replicas(redis: &TestRedis) -> (Sandbox, Sandbox) {
    let first = Sandbox::start_with(Backend::Postgres, |config| redis.configure(config)).await;
    let second = first.replica().await;
    (first, second)
}

/// Polls `refused` until it holds, returning how long that took.
async fn time_until<F: Future<Output = bool>>(mut refused: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if refused().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the change never reached the other replica");
}

async fn a_key_revoked_on_one_replica_stops_working_on_the_other(redis: &TestRedis) {
    let (first, second) = two_replicas(redis).await;
    let created = first
        .operator()
        .await
        .auth
        .create_api_key(CreateApiKeyRequest {
            name: "finance".to_owned(),
            module_id: "finance".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut on_second = second.clients(&created.secret).await;
    on_second
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .expect("the second replica has the key cached");

    first
        .operator()
        .await
        .auth
        .revoke_api_key(RevokeApiKeyRequest {
            id: created.api_key.unwrap().id,
        })
        .await
        .unwrap();

    let took = time_until(|| {
        let mut client = on_second.auth.clone();
        async move { client.who_am_i(WhoAmIRequest {}).await.is_err() }
    })
    .await;
    eprintln!("revocation reached the other replica in {took:?}");
    assert!(took < PROPAGATION_BOUND, "took {took:?}");
}

async fn a_logout_on_one_replica_stops_the_token_on_the_other(redis: &TestRedis) {
    let (first, second) = two_replicas(redis).await;
    let mut operator = first.operator().await;
    operator
        .tenants
        .signup(SignupRequest {
            tenant_code: "initech".to_owned(),
            tenant_name: "Initech".to_owned(),
            admin_email: "admin@initech.example".to_owned(),
            admin_display_name: "Admin".to_owned(),
            admin_password: "rocket skates and anvils".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let tokens = first
        .clients_with(Credentials::default())
        .await
        .auth
        .login(LoginRequest {
            tenant_code: "initech".to_owned(),
            email: "admin@initech.example".to_owned(),
            password: "rocket skates and anvils".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let verify = VerifyTokenRequest {
        access_token: tokens.access_token.clone(),
    };
    let mut on_second = second.clients(&second.operator_key).await;
    on_second
        .auth
        .verify_token(verify.clone())
        .await
        .expect("verifies on the second replica");

    first
        .clients_with(Credentials::default())
        .await
        .auth
        .logout(LogoutRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap();

    let took = time_until(|| {
        let mut client = on_second.auth.clone();
        let verify = verify.clone();
        async move { client.verify_token(verify).await.is_err() }
    })
    .await;
    eprintln!("logout reached the other replica in {took:?}");
    assert!(took < PROPAGATION_BOUND, "took {took:?}");
}

async fn login_failures_count_across_replicas(redis: &TestRedis) {
    let (first, second) = two_replicas(redis).await;
    let mut on_first = first.clients_with(Credentials::default()).await.auth;
    let mut on_second = second.clients_with(Credentials::default()).await.auth;
    let attempt = LoginRequest {
        tenant_code: "initech".to_owned(),
        email: "someone@initech.example".to_owned(),
        password: "a wrong password".to_owned(),
    };

    for _ in 0..5 {
        let status = on_first.login(attempt.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let throttled = on_second.login(attempt).await.unwrap_err();

    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert_eq!(
        error_reason(&throttled).as_deref(),
        Some("ERROR_REASON_RATE_LIMITED")
    );
}

async fn a_rate_limit_budget_is_shared_across_replicas(redis: &TestRedis) {
    let (first, second) = two_replicas(redis).await;
    let (_, secret) = limited_key(&first, limit(1, 10)).await;
    let (on_first, on_second) = (first.clients(&secret).await, second.clients(&secret).await);

    let mut refused = 0;
    for _ in 0..10 {
        refused += who_am_i_times(&on_first, 1).await.len();
        refused += who_am_i_times(&on_second, 1).await.len();
    }

    // Apart, each replica would admit its own burst of 10: all 20 calls.
    // Shared, 10 are refused, fewer by a refill a second while they run.
    assert!(
        (6..=10).contains(&refused),
        "one budget of 10 (and its refills): {refused} refused"
    );
}
