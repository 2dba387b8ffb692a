//! The module catalog: versions registered from manifests (with the
//! permissions they declare, in one transaction), the rules the catalog
//! adds to a manifest's own, and reading modules and versions.

use std::collections::{HashMap, HashSet};

use plinth_client::{
    prost::Message,
    registry::v1::{ModuleDependency, ModuleManifest},
};
use plinth_platform::{
    access::{Access, Scope},
    audit::AuditDraft,
    clock,
    error::{ApiError, Violations},
    identity::{Principal, PrincipalKind},
    permission::{self, catalog::MODULE_MANAGE},
    store::{
        Store, StoreError,
        modules::{
            self, DependencyRecord, ModuleFilter, ModuleRecord, ModuleStatus, ModuleVersionRecord,
            VersionCursor,
        },
        permissions::PermissionRecord,
    },
};
use sha2::{Digest, Sha256};

use crate::manifest::{self, Violation};

/// A module with the manifest of its current version.
pub struct ModuleView {
    pub module: ModuleRecord,
    pub manifest: ModuleManifest,
}

/// What registering answered: the module and the version, new or (for a
/// retry with the same manifest) as registered before.
pub struct Registered {
    pub module: ModuleRecord,
    pub version: ModuleVersionRecord,
}

/// Metadata changes of a module; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ModuleChanges {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
}

/// A rule of the catalog a manifest breaks.
enum Problem {
    Cycle {
        index: usize,
        path: String,
    },
    Unsatisfied {
        index: usize,
        module_id: String,
        requirement: String,
    },
}

impl Problem {
    fn violation(self) -> Violation {
        match self {
            Problem::Cycle { index, path } => Violation {
                field: format!("dependencies[{index}].module_id"),
                description: format!("closes a dependency cycle: {path}"),
            },
            Problem::Unsatisfied { index, .. } => Violation {
                field: format!("dependencies[{index}].version_requirement"),
                description: "no registered version of the module meets it".to_owned(),
            },
        }
    }

    fn error(self) -> ApiError {
        match self {
            Problem::Cycle { path, .. } => ApiError::DependencyCycle { path },
            Problem::Unsatisfied {
                module_id,
                requirement,
                ..
            } => ApiError::DependencyUnsatisfied {
                module_id,
                requirement,
            },
        }
    }
}

pub struct Catalog {
    store: Store,
    access: Access,
}

impl Catalog {
    pub fn new(store: Store, access: Access) -> Catalog {
        Catalog { store, access }
    }

    /// Every rule `manifest` breaks: its own, then (when it keeps those)
    /// the catalog's. Stores nothing.
    pub async fn dry_run(
        &self,
        principal: &Principal,
        manifest: &ModuleManifest,
    ) -> Result<Vec<Violation>, ApiError> {
        authenticated(principal)?;
        let mut found = manifest::violations(manifest);
        if found.is_empty() {
            let problems = self.catalog_problems(manifest).await?;
            found.extend(problems.into_iter().map(Problem::violation));
        }
        Ok(found)
    }

    /// Registers a version from its manifest, declaring its permissions in
    /// the same transaction. The same manifest again answers the version as
    /// registered; another manifest under a registered version is refused.
    pub async fn register(
        &self,
        principal: &Principal,
        manifest: ModuleManifest,
    ) -> Result<Registered, ApiError> {
        self.may_publish(principal, &manifest.id).await?;
        let broken = manifest::violations(&manifest);
        if !broken.is_empty() {
            let mut violations = Violations::default();
            for violation in broken {
                violations.push(&violation.field, violation.description);
            }
            return Err(ApiError::InvalidManifest {
                module_id: manifest.id,
                violations,
            });
        }
        let encoded = manifest.encode_to_vec();
        let digest = hex::encode(Sha256::digest(&encoded));
        if let Some(registered) = self.registered(&manifest, &digest).await? {
            return Ok(registered);
        }
        if let Some(problem) = self.catalog_problems(&manifest).await?.into_iter().next() {
            return Err(problem.error());
        }
        let existing = self.store.modules.module(&manifest.id).await?;
        if existing
            .as_ref()
            .is_some_and(|module| module.deleted_at.is_some())
        {
            return Err(ApiError::FailedPrecondition {
                resource_type: "module",
                state: "deleted".to_owned(),
            });
        }
        let now = clock::now();
        let first = existing.is_none();
        let module = with_version(existing, &manifest, now);
        let version = ModuleVersionRecord {
            module_id: manifest.id.clone(),
            version: manifest.version.clone(),
            manifest: encoded,
            digest: digest.clone(),
            registered_at: now,
        };
        let dependencies: Vec<DependencyRecord> = manifest
            .dependencies
            .iter()
            .map(|dependency| DependencyRecord {
                module_id: manifest.id.clone(),
                version: manifest.version.clone(),
                depends_on: dependency.module_id.clone(),
                requirement: dependency.version_requirement.clone(),
                optional: dependency.optional,
            })
            .collect();
        let permissions: Vec<PermissionRecord> = manifest
            .permissions
            .iter()
            .map(|declared| PermissionRecord {
                name: declared.name.clone(),
                module_id: manifest.id.clone(),
                description: declared.description.clone(),
                created_at: now,
            })
            .collect();
        let event = |action: &str| {
            AuditDraft::new(principal.actor(), action, "module", &manifest.id)
                .in_tenant(None)
                .with_request_id(&principal.request_id)
                .with_details(serde_json::json!({ "version": manifest.version }))
        };
        let mut tx = self.store.begin().await?;
        let written = modules::register_version(
            &mut tx,
            &module,
            first,
            &version,
            &dependencies,
            event("registry.module.registered"),
        )
        .await;
        match written {
            // Another registration of the same version won the race.
            Err(StoreError::Conflict) => {
                drop(tx);
                return self
                    .registered(&manifest, &digest)
                    .await?
                    .ok_or(ApiError::Unavailable);
            }
            written => written?,
        }
        if !permissions.is_empty() {
            permission::declare(
                &mut tx,
                &manifest.id,
                &permissions,
                event("rbac.permissions.declared"),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Registered { module, version })
    }

    /// The version as registered, when it is: the same manifest is a retry,
    /// another one is refused.
    async fn registered(
        &self,
        manifest: &ModuleManifest,
        digest: &str,
    ) -> Result<Option<Registered>, ApiError> {
        let Some(version) = self
            .store
            .modules
            .version(&manifest.id, &manifest.version)
            .await?
        else {
            return Ok(None);
        };
        if version.digest != digest {
            return Err(ApiError::VersionImmutable {
                module_id: manifest.id.clone(),
                version: manifest.version.clone(),
            });
        }
        let module = self
            .store
            .modules
            .module(&manifest.id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "module",
            })?;
        Ok(Some(Registered { module, version }))
    }

    /// A module (not deleted) with its current version's manifest.
    pub async fn module(
        &self,
        principal: &Principal,
        module_id: &str,
    ) -> Result<ModuleView, ApiError> {
        authenticated(principal)?;
        let module = self
            .store
            .modules
            .module(module_id)
            .await?
            .filter(|module| module.deleted_at.is_none())
            .ok_or(ApiError::NotFound {
                resource_type: "module",
            })?;
        let current = module
            .active_version
            .as_deref()
            .unwrap_or(&module.latest_version);
        let version = self
            .store
            .modules
            .version(module_id, current)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "module version",
            })?;
        Ok(ModuleView {
            manifest: decode(&version)?,
            module,
        })
    }

    /// A page of a module's versions, newest registration first, and
    /// whether more follow.
    pub async fn versions(
        &self,
        principal: &Principal,
        module_id: &str,
        before: Option<VersionCursor>,
        size: i64,
    ) -> Result<(Vec<(ModuleVersionRecord, ModuleManifest)>, bool), ApiError> {
        self.module(principal, module_id).await?;
        let mut rows = self
            .store
            .modules
            .list_versions(module_id, before, size + 1)
            .await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let versions = rows
            .into_iter()
            .map(|version| decode(&version).map(|manifest| (version, manifest)))
            .collect::<Result<_, _>>()?;
        Ok((versions, more))
    }

    /// A page of modules (not deleted) by id, and whether more follow.
    pub async fn list(
        &self,
        principal: &Principal,
        filter: ModuleFilter,
        size: i64,
    ) -> Result<(Vec<ModuleRecord>, bool), ApiError> {
        authenticated(principal)?;
        let mut rows = self.store.modules.list_modules(&filter, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        Ok((rows, more))
    }

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
        self.save(principal, &updated, "registry.module.updated")
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
        self.save(principal, &activated, "registry.module.activated")
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
        self.save(principal, &deactivated, "registry.module.deactivated")
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
        let now = clock::now();
        if self.store.modules.live_instances(module_id, now).await? > 0 {
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
        self.save(principal, &deleted, "registry.module.deleted")
            .await
    }

    /// A module not deleted.
    async fn current(&self, module_id: &str) -> Result<ModuleRecord, ApiError> {
        self.store
            .modules
            .module(module_id)
            .await?
            .filter(|module| module.deleted_at.is_none())
            .ok_or(ApiError::NotFound {
                resource_type: "module",
            })
    }

    async fn save(
        &self,
        principal: &Principal,
        module: &ModuleRecord,
        action: &str,
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
        tx.commit().await?;
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

    async fn require_manage(&self, principal: &Principal) -> Result<(), ApiError> {
        self.access
            .require(principal, MODULE_MANAGE, Scope::platform())
            .await
    }

    /// A module key publishes its own module only; others need
    /// `plinth:module:manage`.
    async fn may_publish(&self, principal: &Principal, module_id: &str) -> Result<(), ApiError> {
        match principal.module_id() {
            Some(own) if own == module_id => Ok(()),
            Some(_) => Err(ApiError::NamespaceViolation {
                module_id: module_id.to_owned(),
            }),
            None => {
                self.access
                    .require(principal, MODULE_MANAGE, Scope::platform())
                    .await
            }
        }
    }

    /// The catalog's rules: every required dependency registered, each
    /// present one with a version meeting its requirement, and no cycle
    /// through the current versions with this manifest's dependencies in
    /// place of its module's.
    async fn catalog_problems(&self, manifest: &ModuleManifest) -> Result<Vec<Problem>, ApiError> {
        let mut problems = Vec::new();
        for (index, dependency) in manifest.dependencies.iter().enumerate() {
            let numbers = self
                .store
                .modules
                .version_numbers(&dependency.module_id)
                .await?;
            if numbers.is_empty() && dependency.optional {
                continue;
            }
            let requirement = semver::VersionReq::parse(&dependency.version_requirement)
                .map_err(|error| ApiError::Internal(Box::new(error)))?;
            let met = numbers.iter().any(|number| {
                semver::Version::parse(number).is_ok_and(|version| requirement.matches(&version))
            });
            if !met {
                problems.push(Problem::Unsatisfied {
                    index,
                    module_id: dependency.module_id.clone(),
                    requirement: dependency.version_requirement.clone(),
                });
            }
        }
        problems.extend(self.cycle(manifest).await?);
        Ok(problems)
    }

    /// The cycle `manifest`'s dependencies would close through the current
    /// versions of the other modules, if any.
    async fn cycle(&self, manifest: &ModuleManifest) -> Result<Option<Problem>, ApiError> {
        let mut graph: HashMap<String, Vec<String>> = HashMap::new();
        for edge in self.store.modules.current_dependencies().await? {
            if edge.module_id != manifest.id {
                graph
                    .entry(edge.module_id)
                    .or_default()
                    .push(edge.depends_on);
            }
        }
        Ok(manifest
            .dependencies
            .iter()
            .enumerate()
            .find_map(|(index, dependency)| {
                path_back(&graph, &dependency.module_id, &manifest.id).map(|path| Problem::Cycle {
                    index,
                    path: format!("{} -> {}", manifest.id, path.join(" -> ")),
                })
            }))
    }
}

/// The path from `start` to `target` along `graph`, both ends included.
fn path_back(
    graph: &HashMap<String, Vec<String>>,
    start: &str,
    target: &str,
) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut path = vec![start.to_owned()];
    walk(graph, target, &mut seen, &mut path).then_some(path)
}

fn walk(
    graph: &HashMap<String, Vec<String>>,
    target: &str,
    seen: &mut HashSet<String>,
    path: &mut Vec<String>,
) -> bool {
    let here = path.last().cloned().unwrap_or_default();
    if here == target {
        return true;
    }
    if !seen.insert(here.clone()) {
        return false;
    }
    for next in graph.get(&here).into_iter().flatten() {
        path.push(next.clone());
        if walk(graph, target, seen, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// The module as it is after registering `manifest`'s version: new and
/// inactive, or with its latest version (and the metadata of the latest
/// manifest) moved forward when this one is higher.
fn with_version(
    existing: Option<ModuleRecord>,
    manifest: &ModuleManifest,
    now: chrono::DateTime<chrono::Utc>,
) -> ModuleRecord {
    let from_manifest = |module: ModuleRecord| ModuleRecord {
        display_name: manifest.display_name.clone(),
        description: manifest.description.clone(),
        category: manifest.category.clone(),
        latest_version: manifest.version.clone(),
        updated_at: now,
        ..module
    };
    match existing {
        None => from_manifest(ModuleRecord {
            module_id: manifest.id.clone(),
            display_name: String::new(),
            description: String::new(),
            category: String::new(),
            status: ModuleStatus::Inactive,
            active_version: None,
            latest_version: String::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }),
        Some(module) => {
            let higher = match (
                semver::Version::parse(&manifest.version),
                semver::Version::parse(&module.latest_version),
            ) {
                (Ok(new), Ok(latest)) => new > latest,
                _ => false,
            };
            if higher {
                from_manifest(module)
            } else {
                ModuleRecord {
                    updated_at: now,
                    ..module
                }
            }
        }
    }
}

fn decode(version: &ModuleVersionRecord) -> Result<ModuleManifest, ApiError> {
    ModuleManifest::decode(version.manifest.as_slice())
        .map_err(|error| ApiError::Internal(Box::new(error)))
}

fn authenticated(principal: &Principal) -> Result<(), ApiError> {
    if principal.kind() == PrincipalKind::Anonymous {
        return Err(ApiError::Unauthenticated);
    }
    Ok(())
}
