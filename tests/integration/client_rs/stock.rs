//! The Stock example module, written with the SDK, served by its runtime on
//! `plinth_client::testing`'s in-process core; and the SDK's check cache.

use std::time::{Duration, Instant};

use plinth_client::{
    Authenticator, CheckCacheSettings, Client,
    registry::v1::{DiscoverInstancesRequest, InstanceStatus},
    tenant::v1::{CreateTenantRequest, EnableModulesRequest, ModuleEnablement},
    testing::{TestCore, TestUser},
};
use plinth_tests::{error_metadata, error_reason};
use stock_module::api::{
    GetEnablementRequest, RecordCountRequest, stock_service_client::StockServiceClient,
};
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};

const STOCK_MANIFEST: &str = include_str!("../../../examples/stock-rust/manifest.yaml");

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
