//! The lifecycle callbacks a module answers, as a trait, and the generated
//! service that serves it.

use std::{future::Future, sync::Arc};

use plinth_api::module::v1::{
    CallbackTarget, Delivery, OnCompanyDisabledRequest, OnCompanyDisabledResponse,
    OnCompanyEnabledRequest, OnCompanyEnabledResponse, OnCompanyEnablingRequest,
    OnCompanyEnablingResponse, OnTenantDisabledRequest, OnTenantDisabledResponse,
    OnTenantEnabledRequest, OnTenantEnabledResponse, OnTenantEnablingRequest,
    OnTenantEnablingResponse, module_lifecycle_service_server::ModuleLifecycleService,
};

/// A refusal of an enable, with the reason shown to whoever asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veto(pub String);

/// The lifecycle callbacks a module answers (see `ModuleLifecycleService`
/// in `plinth/module/v1/module.proto`). Every method has a default that
/// accepts; the manifest's `callbacks` list which ones the core calls.
///
/// The after-change callbacks are delivered at least once: apply each
/// `delivery.operation_id` once. An error makes the core retry later.
pub trait Lifecycle: Send + Sync + 'static {
    /// Before a tenant enables the module; a veto refuses the enable.
    fn on_tenant_enabling(
        &self,
        target: &CallbackTarget,
    ) -> impl Future<Output = Result<(), Veto>> + Send {
        let _ = target;
        async { Ok(()) }
    }

    /// Before a company of a tenant that has the module switches it on.
    fn on_company_enabling(
        &self,
        target: &CallbackTarget,
    ) -> impl Future<Output = Result<(), Veto>> + Send {
        let _ = target;
        async { Ok(()) }
    }

    fn on_tenant_enabled(
        &self,
        target: &CallbackTarget,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let _ = (target, delivery);
        async { Ok(()) }
    }

    fn on_tenant_disabled(
        &self,
        target: &CallbackTarget,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let _ = (target, delivery);
        async { Ok(()) }
    }

    fn on_company_enabled(
        &self,
        target: &CallbackTarget,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let _ = (target, delivery);
        async { Ok(()) }
    }

    fn on_company_disabled(
        &self,
        target: &CallbackTarget,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let _ = (target, delivery);
        async { Ok(()) }
    }
}

/// Serves a [`Lifecycle`] as the generated service.
pub(crate) struct LifecycleService<L>(pub Arc<L>);

fn target(target: Option<CallbackTarget>) -> Result<CallbackTarget, tonic::Status> {
    target.ok_or_else(|| tonic::Status::invalid_argument("target is required"))
}

fn answer(verdict: Result<(), Veto>) -> (bool, String) {
    match verdict {
        Ok(()) => (true, String::new()),
        Err(Veto(reason)) => (false, reason),
    }
}

/// The service's methods: those asked before a change answer the verdict,
/// those told after it answer once the module has applied it.
macro_rules! lifecycle_service {
    (
        before: $(($before:ident, $before_request:ident, $before_response:ident)),+;
        after: $(($after:ident, $after_request:ident, $after_response:ident)),+;
    ) => {
        #[tonic::async_trait]
        impl<L: Lifecycle> ModuleLifecycleService for LifecycleService<L> {
            $(
                async fn $before(
                    &self,
                    request: tonic::Request<$before_request>,
                ) -> Result<tonic::Response<$before_response>, tonic::Status> {
                    let target = target(request.into_inner().target)?;
                    let (allow, reason) = answer(self.0.$before(&target).await);
                    Ok(tonic::Response::new($before_response { allow, reason }))
                }
            )+
            $(
                async fn $after(
                    &self,
                    request: tonic::Request<$after_request>,
                ) -> Result<tonic::Response<$after_response>, tonic::Status> {
                    let request = request.into_inner();
                    let delivery = request.delivery.unwrap_or_default();
                    self.0.$after(&target(request.target)?, &delivery).await?;
                    Ok(tonic::Response::new($after_response {}))
                }
            )+
        }
    };
}

lifecycle_service! {
    before:
        (on_tenant_enabling, OnTenantEnablingRequest, OnTenantEnablingResponse),
        (on_company_enabling, OnCompanyEnablingRequest, OnCompanyEnablingResponse);
    after:
        (on_tenant_enabled, OnTenantEnabledRequest, OnTenantEnabledResponse),
        (on_tenant_disabled, OnTenantDisabledRequest, OnTenantDisabledResponse),
        (on_company_enabled, OnCompanyEnabledRequest, OnCompanyEnabledResponse),
        (on_company_disabled, OnCompanyDisabledRequest, OnCompanyDisabledResponse);
}
