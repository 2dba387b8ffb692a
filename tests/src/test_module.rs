//! A real module for tests: a tonic server of `plinth.module.v1`
//! ModuleLifecycleService (and grpc.health.v1) on an ephemeral port, whose
//! answers the test sets, and which records every call it receives, each
//! delivery under its operation.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use plinth_api::module::v1::{
    self as proto,
    module_lifecycle_service_server::{ModuleLifecycleService, ModuleLifecycleServiceServer},
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// A callback the module received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The RPC's name, e.g. "OnTenantEnabled".
    pub callback: &'static str,
    pub target: proto::CallbackTarget,
    /// For after-change callbacks.
    pub delivery: Option<proto::Delivery>,
    /// For before-change callbacks.
    pub actor: Option<proto::Actor>,
}

/// How the module answers.
#[derive(Debug, Default)]
struct Behaviour {
    /// Refuse OnTenantEnabling and OnCompanyEnabling with this reason.
    veto: Option<String>,
    /// Fail this many after-change deliveries (each after applying its
    /// effect, as a module whose answer is lost would).
    failures_left: u32,
    received: Vec<Received>,
    /// Deliveries received per operation id: a module applies an
    /// operation's effect at its first delivery only.
    operations: BTreeMap<String, u32>,
}

#[derive(Clone, Default)]
struct Lifecycle(Arc<Mutex<Behaviour>>);

impl Lifecycle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn before(
        &self,
        callback: &'static str,
        target: Option<proto::CallbackTarget>,
        actor: Option<proto::Actor>,
    ) -> (bool, String) {
        let mut behaviour = self.lock();
        behaviour.received.push(Received {
            callback,
            target: target.unwrap_or_default(),
            delivery: None,
            actor,
        });
        match &behaviour.veto {
            Some(reason) => (false, reason.clone()),
            None => (true, String::new()),
        }
    }

    fn after(
        &self,
        callback: &'static str,
        target: Option<proto::CallbackTarget>,
        delivery: Option<proto::Delivery>,
    ) -> Result<(), Status> {
        let mut behaviour = self.lock();
        let operation_id = delivery
            .as_ref()
            .map(|delivery| delivery.operation_id.clone())
            .unwrap_or_default();
        behaviour.received.push(Received {
            callback,
            target: target.unwrap_or_default(),
            delivery,
            actor: None,
        });
        *behaviour.operations.entry(operation_id).or_insert(0) += 1;
        if behaviour.failures_left > 0 {
            behaviour.failures_left -= 1;
            return Err(Status::unavailable("the module is not ready yet"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ModuleLifecycleService for Lifecycle {
    async fn on_tenant_enabling(
        &self,
        request: Request<proto::OnTenantEnablingRequest>,
    ) -> Result<Response<proto::OnTenantEnablingResponse>, Status> {
        let asked = request.into_inner();
        let (allow, reason) = self.before("OnTenantEnabling", asked.target, asked.actor);
        Ok(Response::new(proto::OnTenantEnablingResponse {
            allow,
            reason,
        }))
    }

    async fn on_company_enabling(
        &self,
        request: Request<proto::OnCompanyEnablingRequest>,
    ) -> Result<Response<proto::OnCompanyEnablingResponse>, Status> {
        let asked = request.into_inner();
        let (allow, reason) = self.before("OnCompanyEnabling", asked.target, asked.actor);
        Ok(Response::new(proto::OnCompanyEnablingResponse {
            allow,
            reason,
        }))
    }

    async fn on_tenant_enabled(
        &self,
        request: Request<proto::OnTenantEnabledRequest>,
    ) -> Result<Response<proto::OnTenantEnabledResponse>, Status> {
        let told = request.into_inner();
        self.after("OnTenantEnabled", told.target, told.delivery)?;
        Ok(Response::new(proto::OnTenantEnabledResponse {}))
    }

    async fn on_tenant_disabled(
        &self,
        request: Request<proto::OnTenantDisabledRequest>,
    ) -> Result<Response<proto::OnTenantDisabledResponse>, Status> {
        let told = request.into_inner();
        self.after("OnTenantDisabled", told.target, told.delivery)?;
        Ok(Response::new(proto::OnTenantDisabledResponse {}))
    }

    async fn on_company_enabled(
        &self,
        request: Request<proto::OnCompanyEnabledRequest>,
    ) -> Result<Response<proto::OnCompanyEnabledResponse>, Status> {
        let told = request.into_inner();
        self.after("OnCompanyEnabled", told.target, told.delivery)?;
        Ok(Response::new(proto::OnCompanyEnabledResponse {}))
    }

    async fn on_company_disabled(
        &self,
        request: Request<proto::OnCompanyDisabledRequest>,
    ) -> Result<Response<proto::OnCompanyDisabledResponse>, Status> {
        let told = request.into_inner();
        self.after("OnCompanyDisabled", told.target, told.delivery)?;
        Ok(Response::new(proto::OnCompanyDisabledResponse {}))
    }
}

/// A running test module, stopped when dropped.
pub struct TestModule {
    pub address: SocketAddr,
    lifecycle: Lifecycle,
    _stop: oneshot::Sender<()>,
}

impl TestModule {
    /// Serves on an ephemeral loopback port (plaintext).
    pub async fn start() -> TestModule {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let lifecycle = Lifecycle::default();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(ModuleLifecycleServiceServer::new(lifecycle.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        TestModule {
            address,
            lifecycle,
            _stop: stop,
        }
    }

    /// Where the registry reaches it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Refuses enabling from now on, with `reason`.
    pub fn veto(&self, reason: &str) {
        self.lifecycle.lock().veto = Some(reason.to_owned());
    }

    /// Fails the next `count` after-change deliveries.
    pub fn fail_next(&self, count: u32) {
        self.lifecycle.lock().failures_left = count;
    }

    /// Every callback received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lifecycle.lock().received.clone()
    }

    /// Deliveries received per operation id.
    pub fn operations(&self) -> BTreeMap<String, u32> {
        self.lifecycle.lock().operations.clone()
    }
}
