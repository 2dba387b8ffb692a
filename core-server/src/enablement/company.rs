//! SetCompanyModule: a company has every module its tenant holds unless it
//! switched it off; it may switch it on again (asking the module first) and
//! set its own features. A company never has a module its tenant lacks.

use plinth_api::registry::v1::LifecycleCallback;
use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        module_callbacks::CallbackKind,
        module_configs,
        tenant_modules::{self, CompanyModuleRecord, Features, TenantModuleRecord},
    },
};
use uuid::Uuid;

use super::{
    Enablements, callbacks::Target, catalog::ModuleVersion, outbox::enqueue, running_version,
};
use crate::{access::Scope, permissions::MODULE_ENABLE, tenant::lock_writable};

/// What SetCompanyModule asks.
#[derive(Debug, Clone)]
pub struct CompanySwitch {
    pub company_id: Uuid,
    pub module_id: String,
    pub on: bool,
    pub features: Features,
}

impl Enablements {
    pub async fn set_company_module(
        &self,
        principal: &Principal,
        switch: CompanySwitch,
    ) -> Result<(CompanyModuleRecord, String), ApiError> {
        let tenant_id = self.company_tenant(switch.company_id, None).await?;
        let scope = Scope::tenant(tenant_id).in_company(Some(switch.company_id));
        self.access
            .require_visible(principal, MODULE_ENABLE, scope, "company")
            .await?;
        let tenant = self
            .store
            .tenants
            .get_tenant(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        let snapshot = self
            .cache
            .snapshot(tenant_id, plinth_platform::versions::Freshness::Latest)
            .await?;
        let (record, version) = self
            .held_for_company(snapshot.module(&switch.module_id), &switch.module_id)
            .await?;
        if let Some(unknown) = switch
            .features
            .keys()
            .find(|key| !version.features.contains_key(*key))
        {
            return Err(ApiError::invalid_field(
                &format!("features[{unknown}]"),
                "is not a feature the module version declares",
            ));
        }
        let switched_off_now = snapshot
            .company_module(switch.company_id, &switch.module_id)
            .is_some_and(|company| company.switched_off);
        let switching_on = switch.on && switched_off_now;
        if switching_on {
            let config = self
                .config_text(&version, tenant_id, Some(switch.company_id), None)
                .await?;
            self.callbacks
                .ask(
                    &version,
                    LifecycleCallback::CompanyEnabling,
                    Target::tenant(&tenant, &version.version, config).in_company(switch.company_id),
                    principal,
                )
                .await?;
        }

        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, tenant_id).await?;
        let current = tenant_modules::modules_in(&mut tx, tenant_id).await?;
        self.held_for_company(
            current
                .iter()
                .find(|record| record.module_id == switch.module_id),
            &switch.module_id,
        )
        .await?;
        let before =
            tenant_modules::company_module_in(&mut tx, switch.company_id, &switch.module_id)
                .await?;
        let was_off = before.as_ref().is_some_and(|company| company.switched_off);
        if switch.on && was_off && !switching_on {
            return Err(ApiError::FailedPrecondition {
                resource_type: "company module",
                state: "changed while the module was asked; retry".to_owned(),
            });
        }
        let company = CompanyModuleRecord {
            company_id: switch.company_id,
            module_id: switch.module_id.clone(),
            tenant_id,
            switched_off: !switch.on,
            features: switch.features,
            updated_at: clock::now(),
        };
        let mut event = AuditDraft::new(
            principal.actor(),
            "tenant.company_module.updated",
            "company_module",
            &switch.module_id,
        )
        .in_tenant(Some(tenant_id))
        .with_request_id(&principal.request_id)
        .with_details(serde_json::json!({
            "company_id": company.company_id,
            "module_id": company.module_id,
            "switched_off": company.switched_off,
            "features": company.features,
        }));
        event.company_id = Some(switch.company_id);
        tenant_modules::put_company(&mut tx, &company, event).await?;
        let kind = match (was_off, company.switched_off) {
            (true, false) => Some((
                CallbackKind::CompanyEnabled,
                LifecycleCallback::CompanyEnabled,
            )),
            (false, true) => Some((
                CallbackKind::CompanyDisabled,
                LifecycleCallback::CompanyDisabled,
            )),
            _ => None,
        };
        if let Some((kind, callback)) = kind
            && version.callback(callback).is_some()
        {
            enqueue(
                &mut tx,
                principal,
                &record,
                Some(switch.company_id),
                kind,
                &version.version,
            )
            .await?;
        }
        module_configs::record_change(
            &mut tx,
            &switch.module_id,
            Some(tenant_id),
            Some(switch.company_id),
        )
        .await?;
        let modules_version = tenant_modules::bump_version(&mut tx, tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(tenant_id, modules_version).await;
        Ok((company, token))
    }

    /// The tenant's record of a module it holds, with the version it runs;
    /// FAILED_PRECONDITION (MODULE_NOT_ENABLED) otherwise.
    async fn held_for_company(
        &self,
        record: Option<&TenantModuleRecord>,
        module_id: &str,
    ) -> Result<(TenantModuleRecord, std::sync::Arc<ModuleVersion>), ApiError> {
        let not_enabled = |state: &str| ApiError::ModuleNotEnabled {
            module_id: module_id.to_owned(),
            state: state.to_owned(),
        };
        let record = record.ok_or_else(|| not_enabled("not enabled"))?;
        if !record.state.is_held() {
            return Err(not_enabled(record.state.as_str()));
        }
        let version = running_version(&self.catalog, record)
            .await?
            .ok_or_else(|| not_enabled("without an active version"))?;
        Ok((record.clone(), version))
    }
}
