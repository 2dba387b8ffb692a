//! The module catalog as enablement and configuration read it: each
//! module's status and active version (cached for at most [`MAX_AGE`],
//! forgotten at once on news of a catalog change), and what each registered
//! version declares (versions never change, so they are cached until the
//! cache is full).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use plinth_api::{
    prost::Message,
    registry::v1::{LifecycleCallback, ManifestRole, ModuleManifest},
};
use plinth_platform::{
    error::ApiError,
    invalidation::{Cache, Change},
    store::{
        Store,
        modules::{ModuleRecord, ModuleStatus},
    },
};

use crate::module_config::schema::ConfigSchema;

/// How long a module's status serves without news of a change.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Entries kept of each kind before the cache starts afresh.
const MAX_ENTRIES: usize = 10_000;

/// A dependency a version declares.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub module_id: String,
    pub requirement: semver::VersionReq,
    pub optional: bool,
}

impl Dependency {
    pub fn met_by(&self, version: &str) -> bool {
        semver::Version::parse(version).is_ok_and(|version| self.requirement.matches(&version))
    }
}

/// What one registered version of a module declares.
pub struct ModuleVersion {
    pub module_id: String,
    pub version: String,
    pub dependencies: Vec<Dependency>,
    /// Declared features with their defaults.
    pub features: BTreeMap<String, bool>,
    /// The lifecycle callbacks implemented, each with whether it is
    /// optional.
    pub callbacks: HashMap<LifecycleCallback, bool>,
    pub provisions_tenants: bool,
    pub default_roles: Vec<ManifestRole>,
    pub config: ConfigSchema,
}

impl ModuleVersion {
    fn of(manifest: ModuleManifest) -> ModuleVersion {
        ModuleVersion {
            dependencies: manifest
                .dependencies
                .iter()
                .filter_map(|dependency| {
                    Some(Dependency {
                        module_id: dependency.module_id.clone(),
                        requirement: semver::VersionReq::parse(&dependency.version_requirement)
                            .ok()?,
                        optional: dependency.optional,
                    })
                })
                .collect(),
            features: manifest
                .features
                .iter()
                .map(|feature| (feature.key.clone(), feature.default_enabled))
                .collect(),
            callbacks: manifest
                .callbacks
                .iter()
                .filter_map(|callback| {
                    Some((
                        LifecycleCallback::try_from(callback.callback).ok()?,
                        callback.optional,
                    ))
                })
                .collect(),
            provisions_tenants: manifest.provisions_tenants,
            config: ConfigSchema::of(&manifest),
            module_id: manifest.id,
            version: manifest.version,
            default_roles: manifest.default_roles,
        }
    }

    /// Whether the module implements `callback`, and if so whether it is
    /// optional.
    pub fn callback(&self, callback: LifecycleCallback) -> Option<bool> {
        self.callbacks.get(&callback).copied()
    }
}

/// A module as the catalog has it: `None` when unknown or deleted.
struct Status {
    module: Option<Arc<ModuleRecord>>,
    loaded_at: Instant,
}

pub struct Catalog {
    store: Store,
    modules: RwLock<HashMap<String, Status>>,
    /// By module, then version.
    versions: RwLock<HashMap<String, HashMap<String, Arc<ModuleVersion>>>>,
}

impl Catalog {
    pub fn new(store: Store) -> Arc<Catalog> {
        Arc::new(Catalog {
            store,
            modules: RwLock::default(),
            versions: RwLock::default(),
        })
    }

    /// The module, unless unknown or deleted.
    pub async fn module(&self, module_id: &str) -> Result<Option<Arc<ModuleRecord>>, ApiError> {
        if let Some(status) = read(&self.modules).get(module_id)
            && status.loaded_at.elapsed() < MAX_AGE
        {
            return Ok(status.module.clone());
        }
        let loaded_at = Instant::now();
        let module = self
            .store
            .modules
            .module(module_id)
            .await?
            .filter(|module| module.deleted_at.is_none())
            .map(Arc::new);
        let mut modules = write(&self.modules);
        if modules.len() >= MAX_ENTRIES {
            modules.clear();
        }
        modules.insert(
            module_id.to_owned(),
            Status {
                module: module.clone(),
                loaded_at,
            },
        );
        Ok(module)
    }

    /// The module when it is ACTIVE in the catalog.
    pub async fn active(&self, module_id: &str) -> Result<Option<Arc<ModuleRecord>>, ApiError> {
        Ok(self
            .module(module_id)
            .await?
            .filter(|module| module.status == ModuleStatus::Active))
    }

    /// What a registered version declares; NOT_FOUND when it is not
    /// registered.
    pub async fn version(
        &self,
        module_id: &str,
        version: &str,
    ) -> Result<Arc<ModuleVersion>, ApiError> {
        if let Some(found) = read(&self.versions)
            .get(module_id)
            .and_then(|versions| versions.get(version))
        {
            return Ok(found.clone());
        }
        let record = self
            .store
            .modules
            .version(module_id, version)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "module version",
            })?;
        let manifest = ModuleManifest::decode(record.manifest.as_slice())
            .map_err(|error| ApiError::Internal(Box::new(error)))?;
        let found = Arc::new(ModuleVersion::of(manifest));
        let mut versions = write(&self.versions);
        if versions.values().map(HashMap::len).sum::<usize>() >= MAX_ENTRIES {
            versions.clear();
        }
        versions
            .entry(module_id.to_owned())
            .or_default()
            .insert(version.to_owned(), found.clone());
        Ok(found)
    }
}

impl Cache for Catalog {
    fn apply(&self, change: Change) {
        if matches!(change, Change::Catalog | Change::Everything) {
            write(&self.modules).clear();
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
