//! Planning an enable: the modules asked for and, with
//! `enable_dependencies`, the required dependencies the tenant lacks, each
//! at the version it would run, checked so that every module the tenant
//! would hold finds its dependencies at versions meeting their
//! requirements; in an order that puts dependencies first.

use std::{collections::BTreeMap, sync::Arc};

use plinth_api::registry::v1::LifecycleCallback;
use plinth_platform::{
    clock,
    error::ApiError,
    store::tenant_modules::{TenantModuleRecord, TenantModuleState},
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{EnableModules, Enablements, catalog::ModuleVersion, enabled_state};

/// One module the plan writes (or finds unchanged).
pub(super) struct Planned {
    pub record: TenantModuleRecord,
    pub version: Arc<ModuleVersion>,
    /// The tenant did not hold it before.
    pub newly_enabled: bool,
    pub changed: bool,
    pub tenant_config: Option<Map<String, Value>>,
}

impl Enablements {
    /// What the command changes over `current`: the modules asked for and
    /// the dependencies it enables, dependencies first; refused when a
    /// module is not usable or the tenant's modules would not meet each
    /// other's requirements.
    pub(super) async fn plan(
        &self,
        current: &[TenantModuleRecord],
        command: &EnableModules,
    ) -> Result<Vec<Planned>, ApiError> {
        let now = clock::now();
        let mut held: BTreeMap<String, (TenantModuleRecord, Arc<ModuleVersion>)> = BTreeMap::new();
        for record in current.iter().filter(|record| record.state.is_held()) {
            if let Some(version) = super::running_version(&self.catalog, record).await? {
                held.insert(record.module_id.clone(), (record.clone(), version));
            }
        }
        let mut planned: Vec<Planned> = Vec::new();
        for (index, asked) in command.modules.iter().enumerate() {
            let version = self
                .usable_version(&asked.module_id, asked.version_pin.as_deref())
                .await?;
            if let Some(features) = &asked.features
                && let Some(unknown) = features
                    .keys()
                    .find(|key| !version.features.contains_key(*key))
            {
                return Err(ApiError::invalid_field(
                    &format!("modules[{index}].features[{unknown}]"),
                    "is not a feature the module version declares",
                ));
            }
            let existing = current
                .iter()
                .find(|record| record.module_id == asked.module_id);
            let newly_enabled = !existing.is_some_and(|record| record.state.is_held());
            let features = asked
                .features
                .clone()
                .or_else(|| existing.map(|record| record.features.clone()))
                .unwrap_or_default();
            let record = match existing {
                Some(existing) if !newly_enabled => TenantModuleRecord {
                    version_pin: asked.version_pin.clone(),
                    features,
                    updated_at: now,
                    ..existing.clone()
                },
                _ => TenantModuleRecord {
                    tenant_id: command.tenant_id,
                    module_id: asked.module_id.clone(),
                    state: initial_state(&version),
                    version_pin: asked.version_pin.clone(),
                    features,
                    failure: String::new(),
                    roles_seeded: existing.is_some_and(|record| record.roles_seeded),
                    enabled_at: Some(now),
                    updated_at: now,
                },
            };
            let changed = newly_enabled
                || asked.tenant_config.is_some()
                || existing.is_some_and(|existing| {
                    existing.version_pin != record.version_pin
                        || existing.features != record.features
                });
            held.insert(record.module_id.clone(), (record.clone(), version.clone()));
            planned.push(Planned {
                record,
                version,
                newly_enabled,
                changed,
                tenant_config: asked.tenant_config.clone(),
            });
        }
        if command.enable_dependencies {
            self.add_dependencies(command.tenant_id, current, &mut held, &mut planned, now)
                .await?;
        }
        requirements_met(&held)?;
        Ok(dependencies_first(planned))
    }

    /// The version of an active module the tenant would run: the pin, else
    /// the active version.
    async fn usable_version(
        &self,
        module_id: &str,
        version_pin: Option<&str>,
    ) -> Result<Arc<ModuleVersion>, ApiError> {
        let module = self
            .catalog
            .module(module_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "module",
            })?;
        let active = self
            .catalog
            .active(module_id)
            .await?
            .and_then(|module| module.active_version.clone());
        let Some(active) = active else {
            return Err(ApiError::FailedPrecondition {
                resource_type: "module",
                state: format!("{} in the catalog", module.status.as_str()),
            });
        };
        self.catalog
            .version(module_id, version_pin.unwrap_or(&active))
            .await
    }

    /// Adds, at their active versions, the required dependencies of every
    /// module the tenant will hold that it lacks (theirs too).
    async fn add_dependencies(
        &self,
        tenant_id: Uuid,
        current: &[TenantModuleRecord],
        held: &mut BTreeMap<String, (TenantModuleRecord, Arc<ModuleVersion>)>,
        planned: &mut Vec<Planned>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ApiError> {
        loop {
            let missing: Option<String> = held.values().find_map(|(_, version)| {
                version
                    .dependencies
                    .iter()
                    .find(|dependency| {
                        !dependency.optional && !held.contains_key(&dependency.module_id)
                    })
                    .map(|dependency| dependency.module_id.clone())
            });
            let Some(module_id) = missing else {
                return Ok(());
            };
            let version = match self.usable_version(&module_id, None).await {
                Ok(version) => version,
                Err(ApiError::NotFound { .. } | ApiError::FailedPrecondition { .. }) => {
                    return Err(unsatisfied(held, &module_id));
                }
                Err(other) => return Err(other),
            };
            let existing = current.iter().find(|record| record.module_id == module_id);
            let record = TenantModuleRecord {
                tenant_id,
                module_id: module_id.clone(),
                state: initial_state(&version),
                version_pin: None,
                features: existing
                    .map(|record| record.features.clone())
                    .unwrap_or_default(),
                failure: String::new(),
                roles_seeded: existing.is_some_and(|record| record.roles_seeded),
                enabled_at: Some(now),
                updated_at: now,
            };
            held.insert(module_id, (record.clone(), version.clone()));
            planned.push(Planned {
                record,
                version,
                newly_enabled: true,
                changed: true,
                tenant_config: None,
            });
        }
    }
}

/// Where a tenant module starts: waiting for the module to acknowledge,
/// when it listens.
fn initial_state(version: &ModuleVersion) -> TenantModuleState {
    if version.callback(LifecycleCallback::TenantEnabled).is_some() {
        TenantModuleState::Enabling
    } else {
        enabled_state(version)
    }
}

/// Every held module's required dependencies are held at versions meeting
/// their requirements, and each optional one held meets its requirement.
fn requirements_met(
    held: &BTreeMap<String, (TenantModuleRecord, Arc<ModuleVersion>)>,
) -> Result<(), ApiError> {
    for (_, version) in held.values() {
        for dependency in &version.dependencies {
            let met = match held.get(&dependency.module_id) {
                Some((_, target)) => dependency.met_by(&target.version),
                None => dependency.optional,
            };
            if !met {
                return Err(ApiError::DependencyUnsatisfied {
                    module_id: dependency.module_id.clone(),
                    requirement: dependency.requirement.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The refusal for a required dependency that cannot be enabled.
fn unsatisfied(
    held: &BTreeMap<String, (TenantModuleRecord, Arc<ModuleVersion>)>,
    module_id: &str,
) -> ApiError {
    let requirement = held
        .values()
        .flat_map(|(_, version)| &version.dependencies)
        .find(|dependency| dependency.module_id == module_id)
        .map(|dependency| dependency.requirement.to_string())
        .unwrap_or_default();
    ApiError::DependencyUnsatisfied {
        module_id: module_id.to_owned(),
        requirement,
    }
}

/// The plan in an order where each module comes after the modules it
/// depends on (the catalog keeps dependencies acyclic; anything left over
/// keeps its place).
fn dependencies_first(mut planned: Vec<Planned>) -> Vec<Planned> {
    let mut ordered: Vec<Planned> = Vec::with_capacity(planned.len());
    while !planned.is_empty() {
        let ready = planned.iter().position(|candidate| {
            candidate.version.dependencies.iter().all(|dependency| {
                !planned
                    .iter()
                    .any(|other| other.record.module_id == dependency.module_id)
            })
        });
        ordered.push(planned.remove(ready.unwrap_or(0)));
    }
    ordered
}
