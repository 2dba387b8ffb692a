//! The Rust SDK (`plinth-client`) against a real core: the bearer-token
//! layer, cached checks, retries, and the example module written with it,
//! run on `plinth_client::testing`'s in-process core.

use std::time::{Duration, Instant};

use plinth_client::{
    Authenticator, CheckCacheSettings, Client, ClientError, Refusal, RetryPolicy, User,
    auth::v1::{GetJwksRequest, LoginRequest, LogoutRequest},
    registry::v1::{DiscoverInstancesRequest, InstanceStatus},
    tenant::v1::{CreateTenantRequest, EnableModulesRequest, ModuleEnablement},
    testing::{TestCore, TestUser},
};
use plinth_tests::{Backend, Sandbox, error_metadata, error_reason, forgeries::Forger, module_key};
use stock_module::api::{
    GetEnablementRequest, RecordCountRequest, stock_service_client::StockServiceClient,
};
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};
use tower::ServiceExt;

use crate::tokens::{sign_up, tokens};

const STOCK_MANIFEST: &str = include_str!("../../examples/stock-rust/manifest.yaml");

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

/// The core, the Stock example module serving on it, and a module client.
struct StockFixture {
    core: TestCore,
    module_key: String,
    module: Client,
    stock: StockServiceClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), plinth_client::ModuleError>>,
}

impl StockFixture {
    async fn start() -> StockFixture {
        let core = TestCore::start().await.unwrap();
        let module_key = core.publish_module(STOCK_MANIFEST).await.unwrap();
        let module = core.client(&module_key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(stock_module::serve(module.clone(), listener, async {
            stopped.await.ok();
        }));
        let stock = StockServiceClient::new(
            Channel::from_shared(format!("http://{address}"))
                .unwrap()
                .connect_lazy(),
        );
        let fixture = StockFixture {
            core,
            module_key,
            module,
            stock,
            stop: Some(stop),
            served,
        };
        let serving = fixture.wait_for_instances(1).await;
        assert_eq!(serving[0].endpoint, format!("http://{address}"));
        fixture
    }

    /// A module client whose cached answers outlive any test.
    fn client_keeping_answers(&self) -> Client {
        self.core
            .client_builder(&self.module_key)
            .check_cache(CheckCacheSettings {
                ttl: Duration::from_secs(600),
                capacity: 100,
            })
            .connect_lazy()
            .unwrap()
    }

    async fn wait_for_instances(&self, count: usize) -> Vec<plinth_client::registry::v1::Instance> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let instances = self
                .module
                .registry()
                .discover_instances(DiscoverInstancesRequest {
                    module_id: "stock".to_owned(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .instances;
            if instances.len() == count {
                return instances;
            }
            assert!(
                Instant::now() < deadline,
                "{} instances, not {count}",
                instances.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn count(
        &self,
        user: Option<&TestUser>,
        item_id: &str,
    ) -> Result<(String, String), tonic::Status> {
        let mut request = tonic::Request::new(RecordCountRequest {
            item_id: item_id.to_owned(),
            quantity: 7,
        });
        if let Some(user) = user {
            let bearer = format!("Bearer {}", user.access_token).parse().unwrap();
            request.metadata_mut().insert("authorization", bearer);
        }
        let answer = self.stock.clone().record_count(request).await?.into_inner();
        Ok((answer.warehouse, answer.event_id))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_module_serves_its_users_and_vetoes_an_enable_without_its_setting() {
    let fixture = StockFixture::start().await;
    let core = &fixture.core;
    let operator = core.operator().unwrap();
    let initech = operator
        .tenants()
        .create_tenant(CreateTenantRequest {
            code: "initech".to_owned(),
            name: "Initech".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let vetoed = operator
        .tenants()
        .enable_modules(EnableModulesRequest {
            tenant_id: initech.id,
            modules: vec![ModuleEnablement {
                module_id: "stock".to_owned(),
                ..Default::default()
            }],
            enable_dependencies: false,
        })
        .await
        .expect_err("no warehouse setting");
    assert_eq!(
        error_reason(&vetoed).as_deref(),
        Some("ERROR_REASON_MODULE_VETOED")
    );
    let veto_reason = error_metadata(&vetoed, "veto_reason").unwrap_or_default();
    assert!(veto_reason.contains("warehouse"), "{veto_reason}");

    let acme = core
        .tenant("acme", "stock", r#"{"warehouse": "north"}"#)
        .await
        .unwrap();
    let clerk = core.user(&acme, &["stock:item:count"]).await.unwrap();
    let visitor = core.user(&acme, &[]).await.unwrap();
    let (warehouse, event_id) = fixture.count(Some(&clerk), "bolt-7").await.unwrap();
    assert_eq!(warehouse, "north");
    assert!(!event_id.is_empty());
    let denied = fixture.count(Some(&visitor), "bolt-7").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = fixture.count(None, "bolt-7").await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let forged = TestUser {
        access_token: format!("{}x", clerk.access_token),
        ..clerk.clone()
    };
    assert_eq!(
        fixture
            .count(Some(&forged), "bolt-7")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let malformed = fixture.count(Some(&clerk), "").await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);

    let mut enablement = tonic::Request::new(GetEnablementRequest {});
    let bearer = format!("Bearer {}", clerk.access_token).parse().unwrap();
    enablement.metadata_mut().insert("authorization", bearer);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stock = fixture.stock.clone();
    loop {
        let request = tonic::Request::from_parts(
            enablement.metadata().clone(),
            Default::default(),
            GetEnablementRequest {},
        );
        if stock
            .get_enablement(request)
            .await
            .unwrap()
            .into_inner()
            .enabled
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "OnTenantEnabled never reached the module"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_runtime_deregisters_its_instance_when_it_stops() {
    let mut fixture = StockFixture::start().await;
    fixture.stop.take().unwrap().send(()).unwrap();
    // Draining first: discovery leaves it out at once, while its lease holds.
    fixture.wait_for_instances(0).await;
    (&mut fixture.served)
        .await
        .unwrap()
        .expect("the module stops cleanly");
    let everything = fixture
        .module
        .registry()
        .discover_instances(DiscoverInstancesRequest {
            module_id: "stock".to_owned(),
            statuses: vec![
                InstanceStatus::Starting.into(),
                InstanceStatus::Serving.into(),
                InstanceStatus::NotServing.into(),
                InstanceStatus::Draining.into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instances;
    assert!(everything.is_empty(), "deregistered: {everything:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_permission_check_is_answered_without_the_core() {
    let mut fixture = StockFixture::start().await;
    let module = fixture.client_keeping_answers();
    let core = &mut fixture.core;
    let acme = core
        .tenant("acme", "stock", r#"{"warehouse": "north"}"#)
        .await
        .unwrap();
    let clerk = core.user(&acme, &["stock:item:count"]).await.unwrap();
    let user = Authenticator::new(module.clone())
        .verify(&clerk.access_token)
        .await
        .unwrap();
    module.require(&user, "stock:item:count").await.unwrap();

    core.stop().await;
    module
        .require(&user, "stock:item:count")
        .await
        .expect("the cached answer needs no call");
    let uncached = module
        .require(&user, "plinth:tenant:read")
        .await
        .unwrap_err();
    assert_eq!(uncached.code(), Code::Unavailable, "{uncached:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistency_token_sees_a_grant_made_after_the_cached_refusal() {
    let fixture = StockFixture::start().await;
    let (core, module) = (&fixture.core, fixture.client_keeping_answers());
    let acme = core
        .tenant("acme", "stock", r#"{"warehouse": "north"}"#)
        .await
        .unwrap();
    let visitor = core.user(&acme, &[]).await.unwrap();
    let user = Authenticator::new(module.clone())
        .verify(&visitor.access_token)
        .await
        .unwrap();
    let refused = module.require(&user, "stock:item:count").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let granted = core
        .grant(&visitor.tenant_id, &visitor.user_id, &["stock:item:count"])
        .await
        .unwrap();
    module
        .require(&user, "stock:item:count")
        .await
        .expect_err("without the token, the cached refusal stands within its lifetime");
    module
        .require_in(&user, "stock:item:count", None, Some(&granted))
        .await
        .expect("with the grant's token, the answer reflects the grant");
    module
        .require(&user, "stock:item:count")
        .await
        .expect("and the fresher answer is what the cache keeps");
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
