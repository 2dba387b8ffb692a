//! Modules in tenants: enabling and disabling them (with their
//! dependencies, the modules' lifecycle callbacks and their default roles),
//! switching them per company, and the hot question whether a module may be
//! used somewhere. Every change bumps the tenant's module version in its
//! transaction and tells every replica; answers carry a consistency token.

pub mod callbacks;
pub mod catalog;
mod company;
mod disable;
mod enable;
mod outbox;
mod plan;
mod questions;

use std::sync::Arc;

use plinth_platform::{
    access::Access,
    audit::AuditDraft,
    enablement::{Enablement, TenantSnapshot},
    error::ApiError,
    identity::Principal,
    invalidation::{Change, Invalidator},
    store::{
        Store,
        tenant_modules::{TenantModuleRecord, TenantModuleState},
    },
};

pub use plinth_platform::versions::{Consistency, VersionToken};
use uuid::Uuid;

pub use callbacks::Callbacks;
pub use company::CompanySwitch;
pub use enable::{EnableModules, Enabled, ModuleEnablement};
pub use outbox::Outbox;
pub use questions::{Question, Reason};

use crate::{
    auth::signing::KeyEncryptionKey,
    module_config::{document, resolve_now},
};
use catalog::{Catalog, ModuleVersion};

/// Most modules of one EnableModules call.
pub const MAX_ENABLEMENTS: usize = 50;
/// Most feature switches of one module in one call.
pub const MAX_FEATURES: usize = 100;
/// Longest provisioning failure kept, in characters.
pub const MAX_FAILURE: usize = 500;

/// The enablement domain.
#[derive(Clone)]
pub struct Enablements {
    store: Store,
    access: Access,
    catalog: Arc<Catalog>,
    cache: Arc<Enablement>,
    invalidator: Arc<Invalidator>,
    callbacks: Arc<Callbacks>,
    outbox: Arc<Outbox>,
    encryption: Arc<KeyEncryptionKey>,
}

/// What the enablement and configuration domains (and the outbox) are
/// built from.
#[derive(Clone)]
pub struct ModuleParts {
    pub store: Store,
    pub access: Access,
    pub catalog: Arc<Catalog>,
    pub cache: Arc<Enablement>,
    pub invalidator: Arc<Invalidator>,
    pub encryption: Arc<KeyEncryptionKey>,
}

impl Enablements {
    pub fn new(parts: &ModuleParts, callbacks: Arc<Callbacks>, outbox: Arc<Outbox>) -> Enablements {
        let parts = parts.clone();
        Enablements {
            store: parts.store,
            access: parts.access,
            catalog: parts.catalog,
            cache: parts.cache,
            invalidator: parts.invalidator,
            encryption: parts.encryption,
            callbacks,
            outbox,
        }
    }

    /// After a committed change of the tenant's modules: this replica and
    /// the others learn the version, the outbox looks for work; the caller
    /// gets the version as a token.
    async fn committed(&self, tenant_id: Uuid, version: i64) -> String {
        self.cache.learn(tenant_id, version);
        self.invalidator
            .changed(Change::Modules { tenant_id, version })
            .await;
        self.outbox.wake();
        VersionToken::modules(tenant_id, version).encode()
    }

    /// The tenant of a company; NOT_FOUND when there is no such company (in
    /// `tenant_id`, when given).
    pub async fn company_tenant(
        &self,
        company_id: Uuid,
        tenant_id: Option<Uuid>,
    ) -> Result<Uuid, ApiError> {
        self.cache.company_tenant(company_id, tenant_id).await
    }

    /// The tenant's modules, as fresh as asked.
    pub async fn snapshot(
        &self,
        tenant_id: Uuid,
        consistency: Consistency,
    ) -> Result<Arc<TenantSnapshot>, ApiError> {
        let freshness = consistency.freshness(tenant_id, "consistency.at_least_as_fresh")?;
        self.cache.snapshot(tenant_id, freshness).await
    }
}

impl Enablements {
    /// The tenant's (or company's) resolved configuration of `version`, for
    /// a callback; `tenant_layer` in place of the stored tenant layer when
    /// the change brings one.
    async fn config_text(
        &self,
        version: &ModuleVersion,
        tenant_id: Uuid,
        company_id: Option<Uuid>,
        tenant_layer: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String, ApiError> {
        if let Some(layer) = tenant_layer {
            return Ok(document::resolve(&version.config.defaults, [layer]).to_string());
        }
        Ok(resolve_now(
            &self.store,
            &self.encryption,
            version,
            tenant_id,
            company_id,
            0,
        )
        .await?
        .document)
    }
}

/// The version a tenant runs: its pin, else the module's active version.
pub async fn running_version(
    catalog: &Catalog,
    record: &TenantModuleRecord,
) -> Result<Option<Arc<ModuleVersion>>, ApiError> {
    let version = match &record.version_pin {
        Some(pin) => Some(pin.clone()),
        None => catalog
            .module(&record.module_id)
            .await?
            .and_then(|module| module.active_version.clone()),
    };
    match version {
        Some(version) => Ok(Some(catalog.version(&record.module_id, &version).await?)),
        None => Ok(None),
    }
}

/// Where a tenant module goes once the module acknowledged being enabled.
fn enabled_state(version: &ModuleVersion) -> TenantModuleState {
    if version.provisions_tenants {
        TenantModuleState::Provisioning
    } else {
        TenantModuleState::Enabled
    }
}

fn module_event(
    principal: &Principal,
    action: &str,
    record: &TenantModuleRecord,
    version: Option<&str>,
) -> AuditDraft {
    AuditDraft::new(
        principal.actor(),
        action,
        "tenant_module",
        &record.module_id,
    )
    .in_tenant(Some(record.tenant_id))
    .with_request_id(&principal.request_id)
    .with_details(serde_json::json!({
        "module_id": record.module_id,
        "state": record.state.as_str(),
        "version": version,
        "version_pin": record.version_pin,
        "features": record.features,
    }))
}
