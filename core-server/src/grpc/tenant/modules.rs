//! Modules in tenants: requests into commands, records into messages.

use std::collections::BTreeMap;

use plinth_api::tenant::v1::{
    self as proto, EnablementReason, TenantModuleState as ProtoState, consistency,
};
use plinth_platform::{
    error::ApiError,
    identity,
    store::tenant_modules::{CompanyModuleRecord, Features, TenantModuleRecord, TenantModuleState},
    versions::Counter,
};
use serde_json::{Map, Value};
use tonic::{Request, Response};

use super::Answer;
use crate::{
    enablement::{
        CompanySwitch, Consistency, EnableModules, Enablements, MAX_ENABLEMENTS, MAX_FAILURE,
        MAX_FEATURES, ModuleEnablement, Question, Reason,
    },
    grpc::validate::{Fields, key_token, timestamp},
    module_config::{document, secrets},
};

pub fn state_to_proto(state: TenantModuleState) -> ProtoState {
    match state {
        TenantModuleState::Enabling => ProtoState::Enabling,
        TenantModuleState::Provisioning => ProtoState::Provisioning,
        TenantModuleState::Enabled => ProtoState::Enabled,
        TenantModuleState::Disabling => ProtoState::Disabling,
        TenantModuleState::Disabled => ProtoState::Disabled,
        TenantModuleState::Failed => ProtoState::Failed,
    }
}

fn state_from_proto(state: ProtoState) -> Option<TenantModuleState> {
    Some(match state {
        ProtoState::Unspecified => return None,
        ProtoState::Enabling => TenantModuleState::Enabling,
        ProtoState::Provisioning => TenantModuleState::Provisioning,
        ProtoState::Enabled => TenantModuleState::Enabled,
        ProtoState::Disabling => TenantModuleState::Disabling,
        ProtoState::Disabled => TenantModuleState::Disabled,
        ProtoState::Failed => TenantModuleState::Failed,
    })
}

pub fn tenant_module_to_proto(
    record: TenantModuleRecord,
    version: Option<String>,
) -> proto::TenantModule {
    proto::TenantModule {
        tenant_id: record.tenant_id.to_string(),
        state: state_to_proto(record.state).into(),
        version_pin: record.version_pin.unwrap_or_default(),
        version: version.unwrap_or_default(),
        features: record.features.into_iter().collect(),
        failure: record.failure,
        enabled_at: record.enabled_at.map(timestamp),
        updated_at: Some(timestamp(record.updated_at)),
        module_id: record.module_id,
    }
}

fn company_module_to_proto(record: CompanyModuleRecord) -> proto::CompanyModule {
    let switch = if record.switched_off {
        proto::Switch::Off
    } else {
        proto::Switch::On
    };
    proto::CompanyModule {
        tenant_id: record.tenant_id.to_string(),
        company_id: record.company_id.to_string(),
        module_id: record.module_id,
        switch: switch.into(),
        features: record.features.into_iter().collect(),
        updated_at: Some(timestamp(record.updated_at)),
    }
}

impl Fields {
    /// Feature switches: at most [`MAX_FEATURES`], keys slugs.
    fn features(&mut self, field: &str, values: &BTreeMap<String, bool>) -> Features {
        if values.len() > MAX_FEATURES {
            self.violation(field, format!("must have at most {MAX_FEATURES} entries"));
            return Features::new();
        }
        for key in values.keys() {
            if !plinth_platform::text::is_slug(key) {
                self.violation(field, format!("keys {}", plinth_platform::text::SLUG_RULE));
                return Features::new();
            }
        }
        values.clone()
    }

    /// A JSON object (a configuration layer or patch) within the document
    /// bounds, without the key sealed values use.
    pub fn document(&mut self, field: &str, text: &str) -> Map<String, Value> {
        match document::parse_object(text) {
            Ok(object) if secrets::uses_reserved_key(&Value::Object(object.clone())) => {
                self.violation(
                    field,
                    format!("must not use the key {:?}", secrets::SEALED_KEY),
                );
                Map::new()
            }
            Ok(object) => object,
            Err(problem) => {
                self.violation(field, problem);
                Map::new()
            }
        }
    }

    /// How fresh an answer about modules must be; unset means cached.
    pub fn modules_consistency(&mut self, value: Option<&proto::Consistency>) -> Consistency {
        let asked = value
            .and_then(|value| value.requirement.as_ref())
            .map(|requirement| match requirement {
                consistency::Requirement::AtLeastAsFresh(token) => Ok(token.as_str()),
                consistency::Requirement::FullyConsistent(full) => Err(*full),
            });
        self.consistency(Counter::Modules, asked)
    }
}

impl TryFrom<&proto::EnableModulesRequest> for EnableModules {
    type Error = ApiError;

    fn try_from(body: &proto::EnableModulesRequest) -> Result<EnableModules, ApiError> {
        let mut fields = Fields::default();
        let tenant_id = fields.id("tenant_id", &body.tenant_id);
        if body.modules.is_empty() {
            fields.violation("modules", "is required");
        }
        let mut modules: Vec<ModuleEnablement> = Vec::new();
        for (index, module) in fields
            .bounded("modules", &body.modules, MAX_ENABLEMENTS)
            .iter()
            .enumerate()
        {
            let module_id =
                fields.module_id(&format!("modules[{index}].module_id"), &module.module_id);
            if modules
                .iter()
                .any(|other| other.module_id == module_id && !module_id.is_empty())
            {
                fields.violation(&format!("modules[{index}].module_id"), "is named twice");
            }
            let version_pin = match module.version_pin.as_str() {
                "" => None,
                pin if pin.len() <= registry_server::manifest::MAX_VERSION
                    && semver::Version::parse(pin).is_ok() =>
                {
                    Some(pin.to_owned())
                }
                _ => {
                    fields.violation(
                        &format!("modules[{index}].version_pin"),
                        "must be a semantic version",
                    );
                    None
                }
            };
            let features = fields.features(&format!("modules[{index}].features"), &module.features);
            let tenant_config = (!module.tenant_config.is_empty()).then(|| {
                fields.document(
                    &format!("modules[{index}].tenant_config"),
                    &module.tenant_config,
                )
            });
            modules.push(ModuleEnablement {
                module_id,
                version_pin,
                features: (!features.is_empty()).then_some(features),
                tenant_config,
            });
        }
        fields.finish()?;
        Ok(EnableModules {
            tenant_id,
            modules,
            enable_dependencies: body.enable_dependencies,
        })
    }
}

pub async fn enable(
    enablements: &Enablements,
    request: Request<proto::EnableModulesRequest>,
) -> Answer<proto::EnableModulesResponse> {
    let principal = identity::principal(&request)?;
    let command = EnableModules::try_from(request.get_ref())?;
    let enabled = enablements.enable(principal, command).await?;
    Ok(Response::new(proto::EnableModulesResponse {
        changed: enabled
            .changed
            .into_iter()
            .map(|(record, version)| tenant_module_to_proto(record, Some(version)))
            .collect(),
        unchanged_module_ids: enabled.unchanged,
        consistency_token: enabled.token,
    }))
}

pub async fn disable(
    enablements: &Enablements,
    request: Request<proto::DisableModuleRequest>,
) -> Answer<proto::DisableModuleResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let tenant_id = fields.id("tenant_id", &body.tenant_id);
    let module_id = fields.module_id("module_id", &body.module_id);
    fields.finish()?;
    let disabled = enablements
        .disable(principal, tenant_id, &module_id, body.cascade)
        .await?;
    Ok(Response::new(proto::DisableModuleResponse {
        disabled: disabled
            .disabled
            .into_iter()
            .map(|record| tenant_module_to_proto(record, None))
            .collect(),
        consistency_token: disabled.token,
    }))
}

pub async fn list_tenant_modules(
    enablements: &Enablements,
    request: Request<proto::ListTenantModulesRequest>,
) -> Answer<proto::ListTenantModulesResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let tenant_id = fields.id("tenant_id", &body.tenant_id);
    let state = fields.known("state", body.state).and_then(state_from_proto);
    let page = fields.page(body.page_size, "");
    let after = fields.key_token(&body.page_token, plinth_platform::text::is_module_id);
    fields.finish()?;
    let (records, more, token) = enablements
        .list_tenant_modules(
            principal,
            tenant_id,
            state,
            after.as_deref(),
            page.size as usize,
        )
        .await?;
    let next_page_token = match records.last() {
        Some((last, _)) if more => key_token(&last.module_id),
        _ => String::new(),
    };
    Ok(Response::new(proto::ListTenantModulesResponse {
        tenant_modules: records
            .into_iter()
            .map(|(record, version)| tenant_module_to_proto(record, version))
            .collect(),
        next_page_token,
        consistency_token: token,
    }))
}

pub async fn set_company_module(
    enablements: &Enablements,
    request: Request<proto::SetCompanyModuleRequest>,
) -> Answer<proto::SetCompanyModuleResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let company_id = fields.id("company_id", &body.company_id);
    let module_id = fields.module_id("module_id", &body.module_id);
    let on = match fields.known::<proto::Switch>("switch", body.switch) {
        Some(proto::Switch::On) => true,
        Some(proto::Switch::Off) => false,
        Some(proto::Switch::Unspecified) => {
            fields.violation("switch", "must be SWITCH_ON or SWITCH_OFF");
            false
        }
        None => false,
    };
    let features = fields.features("features", &body.features);
    fields.finish()?;
    let (company, token) = enablements
        .set_company_module(
            principal,
            CompanySwitch {
                company_id,
                module_id,
                on,
                features,
            },
        )
        .await?;
    Ok(Response::new(proto::SetCompanyModuleResponse {
        company_module: Some(company_module_to_proto(company)),
        consistency_token: token,
    }))
}

pub async fn is_enabled(
    enablements: &Enablements,
    request: Request<proto::IsModuleEnabledRequest>,
) -> Answer<proto::IsModuleEnabledResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let question = Question {
        tenant_id: fields.id("tenant_id", &body.tenant_id),
        company_id: fields.optional_id("company_id", &body.company_id),
        module_id: fields.module_id("module_id", &body.module_id),
        feature: (!body.feature.is_empty()).then(|| fields.slug("feature", &body.feature)),
        consistency: fields.modules_consistency(body.consistency.as_ref()),
    };
    fields.finish()?;
    let answer = enablements.is_enabled(principal, question).await?;
    let (reason, blocked_by) = match answer.reason {
        Reason::Enabled => (EnablementReason::Enabled, String::new()),
        Reason::ModuleInactive => (EnablementReason::ModuleInactive, String::new()),
        Reason::NotEnabled => (EnablementReason::NotEnabled, String::new()),
        Reason::NotReady => (EnablementReason::NotReady, String::new()),
        Reason::SwitchedOff => (EnablementReason::SwitchedOff, String::new()),
        Reason::Dependency(module_id) => (EnablementReason::Dependency, module_id),
        Reason::FeatureOff => (EnablementReason::FeatureOff, String::new()),
    };
    Ok(Response::new(proto::IsModuleEnabledResponse {
        enabled: reason == EnablementReason::Enabled,
        reason: reason.into(),
        blocked_by,
        version: answer.version.unwrap_or_default(),
        consistency_token: answer.token,
    }))
}

pub async fn list_enabled(
    enablements: &Enablements,
    request: Request<proto::ListEnabledModulesRequest>,
) -> Answer<proto::ListEnabledModulesResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let tenant_id = fields.id("tenant_id", &body.tenant_id);
    let company_id = fields.optional_id("company_id", &body.company_id);
    let consistency = fields.modules_consistency(body.consistency.as_ref());
    fields.finish()?;
    let (modules, token) = enablements
        .list_enabled(principal, tenant_id, company_id, consistency)
        .await?;
    Ok(Response::new(proto::ListEnabledModulesResponse {
        modules: modules
            .into_iter()
            .map(|module| proto::EnabledModule {
                module_id: module.module_id,
                version: module.version,
                features: module.features.into_iter().collect(),
            })
            .collect(),
        consistency_token: token,
    }))
}

pub async fn report_provisioning(
    enablements: &Enablements,
    request: Request<proto::ReportModuleProvisioningRequest>,
) -> Answer<proto::ReportModuleProvisioningResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let tenant_id = fields.id("tenant_id", &body.tenant_id);
    let module_id = fields.module_id("module_id", &body.module_id);
    let failure = fields.text("failure", &body.failure, MAX_FAILURE);
    if body.failed && failure.is_empty() {
        fields.violation("failure", "is required when provisioning failed");
    }
    if !body.failed && !failure.is_empty() {
        fields.violation("failure", "must be empty unless provisioning failed");
    }
    fields.finish()?;
    let (record, token) = enablements
        .report_provisioning(
            principal,
            tenant_id,
            &module_id,
            body.failed.then_some(failure),
        )
        .await?;
    Ok(Response::new(proto::ReportModuleProvisioningResponse {
        tenant_module: Some(tenant_module_to_proto(record, None)),
        consistency_token: token,
    }))
}
