//! Whether tenants admit their own callers, as the identity layer asks on
//! every call of a tenant-scoped key: cached briefly, cleared by changes.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::{
    invalidation::{Cache, Change},
    store::{
        StoreError, TenantStore,
        tenants::{TenantRecord, TenantStatus},
    },
};

/// How long a tenant's status is trusted before it is read again (changes
/// made on this replica, or published by another, clear it at once).
const STATE_TTL: Duration = Duration::from_secs(2);

/// Tenants remembered; the cache is emptied when it grows past this.
const MAX_CACHED: usize = 100_000;

pub struct TenantStates {
    tenants: Arc<dyn TenantStore>,
    cached: RwLock<HashMap<Uuid, (Option<TenantStatus>, Instant)>>,
}

impl TenantStates {
    pub fn new(tenants: Arc<dyn TenantStore>) -> TenantStates {
        TenantStates {
            tenants,
            cached: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant's status, `None` for a tenant that does not exist.
    pub async fn status(&self, tenant_id: Uuid) -> Result<Option<TenantStatus>, StoreError> {
        let cached = self
            .cached
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&tenant_id)
            .filter(|(_, checked_at)| checked_at.elapsed() < STATE_TTL)
            .map(|(status, _)| *status);
        if let Some(status) = cached {
            return Ok(status);
        }
        let status = self
            .tenants
            .get_tenant(tenant_id)
            .await?
            .map(|tenant: TenantRecord| tenant.status);
        let mut cached = self
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.len() >= MAX_CACHED {
            cached.clear();
        }
        cached.insert(tenant_id, (status, Instant::now()));
        Ok(status)
    }

    fn forget(&self) {
        self.cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

impl Cache for TenantStates {
    fn apply(&self, change: Change) {
        if matches!(change, Change::Subjects | Change::Everything) {
            self.forget();
        }
    }
}
