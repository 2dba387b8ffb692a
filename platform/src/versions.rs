//! The newest version of a per-tenant counter (RBAC, modules) that this
//! replica knows of, learned from its own writes, other replicas' messages
//! and its store reads, and how fresh an answer must be against it.

use std::{collections::HashMap, sync::RwLock, time::Duration};

use foldhash::fast::RandomState;
use tokio::sync::Notify;
use uuid::Uuid;

/// How fresh an answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Whatever this replica has cached.
    Cached,
    /// At least this version of the tenant's counter.
    AtLeast(i64),
    /// The store's latest version.
    Latest,
}

/// How long a request that names a newer version than this replica knows
/// waits for the news before reading the store.
pub const CATCH_UP_WAIT: Duration = Duration::from_millis(100);

/// Known versions by tenant, never going back.
#[derive(Default)]
pub struct KnownVersions {
    versions: RwLock<HashMap<Uuid, i64, RandomState>>,
    news: Notify,
}

impl KnownVersions {
    /// The newest version of the tenant known here (0 before any).
    pub fn known(&self, tenant_id: Uuid) -> i64 {
        self.versions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&tenant_id)
            .copied()
            .unwrap_or(0)
    }

    /// Records news of a version (never going back).
    pub fn learn(&self, tenant_id: Uuid, version: i64) {
        let mut versions = self
            .versions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = versions.entry(tenant_id).or_insert(version);
        if *entry < version {
            *entry = version;
        }
        drop(versions);
        self.news.notify_waiters();
    }

    /// Waits up to [`CATCH_UP_WAIT`] for news of `version`.
    pub async fn catch_up(&self, tenant_id: Uuid, version: i64) {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let news = self.news.notified();
            if self.known(tenant_id) >= version {
                return;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return;
            }
        }
    }
}
