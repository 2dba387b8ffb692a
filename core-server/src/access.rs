//! Who may call what, until RBAC lands: operator keys and platform super
//! admins may do everything; a tenant admin manages its own tenant's
//! companies and users; module keys and a tenant's users may read their
//! tenant; nobody else may write. Every refusal is audited.

use plinth_platform::{
    audit::{AuditDraft, Outcome},
    error::ApiError,
    identity::Principal,
    store::Store,
};
use uuid::Uuid;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Platform-wide administration.
    PlatformAdmin,
    /// Administration of one tenant (its companies and users).
    TenantAdmin(Uuid),
    /// Reading one tenant's data.
    TenantRead(Uuid),
}

/// Decides and records access.
#[derive(Clone)]
pub struct Access {
    store: Store,
}

impl Access {
    pub fn new(store: Store) -> Access {
        Access { store }
    }

    /// Allows the call or answers PERMISSION_DENIED (audited) naming
    /// `permission`, the `plinth:` permission RBAC will check instead.
    pub async fn require(
        &self,
        principal: &Principal,
        need: Need,
        permission: &str,
    ) -> Result<(), ApiError> {
        if self.allows(principal, need).await? {
            return Ok(());
        }
        self.record_denial(principal, need, permission).await?;
        Err(ApiError::PermissionDenied {
            permission: permission.to_owned(),
        })
    }

    /// Whether the caller may see a resource of `tenant_id`. A refusal is
    /// audited like any other, but the caller is told NOT_FOUND so that ids of
    /// other tenants cannot be probed for existence.
    pub async fn require_visible(
        &self,
        principal: &Principal,
        need: Need,
        permission: &str,
        resource_type: &'static str,
    ) -> Result<(), ApiError> {
        match self.require(principal, need, permission).await {
            Err(ApiError::PermissionDenied { .. }) => Err(ApiError::NotFound { resource_type }),
            other => other,
        }
    }

    /// Records the refusal in the caller's own chain (its tenant's, else the
    /// platform's), so probing unknown tenants creates no chains.
    async fn record_denial(
        &self,
        principal: &Principal,
        need: Need,
        permission: &str,
    ) -> Result<(), ApiError> {
        let caller_tenant = principal
            .user
            .as_ref()
            .map(|user| user.tenant_id)
            .or(principal.api_key.as_ref().and_then(|key| key.tenant_id));
        let target_tenant = match need {
            Need::PlatformAdmin => None,
            Need::TenantAdmin(tenant_id) | Need::TenantRead(tenant_id) => {
                Some(tenant_id.to_string())
            }
        };
        let mut denial =
            AuditDraft::new(principal.actor(), "access.denied", "permission", permission)
                .in_tenant(caller_tenant)
                .with_request_id(&principal.request_id)
                .with_details(serde_json::json!({ "target_tenant_id": target_tenant }));
        denial.outcome = Outcome::Denied;
        self.store.audit.record(vec![denial]).await?;
        Ok(())
    }

    async fn allows(&self, principal: &Principal, need: Need) -> Result<bool, ApiError> {
        if is_platform_admin(principal) {
            return Ok(true);
        }
        let key = principal.api_key.as_ref();
        let user = principal.user.as_ref();
        Ok(match need {
            Need::PlatformAdmin => false,
            Need::TenantAdmin(tenant_id) => {
                let tenant_operator_key = key
                    .is_some_and(|key| key.module_id.is_none() && key.tenant_id == Some(tenant_id));
                let tenant_admin = match user {
                    Some(user) if user.tenant_id == tenant_id => {
                        self.store.users.is_tenant_admin(user.user_id).await?
                    }
                    _ => false,
                };
                tenant_operator_key || tenant_admin
            }
            Need::TenantRead(tenant_id) => {
                let key_sees_tenant =
                    key.is_some_and(|key| key.tenant_id.is_none_or(|scope| scope == tenant_id));
                let user_of_tenant = user.is_some_and(|user| user.tenant_id == tenant_id);
                match (key, user) {
                    (_, Some(_)) => user_of_tenant,
                    (Some(_), None) => key_sees_tenant,
                    (None, None) => false,
                }
            }
        })
    }
}

/// An operator key without tenant scope, or a user of the platform tenant.
pub fn is_platform_admin(principal: &Principal) -> bool {
    let platform_operator_key = principal.user.is_none()
        && principal
            .api_key
            .as_ref()
            .is_some_and(|key| key.module_id.is_none() && key.tenant_id.is_none());
    let super_admin = principal
        .user
        .as_ref()
        .is_some_and(|user| user.platform_admin);
    platform_operator_key || super_admin
}
