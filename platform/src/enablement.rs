//! Each tenant's modules (their states, pins, features and company
//! switches) as this replica last read them, at the tenant's module
//! version: what module isolation and the hot enablement and configuration
//! questions are answered from. A snapshot serves while no newer version is
//! known and for at most [`MAX_AGE`], the bound on staleness when other
//! replicas' news (through Redis) does not arrive.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use foldhash::fast::RandomState;
use uuid::Uuid;

use crate::{
    error::ApiError,
    invalidation::{Cache, Change},
    metrics::CacheCounters,
    store::{
        Store,
        tenant_modules::{CompanyModuleRecord, TenantModuleRecord},
    },
    versions::{CATCH_UP_WAIT, Freshness, KnownVersions, VersionToken},
};

/// How long a snapshot serves without news of a change.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Snapshots kept before the stale ones are swept out.
const SWEEP_FROM_ENTRIES: usize = 4096;

/// Company-to-tenant entries kept before the map starts afresh (companies
/// never change tenants, so entries never go stale).
const MAX_COMPANY_ENTRIES: usize = 100_000;

/// A tenant's modules at one version.
#[derive(Debug)]
pub struct TenantSnapshot {
    pub tenant_id: Uuid,
    pub version: i64,
    /// The version as a consistency token.
    pub token: String,
    loaded_at: Instant,
    modules: HashMap<String, TenantModuleRecord, RandomState>,
    /// By company, then module.
    companies: HashMap<Uuid, HashMap<String, CompanyModuleRecord, RandomState>, RandomState>,
}

impl TenantSnapshot {
    pub fn module(&self, module_id: &str) -> Option<&TenantModuleRecord> {
        self.modules.get(module_id)
    }

    pub fn company_module(
        &self,
        company_id: Uuid,
        module_id: &str,
    ) -> Option<&CompanyModuleRecord> {
        self.companies.get(&company_id)?.get(module_id)
    }

    /// Every module the tenant has a row for, in no order.
    pub fn modules(&self) -> impl Iterator<Item = &TenantModuleRecord> {
        self.modules.values()
    }

    /// Whether the tenant is enabling, provisioning or has enabled the
    /// module: where its key may act.
    pub fn holds(&self, module_id: &str) -> bool {
        self.module(module_id)
            .is_some_and(|module| module.state.is_held())
    }

    fn serves(&self, version: i64) -> bool {
        self.version >= version && self.loaded_at.elapsed() < MAX_AGE
    }
}

/// The per-replica cache of tenants' modules.
pub struct Enablement {
    store: Store,
    snapshots: RwLock<Snapshots>,
    known_versions: KnownVersions,
    company_tenants: RwLock<HashMap<Uuid, Uuid, RandomState>>,
    counters: CacheCounters,
}

#[derive(Default)]
struct Snapshots {
    by_tenant: HashMap<Uuid, Arc<TenantSnapshot>, RandomState>,
    sweep_at: usize,
}

impl Snapshots {
    fn sweep(&mut self) {
        self.by_tenant
            .retain(|_, snapshot| snapshot.loaded_at.elapsed() < MAX_AGE);
        self.sweep_at = SWEEP_FROM_ENTRIES.max(2 * self.by_tenant.len());
    }
}

impl Enablement {
    pub fn new(store: Store, counters: CacheCounters) -> Arc<Enablement> {
        Arc::new(Enablement {
            store,
            counters,
            snapshots: RwLock::new(Snapshots {
                by_tenant: HashMap::default(),
                sweep_at: SWEEP_FROM_ENTRIES,
            }),
            known_versions: KnownVersions::default(),
            company_tenants: RwLock::default(),
        })
    }

    /// The tenant of a company; NOT_FOUND when there is no such company (in
    /// `tenant_id`, when given).
    pub async fn company_tenant(
        &self,
        company_id: Uuid,
        tenant_id: Option<Uuid>,
    ) -> Result<Uuid, ApiError> {
        let known = self
            .company_tenants
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&company_id)
            .copied();
        let found = match known {
            Some(found) => found,
            None => {
                let company = self.store.companies.get_company(company_id).await?.ok_or(
                    ApiError::NotFound {
                        resource_type: "company",
                    },
                )?;
                let mut companies = self
                    .company_tenants
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if companies.len() >= MAX_COMPANY_ENTRIES {
                    companies.clear();
                }
                companies.insert(company_id, company.tenant_id);
                company.tenant_id
            }
        };
        match tenant_id {
            Some(tenant_id) if tenant_id != found => Err(ApiError::NotFound {
                resource_type: "company",
            }),
            _ => Ok(found),
        }
    }

    /// Records news of a tenant's module version (never going back).
    pub fn learn(&self, tenant_id: Uuid, version: i64) {
        self.known_versions.learn(tenant_id, version);
    }

    /// The tenant's modules, at least as fresh as asked; NOT_FOUND for an
    /// unknown tenant, UNAVAILABLE (MODULES_VERSION_BEHIND) when the store
    /// itself has not reached the version asked for.
    pub async fn snapshot(
        &self,
        tenant_id: Uuid,
        freshness: Freshness,
    ) -> Result<Arc<TenantSnapshot>, ApiError> {
        let required = match freshness {
            Freshness::Cached => self.known_versions.known(tenant_id),
            Freshness::AtLeast(version) => {
                self.known_versions.catch_up(tenant_id, version).await;
                version.max(self.known_versions.known(tenant_id))
            }
            Freshness::Latest => {
                let latest = self
                    .store
                    .tenant_modules
                    .modules_version(tenant_id)
                    .await?
                    .ok_or(ApiError::NotFound {
                        resource_type: "tenant",
                    })?;
                self.learn(tenant_id, latest);
                latest
            }
        };
        let cached = self
            .read()
            .by_tenant
            .get(&tenant_id)
            .filter(|snapshot| snapshot.serves(required))
            .cloned();
        if let Some(snapshot) = cached {
            self.counters.hit();
            return Ok(snapshot);
        }
        self.counters.miss();
        let loaded_at = Instant::now();
        let read = self
            .store
            .tenant_modules
            .tenant_modules(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        self.learn(tenant_id, read.version);
        if read.version < required {
            return Err(ApiError::ModulesVersionBehind {
                retry_after: CATCH_UP_WAIT,
            });
        }
        let snapshot = Arc::new(TenantSnapshot {
            tenant_id,
            version: read.version,
            token: VersionToken::modules(tenant_id, read.version).encode(),
            loaded_at,
            modules: read
                .modules
                .into_iter()
                .map(|module| (module.module_id.clone(), module))
                .collect(),
            companies: read.companies.into_iter().fold(
                HashMap::default(),
                |mut companies: HashMap<_, HashMap<_, _, RandomState>, RandomState>, company| {
                    companies
                        .entry(company.company_id)
                        .or_default()
                        .insert(company.module_id.clone(), company);
                    companies
                },
            ),
        });
        let mut snapshots = self.write();
        if snapshots.by_tenant.len() >= snapshots.sweep_at {
            snapshots.sweep();
        }
        snapshots.by_tenant.insert(tenant_id, snapshot.clone());
        Ok(snapshot)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshots> {
        self.snapshots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Snapshots> {
        self.snapshots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Cache for Enablement {
    fn apply(&self, change: Change) {
        match change {
            Change::Modules { tenant_id, version } => self.learn(tenant_id, version),
            Change::Everything => self.write().by_tenant.clear(),
            Change::ApiKey(_)
            | Change::Subjects
            | Change::SigningKeys
            | Change::Rbac { .. }
            | Change::Instances { .. }
            | Change::Catalog
            | Change::Audit { .. } => {}
        }
    }
}
