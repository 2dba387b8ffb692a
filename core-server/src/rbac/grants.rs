//! Effective grants: what one user holds in its tenant (tenant-wide, or in
//! one company), compiled into a [`Matcher`] and cached per replica.
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

use chrono::{DateTime, Utc};
use plinth_platform::{
    clock,
    error::ApiError,
    invalidation::{Cache, Change},
    permission::{Grant, Matcher},
    store::{
        Store,
        rbac::{BindingScope, GrantRow},
        tenants::PLATFORM_TENANT_ID,
    },
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::permissions::MEMBERSHIP;

/// How long a compiled set serves without news of a change: the bound on
/// staleness when Redis (and so other replicas' messages) is unreachable.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// How long a request that names a newer version than this replica knows
/// waits for the news before reading the store.
const CATCH_UP_WAIT: Duration = Duration::from_millis(100);

/// Compiled sets kept; past it, stale ones go, then all.
const MAX_ENTRIES: usize = 100_000;

/// How fresh an answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Whatever this replica has cached.
    Cached,
    /// At least this RBAC version of the tenant.
    AtLeast(i64),
    /// The store's latest version.
    Latest,
}

/// Why a user holds a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A role bound to the user (the row names binding and roles).
    Binding(Arc<GrantRow>),
    /// What every member of the tenant holds.
    Membership,
    /// A super admin's `plinth:*`.
    PlatformAdmin,
}

/// What one user holds in one scope, at one version.
#[derive(Debug)]
pub struct Effective {
    pub version: i64,
    pub grants: Matcher<Source>,
    compiled_at: Instant,
    /// The earliest expiry among the bindings used.
    valid_until: Option<DateTime<Utc>>,
}

impl Effective {
    fn serves(&self, known_version: i64, now: DateTime<Utc>) -> bool {
        self.version >= known_version
            && self.compiled_at.elapsed() < MAX_AGE
            && self.valid_until.is_none_or(|until| now < until)
    }
}

/// The per-replica cache of effective grants.
pub struct Grants {
    store: Store,
    compiled: RwLock<HashMap<(Uuid, BindingScope), Arc<Effective>>>,
    known_versions: RwLock<HashMap<Uuid, i64>>,
    news: Notify,
}

impl Grants {
    pub fn new(store: Store) -> Grants {
        Grants {
            store,
            compiled: RwLock::default(),
            known_versions: RwLock::default(),
            news: Notify::new(),
        }
    }

    /// The newest RBAC version of the tenant this replica knows of.
    fn known_version(&self, tenant_id: Uuid) -> i64 {
        read(&self.known_versions)
            .get(&tenant_id)
            .copied()
            .unwrap_or(0)
    }

    /// Records news of a version (never going back).
    pub fn learn(&self, tenant_id: Uuid, version: i64) {
        let mut known = write(&self.known_versions);
        let entry = known.entry(tenant_id).or_insert(version);
        if *entry < version {
            *entry = version;
        }
        drop(known);
        self.news.notify_waiters();
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
                    self.catch_up(tenant_id, version).await;
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
        let now = clock::now();
        if let Some(cached) = read(&self.compiled).get(&(user_id, scope))
            && cached.serves(required, now)
        {
            return Ok(cached.clone());
        }
        let compiled = Arc::new(self.compile(tenant_id, user_id, scope, now).await?);
        if compiled.version < required {
            return Err(ApiError::RbacVersionBehind {
                retry_after: CATCH_UP_WAIT,
            });
        }
        self.keep((user_id, scope), compiled.clone());
        Ok(compiled)
    }

    /// Waits up to [`CATCH_UP_WAIT`] for news of `version`.
    async fn catch_up(&self, tenant_id: Uuid, version: i64) {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let news = self.news.notified();
            if self.known_version(tenant_id) >= version {
                return;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return;
            }
        }
    }

    async fn compile(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        scope: BindingScope,
        now: DateTime<Utc>,
    ) -> Result<Effective, ApiError> {
        let compiled_at = Instant::now();
        let read = self
            .store
            .rbac
            .user_grants(tenant_id, user_id, scope, now)
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
        let mut grants = Matcher::default();
        let mut valid_until = None;
        if read.user_active {
            if tenant_id == PLATFORM_TENANT_ID {
                grants.insert(Grant::Prefix("plinth:"), Source::PlatformAdmin);
            }
            for permission in MEMBERSHIP {
                grants.insert(Grant::Permission(permission.name), Source::Membership);
            }
            for row in read.grants {
                valid_until = earliest(valid_until, row.expires_at);
                // Stored grants were valid when written; anything else is
                // skipped rather than trusted.
                let row = Arc::new(row);
                if let Ok(grant) = Grant::parse(&row.permission) {
                    grants.insert(grant, Source::Binding(row.clone()));
                }
            }
        }
        Ok(Effective {
            version: read.version,
            grants,
            compiled_at,
            valid_until,
        })
    }

    fn keep(&self, key: (Uuid, BindingScope), compiled: Arc<Effective>) {
        let mut entries = write(&self.compiled);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.compiled_at.elapsed() < MAX_AGE);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, compiled);
    }
}

fn earliest(current: Option<DateTime<Utc>>, next: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (current, next) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Cache for Grants {
    fn apply(&self, change: Change) {
        match change {
            Change::Rbac { tenant_id, version } => self.learn(tenant_id, version),
            // A disabled user holds nothing; messages may have been missed.
            Change::Subjects | Change::Everything => write(&self.compiled).clear(),
            Change::ApiKey(_) | Change::SigningKeys => {}
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
