//! The Rust SDK (`plinth-client`) against a real core: the bearer-token
//! layer and the client's retries and deadlines here; the example module
//! written with it, and the check cache, in `stock`.

mod stock;

use std::time::{Duration, Instant};

use plinth_client::{
    Authenticator, Client, ClientError, Refusal, RetryPolicy, User,
    auth::v1::{GetJwksRequest, LoginRequest, LogoutRequest},
    testing::TestCore,
};
use plinth_tests::{Backend, Sandbox, forgeries::Forger, module_key};
use tokio::net::TcpListener;
use tonic::Code;
use tower::ServiceExt;

use crate::tokens::{sign_up, tokens};

/// A client of the sandbox presenting a new key of module `crm`.
async fn crm_client(sandbox: &Sandbox, tenant_id: &str) -> Client {
    crate::modules::enabled_for(sandbox, tenant_id, "crm").await;
    let key = module_key(sandbox, "crm").await;
    Client::builder(format!("http://{}", sandbox.address))
        .api_key(key)
        .connect_lazy()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_layer_refuses_every_forged_token() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let tenant_id = sign_up(&sandbox, "initech").await;
    let session = tokens(&sandbox, "initech", "admin@initech.example").await;
    let authenticator = Authenticator::new(crm_client(&sandbox, &tenant_id).await);
    let user = authenticator.verify(&session.access_token).await.unwrap();
    assert_eq!(user.tenant_id.to_string(), tenant_id);

    let store = sandbox.database.open_store().await;
    let forger = Forger::publish(&store, user.user_id, user.tenant_id, user.session_id).await;
    // A kid unknown to the layer fetches the key set again, at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    authenticator
        .verify(&forger.genuine())
        .await
        .expect("control: a token from a key published after the first fetch verifies");
    for (case, token) in forger.forgeries() {
        let refusal = authenticator.verify(&token).await.expect_err(case);
        assert!(
            matches!(refusal, Refusal::Invalid(_)),
            "{case}: {refusal:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_early_is_refused_when_the_layer_confirms_with_the_core() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let tenant_id = sign_up(&sandbox, "initech").await;
    let session = tokens(&sandbox, "initech", "admin@initech.example").await;
    let client = crm_client(&sandbox, &tenant_id).await;
    let local = Authenticator::new(client.clone());
    let confirming = Authenticator::new(client.clone()).confirm_with_core(true);
    confirming.verify(&session.access_token).await.unwrap();

    client
        .auth()
        .logout(LogoutRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap();
    let refusal = confirming
        .verify(&session.access_token)
        .await
        .expect_err("the core knows the session ended");
    assert!(matches!(refusal, Refusal::Revoked), "{refusal:?}");
    local
        .verify(&session.access_token)
        .await
        .expect("a local check alone cannot see it, as documented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_refuses_grpc_callers_with_unauthenticated_and_http_callers_with_401() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let tenant_id = sign_up(&sandbox, "initech").await;
    let session = tokens(&sandbox, "initech", "admin@initech.example").await;
    let authenticator =
        std::sync::Arc::new(Authenticator::new(crm_client(&sandbox, &tenant_id).await));
    let inner = tower::service_fn(|request: http::Request<()>| async move {
        let user = request.extensions().get::<User>().cloned();
        let mut response = http::Response::new(String::new());
        *response.body_mut() = user
            .map(|user| user.tenant_id.to_string())
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = authenticator.wrap(inner);
    let request = |content_type: &str, authorization: Option<String>| {
        let mut builder = http::Request::builder()
            .uri("/stock.v1.StockService/RecordCount")
            .header("content-type", content_type);
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        builder.body(()).unwrap()
    };

    let grpc = service
        .clone()
        .oneshot(request("application/grpc", None))
        .await
        .unwrap();
    assert_eq!(grpc.status(), http::StatusCode::OK);
    assert_eq!(grpc.headers()["grpc-status"], "16");
    let http = service
        .clone()
        .oneshot(request(
            "application/json",
            Some("Bearer forged.token.here".into()),
        ))
        .await
        .unwrap();
    assert_eq!(http.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(http.headers()["www-authenticate"], "Bearer");
    let authenticated = service
        .oneshot(request(
            "application/grpc",
            Some(format!("Bearer {}", session.access_token)),
        ))
        .await
        .unwrap();
    assert_eq!(
        authenticated.into_body(),
        tenant_id,
        "the user reaches the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_retry_until_the_core_answers_and_writes_fail_fast() {
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let client = Client::builder(format!("http://{address}"))
        .retries(RetryPolicy {
            max_attempts: 50,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        })
        .connect_lazy()
        .unwrap();
    let login = client
        .auth()
        .login(LoginRequest {
            tenant_code: "acme".to_owned(),
            email: "someone@acme.example".to_owned(),
            password: "not tried".to_owned(),
        })
        .await
        .expect_err("nothing listens yet");
    assert_eq!(login.code(), Code::Unavailable, "{login:?}");

    let core = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        TestCore::start_on(TcpListener::bind(address).await.unwrap())
            .await
            .unwrap()
    });
    let started = Instant::now();
    client
        .auth()
        .get_jwks(GetJwksRequest {})
        .await
        .expect("retried until served");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it waited for the core"
    );
    let request_id = jwks_request_id(&client).await;
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    let mut core = core.await.unwrap();
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_own_deadline_bounds_its_retries() {
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let client = Client::builder(format!("http://{address}"))
        .retries(RetryPolicy {
            max_attempts: 1_000,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(20),
        })
        .connect_lazy()
        .unwrap();
    let mut request = tonic::Request::new(GetJwksRequest {});
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.auth().get_jwks(request).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable),
        "{status:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_client_refuses_a_malformed_endpoint_or_api_key() {
    let endpoint = Client::builder("not a url").connect_lazy();
    assert!(matches!(endpoint, Err(ClientError::Invalid(_))));
    let api_key = Client::builder("http://127.0.0.1:1")
        .api_key("line\nbreak")
        .connect_lazy();
    assert!(matches!(api_key, Err(ClientError::Invalid(_))));
}

/// The request id the core echoes for a call the client sent.
async fn jwks_request_id(client: &Client) -> String {
    let answer = client.auth().get_jwks(GetJwksRequest {}).await.unwrap();
    answer
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}
