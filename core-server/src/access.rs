//! The one authorization entry point: `require(principal, permission,
//! scope)`. Until RBAC decides, a built-in rule does (see
//! [`Holders`](crate::permissions::Holders)). Every refusal is audited.

use plinth_platform::{
    audit::{AuditDraft, Outcome},
    error::ApiError,
    identity::{Principal, PrincipalKind},
    store::{Store, audit_log},
};
use uuid::Uuid;

use crate::permissions::{Holders, Permission};

/// Where a permission is exercised: platform-wide or in one tenant (and
/// company), on a resource that may have an owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub tenant: Option<Uuid>,
    pub company: Option<Uuid>,
    pub owner: Option<Owner>,
}

/// Who a resource belongs to, for permissions its owner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    User(Uuid),
    ApiKey(Uuid),
}

impl Scope {
    pub fn platform() -> Scope {
        Scope::default()
    }

    pub fn tenant(tenant_id: Uuid) -> Scope {
        Scope {
            tenant: Some(tenant_id),
            ..Scope::default()
        }
    }

    /// The tenant, or platform-wide for `None`.
    pub fn tenant_or_platform(tenant_id: Option<Uuid>) -> Scope {
        Scope {
            tenant: tenant_id,
            ..Scope::default()
        }
    }

    pub fn owned_by(self, owner: Owner) -> Scope {
        Scope {
            owner: Some(owner),
            ..self
        }
    }
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

    /// Allows the call or answers PERMISSION_DENIED (audited).
    pub async fn require(
        &self,
        principal: &Principal,
        permission: Permission,
        scope: Scope,
    ) -> Result<(), ApiError> {
        if self.allows(principal, permission, scope).await? {
            return Ok(());
        }
        self.record_denial(principal, permission, scope).await?;
        Err(ApiError::PermissionDenied {
            permission: permission.name.to_owned(),
        })
    }

    /// [`Access::require`] for a resource looked up by id: a refusal is
    /// audited the same, but answered NOT_FOUND, so that ids of other
    /// tenants cannot be probed for existence.
    pub async fn require_visible(
        &self,
        principal: &Principal,
        permission: Permission,
        scope: Scope,
        resource_type: &'static str,
    ) -> Result<(), ApiError> {
        match self.require(principal, permission, scope).await {
            Err(ApiError::PermissionDenied { .. }) => Err(ApiError::NotFound { resource_type }),
            other => other,
        }
    }

    async fn allows(
        &self,
        principal: &Principal,
        permission: Permission,
        scope: Scope,
    ) -> Result<bool, ApiError> {
        if permission.owner_holds && scope.owner.is_some_and(|owner| owns(principal, owner)) {
            return Ok(true);
        }
        if is_platform_admin(principal) {
            return Ok(true);
        }
        let Some(tenant_id) = scope.tenant else {
            return Ok(false);
        };
        let key_sees_tenant = principal
            .api_key
            .as_ref()
            .is_some_and(|key| key.tenant_id.is_none_or(|scope| scope == tenant_id));
        let user_of_tenant = principal
            .user
            .as_ref()
            .is_some_and(|user| user.tenant_id == tenant_id);
        Ok(match permission.holders {
            Holders::PlatformAdmins => false,
            Holders::TenantKeys => key_sees_tenant,
            Holders::TenantAdmins => self.administers(principal, tenant_id).await?,
            Holders::TenantMembers => match principal.kind() {
                PrincipalKind::User | PrincipalKind::ModuleForUser => user_of_tenant,
                PrincipalKind::Operator | PrincipalKind::Module => key_sees_tenant,
                PrincipalKind::Anonymous => false,
            },
        })
    }

    /// A tenant-scoped operator key of the tenant, or a tenant-admin user of
    /// it (alone or through a module acting for it).
    async fn administers(&self, principal: &Principal, tenant_id: Uuid) -> Result<bool, ApiError> {
        Ok(
            match (principal.kind(), &principal.user, &principal.api_key) {
                (PrincipalKind::Operator, _, Some(key)) => key.tenant_id == Some(tenant_id),
                (PrincipalKind::User | PrincipalKind::ModuleForUser, Some(user), _) => {
                    user.tenant_id == tenant_id
                        && self.store.rbac.is_tenant_admin(user.user_id).await?
                }
                _ => false,
            },
        )
    }

    /// Records the refusal in the caller's own chain (its tenant's, else the
    /// platform's), so probing unknown tenants creates no chains.
    async fn record_denial(
        &self,
        principal: &Principal,
        permission: Permission,
        scope: Scope,
    ) -> Result<(), ApiError> {
        let mut denial = AuditDraft::new(
            principal.actor(),
            "access.denied",
            "permission",
            permission.name,
        )
        .in_tenant(principal.tenant_scope())
        .with_request_id(&principal.request_id)
        .with_details(serde_json::json!({
            "target_tenant_id": scope.tenant,
            "target_company_id": scope.company,
        }));
        denial.outcome = Outcome::Denied;
        let mut tx = self.store.begin().await?;
        audit_log::append(&mut tx, denial).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn owns(principal: &Principal, owner: Owner) -> bool {
    match owner {
        Owner::User(user_id) => principal
            .user
            .as_ref()
            .is_some_and(|user| user.user_id == user_id),
        // A key acting for a user acts as the user, not as itself.
        Owner::ApiKey(key_id) => {
            principal.user.is_none()
                && principal
                    .api_key
                    .as_ref()
                    .is_some_and(|key| key.key_id == key_id)
        }
    }
}

/// An operator key without tenant scope, or a user of the platform tenant.
pub fn is_platform_admin(principal: &Principal) -> bool {
    let platform_operator_key = principal.kind() == PrincipalKind::Operator
        && principal
            .api_key
            .as_ref()
            .is_some_and(|key| key.tenant_id.is_none());
    let super_admin = principal
        .user
        .as_ref()
        .is_some_and(|user| user.platform_admin);
    platform_operator_key || super_admin
}
