//! RBAC: roles forming a DAG per tenant, bindings of users to them
//! (tenant-wide or per company, maybe time-bound), declared permissions, and
//! the checks modules ask. Writes bump the tenant's RBAC version in their
//! transaction and tell every replica; answers carry a consistency token.

mod bindings;
mod checks;
mod declarations;
mod roles;

use std::sync::Arc;

use plinth_platform::{
    audit::AuditDraft,
    identity::Principal,
    invalidation::{Change, Invalidator},
    store::Store,
};
use uuid::Uuid;

pub use bindings::{BindingListing, NewBinding, keep_last_admin};
pub use checks::{CheckItem, Checked, CompanyLookup, Subject, UserLookup};
pub use declarations::{Declaration, Declarations, PermissionListing};
pub use roles::{
    NewRole, RoleChanges, RoleKey, RoleListing, RoleUpdate, seed_module_roles, seed_tenant,
};

pub use plinth_platform::grants;
use plinth_platform::grants::graph;

use crate::access::Access;
use grants::Grants;

pub use plinth_platform::versions::{Consistency, VersionToken};

/// Longest role display name, in characters.
pub const MAX_ROLE_NAME: usize = 200;
/// Longest role description, in characters.
pub const MAX_ROLE_DESCRIPTION: usize = 2000;
/// Most grants a role holds directly.
pub const MAX_ROLE_GRANTS: usize = 500;
/// Most parents of one role.
pub const MAX_ROLE_PARENTS: usize = 20;
/// Most roles in one tenant.
pub const MAX_ROLES_PER_TENANT: usize = 1000;
/// Most bindings of one user.
pub const MAX_BINDINGS_PER_USER: i64 = 200;
/// Most items of a CheckBatch.
pub const MAX_BATCH_ITEMS: usize = 100;
/// Most declarations in one RegisterPermissions.
pub const MAX_DECLARATIONS: usize = 500;
/// Longest permission description, in characters.
pub const MAX_PERMISSION_DESCRIPTION: usize = 500;

/// The RBAC domain.
#[derive(Clone)]
pub struct Rbac {
    store: Store,
    access: Access,
    grants: Arc<Grants>,
    declarations: Arc<Declarations>,
    invalidator: Arc<Invalidator>,
}

impl Rbac {
    pub fn new(
        store: Store,
        access: Access,
        grants: Arc<Grants>,
        declarations: Arc<Declarations>,
        invalidator: Arc<Invalidator>,
    ) -> Rbac {
        Rbac {
            store,
            access,
            grants,
            declarations,
            invalidator,
        }
    }

    /// After a committed RBAC write: this replica and the others learn the
    /// version; the caller gets it as a token.
    async fn committed(&self, tenant_id: Uuid, version: i64) -> String {
        self.grants.learn(tenant_id, version);
        self.invalidator
            .changed(Change::Rbac { tenant_id, version })
            .await;
        VersionToken::rbac(tenant_id, version).encode()
    }
}

fn rbac_event(
    principal: &Principal,
    action: &str,
    resource_type: &str,
    resource_id: Uuid,
    tenant_id: Uuid,
) -> AuditDraft {
    AuditDraft::new(
        principal.actor(),
        action,
        resource_type,
        &resource_id.to_string(),
    )
    .in_tenant(Some(tenant_id))
    .with_request_id(&principal.request_id)
}
