//! Administration of API keys: who may create, list, rotate and revoke.

use std::sync::Arc;

use plinth_platform::{
    error::ApiError,
    identity::{
        Principal,
        api_keys::{ApiKeys, IssuedApiKey, NewApiKey},
    },
    invalidation::{Change, Invalidator},
    store::{ApiKeyFilter, ApiKeyRecord, StoreError},
};
use uuid::Uuid;

use crate::{
    access::{Access, Need},
    listing::PageRequest,
};

/// Keys scoped to a tenant are administered by that tenant's admins, the
/// others by platform admins.
fn need_for(tenant_id: Option<Uuid>) -> Need {
    tenant_id.map_or(Need::PlatformAdmin, Need::TenantAdmin)
}

#[derive(Clone)]
pub struct KeyAdmin {
    keys: Arc<ApiKeys>,
    access: Access,
    invalidator: Arc<Invalidator>,
}

impl KeyAdmin {
    pub fn new(keys: Arc<ApiKeys>, access: Access, invalidator: Arc<Invalidator>) -> KeyAdmin {
        KeyAdmin {
            keys,
            access,
            invalidator,
        }
    }

    pub async fn create(
        &self,
        principal: &Principal,
        new_key: NewApiKey,
    ) -> Result<IssuedApiKey, ApiError> {
        self.access
            .require(
                principal,
                need_for(new_key.tenant_id),
                "plinth:api_key:create",
            )
            .await?;
        Ok(self.keys.create(new_key, principal.actor()).await?)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        filter: ApiKeyFilter,
        page: PageRequest,
    ) -> Result<(Vec<ApiKeyRecord>, String), ApiError> {
        self.access
            .require(principal, need_for(filter.tenant_id), "plinth:api_key:list")
            .await?;
        let rows = self.keys.store().list(&filter, page.store_page()).await?;
        Ok(page.finish(rows, |key| key.id))
    }

    pub async fn rotate(
        &self,
        principal: &Principal,
        key_id: Uuid,
        grace: chrono::Duration,
    ) -> Result<IssuedApiKey, ApiError> {
        self.require_manageable(principal, key_id, "plinth:api_key:rotate")
            .await?;
        let rotated = self
            .keys
            .rotate(key_id, grace, principal.actor())
            .await
            .map_err(not_found_as_key)?;
        self.invalidator.changed(Change::ApiKey(key_id)).await;
        Ok(rotated)
    }

    pub async fn revoke(
        &self,
        principal: &Principal,
        key_id: Uuid,
    ) -> Result<ApiKeyRecord, ApiError> {
        self.require_manageable(principal, key_id, "plinth:api_key:revoke")
            .await?;
        let revoked = self
            .keys
            .revoke(key_id, principal.actor())
            .await
            .map_err(not_found_as_key)?;
        self.invalidator.changed(Change::ApiKey(key_id)).await;
        Ok(revoked)
    }

    /// A key manages itself; otherwise its administrators do.
    async fn require_manageable(
        &self,
        principal: &Principal,
        key_id: Uuid,
        permission: &str,
    ) -> Result<(), ApiError> {
        let key = self
            .keys
            .store()
            .get(key_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "api_key",
            })?;
        let itself = principal.user.is_none()
            && principal
                .api_key
                .as_ref()
                .is_some_and(|own| own.key_id == key_id);
        if itself {
            return Ok(());
        }
        self.access
            .require_visible(principal, need_for(key.tenant_id), permission, "api_key")
            .await
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
