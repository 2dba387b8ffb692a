//! EnableModules: a plan of what changes (the modules asked for, and with
//! `enable_dependencies` the required dependencies the tenant lacks), the
//! modules' OnTenantEnabling asked before anything is written, then one
//! transaction that plans again under the tenant's lock and writes it all.

use std::collections::BTreeSet;

use plinth_api::registry::v1::LifecycleCallback;
use plinth_platform::{
    error::ApiError,
    identity::Principal,
    invalidation::Change,
    store::{
        Tx,
        module_callbacks::CallbackKind,
        tenant_modules::{self, Features, TenantModuleRecord},
        tenants::TenantRecord,
    },
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Enablements, callbacks::Target, module_event, outbox::enqueue, plan::Planned};
use crate::{
    access::Scope,
    module_config::{self, LayerWrite, secrets::LayerKey},
    permissions::MODULE_ENABLE,
    rbac::seed_module_roles,
    tenant::lock_writable,
};

/// One module of an EnableModules call.
#[derive(Debug, Clone, Default)]
pub struct ModuleEnablement {
    pub module_id: String,
    /// `None` follows the active version.
    pub version_pin: Option<String>,
    /// `None` keeps the tenant's switches.
    pub features: Option<Features>,
    /// `None` keeps the tenant's layer.
    pub tenant_config: Option<Map<String, Value>>,
}

#[derive(Debug, Clone)]
pub struct EnableModules {
    pub tenant_id: Uuid,
    pub modules: Vec<ModuleEnablement>,
    pub enable_dependencies: bool,
}

/// What an EnableModules call did.
pub struct Enabled {
    /// Changed tenant modules, dependencies first, with the version each
    /// runs.
    pub changed: Vec<(TenantModuleRecord, String)>,
    pub unchanged: Vec<String>,
    pub token: String,
}

/// A plan whose modules were asked (OnTenantEnabling) and allowed, ready
/// to be written into a new tenant's transaction.
pub struct Prepared {
    plan: Vec<Planned>,
}

impl Enablements {
    pub async fn enable(
        &self,
        principal: &Principal,
        command: EnableModules,
    ) -> Result<Enabled, ApiError> {
        let tenant_id = command.tenant_id;
        self.access
            .require_visible(principal, MODULE_ENABLE, Scope::tenant(tenant_id), "tenant")
            .await?;
        let tenant = self
            .store
            .tenants
            .get_tenant(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        let current = self
            .store
            .tenant_modules
            .tenant_modules(tenant_id)
            .await?
            .map(|read| read.modules)
            .unwrap_or_default();
        let asked = self.plan(&current, &command).await?;
        self.ask_before(principal, &tenant, &asked).await?;

        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, tenant_id).await?;
        let current = tenant_modules::modules_in(&mut tx, tenant_id).await?;
        let plan = self.plan(&current, &command).await?;
        if plan.iter().any(|planned| {
            planned.newly_enabled
                && !asked.iter().any(|was| {
                    was.newly_enabled && was.record.module_id == planned.record.module_id
                })
        }) {
            return Err(ApiError::FailedPrecondition {
                resource_type: "tenant modules",
                state: "changed while the modules were asked; retry".to_owned(),
            });
        }
        let (version, rbac_version) = self
            .write_plan(&mut tx, principal, tenant_id, &plan)
            .await?;
        tx.commit().await?;
        let token = self.published(tenant_id, version, rbac_version).await;
        let asked_ids: BTreeSet<&str> = command
            .modules
            .iter()
            .map(|module| module.module_id.as_str())
            .collect();
        let unchanged = plan
            .iter()
            .filter(|planned| {
                !planned.changed && asked_ids.contains(planned.record.module_id.as_str())
            })
            .map(|planned| planned.record.module_id.clone())
            .collect();
        Ok(Enabled {
            changed: changed_of(plan),
            unchanged,
            token,
        })
    }

    /// Plans the modules a tenant about to be created starts with, and asks
    /// each (OnTenantEnabling) before anything is written.
    pub async fn prepare_new_tenant(
        &self,
        principal: &Principal,
        tenant: &TenantRecord,
        command: &EnableModules,
    ) -> Result<Prepared, ApiError> {
        let plan = self.plan(&[], command).await?;
        self.ask_before(principal, tenant, &plan).await?;
        Ok(Prepared { plan })
    }

    /// Writes a prepared plan in the transaction that creates its tenant;
    /// the tenant's module and RBAC versions for [`Enablements::published`],
    /// and the modules enabled.
    pub async fn write_prepared(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        tenant_id: Uuid,
        prepared: Prepared,
    ) -> Result<(i64, Option<i64>, Vec<(TenantModuleRecord, String)>), ApiError> {
        let (version, rbac_version) = self
            .write_plan(tx, principal, tenant_id, &prepared.plan)
            .await?;
        Ok((version, rbac_version, changed_of(prepared.plan)))
    }

    /// After the transaction of a plan committed: every replica learns the
    /// versions; the consistency token of the modules.
    pub async fn published(
        &self,
        tenant_id: Uuid,
        version: i64,
        rbac_version: Option<i64>,
    ) -> String {
        if let Some(rbac_version) = rbac_version {
            self.invalidator
                .changed(Change::Rbac {
                    tenant_id,
                    version: rbac_version,
                })
                .await;
        }
        self.committed(tenant_id, version).await
    }

    /// Asks each module the plan newly enables whether it allows it.
    async fn ask_before(
        &self,
        principal: &Principal,
        tenant: &TenantRecord,
        plan: &[Planned],
    ) -> Result<(), ApiError> {
        for planned in plan.iter().filter(|planned| planned.newly_enabled) {
            let config = self
                .config_text(
                    &planned.version,
                    tenant.id,
                    None,
                    planned.tenant_config.as_ref(),
                )
                .await?;
            self.callbacks
                .ask(
                    &planned.version,
                    LifecycleCallback::TenantEnabling,
                    Target::tenant(tenant, &planned.version.version, config),
                    principal,
                )
                .await?;
        }
        Ok(())
    }

    /// Writes the plan's changes and bumps the tenant's module version; the
    /// new version, and the RBAC version when default roles were created.
    async fn write_plan(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        tenant_id: Uuid,
        plan: &[Planned],
    ) -> Result<(i64, Option<i64>), ApiError> {
        let mut rbac_version = None;
        for planned in plan.iter().filter(|planned| planned.changed) {
            if let Some(version) = self.write_planned(tx, principal, planned).await? {
                rbac_version = Some(version);
            }
        }
        let version = tenant_modules::bump_version(tx, tenant_id).await?;
        Ok((version, rbac_version))
    }

    /// Writes one planned module; the tenant's new RBAC version when its
    /// default roles were created.
    async fn write_planned(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        planned: &Planned,
    ) -> Result<Option<i64>, ApiError> {
        let mut record = planned.record.clone();
        let mut rbac_version = None;
        if planned.newly_enabled && !record.roles_seeded {
            rbac_version = seed_module_roles(
                tx,
                principal,
                record.tenant_id,
                &planned.version.default_roles,
            )
            .await?;
            record.roles_seeded = true;
        }
        let action = if planned.newly_enabled {
            "tenant.module.enabled"
        } else {
            "tenant.module.updated"
        };
        let event = module_event(principal, action, &record, Some(&planned.version.version));
        tenant_modules::put(tx, &record, event).await?;
        if let Some(layer) = &planned.tenant_config {
            module_config::write_layer(
                tx,
                &self.encryption,
                principal,
                &planned.version,
                LayerWrite {
                    key: LayerKey {
                        tenant_id: record.tenant_id,
                        module_id: &record.module_id,
                        company_id: None,
                    },
                    layer: layer.clone(),
                },
            )
            .await?;
        }
        if planned.newly_enabled
            && planned
                .version
                .callback(LifecycleCallback::TenantEnabled)
                .is_some()
        {
            enqueue(
                tx,
                principal,
                &record,
                None,
                CallbackKind::TenantEnabled,
                &planned.version.version,
            )
            .await?;
        }
        plinth_platform::store::module_configs::record_change(
            tx,
            &record.module_id,
            Some(record.tenant_id),
            None,
        )
        .await?;
        Ok(rbac_version)
    }
}

/// The changed modules of a plan, with the version each runs.
fn changed_of(plan: Vec<Planned>) -> Vec<(TenantModuleRecord, String)> {
    plan.into_iter()
        .filter(|planned| planned.changed)
        .map(|planned| (planned.record, planned.version.version.clone()))
        .collect()
}
