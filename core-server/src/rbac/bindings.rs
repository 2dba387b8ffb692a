//! Bindings: a user holding a role tenant-wide or in one company, maybe
//! until a time. The database keeps role, user and company inside the
//! binding's tenant; nobody binds a role granting more than they hold
//! there; the last permanent tenant admin stays.

use chrono::{DateTime, Utc};
use plinth_platform::{
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        StoreError, Tx,
        rbac::{self, BindingFilter, RoleBinding},
    },
};
use uuid::Uuid;

use super::{MAX_BINDINGS_PER_USER, Rbac, rbac_event, roles::grants_of_role};
use crate::{
    access::{Owner, Scope},
    listing::PageRequest,
    permissions::{ROLE_ASSIGN, ROLE_BINDING_READ},
    tenant::lock_writable,
};

#[derive(Debug, Clone)]
pub struct NewBinding {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub company_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct BindingListing {
    pub tenant_id: Uuid,
    pub filter: BindingFilter,
    pub page: PageRequest,
}

fn binding_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict => ApiError::AlreadyExists {
            resource_type: "role_binding",
            field: "user_id",
        },
        other => other.into(),
    }
}

/// Refuses a change after which the tenant, which had a permanent admin,
/// has none; `remaining` counts them as if the change were made.
pub async fn keep_last_admin(
    tx: &mut Tx,
    tenant_id: Uuid,
    remaining: impl AsyncFnOnce(&mut Tx) -> Result<i64, StoreError>,
) -> Result<(), ApiError> {
    let before = rbac::count_permanent_admins(tx, tenant_id, None, None).await?;
    if before > 0 && remaining(tx).await? == 0 {
        return Err(ApiError::LastTenantAdmin);
    }
    Ok(())
}

impl Rbac {
    pub async fn assign(
        &self,
        principal: &Principal,
        new: NewBinding,
    ) -> Result<(RoleBinding, String), ApiError> {
        let scope = Scope::tenant(new.tenant_id).in_company(new.company_id);
        self.access
            .require_visible(principal, ROLE_ASSIGN, scope, "tenant")
            .await?;
        let held = self.access.held(principal, scope).await?;
        let binding = RoleBinding {
            id: Uuid::now_v7(),
            tenant_id: new.tenant_id,
            user_id: new.user_id,
            role_id: new.role_id,
            company_id: new.company_id,
            created_at: clock::now(),
            expires_at: new.expires_at,
        };
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, binding.tenant_id).await?;
        let (role, grants) = grants_of_role(&mut tx, binding.tenant_id, binding.role_id).await?;
        held.forbid_escalation(grants.iter().map(String::as_str))?;
        let bound = rbac::count_user_bindings(&mut tx, binding.user_id).await?;
        if bound >= MAX_BINDINGS_PER_USER {
            return Err(ApiError::FailedPrecondition {
                resource_type: "user",
                state: format!("at its limit of {MAX_BINDINGS_PER_USER} role bindings"),
            });
        }
        let event = rbac_event(
            principal,
            "rbac.role.bound",
            "role_binding",
            binding.id,
            binding.tenant_id,
        )
        .with_details(serde_json::json!({
            "user_id": binding.user_id,
            "role_id": role.id,
            "role_key": role.key,
            "company_id": binding.company_id,
            "expires_at": binding.expires_at,
        }));
        rbac::bind(&mut tx, &binding, event)
            .await
            .map_err(binding_taken)?;
        let version = rbac::bump_version(&mut tx, binding.tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(binding.tenant_id, version).await;
        Ok((binding, token))
    }

    pub async fn unassign(&self, principal: &Principal, id: Uuid) -> Result<String, ApiError> {
        let found = self
            .store
            .rbac
            .binding(id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "role_binding",
            })?;
        let scope = Scope::tenant(found.tenant_id).in_company(found.company_id);
        self.access
            .require_visible(principal, ROLE_ASSIGN, scope, "role_binding")
            .await?;
        let tenant_id = found.tenant_id;
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, tenant_id).await?;
        let binding = rbac::binding(&mut tx, id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "role_binding",
            })?;
        keep_last_admin(&mut tx, tenant_id, async |tx| {
            rbac::count_permanent_admins(tx, tenant_id, Some(id), None).await
        })
        .await?;
        let event = rbac_event(
            principal,
            "rbac.role.unbound",
            "role_binding",
            id,
            tenant_id,
        )
        .with_details(serde_json::json!({
            "user_id": binding.user_id,
            "role_id": binding.role_id,
            "company_id": binding.company_id,
        }));
        rbac::unbind(&mut tx, id, event).await?;
        let version = rbac::bump_version(&mut tx, tenant_id).await?;
        tx.commit().await?;
        Ok(self.committed(tenant_id, version).await)
    }

    pub async fn list_bindings(
        &self,
        principal: &Principal,
        listing: BindingListing,
    ) -> Result<(Vec<RoleBinding>, String), ApiError> {
        let BindingListing {
            tenant_id,
            filter,
            page,
        } = listing;
        let mut scope = Scope::tenant(tenant_id).in_company(filter.company_id);
        if let Some(user_id) = filter.user_id {
            scope = scope.owned_by(Owner::User(user_id));
        }
        self.access
            .require_visible(principal, ROLE_BINDING_READ, scope, "tenant")
            .await?;
        let rows = self
            .store
            .rbac
            .list_bindings(tenant_id, filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |binding| binding.id))
    }
}
