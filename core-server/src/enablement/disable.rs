//! DisableModule: refused while another module the tenant holds requires
//! the module, unless the call cascades to those (and what requires them).

use std::{collections::BTreeSet, sync::Arc};

use plinth_api::registry::v1::LifecycleCallback;
use plinth_platform::{
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        module_callbacks::CallbackKind,
        module_configs,
        tenant_modules::{self, TenantModuleRecord, TenantModuleState},
    },
};
use uuid::Uuid;

use super::{Enablements, catalog::ModuleVersion, module_event, outbox::enqueue, running_version};
use crate::{access::Scope, permissions::MODULE_ENABLE, tenant::lock_writable};

/// What a DisableModule call did.
pub struct Disabled {
    /// Disabled tenant modules, dependents first.
    pub disabled: Vec<TenantModuleRecord>,
    pub token: String,
}

impl Enablements {
    pub async fn disable(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        module_id: &str,
        cascade: bool,
    ) -> Result<Disabled, ApiError> {
        self.access
            .require_visible(principal, MODULE_ENABLE, Scope::tenant(tenant_id), "tenant")
            .await?;
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, tenant_id).await?;
        let current = tenant_modules::modules_in(&mut tx, tenant_id).await?;
        let mut held: Vec<(TenantModuleRecord, Option<Arc<ModuleVersion>>)> = Vec::new();
        for record in current.into_iter().filter(|record| record.state.is_held()) {
            let version = running_version(&self.catalog, &record).await?;
            held.push((record, version));
        }
        if !held.iter().any(|(record, _)| record.module_id == module_id) {
            drop(tx);
            let version = self
                .store
                .tenant_modules
                .modules_version(tenant_id)
                .await?
                .unwrap_or_default();
            return Ok(Disabled {
                disabled: Vec::new(),
                token: super::VersionToken::modules(tenant_id, version).encode(),
            });
        }
        let order = disabling_order(&held, module_id);
        if order.len() > 1 && !cascade {
            return Err(ApiError::ModuleHasDependents {
                module_id: module_id.to_owned(),
                dependents: order[..order.len() - 1].to_vec(),
            });
        }
        let now = clock::now();
        let mut disabled = Vec::with_capacity(order.len());
        for id in &order {
            let Some((record, version)) = held.iter().find(|(record, _)| &record.module_id == id)
            else {
                continue;
            };
            let listens = version.as_ref().is_some_and(|version| {
                version
                    .callback(LifecycleCallback::TenantDisabled)
                    .is_some()
            });
            let record = TenantModuleRecord {
                state: if listens {
                    TenantModuleState::Disabling
                } else {
                    TenantModuleState::Disabled
                },
                updated_at: now,
                ..record.clone()
            };
            let version_text = version.as_ref().map(|version| version.version.as_str());
            let event = module_event(principal, "tenant.module.disabled", &record, version_text);
            tenant_modules::put(&mut tx, &record, event).await?;
            if let (true, Some(version)) = (listens, version_text) {
                enqueue(
                    &mut tx,
                    principal,
                    &record,
                    None,
                    CallbackKind::TenantDisabled,
                    version,
                )
                .await?;
            }
            module_configs::record_change(&mut tx, id, Some(tenant_id), None).await?;
            disabled.push(record);
        }
        let version = tenant_modules::bump_version(&mut tx, tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(tenant_id, version).await;
        Ok(Disabled { disabled, token })
    }
}

/// The module and every held module that requires it, transitively,
/// dependents before what they depend on (the module itself last).
fn disabling_order(
    held: &[(TenantModuleRecord, Option<Arc<ModuleVersion>>)],
    module_id: &str,
) -> Vec<String> {
    let mut reached: BTreeSet<String> = BTreeSet::from([module_id.to_owned()]);
    let mut order = vec![module_id.to_owned()];
    loop {
        let next = held.iter().find_map(|(record, version)| {
            let requires_reached = version.as_ref().is_some_and(|version| {
                version.dependencies.iter().any(|dependency| {
                    !dependency.optional && reached.contains(&dependency.module_id)
                })
            });
            (requires_reached && !reached.contains(&record.module_id))
                .then(|| record.module_id.clone())
        });
        match next {
            Some(dependent) => {
                reached.insert(dependent.clone());
                order.push(dependent);
            }
            None => break,
        }
    }
    order.reverse();
    order
}
