//! Effective grants: what one user holds in its tenant (tenant-wide, or in
//! one company), compiled into a [`Matcher`] and cached per replica.
//!
//! Compiling reads one row (the user's roles with the tenant's version),
//! in a statement shared with the compiles running beside it; the roles' grants, inherited ones included, are compiled once
//! per tenant and version, and so is the matcher of each set of roles that
//! users hold together: users bound to the same roles share one.
//!
//! Each compiled set carries the tenant's RBAC version it was read at. The
//! replica tracks the newest version it knows of per tenant (from its own
//! writes, other replicas' [`Change::Rbac`] messages and its store reads); a
//! set older than that, older than [`MAX_AGE`], or past the expiry of a
//! binding it used, is compiled again. Requests that name a version wait
//! briefly for this replica to learn of it, then read the store.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use crate::{
    clock,
    error::ApiError,
    invalidation::{Cache, Change},
    metrics::CacheCounters,
    permission::{Grant, Matcher},
    store::{
        Store,
        rbac::{BindingScope, Holder, RoleRecord},
        tenants::PLATFORM_TENANT_ID,
    },
    versions::{CATCH_UP_WAIT, KnownVersions},
};

pub use crate::versions::Freshness;
use chrono::{DateTime, Utc};
use foldhash::fast::RandomState;
use tokio::sync::Mutex;
use uuid::Uuid;

pub mod graph;
mod held_roles;

use crate::permission::catalog::MEMBERSHIP;
use graph::RoleGraph;
use held_roles::HeldRoles;

/// How long a compiled set serves without news of a change: the bound on
/// staleness when Redis (and so other replicas' messages) is unreachable.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Compiled sets kept before the stale ones are swept out (sets older than
/// [`MAX_AGE`] serve nobody); the bound doubles while every set is fresh.
const SWEEP_FROM_ENTRIES: usize = 4096;

/// A grant a role holds, itself or through an ancestor.
#[derive(Debug)]
pub struct RoleGrant {
    pub pattern: Box<str>,
    /// The role (this one or an ancestor) whose own grants hold it.
    pub granting_role_id: Uuid,
    pub granting_role_key: Arc<str>,
}

/// Everything one role grants.
#[derive(Debug)]
pub struct RoleGrants {
    pub key: Arc<str>,
    pub grants: Vec<RoleGrant>,
}

/// Matchers of role sets kept per tenant version; past it, forgotten.
const MAX_ROLE_SETS: usize = 10_000;

/// A tenant's roles, compiled at one version, with the role sets compiled
/// from them so far.
pub struct TenantRoles {
    version: i64,
    loaded_at: Instant,
    roles: HashMap<Uuid, Arc<RoleGrants>>,
    sets: std::sync::Mutex<HashMap<RoleSetKey, Arc<RoleSet>, RandomState>>,
}

/// Which roles a set holds (sorted, deduplicated), and whether its holder is
/// an active user (an inactive one holds nothing).
type RoleSetKey = (bool, Vec<Uuid>);

/// What a set of roles grants together, with what membership grants.
#[derive(Debug)]
pub struct RoleSet {
    pub grants: Matcher<Source>,
    /// Every grant as written, sorted.
    pub listing: Vec<String>,
}

impl TenantRoles {
    fn compile(version: i64, records: &[RoleRecord]) -> TenantRoles {
        let graph = RoleGraph::of(records);
        let keys: HashMap<Uuid, Arc<str>> = records
            .iter()
            .map(|role| (role.id, Arc::from(role.key.as_str())))
            .collect();
        let roles = records
            .iter()
            .map(|role| {
                let grants = graph
                    .ancestry(role.id)
                    .into_iter()
                    .flat_map(|ancestor| {
                        let key = &keys[&ancestor];
                        graph
                            .own_grants(ancestor)
                            .iter()
                            .map(move |pattern| RoleGrant {
                                pattern: pattern.as_str().into(),
                                granting_role_id: ancestor,
                                granting_role_key: key.clone(),
                            })
                    })
                    .collect();
                let compiled = RoleGrants {
                    key: keys[&role.id].clone(),
                    grants,
                };
                (role.id, Arc::new(compiled))
            })
            .collect();
        TenantRoles {
            version,
            loaded_at: Instant::now(),
            roles,
            sets: std::sync::Mutex::default(),
        }
    }

    /// The shared matcher of exactly these roles in `tenant_id`.
    fn role_set(&self, tenant_id: Uuid, key: RoleSetKey) -> Arc<RoleSet> {
        let mut sets = self
            .sets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(set) = sets.get(&key) {
            return set.clone();
        }
        let mut grants = Matcher::default();
        let (active, role_ids) = &key;
        if *active {
            if tenant_id == PLATFORM_TENANT_ID {
                grants.insert(Grant::Prefix("plinth:"), Source::PlatformAdmin);
            }
            for permission in MEMBERSHIP {
                grants.insert(Grant::Permission(permission.name), Source::Membership);
            }
            for role_id in role_ids {
                // A role deleted after the bindings were read grants nothing.
                let Some(role) = self.roles.get(role_id) else {
                    continue;
                };
                for (index, role_grant) in role.grants.iter().enumerate() {
                    // Stored grants were valid when written; anything else
                    // is skipped rather than trusted.
                    if let Ok(grant) = Grant::parse(&role_grant.pattern) {
                        let source = Source::Role {
                            role_id: *role_id,
                            role: role.clone(),
                            grant: index,
                        };
                        grants.insert(grant, source);
                    }
                }
            }
        }
        let mut listing: Vec<String> = grants.grants().collect();
        listing.sort_unstable();
        let set = Arc::new(RoleSet { grants, listing });
        if sets.len() >= MAX_ROLE_SETS {
            sets.clear();
        }
        sets.insert(key, set.clone());
        set
    }

    fn serves(&self, version: i64) -> bool {
        self.version >= version && self.loaded_at.elapsed() < MAX_AGE
    }

    pub fn role(&self, id: Uuid) -> Option<&Arc<RoleGrants>> {
        self.roles.get(&id)
    }
}

impl RoleGrants {
    /// Whether any of the role's grants covers a concrete permission.
    pub fn covers(&self, permission: &str) -> bool {
        self.grants.iter().any(|role_grant| {
            Grant::parse(&role_grant.pattern).is_ok_and(|grant| grant.covers(permission))
        })
    }
}

/// Why a user holds a grant.
#[derive(Debug, Clone)]
pub enum Source {
    /// A role bound to the user, and which of that role's grants.
    Role {
        role_id: Uuid,
        role: Arc<RoleGrants>,
        grant: usize,
    },
    /// What every member of the tenant holds.
    Membership,
    /// A super admin's `plinth:*`.
    PlatformAdmin,
}

impl Source {
    /// The grant as written.
    pub fn pattern<'a>(&'a self, permission: &'a str) -> &'a str {
        match self {
            Source::Role { role, grant, .. } => &role.grants[*grant].pattern,
            Source::Membership => permission,
            Source::PlatformAdmin => "plinth:*",
        }
    }
}

/// What one user holds in one scope, at one version.
#[derive(Debug)]
pub struct Effective {
    pub version: i64,
    pub role_set: Arc<RoleSet>,
    compiled_at: Instant,
    /// The earliest expiry among the bindings used.
    valid_until: Option<DateTime<Utc>>,
}

impl Effective {
    /// The most specific grant that covers a concrete permission.
    pub fn find(&self, permission: &str) -> Option<&Source> {
        self.role_set.grants.find(permission)
    }

    fn serves(&self, known_version: i64) -> bool {
        self.version >= known_version
            && self.compiled_at.elapsed() < MAX_AGE
            && self.valid_until.is_none_or(|until| clock::now() < until)
    }
}

/// Compiled sets by user and scope, with the size that triggers a sweep.
#[derive(Default)]
struct Compiled {
    entries: HashMap<(Uuid, BindingScope), Arc<Effective>, RandomState>,
    sweep_at: usize,
}

impl Compiled {
    fn sweep(&mut self) {
        self.entries
            .retain(|_, entry| entry.compiled_at.elapsed() < MAX_AGE);
        self.sweep_at = SWEEP_FROM_ENTRIES.max(2 * self.entries.len());
    }
}

/// The per-replica cache of effective grants.
pub struct Grants {
    store: Store,
    held_roles: Arc<HeldRoles>,
    compiled: RwLock<Compiled>,
    tenant_roles: RwLock<HashMap<Uuid, Arc<TenantRoles>, RandomState>>,
    /// One reload of a tenant's roles at a time; the others wait for it.
    reloading: Mutex<()>,
    known_versions: KnownVersions,
    counters: CacheCounters,
}

impl Grants {
    /// Also sweeps stale sets out every [`MAX_AGE`], so memory returns
    /// to its level after load.
    pub fn new(store: Store, counters: CacheCounters) -> Arc<Grants> {
        let grants = Arc::new(Grants {
            held_roles: HeldRoles::new(store.clone()),
            store,
            compiled: RwLock::default(),
            tenant_roles: RwLock::default(),
            reloading: Mutex::new(()),
            known_versions: KnownVersions::default(),
            counters,
        });
        let sweeping = Arc::downgrade(&grants);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MAX_AGE);
            loop {
                every.tick().await;
                let Some(grants) = sweeping.upgrade() else {
                    return;
                };
                write(&grants.compiled).sweep();
                write(&grants.tenant_roles).retain(|_, roles| roles.loaded_at.elapsed() < MAX_AGE);
            }
        });
        grants
    }

    /// The newest RBAC version of the tenant this replica knows of.
    fn known_version(&self, tenant_id: Uuid) -> i64 {
        self.known_versions.known(tenant_id)
    }

    /// Records news of an RBAC version (never going back).
    pub fn learn(&self, tenant_id: Uuid, version: i64) {
        self.known_versions.learn(tenant_id, version);
    }

    /// What `user_id` (a user of `tenant_id`) holds in `scope`, at least as
    /// fresh as asked. NOT_FOUND for a user or company not of the tenant.
    pub async fn effective(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        scope: BindingScope,
        freshness: Freshness,
    ) -> Result<Arc<Effective>, ApiError> {
        let required =
            match freshness {
                Freshness::Cached => self.known_version(tenant_id),
                Freshness::AtLeast(version) => {
                    self.known_versions.catch_up(tenant_id, version).await;
                    version.max(self.known_version(tenant_id))
                }
                Freshness::Latest => {
                    let latest = self.store.rbac.rbac_version(tenant_id).await?.ok_or(
                        ApiError::NotFound {
                            resource_type: "tenant",
                        },
                    )?;
                    self.learn(tenant_id, latest);
                    latest
                }
            };
        if let Some(cached) = read(&self.compiled).entries.get(&(user_id, scope))
            && cached.serves(required)
        {
            self.counters.hit();
            return Ok(cached.clone());
        }
        self.counters.miss();
        let compiled = Arc::new(self.compile(tenant_id, user_id, scope).await?);
        if compiled.version < required {
            return Err(ApiError::RbacVersionBehind {
                retry_after: CATCH_UP_WAIT,
            });
        }
        self.keep((user_id, scope), compiled.clone());
        Ok(compiled)
    }

    /// The tenant's compiled roles, at least at `version` and no older
    /// than what this replica knows of.
    pub async fn roles(&self, tenant_id: Uuid, version: i64) -> Result<Arc<TenantRoles>, ApiError> {
        let required = version.max(self.known_version(tenant_id));
        let cached = || {
            read(&self.tenant_roles)
                .get(&tenant_id)
                .filter(|roles| roles.serves(required))
                .cloned()
        };
        if let Some(roles) = cached() {
            return Ok(roles);
        }
        let _reloading = self.reloading.lock().await;
        if let Some(roles) = cached() {
            return Ok(roles);
        }
        // The version first: roles read after it are at least as new.
        let version = self
            .store
            .rbac
            .rbac_version(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        let records = self.store.rbac.tenant_roles(tenant_id).await?;
        let roles = Arc::new(TenantRoles::compile(version, &records));
        self.learn(tenant_id, version);
        write(&self.tenant_roles).insert(tenant_id, roles.clone());
        Ok(roles)
    }

    async fn compile(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        scope: BindingScope,
    ) -> Result<Effective, ApiError> {
        let compiled_at = Instant::now();
        // The roles must be compiled at the version the bindings were read
        // at, or ids could name roles made since; a write in between
        // means reading again.
        for _ in 0..3 {
            let holder = Holder {
                tenant_id,
                user_id,
                scope,
            };
            let read = self
                .held_roles
                .read(holder)
                .await?
                .ok_or(ApiError::NotFound {
                    resource_type: "user",
                })?;
            if !read.company_found {
                return Err(ApiError::NotFound {
                    resource_type: "company",
                });
            }
            self.learn(tenant_id, read.version);
            let roles = self.roles(tenant_id, read.version).await?;
            if roles.version != read.version {
                continue;
            }
            let mut role_ids = read.role_ids;
            role_ids.sort_unstable();
            role_ids.dedup();
            return Ok(Effective {
                version: read.version,
                role_set: roles.role_set(tenant_id, (read.user_active, role_ids)),
                compiled_at,
                valid_until: read.valid_until,
            });
        }
        Err(ApiError::RbacVersionBehind {
            retry_after: CATCH_UP_WAIT,
        })
    }

    fn keep(&self, key: (Uuid, BindingScope), compiled: Arc<Effective>) {
        let mut compiled_sets = write(&self.compiled);
        if compiled_sets.entries.len() >= compiled_sets.sweep_at {
            compiled_sets.sweep();
        }
        compiled_sets.entries.insert(key, compiled);
    }
}

impl Cache for Grants {
    fn apply(&self, change: Change) {
        match change {
            Change::Rbac { tenant_id, version } => self.learn(tenant_id, version),
            // A disabled user holds nothing; messages may have been missed.
            Change::Subjects | Change::Everything => write(&self.compiled).entries.clear(),
            Change::ApiKey(_)
            | Change::SigningKeys
            | Change::Instances { .. }
            | Change::Modules { .. }
            | Change::Catalog
            | Change::Audit { .. } => {}
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
