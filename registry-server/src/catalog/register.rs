//! Registering versions: the manifest's own rules, then the catalog's
//! (dependencies met, no cycle), then the version, its module and its
//! permissions in one transaction.

use std::collections::{HashMap, HashSet};

use plinth_api::{prost::Message, registry::v1::ModuleManifest};
use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::{ApiError, Violations},
    identity::Principal,
    invalidation::Change,
    permission,
    store::{
        StoreError,
        modules::{self, DependencyRecord, ModuleRecord, ModuleStatus, ModuleVersionRecord},
        permissions::PermissionRecord,
    },
};
use sha2::{Digest, Sha256};

use super::{Catalog, authenticated};
use crate::manifest::{self, Violation};

/// What registering answered: the module and the version, new or (for a
/// retry with the same manifest) as registered before.
pub struct Registered {
    pub module: ModuleRecord,
    pub version: ModuleVersionRecord,
}

/// A rule of the catalog a manifest breaks.
pub(super) enum Problem {
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

    pub(super) fn error(self) -> ApiError {
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

impl Catalog {
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
        self.may_act_for(principal, &manifest.id).await?;
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
        self.invalidator.changed(Change::Catalog).await;
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
    pub(super) async fn cycle(
        &self,
        manifest: &ModuleManifest,
    ) -> Result<Option<Problem>, ApiError> {
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
