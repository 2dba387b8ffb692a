//! ResolveModuleConfig: the merged document of a tenant or company, served
//! from a per-replica cache of resolutions, each kept with the tenant's
//! module version it was read at: a resolution serves while no newer
//! version is known and for at most [`MAX_AGE`] (catalog changes, which
//! may change a tenant's defaults, clear it at once).

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use foldhash::fast::RandomState;
use plinth_platform::{
    error::ApiError,
    identity::Principal,
    invalidation::{Cache, Change},
    metrics::CacheCounters,
    store::{Store, StoreError},
};
use uuid::Uuid;

use super::{ModuleConfigs, document, etag_of, layers::open_layer};
use crate::{
    access::Scope,
    auth::signing::KeyEncryptionKey,
    enablement::{Consistency, catalog::ModuleVersion, running_version},
    permissions::MODULE_CONFIG_READ,
};

/// How long a resolution serves without news of a change.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Resolutions kept before the stale ones are swept out.
const SWEEP_FROM_ENTRIES: usize = 4096;

/// Which layer supplied a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    Tenant,
    Company,
}

/// A merged configuration.
#[derive(Debug)]
pub struct Resolution {
    pub module_id: String,
    pub tenant_id: Uuid,
    pub company_id: Option<Uuid>,
    /// The merged JSON object.
    pub document: String,
    pub etag: String,
    pub module_version: String,
    /// Each leaf's JSON Pointer and source, in document order.
    pub provenance: Vec<(String, Source)>,
    /// The resolution as the API encodes it, without and with its
    /// provenance: made by the first answer that needs it, then shared by
    /// every answer the resolution serves.
    pub encoded: [OnceLock<Bytes>; 2],
    modules_version: i64,
    resolved_at: Instant,
}

/// What ResolveModuleConfig asks.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    pub module_id: String,
    pub tenant_id: Uuid,
    pub company_id: Option<Uuid>,
    pub consistency: Consistency,
}

type Key = (Uuid, String, Option<Uuid>);

/// The per-replica cache of resolutions.
#[derive(Default)]
pub struct Resolutions {
    entries: RwLock<Entries>,
    counters: CacheCounters,
}

#[derive(Default)]
struct Entries {
    by_scope: HashMap<Key, Arc<Resolution>, RandomState>,
    sweep_at: usize,
}

impl Resolutions {
    pub fn new(counters: CacheCounters) -> Arc<Resolutions> {
        Arc::new(Resolutions {
            entries: RwLock::new(Entries {
                by_scope: HashMap::default(),
                sweep_at: SWEEP_FROM_ENTRIES,
            }),
            counters,
        })
    }

    fn cached(&self, key: &Key, modules_version: i64) -> Option<Arc<Resolution>> {
        let cached = read(&self.entries)
            .by_scope
            .get(key)
            .filter(|resolution| {
                resolution.modules_version >= modules_version
                    && resolution.resolved_at.elapsed() < MAX_AGE
            })
            .cloned();
        match cached {
            Some(_) => self.counters.hit(),
            None => self.counters.miss(),
        }
        cached
    }

    fn keep(&self, key: Key, resolution: Arc<Resolution>) {
        let mut entries = write(&self.entries);
        if entries.by_scope.len() >= entries.sweep_at {
            entries
                .by_scope
                .retain(|_, resolution| resolution.resolved_at.elapsed() < MAX_AGE);
            entries.sweep_at = SWEEP_FROM_ENTRIES.max(2 * entries.by_scope.len());
        }
        entries.by_scope.insert(key, resolution);
    }
}

impl Cache for Resolutions {
    fn apply(&self, change: Change) {
        if matches!(change, Change::Catalog | Change::Everything) {
            write(&self.entries).by_scope.clear();
        }
    }
}

impl ModuleConfigs {
    /// The module's configuration in the tenant (or company), with the
    /// consistency token it reflects. FAILED_PRECONDITION when the tenant
    /// does not hold the module.
    pub async fn resolve(
        &self,
        principal: &Principal,
        request: ResolveRequest,
    ) -> Result<(Arc<Resolution>, String), ApiError> {
        let ResolveRequest {
            module_id,
            tenant_id,
            company_id,
            consistency,
        } = request;
        let scope = Scope::tenant(tenant_id).in_company(company_id);
        self.access
            .require_visible(principal, MODULE_CONFIG_READ, scope, "tenant")
            .await?;
        if let Some(company_id) = company_id {
            self.enablement
                .company_tenant(company_id, Some(tenant_id))
                .await?;
        }
        let snapshot = self
            .enablement
            .snapshot(
                tenant_id,
                consistency.freshness(tenant_id, "consistency.at_least_as_fresh")?,
            )
            .await?;
        let token = snapshot.token.clone();
        let key = (tenant_id, module_id, company_id);
        if let Some(resolution) = self.resolutions.cached(&key, snapshot.version) {
            return Ok((resolution, token));
        }
        let record = snapshot
            .module(&key.1)
            .filter(|record| record.state.is_held())
            .ok_or_else(|| ApiError::ModuleNotEnabled {
                module_id: key.1.clone(),
                state: "not enabled".to_owned(),
            })?;
        let version = running_version(&self.catalog, record)
            .await?
            .ok_or_else(|| ApiError::ModuleNotEnabled {
                module_id: record.module_id.clone(),
                state: "without an active version".to_owned(),
            })?;
        let resolution = Arc::new(
            resolve_now(
                &self.store,
                &self.encryption,
                &version,
                tenant_id,
                company_id,
                snapshot.version,
            )
            .await?,
        );
        self.resolutions.keep(key, resolution.clone());
        Ok((resolution, token))
    }
}

/// Resolves from the store: `version`'s defaults, the tenant's layer, then
/// the company's.
pub async fn resolve_now(
    store: &Store,
    encryption: &KeyEncryptionKey,
    version: &ModuleVersion,
    tenant_id: Uuid,
    company_id: Option<Uuid>,
    modules_version: i64,
) -> Result<Resolution, ApiError> {
    let resolved_at = Instant::now();
    let stored = store
        .module_configs
        .layers(tenant_id, &version.module_id)
        .await?;
    let mut layers = Vec::with_capacity(2);
    let mut sources = Vec::with_capacity(2);
    let wanted = std::iter::once((None, Source::Tenant))
        .chain(company_id.map(|company_id| (Some(company_id), Source::Company)));
    for (wanted, source) in wanted {
        if let Some(layer) = stored.iter().find(|layer| layer.company_id == wanted) {
            layers.push(open_layer(encryption, layer)?);
            sources.push(source);
        }
    }
    let resolved = document::resolve(&version.config.defaults, &layers);
    let layer_refs: Vec<_> = layers.iter().collect();
    let provenance = document::provenance(&resolved, &layer_refs)
        .into_iter()
        .map(|(pointer, layer)| {
            (
                pointer,
                layer.map_or(Source::Default, |index| sources[index]),
            )
        })
        .collect();
    let document = serde_json::to_string(&resolved).map_err(StoreError::from)?;
    Ok(Resolution {
        module_id: version.module_id.clone(),
        tenant_id,
        company_id,
        etag: etag_of(&document),
        document,
        module_version: version.version.clone(),
        provenance,
        encoded: Default::default(),
        modules_version,
        resolved_at,
    })
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
