//! Tenants themselves: creation, reading, limits and the status lifecycle.

use plinth_platform::{
    clock,
    error::ApiError,
    identity::Principal,
    invalidation::Change,
    store::{
        StoreError,
        tenants::{self, PLATFORM_TENANT_ID, TenantFilter, TenantRecord, TenantStatus},
    },
};
use uuid::Uuid;

use super::{Tenants, tenant_event};
use crate::{
    access::Scope,
    listing::PageRequest,
    permissions::{TENANT_CREATE, TENANT_LIST, TENANT_READ, TENANT_SET_STATUS, TENANT_UPDATE},
    rbac::seed_tenant,
};

/// A tenant's caps; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_users: i32,
    pub max_companies: i32,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub code: String,
    pub name: String,
    pub limits: Limits,
    pub industry: String,
    pub provisioning: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub limits: Option<Limits>,
    pub industry: Option<String>,
}

/// Longest tenant name, in characters.
pub const MAX_TENANT_NAME: usize = 200;
/// Longest reason given for a status change, in characters.
pub const MAX_REASON: usize = 500;

/// Changes to one tenant.
#[derive(Debug, Clone)]
pub struct TenantUpdate {
    pub id: Uuid,
    pub changes: TenantChanges,
}

/// A move through the lifecycle, with the reason recorded in the audit log.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub id: Uuid,
    pub status: TenantStatus,
    pub reason: String,
}

/// A page of tenants.
#[derive(Debug, Clone)]
pub struct TenantListing {
    pub filter: TenantFilter,
    pub page: PageRequest,
}

#[derive(Debug, Clone)]
pub enum TenantKey {
    Id(Uuid),
    Code(String),
}

pub(super) fn code_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict => ApiError::AlreadyExists {
            resource_type: "tenant",
            field: "code",
        },
        other => other.into(),
    }
}

impl Tenants {
    pub async fn create(
        &self,
        principal: &Principal,
        new: NewTenant,
    ) -> Result<TenantRecord, ApiError> {
        self.access
            .require(principal, TENANT_CREATE, Scope::platform())
            .await?;
        let status = if new.provisioning {
            TenantStatus::Provisioning
        } else {
            TenantStatus::Active
        };
        let tenant = TenantRecord {
            max_users: new.limits.max_users,
            max_companies: new.limits.max_companies,
            industry: new.industry,
            ..TenantRecord::new(new.code, new.name, status)
        };
        let mut tx = self.store.begin().await?;
        tenants::insert(
            &mut tx,
            &tenant,
            tenant_event(principal, "tenant.created", &tenant),
        )
        .await
        .map_err(code_taken)?;
        seed_tenant(&mut tx, principal, &tenant, None).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    pub async fn get(
        &self,
        principal: &Principal,
        key: TenantKey,
    ) -> Result<TenantRecord, ApiError> {
        let found = match &key {
            TenantKey::Id(id) => self.store.tenants.get_tenant(*id).await?,
            TenantKey::Code(code) => self.store.tenants.get_tenant_by_code(code).await?,
        };
        let tenant = found.ok_or(ApiError::NotFound {
            resource_type: "tenant",
        })?;
        self.access
            .require_visible(principal, TENANT_READ, Scope::tenant(tenant.id), "tenant")
            .await?;
        Ok(tenant)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        listing: TenantListing,
    ) -> Result<(Vec<TenantRecord>, String), ApiError> {
        let TenantListing { filter, page } = listing;
        self.access
            .require(principal, TENANT_LIST, Scope::platform())
            .await?;
        let rows = self
            .store
            .tenants
            .list_tenants(&filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |tenant| tenant.id))
    }

    pub async fn update(
        &self,
        principal: &Principal,
        update: TenantUpdate,
    ) -> Result<TenantRecord, ApiError> {
        let TenantUpdate { id, changes } = update;
        self.access
            .require(principal, TENANT_UPDATE, Scope::platform())
            .await?;
        let mut tx = self.store.begin().await?;
        let mut tenant = tenants::lock(&mut tx, id).await?;
        if let Some(name) = changes.name {
            tenant.name = name;
        }
        if let Some(limits) = changes.limits {
            tenant.max_users = limits.max_users;
            tenant.max_companies = limits.max_companies;
        }
        if let Some(industry) = changes.industry {
            tenant.industry = industry;
        }
        tenant.updated_at = clock::now();
        let audit = tenant_event(principal, "tenant.updated", &tenant);
        tenants::update(&mut tx, &tenant, audit).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// Moves the tenant through its lifecycle (deletion included); the
    /// platform tenant never moves.
    pub async fn set_status(
        &self,
        principal: &Principal,
        change: StatusChange,
    ) -> Result<TenantRecord, ApiError> {
        let StatusChange {
            id,
            status: next,
            reason,
        } = change;
        self.access
            .require(principal, TENANT_SET_STATUS, Scope::platform())
            .await?;
        let mut tx = self.store.begin().await?;
        let mut tenant = tenants::lock(&mut tx, id).await?;
        let current = tenant.status;
        if current == next {
            return Ok(tenant);
        }
        if id == PLATFORM_TENANT_ID || !current.may_become(next) {
            return Err(ApiError::FailedPrecondition {
                resource_type: "tenant",
                state: format!("{} and cannot become {}", current.as_str(), next.as_str()),
            });
        }
        tenant.status = next;
        tenant.updated_at = clock::now();
        let action = if next == TenantStatus::Deleted {
            "tenant.deleted"
        } else {
            "tenant.status_changed"
        };
        let audit = tenant_event(principal, action, &tenant).with_details(serde_json::json!({
            "from": current.as_str(),
            "to": next.as_str(),
            "reason": reason,
        }));
        tenants::update(&mut tx, &tenant, audit).await?;
        tx.commit().await?;
        // The tenant's tokens and keys stop (or start) working everywhere.
        self.invalidator.changed(Change::Subjects).await;
        Ok(tenant)
    }
}
