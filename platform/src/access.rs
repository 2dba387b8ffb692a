//! The one authorization entry point: `require(principal, permission,
//! scope)`, decided by RBAC. What each kind of caller holds (documented in
//! the RbacService proto):
//! - platform admins (operator keys without a tenant, super admins):
//!   `plinth:*` everywhere, platform-wide calls included;
//! - an operator key scoped to a tenant: `*` in that tenant;
//! - a module key: [`MODULE_KEY`] in the tenants of its scope that hold its
//!   module (enabling, provisioning or enabled it), nothing in others;
//! - a user: its effective grants (see [`crate::grants`]) in its own
//!   tenant; a module acting for a user holds both, where its module is
//!   held.
//!
//! Every refusal is audited, and so is a super admin's use of `plinth:*` in
//! another tenant.

use std::sync::{Arc, LazyLock};

use crate::{
    audit::{AuditDraft, Outcome},
    enablement::Enablement,
    error::ApiError,
    identity::{Principal, PrincipalKind},
    permission::{Grant, Matcher},
    store::{Store, audit_log, rbac::BindingScope},
    versions::Freshness,
};
use uuid::Uuid;

use crate::{
    grants::{Effective, Grants},
    permission::catalog::{MODULE_KEY, Permission, ROLE_ESCALATE},
};

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

    pub fn in_company(self, company_id: Option<Uuid>) -> Scope {
        Scope {
            company: company_id,
            ..self
        }
    }

    pub fn owned_by(self, owner: Owner) -> Scope {
        Scope {
            owner: Some(owner),
            ..self
        }
    }

    fn bindings(self) -> BindingScope {
        self.company
            .map_or(BindingScope::Tenant, BindingScope::Company)
    }
}

static EVERYTHING: LazyLock<Matcher<()>> =
    LazyLock::new(|| [Grant::Everything].into_iter().collect());
static CORE: LazyLock<Matcher<()>> =
    LazyLock::new(|| [Grant::Prefix("plinth:")].into_iter().collect());
static MODULE_KEY_GRANTS: LazyLock<Matcher<()>> = LazyLock::new(|| {
    MODULE_KEY
        .iter()
        .map(|permission| Grant::Permission(permission.name))
        .collect()
});

/// One set of grants a caller holds in a scope.
enum HeldSet<'a> {
    Fixed(&'static Matcher<()>),
    Compiled(&'a Effective),
}

impl HeldSet<'_> {
    fn allows(&self, permission: &str) -> bool {
        match self {
            HeldSet::Fixed(matcher) => matcher.allows(permission),
            HeldSet::Compiled(effective) => effective.role_set.grants.allows(permission),
        }
    }

    fn covers(&self, grant: Grant<'_>) -> bool {
        match self {
            HeldSet::Fixed(matcher) => matcher.covers(grant),
            HeldSet::Compiled(effective) => effective.role_set.grants.covers(grant),
        }
    }
}

/// Everything a caller holds in one scope: at most a fixed set (of its key
/// or its platform role) and a compiled one (of its user).
pub struct Held {
    fixed: Option<&'static Matcher<()>>,
    compiled: Option<Arc<Effective>>,
    /// Held only as a super admin in another tenant: its use is audited.
    as_super_admin_of: Option<Uuid>,
}

impl Held {
    fn sets(&self) -> impl Iterator<Item = HeldSet<'_>> {
        let fixed = self.fixed.map(HeldSet::Fixed);
        let compiled = self.compiled.as_deref().map(HeldSet::Compiled);
        fixed.into_iter().chain(compiled)
    }

    pub fn allows(&self, permission: &str) -> bool {
        self.sets().any(|set| set.allows(permission))
    }

    /// Refuses a role or binding that would grant more than this holds,
    /// unless this holds `plinth:role:escalate`.
    pub fn forbid_escalation<'a>(
        &self,
        mut grants: impl Iterator<Item = &'a str>,
    ) -> Result<(), ApiError> {
        if self.allows(ROLE_ESCALATE.name) {
            return Ok(());
        }
        let uncovered = grants.find(|text| {
            Grant::parse(text).is_ok_and(|grant| !self.sets().any(|set| set.covers(grant)))
        });
        match uncovered {
            Some(permission) => Err(ApiError::PrivilegeEscalation {
                permission: permission.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// Decides and records access.
#[derive(Clone)]
pub struct Access {
    store: Store,
    grants: Arc<Grants>,
    enablement: Arc<Enablement>,
}

impl Access {
    pub fn new(store: Store, grants: Arc<Grants>, enablement: Arc<Enablement>) -> Access {
        Access {
            store,
            grants,
            enablement,
        }
    }

    /// Allows the call or answers PERMISSION_DENIED (audited).
    pub async fn require(
        &self,
        principal: &Principal,
        permission: Permission,
        scope: Scope,
    ) -> Result<(), ApiError> {
        if permission.owner_holds && scope.owner.is_some_and(|owner| owns(principal, owner)) {
            return Ok(());
        }
        let held = self.held(principal, scope).await?;
        if held.allows(permission.name) {
            if let Some(tenant_id) = held.as_super_admin_of {
                self.record(
                    principal,
                    permission,
                    scope,
                    Some(tenant_id),
                    Outcome::Success,
                )
                .await?;
            }
            return Ok(());
        }
        let chain = principal.tenant_scope();
        self.record(principal, permission, scope, chain, Outcome::Denied)
            .await?;
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

    /// What the caller holds in `scope`.
    pub async fn held(&self, principal: &Principal, scope: Scope) -> Result<Held, ApiError> {
        let mut held = Held {
            fixed: None,
            compiled: None,
            as_super_admin_of: None,
        };
        if is_platform_admin(principal) {
            held.fixed = Some(&CORE);
            if let (Some(user), Some(tenant_id)) = (&principal.user, scope.tenant)
                && user.tenant_id != tenant_id
            {
                held.as_super_admin_of = Some(tenant_id);
            }
            return Ok(held);
        }
        let key = principal.api_key.as_ref();
        match principal.kind() {
            PrincipalKind::Operator => {
                if let (Some(key_tenant), Some(tenant_id)) =
                    (key.and_then(|k| k.tenant_id), scope.tenant)
                    && key_tenant == tenant_id
                {
                    held.fixed = Some(&EVERYTHING);
                }
            }
            PrincipalKind::Module | PrincipalKind::ModuleForUser => {
                // Acting for a user confines the key to the user's tenant.
                let confined_to = principal.tenant_scope();
                let in_scope = key.is_some()
                    && match (confined_to, scope.tenant) {
                        (None, _) => true,
                        (Some(confined_to), Some(tenant_id)) => confined_to == tenant_id,
                        (Some(_), None) => false,
                    };
                // Module isolation: a tenant that does not hold the module
                // is not there for its key, nor for the users it acts for.
                if !self.module_held_in(principal, scope.tenant).await? {
                    return Ok(held);
                }
                if in_scope {
                    held.fixed = Some(&MODULE_KEY_GRANTS);
                }
            }
            PrincipalKind::User | PrincipalKind::Anonymous => {}
        }
        if let (Some(user), Some(tenant_id)) = (&principal.user, scope.tenant)
            && user.tenant_id == tenant_id
        {
            let effective = self
                .grants
                .effective(tenant_id, user.user_id, scope.bindings(), Freshness::Cached)
                .await?;
            held.compiled = Some(effective);
        }
        Ok(held)
    }

    /// Whether the tenant (if any) holds the caller's module.
    async fn module_held_in(
        &self,
        principal: &Principal,
        tenant_id: Option<Uuid>,
    ) -> Result<bool, ApiError> {
        let (Some(module_id), Some(tenant_id)) = (principal.module_id(), tenant_id) else {
            return Ok(true);
        };
        match self.enablement.snapshot(tenant_id, Freshness::Cached).await {
            Ok(snapshot) => Ok(snapshot.holds(module_id)),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Records a refusal in the caller's own chain (its tenant's, else the
    /// platform's, so probing unknown tenants creates no chains), or a super
    /// admin's use of `plinth:*` in the chain of the tenant it acted in.
    async fn record(
        &self,
        principal: &Principal,
        permission: Permission,
        scope: Scope,
        chain: Option<Uuid>,
        outcome: Outcome,
    ) -> Result<(), ApiError> {
        let action = match outcome {
            Outcome::Denied => "access.denied",
            _ => "access.platform_admin",
        };
        let mut event = AuditDraft::new(principal.actor(), action, "permission", permission.name)
            .in_tenant(chain)
            .with_request_id(&principal.request_id)
            .with_details(serde_json::json!({
                "target_tenant_id": scope.tenant,
                "target_company_id": scope.company,
            }));
        event.outcome = outcome;
        let mut tx = self.store.begin().await?;
        audit_log::append(&mut tx, event).await?;
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
