//! Industry templates: what a tenant of an industry starts with (modules,
//! required or optional, each with a starting tenant configuration), kept
//! by operators and super admins, applied to existing tenants or at signup.

use std::{collections::BTreeSet, sync::Arc};

use plinth_platform::{
    access::{Access, Scope},
    audit::AuditDraft,
    clock,
    error::{ApiError, Violations},
    identity::{Principal, PrincipalKind},
    store::{
        Store, StoreError,
        templates::{self, Template, TemplateModuleRecord, TemplateRecord},
        tenants::{self, TenantRecord},
    },
};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    enablement::{EnableModules, Enabled, Enablements, ModuleEnablement, catalog::Catalog},
    module_config::document,
    permissions::{MODULE_ENABLE, TEMPLATE_MANAGE},
};

/// Longest template name, in characters.
pub const MAX_TEMPLATE_NAME: usize = 200;
/// Longest template description, in characters.
pub const MAX_TEMPLATE_DESCRIPTION: usize = 2000;
/// Most modules of one template.
pub const MAX_TEMPLATE_MODULES: usize = 50;

/// A module of a template as written.
#[derive(Debug, Clone)]
pub struct TemplateModule {
    pub module_id: String,
    pub required: bool,
    pub tenant_config: Option<Map<String, Value>>,
}

/// A template as written (already validated field by field).
#[derive(Debug, Clone)]
pub struct TemplateInput {
    pub code: String,
    pub name: String,
    pub description: String,
    pub modules: Vec<TemplateModule>,
    pub active: bool,
    /// For updates: the etag it replaces.
    pub etag: Option<String>,
}

#[derive(Clone)]
pub struct Templates {
    store: Store,
    access: Access,
    catalog: Arc<Catalog>,
    enablements: Enablements,
}

impl Templates {
    pub fn new(
        store: Store,
        access: Access,
        catalog: Arc<Catalog>,
        enablements: Enablements,
    ) -> Templates {
        Templates {
            store,
            access,
            catalog,
            enablements,
        }
    }

    pub async fn create(
        &self,
        principal: &Principal,
        input: TemplateInput,
    ) -> Result<Template, ApiError> {
        self.access
            .require(principal, TEMPLATE_MANAGE, Scope::platform())
            .await?;
        let template = self.checked(input, None).await?;
        let mut tx = self.store.begin().await?;
        templates::put(
            &mut tx,
            &template,
            true,
            event(principal, "tenant.template.created", &template),
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict => ApiError::AlreadyExists {
                resource_type: "industry template",
                field: "code",
            },
            other => other.into(),
        })?;
        tx.commit().await?;
        Ok(template)
    }

    pub async fn get(&self, principal: &Principal, code: &str) -> Result<Template, ApiError> {
        authenticated(principal)?;
        self.store
            .templates
            .template(code)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "industry template",
            })
    }

    /// Templates by code after `after`, at most `limit`; whether more
    /// follow.
    pub async fn list(
        &self,
        principal: &Principal,
        include_inactive: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Template>, bool), ApiError> {
        authenticated(principal)?;
        let mut found = self
            .store
            .templates
            .list_templates(include_inactive, after, limit as i64 + 1)
            .await?;
        let more = found.len() > limit;
        found.truncate(limit);
        Ok((found, more))
    }

    pub async fn update(
        &self,
        principal: &Principal,
        input: TemplateInput,
    ) -> Result<Template, ApiError> {
        self.access
            .require(principal, TEMPLATE_MANAGE, Scope::platform())
            .await?;
        let current =
            self.store
                .templates
                .template(&input.code)
                .await?
                .ok_or(ApiError::NotFound {
                    resource_type: "industry template",
                })?;
        if input.etag.as_deref() != Some(current.template.etag.as_str()) {
            return Err(ApiError::EtagMismatch {
                resource_type: "industry template",
                current_etag: current.template.etag,
            });
        }
        let template = self.checked(input, Some(&current.template)).await?;
        let mut tx = self.store.begin().await?;
        templates::put(
            &mut tx,
            &template,
            false,
            event(principal, "tenant.template.updated", &template),
        )
        .await?;
        tx.commit().await?;
        Ok(template)
    }

    pub async fn delete(&self, principal: &Principal, code: &str) -> Result<(), ApiError> {
        self.access
            .require(principal, TEMPLATE_MANAGE, Scope::platform())
            .await?;
        let audit = AuditDraft::new(
            principal.actor(),
            "tenant.template.deleted",
            "industry_template",
            code,
        )
        .in_tenant(None)
        .with_request_id(&principal.request_id);
        let mut tx = self.store.begin().await?;
        templates::delete(&mut tx, code, audit)
            .await
            .map_err(|error| match error {
                StoreError::NotFound => ApiError::NotFound {
                    resource_type: "industry template",
                },
                other => other.into(),
            })?;
        tx.commit().await?;
        Ok(())
    }

    /// Enables the template's required modules (and the optional ones
    /// chosen) for an existing tenant, with their dependencies; its
    /// configuration only where the tenant has no layer yet. Records the
    /// template as the tenant's industry.
    pub async fn apply(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        code: &str,
        optional: &[String],
    ) -> Result<(TenantRecord, Enabled), ApiError> {
        self.access
            .require_visible(principal, MODULE_ENABLE, Scope::tenant(tenant_id), "tenant")
            .await?;
        let template = self.active(code).await?;
        let mut command = enablement_of(&template, tenant_id, optional)?;
        for module in &mut command.modules {
            let has_layer = self
                .store
                .module_configs
                .layer(tenant_id, &module.module_id, None)
                .await?
                .is_some();
            if has_layer {
                module.tenant_config = None;
            }
        }
        let enabled = self.enablements.enable(principal, command).await?;
        let mut tx = self.store.begin().await?;
        let mut tenant = tenants::lock(&mut tx, tenant_id).await?;
        if tenant.industry != code {
            tenant.industry = code.to_owned();
            tenant.updated_at = clock::now();
            let audit = AuditDraft::new(
                principal.actor(),
                "tenant.template.applied",
                "tenant",
                &tenant_id.to_string(),
            )
            .in_tenant(Some(tenant_id))
            .with_request_id(&principal.request_id)
            .with_details(serde_json::json!({ "template": code }));
            tenants::update(&mut tx, &tenant, audit).await?;
            tx.commit().await?;
        }
        Ok((tenant, enabled))
    }

    /// An active template; NOT_FOUND, or FAILED_PRECONDITION when inactive.
    pub async fn active(&self, code: &str) -> Result<Template, ApiError> {
        let template = self
            .store
            .templates
            .template(code)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "industry template",
            })?;
        if !template.template.active {
            return Err(ApiError::FailedPrecondition {
                resource_type: "industry template",
                state: "inactive".to_owned(),
            });
        }
        Ok(template)
    }

    /// The template to store: its modules in the catalog, each starting
    /// configuration valid for the module's current version.
    async fn checked(
        &self,
        input: TemplateInput,
        current: Option<&TemplateRecord>,
    ) -> Result<Template, ApiError> {
        let mut violations = Violations::default();
        for (index, module) in input.modules.iter().enumerate() {
            let Some(record) = self.catalog.module(&module.module_id).await? else {
                return Err(ApiError::NotFound {
                    resource_type: "module",
                });
            };
            let Some(config) = &module.tenant_config else {
                continue;
            };
            let version = record
                .active_version
                .clone()
                .unwrap_or_else(|| record.latest_version.clone());
            let schema = &self
                .catalog
                .version(&module.module_id, &version)
                .await?
                .config;
            for violation in schema.violations(&document::resolve(&schema.defaults, [config])) {
                violations.push(
                    &format!(
                        "template.modules[{index}].tenant_config{}",
                        violation.pointer
                    ),
                    violation.description,
                );
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::InvalidArgument(violations));
        }
        let now = clock::now();
        Ok(Template {
            template: TemplateRecord {
                code: input.code,
                name: input.name,
                description: input.description,
                active: input.active,
                etag: Uuid::now_v7().simple().to_string(),
                created_at: current.map_or(now, |current| current.created_at),
                updated_at: now,
            },
            modules: input
                .modules
                .into_iter()
                .map(|module| TemplateModuleRecord {
                    module_id: module.module_id,
                    required: module.required,
                    tenant_config: module
                        .tenant_config
                        .map(|config| Value::Object(config).to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// What enabling a template asks: its required modules and the optional
/// ones chosen (each a module of the template marked optional), with
/// their dependencies, each with the template's configuration.
pub fn enablement_of(
    template: &Template,
    tenant_id: Uuid,
    optional: &[String],
) -> Result<EnableModules, ApiError> {
    let chosen: BTreeSet<&str> = optional.iter().map(String::as_str).collect();
    for (index, module_id) in optional.iter().enumerate() {
        let offered = template
            .modules
            .iter()
            .any(|module| !module.required && &module.module_id == module_id);
        if !offered {
            return Err(ApiError::invalid_field(
                &format!("optional_module_ids[{index}]"),
                "is not an optional module of the template",
            ));
        }
    }
    let modules = template
        .modules
        .iter()
        .filter(|module| module.required || chosen.contains(module.module_id.as_str()))
        .map(|module| {
            let tenant_config = match module.tenant_config.as_str() {
                "" => Ok(None),
                text => document::parse_object(text).map(Some),
            };
            Ok(ModuleEnablement {
                module_id: module.module_id.clone(),
                tenant_config: tenant_config.map_err(|problem| {
                    ApiError::Internal(format!("stored template: {problem}").into())
                })?,
                ..ModuleEnablement::default()
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(EnableModules {
        tenant_id,
        modules,
        enable_dependencies: true,
    })
}

fn authenticated(principal: &Principal) -> Result<(), ApiError> {
    if principal.kind() == PrincipalKind::Anonymous {
        return Err(ApiError::Unauthenticated);
    }
    Ok(())
}

fn event(principal: &Principal, action: &str, template: &Template) -> AuditDraft {
    AuditDraft::new(
        principal.actor(),
        action,
        "industry_template",
        &template.template.code,
    )
    .in_tenant(None)
    .with_request_id(&principal.request_id)
    .with_details(serde_json::json!({
        "name": template.template.name,
        "active": template.template.active,
        "modules": template
            .modules
            .iter()
            .map(|module| serde_json::json!({
                "module_id": module.module_id,
                "required": module.required,
            }))
            .collect::<Vec<_>>(),
    }))
}
