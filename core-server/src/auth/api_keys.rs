//! Administration of API keys: who may create, list, rotate and revoke,
//! and the bounds of their lifetimes.

use std::{ops::RangeInclusive, sync::Arc, time::Duration};

use plinth_platform::{
    clock,
    error::ApiError,
    identity::{
        Principal,
        api_keys::{self, IssuedApiKey, NewApiKey},
    },
    invalidation::{Change, Invalidator},
    rate_limits::RateLimit,
    store::{ApiKeyFilter, ApiKeyRecord, Store, StoreError, Tx},
};
use uuid::Uuid;

use crate::{
    access::{Access, Owner, Scope},
    listing::PageRequest,
    permissions::{API_KEY_CREATE, API_KEY_LIST, API_KEY_REVOKE, API_KEY_ROTATE},
    tenant::lock_writable,
};

/// How long a new key may live, when it expires at all: at least a minute,
/// at most ten years (so its expiry is a valid timestamp for every client).
pub const KEY_LIFETIME: RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(10 * 366 * 24 * 3600);

/// How long a rotated key's previous secret may keep working.
pub const ROTATION_GRACE: RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(7 * 24 * 3600);

/// The grace when none (or zero) is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Scopes a key may carry, and their length.
pub const MAX_SCOPES: usize = 32;
pub const MAX_SCOPE_CHARACTERS: usize = 100;
pub const MAX_NAME_CHARACTERS: usize = 100;

/// A key to create, as the caller asked for it.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub module_id: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub scopes: Vec<String>,
    /// Within [`KEY_LIFETIME`]; `None` never expires.
    pub lifetime: Option<Duration>,
    /// The key's own limit; `None` takes the server's default for keys.
    pub rate_limit: Option<RateLimit>,
}

/// A page of keys.
#[derive(Debug, Clone)]
pub struct KeyListing {
    pub filter: ApiKeyFilter,
    pub page: PageRequest,
}

/// A new secret for a key; the previous one works for `grace` (within
/// [`ROTATION_GRACE`]; `None` or zero means [`DEFAULT_GRACE`]).
#[derive(Debug, Clone)]
pub struct KeyRotation {
    pub id: Uuid,
    pub grace: Option<Duration>,
}

#[derive(Clone)]
pub struct KeyAdmin {
    store: Store,
    access: Access,
    invalidator: Arc<Invalidator>,
}

/// Keys scoped to a tenant are administered by that tenant's admins, the
/// others by platform admins; a key manages itself.
fn key_scope(key: &ApiKeyRecord) -> Scope {
    Scope::tenant_or_platform(key.tenant_id).owned_by(Owner::ApiKey(key.id))
}

impl KeyAdmin {
    pub fn new(store: Store, access: Access, invalidator: Arc<Invalidator>) -> KeyAdmin {
        KeyAdmin {
            store,
            access,
            invalidator,
        }
    }

    pub async fn create(
        &self,
        principal: &Principal,
        request: KeyRequest,
    ) -> Result<IssuedApiKey, ApiError> {
        self.access
            .require(
                principal,
                API_KEY_CREATE,
                Scope::tenant_or_platform(request.tenant_id),
            )
            .await?;
        if request.rate_limit.is_some() {
            self.require_platform_limits(principal).await?;
        }
        let expires_at = request
            .lifetime
            .map(|lifetime| {
                debug_assert!(KEY_LIFETIME.contains(&lifetime));
                chrono::Duration::from_std(lifetime).map(|lifetime| clock::now() + lifetime)
            })
            .transpose()
            .map_err(|_| ApiError::invalid_field("ttl", "is too long"))?;
        let new_key = NewApiKey {
            name: request.name,
            module_id: request.module_id,
            tenant_id: request.tenant_id,
            scopes: request.scopes,
            expires_at,
            rate_limit: request.rate_limit,
        };
        let mut tx = self.store.begin().await?;
        if let Some(tenant_id) = new_key.tenant_id {
            lock_writable(&mut tx, tenant_id).await?;
        }
        let issued =
            api_keys::insert_new(&mut tx, new_key, principal.actor(), &principal.request_id)
                .await?;
        tx.commit().await?;
        Ok(issued)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        listing: KeyListing,
    ) -> Result<(Vec<ApiKeyRecord>, String), ApiError> {
        let KeyListing { filter, page } = listing;
        self.access
            .require(
                principal,
                API_KEY_LIST,
                Scope::tenant_or_platform(filter.tenant_id),
            )
            .await?;
        let rows = self.store.api_keys.list(&filter, page.store_page()).await?;
        Ok(page.finish(rows, |key| key.id))
    }

    pub async fn rotate(
        &self,
        principal: &Principal,
        rotation: KeyRotation,
    ) -> Result<IssuedApiKey, ApiError> {
        let key_id = rotation.id;
        let key = self.manageable(principal, key_id, API_KEY_ROTATE).await?;
        let grace = rotation
            .grace
            .filter(|grace| !grace.is_zero())
            .unwrap_or(DEFAULT_GRACE);
        debug_assert!(ROTATION_GRACE.contains(&grace));
        let grace = chrono::Duration::from_std(grace).unwrap_or_default();
        self.change_key(key_id, async |tx| {
            if let Some(tenant_id) = key.tenant_id {
                lock_writable(tx, tenant_id).await?;
            }
            api_keys::rotate(tx, &key, grace, principal.actor(), &principal.request_id)
                .await
                .map_err(not_found_as_key)
        })
        .await
    }

    /// Revocation is always allowed, whatever the key's tenant's status.
    pub async fn revoke(
        &self,
        principal: &Principal,
        key_id: Uuid,
    ) -> Result<ApiKeyRecord, ApiError> {
        let key = self.manageable(principal, key_id, API_KEY_REVOKE).await?;
        self.change_key(key_id, async |tx| {
            api_keys::revoke(tx, &key, principal.actor(), &principal.request_id)
                .await
                .map_err(not_found_as_key)
        })
        .await
    }

    /// Sets or clears a key's own rate limit.
    pub async fn set_rate_limit(
        &self,
        principal: &Principal,
        key_id: Uuid,
        limit: Option<RateLimit>,
    ) -> Result<ApiKeyRecord, ApiError> {
        self.require_platform_limits(principal).await?;
        let key = self.stored(key_id).await?;
        self.change_key(key_id, async |tx| {
            api_keys::set_rate_limit(tx, &key, limit, principal.actor(), &principal.request_id)
                .await
                .map_err(not_found_as_key)
        })
        .await
    }

    /// Commits `change` to a key, then evicts the key from every replica's
    /// cache.
    async fn change_key<T>(
        &self,
        key_id: Uuid,
        change: impl AsyncFnOnce(&mut Tx) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut tx = self.store.begin().await?;
        let changed = change(&mut tx).await?;
        tx.commit().await?;
        self.invalidator.changed(Change::ApiKey(key_id)).await;
        Ok(changed)
    }

    /// Limits are the platform's to give: a tenant admin could otherwise
    /// lift its own keys past what the deployment allows.
    async fn require_platform_limits(&self, principal: &Principal) -> Result<(), ApiError> {
        self.access
            .require(principal, API_KEY_CREATE, Scope::tenant_or_platform(None))
            .await
    }

    /// The key, or NotFound.
    async fn stored(&self, key_id: Uuid) -> Result<ApiKeyRecord, ApiError> {
        self.store
            .api_keys
            .get(key_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "api_key",
            })
    }

    async fn manageable(
        &self,
        principal: &Principal,
        key_id: Uuid,
        permission: crate::permissions::Permission,
    ) -> Result<ApiKeyRecord, ApiError> {
        let key = self.stored(key_id).await?;
        self.access
            .require_visible(principal, permission, key_scope(&key), "api_key")
            .await?;
        Ok(key)
    }
}

fn not_found_as_key(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::NotFound {
            resource_type: "api_key",
        },
        other => other.into(),
    }
}
