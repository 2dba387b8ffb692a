//! A module's life in the catalog after registration: metadata,
//! activation, deactivation and (soft) deletion, each kept consistent with
//! the modules that depend on it.

use plinth_api::registry::v1::ModuleDependency;
use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::ApiError,
    identity::Principal,
    invalidation::Change,
    store::{
        module_configs,
        modules::{self, ModuleRecord, ModuleStatus},
    },
};

use super::{Catalog, decode};

/// Metadata changes of a module; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ModuleChanges {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
}

impl Catalog {
    /// Changes a module's metadata.
    pub async fn update(
        &self,
        principal: &Principal,
        module_id: &str,
        changes: ModuleChanges,
    ) -> Result<ModuleRecord, ApiError> {
        self.require_manage(principal).await?;
        let module = self.current(module_id).await?;
        let updated = ModuleRecord {
            display_name: changes.display_name.unwrap_or(module.display_name),
            description: changes.description.unwrap_or(module.description),
            category: changes.category.unwrap_or(module.category),
            updated_at: clock::now(),
            ..module
        };
        self.save(principal, &updated, "registry.module.updated", false)
            .await?;
        Ok(updated)
    }

    /// Makes `version` (empty: the latest) the one tenants get.
    pub async fn activate(
        &self,
        principal: &Principal,
        module_id: &str,
        version: &str,
    ) -> Result<ModuleRecord, ApiError> {
        self.require_manage(principal).await?;
        let module = self.current(module_id).await?;
        let version = if version.is_empty() {
            module.latest_version.clone()
        } else {
            version.to_owned()
        };
        let record = self
            .store
            .modules
            .version(module_id, &version)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "module version",
            })?;
        let manifest = decode(&record)?;
        for dependency in &manifest.dependencies {
            self.active_dependency_met(dependency).await?;
        }
        if let Some(cycle) = self.cycle(&manifest).await? {
            return Err(cycle.error());
        }
        let activated = ModuleRecord {
            status: ModuleStatus::Active,
            active_version: Some(version),
            updated_at: clock::now(),
            ..module
        };
        self.save(principal, &activated, "registry.module.activated", true)
            .await?;
        Ok(activated)
    }

    /// Makes a module inactive, unless an active module requires it.
    pub async fn deactivate(
        &self,
        principal: &Principal,
        module_id: &str,
    ) -> Result<ModuleRecord, ApiError> {
        self.require_manage(principal).await?;
        let module = self.current(module_id).await?;
        let mut active_dependents = Vec::new();
        for dependent in self.dependents(module_id).await? {
            let active = self
                .store
                .modules
                .module(&dependent)
                .await?
                .is_some_and(|module| module.status == ModuleStatus::Active);
            if active {
                active_dependents.push(dependent);
            }
        }
        if !active_dependents.is_empty() {
            return Err(ApiError::ModuleHasDependents {
                module_id: module_id.to_owned(),
                dependents: active_dependents,
            });
        }
        let deactivated = ModuleRecord {
            status: ModuleStatus::Inactive,
            updated_at: clock::now(),
            ..module
        };
        self.save(
            principal,
            &deactivated,
            "registry.module.deactivated",
            false,
        )
        .await?;
        Ok(deactivated)
    }

    /// Deletes an inactive module nothing requires and no instance serves.
    pub async fn delete(&self, principal: &Principal, module_id: &str) -> Result<(), ApiError> {
        self.require_manage(principal).await?;
        let module = self.current(module_id).await?;
        if module.status == ModuleStatus::Active {
            return Err(ApiError::FailedPrecondition {
                resource_type: "module",
                state: "active".to_owned(),
            });
        }
        let dependents = self.dependents(module_id).await?;
        if !dependents.is_empty() {
            return Err(ApiError::ModuleHasDependents {
                module_id: module_id.to_owned(),
                dependents,
            });
        }
        if !self
            .store
            .tenant_modules
            .tenants_holding(module_id, None, 1)
            .await?
            .is_empty()
        {
            return Err(ApiError::FailedPrecondition {
                resource_type: "module",
                state: "enabled by tenants".to_owned(),
            });
        }
        let now = clock::now();
        if !self
            .store
            .instances
            .live_instances_of(module_id, now)
            .await?
            .is_empty()
        {
            return Err(ApiError::FailedPrecondition {
                resource_type: "module",
                state: "served by live instances".to_owned(),
            });
        }
        let deleted = ModuleRecord {
            deleted_at: Some(now),
            updated_at: now,
            ..module
        };
        self.save(principal, &deleted, "registry.module.deleted", false)
            .await
    }

    /// A module not deleted; NOT_FOUND otherwise.
    pub(crate) async fn current(&self, module_id: &str) -> Result<ModuleRecord, ApiError> {
        self.store
            .modules
            .module(module_id)
            .await?
            .filter(|module| module.deleted_at.is_none())
            .ok_or(ApiError::NotFound {
                resource_type: "module",
            })
    }

    /// Writes the module and tells every replica; `defaults_changed` when
    /// the version tenants run by default may have changed, which changes
    /// their resolved configuration.
    async fn save(
        &self,
        principal: &Principal,
        module: &ModuleRecord,
        action: &str,
        defaults_changed: bool,
    ) -> Result<(), ApiError> {
        let event = AuditDraft::new(principal.actor(), action, "module", &module.module_id)
            .in_tenant(None)
            .with_request_id(&principal.request_id)
            .with_details(serde_json::json!({
                "status": module.status.as_str(),
                "active_version": module.active_version,
            }));
        let mut tx = self.store.begin().await?;
        modules::update_module(&mut tx, module, event).await?;
        if defaults_changed {
            module_configs::record_change(&mut tx, &module.module_id, None, None).await?;
        }
        tx.commit().await?;
        self.invalidator.changed(Change::Catalog).await;
        Ok(())
    }

    /// Modules whose current version requires `module_id`.
    async fn dependents(&self, module_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(self
            .store
            .modules
            .current_dependencies()
            .await?
            .into_iter()
            .filter(|edge| edge.depends_on == module_id && !edge.optional)
            .map(|edge| edge.module_id)
            .collect())
    }

    /// A dependency of a version being activated: an active module whose
    /// active version meets the requirement (an optional one only when it
    /// is active).
    async fn active_dependency_met(&self, dependency: &ModuleDependency) -> Result<(), ApiError> {
        let target = self
            .store
            .modules
            .module(&dependency.module_id)
            .await?
            .filter(|module| module.deleted_at.is_none() && module.status == ModuleStatus::Active);
        let met = match target.and_then(|module| module.active_version) {
            None => dependency.optional,
            Some(active) => semver::VersionReq::parse(&dependency.version_requirement).is_ok_and(
                |requirement| {
                    semver::Version::parse(&active)
                        .is_ok_and(|version| requirement.matches(&version))
                },
            ),
        };
        if met {
            Ok(())
        } else {
            Err(ApiError::DependencyUnsatisfied {
                module_id: dependency.module_id.clone(),
                requirement: dependency.version_requirement.clone(),
            })
        }
    }
}
