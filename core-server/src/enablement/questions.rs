//! What modules may be used where (IsModuleEnabled, ListEnabledModules),
//! the tenant's modules in every state (ListTenantModules), and the end of
//! a module's provisioning of a tenant.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    pin::Pin,
    sync::Arc,
};

use plinth_platform::{
    access::Scope,
    clock,
    enablement::TenantSnapshot,
    error::ApiError,
    identity::Principal,
    store::{
        module_configs,
        tenant_modules::{self, TenantModuleRecord, TenantModuleState},
    },
};
use uuid::Uuid;

use super::{Consistency, Enablements, catalog::ModuleVersion, module_event, running_version};
use crate::{
    permissions::{MODULE_MANAGE, MODULE_READ},
    tenant::lock_writable,
};

/// Whether a module (and feature) may be used in a tenant or company.
#[derive(Debug, Clone)]
pub struct Question {
    pub tenant_id: Uuid,
    pub company_id: Option<Uuid>,
    pub module_id: String,
    pub feature: Option<String>,
    pub consistency: Consistency,
}

/// Why an answer is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Enabled,
    ModuleInactive,
    NotEnabled,
    NotReady,
    SwitchedOff,
    /// This required dependency is not usable here.
    Dependency(String),
    FeatureOff,
}

/// The answer to a [`Question`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub reason: Reason,
    /// The version the tenant runs, when usable.
    pub version: Option<String>,
    pub token: String,
}

/// A module usable in a tenant or company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnabledModule {
    pub module_id: String,
    pub version: String,
    /// Every declared feature, on or off here.
    pub features: BTreeMap<String, bool>,
}

/// What the rules found for one module: the reason and, when usable, the
/// version and the tenant's record.
type Verdict = (Reason, Option<(Arc<ModuleVersion>, TenantModuleRecord)>);

impl Enablements {
    pub async fn is_enabled(
        &self,
        principal: &Principal,
        question: Question,
    ) -> Result<Answer, ApiError> {
        let snapshot = self
            .readable_snapshot(
                principal,
                question.tenant_id,
                question.company_id,
                question.consistency,
            )
            .await?;
        let (mut reason, usable) = self
            .verdict(
                &snapshot,
                &question.module_id,
                question.company_id,
                BTreeSet::new(),
            )
            .await?;
        if let (Some(feature), Some((version, record))) = (&question.feature, &usable)
            && !features_here(&snapshot, version, record, question.company_id)
                .get(feature)
                .copied()
                .unwrap_or(false)
        {
            reason = Reason::FeatureOff;
        }
        Ok(Answer {
            version: (reason == Reason::Enabled)
                .then(|| usable.map(|(version, _)| version.version.clone()))
                .flatten(),
            reason,
            token: snapshot.token.clone(),
        })
    }

    /// The modules usable in the tenant (or company), by id.
    pub async fn list_enabled(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        company_id: Option<Uuid>,
        consistency: Consistency,
    ) -> Result<(Vec<EnabledModule>, String), ApiError> {
        let snapshot = self
            .readable_snapshot(principal, tenant_id, company_id, consistency)
            .await?;
        let mut module_ids: Vec<&str> = snapshot
            .modules()
            .map(|record| record.module_id.as_str())
            .collect();
        module_ids.sort_unstable();
        let mut enabled = Vec::new();
        for module_id in module_ids {
            if let (Reason::Enabled, Some((version, record))) = self
                .verdict(&snapshot, module_id, company_id, BTreeSet::new())
                .await?
            {
                enabled.push(EnabledModule {
                    module_id: module_id.to_owned(),
                    features: features_here(&snapshot, &version, &record, company_id),
                    version: version.version.clone(),
                });
            }
        }
        Ok((enabled, snapshot.token.clone()))
    }

    /// The tenant's modules in every state (or one), by module id, after
    /// `after`, at most `limit`, each with the version it runs; and the
    /// token of what was read.
    pub async fn list_tenant_modules(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        state: Option<TenantModuleState>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(TenantModuleRecord, Option<String>)>, bool, String), ApiError> {
        let snapshot = self
            .readable_snapshot(principal, tenant_id, None, Consistency::Full)
            .await?;
        let mut records: Vec<&TenantModuleRecord> = snapshot
            .modules()
            .filter(|record| state.is_none_or(|state| record.state == state))
            .filter(|record| after.is_none_or(|after| record.module_id.as_str() > after))
            .collect();
        records.sort_unstable_by(|a, b| a.module_id.cmp(&b.module_id));
        let more = records.len() > limit;
        let mut page = Vec::with_capacity(limit.min(records.len()));
        for record in records.into_iter().take(limit) {
            let version = running_version(&self.catalog, record)
                .await?
                .map(|version| version.version.clone());
            page.push((record.clone(), version));
        }
        Ok((page, more, snapshot.token.clone()))
    }

    /// A module reports that it prepared the tenant (or failed to).
    pub async fn report_provisioning(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        module_id: &str,
        failure: Option<String>,
    ) -> Result<(TenantModuleRecord, String), ApiError> {
        let own_module = principal.module_id() == Some(module_id)
            && principal
                .tenant_scope()
                .is_none_or(|scope| scope == tenant_id);
        if !own_module {
            self.access
                .require(principal, MODULE_MANAGE, Scope::platform())
                .await?;
        }
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, tenant_id).await?;
        let record = tenant_modules::modules_in(&mut tx, tenant_id)
            .await?
            .into_iter()
            .find(|record| record.module_id == module_id)
            .ok_or(ApiError::NotFound {
                resource_type: "tenant module",
            })?;
        if record.state != TenantModuleState::Provisioning {
            return Err(ApiError::FailedPrecondition {
                resource_type: "tenant module",
                state: record.state.as_str().to_owned(),
            });
        }
        let (state, action) = match &failure {
            Some(_) => (
                TenantModuleState::Failed,
                "tenant.module.provisioning_failed",
            ),
            None => (TenantModuleState::Enabled, "tenant.module.provisioned"),
        };
        let record = TenantModuleRecord {
            state,
            failure: failure.unwrap_or_default(),
            updated_at: clock::now(),
            ..record
        };
        let event = module_event(principal, action, &record, None);
        tenant_modules::put(&mut tx, &record, event).await?;
        if state == TenantModuleState::Failed {
            module_configs::record_change(&mut tx, module_id, Some(tenant_id), None).await?;
        }
        let version = tenant_modules::bump_version(&mut tx, tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(tenant_id, version).await;
        Ok((record, token))
    }

    /// The tenant's snapshot, once the caller may read its modules (and the
    /// company is the tenant's).
    async fn readable_snapshot(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        company_id: Option<Uuid>,
        consistency: Consistency,
    ) -> Result<Arc<TenantSnapshot>, ApiError> {
        let scope = Scope::tenant(tenant_id).in_company(company_id);
        self.access
            .require_visible(principal, MODULE_READ, scope, "tenant")
            .await?;
        if let Some(company_id) = company_id {
            self.company_tenant(company_id, Some(tenant_id)).await?;
        }
        self.snapshot(tenant_id, consistency).await
    }

    /// The rules of IsModuleEnabled for one module (its dependencies by the
    /// same rules; `visiting` guards against a cycle the catalog should
    /// never hold).
    fn verdict<'a>(
        &'a self,
        snapshot: &'a TenantSnapshot,
        module_id: &'a str,
        company_id: Option<Uuid>,
        mut visiting: BTreeSet<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Verdict, ApiError>> + Send + 'a>> {
        Box::pin(async move {
            if self.catalog.active(module_id).await?.is_none() {
                return Ok((Reason::ModuleInactive, None));
            }
            let Some(record) = snapshot.module(module_id) else {
                return Ok((Reason::NotEnabled, None));
            };
            match record.state {
                TenantModuleState::Enabled => {}
                TenantModuleState::Disabled | TenantModuleState::Disabling => {
                    return Ok((Reason::NotEnabled, None));
                }
                TenantModuleState::Enabling
                | TenantModuleState::Provisioning
                | TenantModuleState::Failed => return Ok((Reason::NotReady, None)),
            }
            let Some(version) = running_version(&self.catalog, record).await? else {
                return Ok((Reason::ModuleInactive, None));
            };
            if let Some(company_id) = company_id
                && snapshot
                    .company_module(company_id, module_id)
                    .is_some_and(|company| company.switched_off)
            {
                return Ok((Reason::SwitchedOff, None));
            }
            visiting.insert(module_id.to_owned());
            for dependency in version
                .dependencies
                .iter()
                .filter(|dependency| !dependency.optional)
            {
                if visiting.contains(&dependency.module_id) {
                    continue;
                }
                let (reason, usable) = self
                    .verdict(
                        snapshot,
                        &dependency.module_id,
                        company_id,
                        visiting.clone(),
                    )
                    .await?;
                let met = reason == Reason::Enabled
                    && usable.is_some_and(|(target, _)| dependency.met_by(&target.version));
                if !met {
                    return Ok((Reason::Dependency(dependency.module_id.clone()), None));
                }
            }
            Ok((Reason::Enabled, Some((version, record.clone()))))
        })
    }
}

/// Every feature the version declares, as switched for the company (if
/// any), else the tenant, else by the manifest's default.
fn features_here(
    snapshot: &TenantSnapshot,
    version: &ModuleVersion,
    record: &TenantModuleRecord,
    company_id: Option<Uuid>,
) -> BTreeMap<String, bool> {
    let company =
        company_id.and_then(|company_id| snapshot.company_module(company_id, &record.module_id));
    version
        .features
        .iter()
        .map(|(key, default)| {
            let on = company
                .and_then(|company| company.features.get(key))
                .or_else(|| record.features.get(key))
                .unwrap_or(default);
            (key.clone(), *on)
        })
        .collect()
}
