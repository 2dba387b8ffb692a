//! Every permission of the core, as a typed value: its name, the one RBAC
//! checks, and who holds it under the built-in rule that serves until RBAC
//! does. Names follow `plinth:<resource>:<action>`.

/// Who holds a permission under the built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holders {
    /// Operator keys without a tenant, and platform super admins.
    PlatformAdmins,
    /// Besides platform admins: the admins of the scope's tenant (its
    /// tenant-admin users and its tenant-scoped operator keys).
    TenantAdmins,
    /// Besides tenant admins: any key whose scope includes the tenant, and
    /// the tenant's users.
    TenantMembers,
    /// Besides platform admins: API keys (module or operator) whose scope
    /// includes the tenant; users alone do not.
    TenantKeys,
}

/// A core permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub name: &'static str,
    pub holders: Holders,
    /// Whether the owner of the resource (a user on its own account, a key
    /// on itself) holds it too.
    pub owner_holds: bool,
}

const fn permission(name: &'static str, holders: Holders) -> Permission {
    Permission {
        name,
        holders,
        owner_holds: false,
    }
}

const fn owned(name: &'static str, holders: Holders) -> Permission {
    Permission {
        name,
        holders,
        owner_holds: true,
    }
}

use Holders::{PlatformAdmins, TenantAdmins, TenantKeys, TenantMembers};

pub const TENANT_CREATE: Permission = permission("plinth:tenant:create", PlatformAdmins);
pub const TENANT_READ: Permission = permission("plinth:tenant:read", TenantMembers);
pub const TENANT_LIST: Permission = permission("plinth:tenant:list", PlatformAdmins);
pub const TENANT_UPDATE: Permission = permission("plinth:tenant:update", PlatformAdmins);
pub const TENANT_SET_STATUS: Permission = permission("plinth:tenant:set_status", PlatformAdmins);
pub const TENANT_SIGNUP: Permission = permission("plinth:tenant:signup", PlatformAdmins);

pub const COMPANY_CREATE: Permission = permission("plinth:company:create", TenantAdmins);
pub const COMPANY_READ: Permission = permission("plinth:company:read", TenantMembers);
pub const COMPANY_LIST: Permission = permission("plinth:company:list", TenantMembers);
pub const COMPANY_UPDATE: Permission = permission("plinth:company:update", TenantAdmins);

pub const USER_CREATE: Permission = permission("plinth:user:create", TenantAdmins);
pub const USER_READ: Permission = owned("plinth:user:read", TenantAdmins);
pub const USER_LIST: Permission = permission("plinth:user:list", TenantAdmins);
pub const USER_UPDATE: Permission = permission("plinth:user:update", TenantAdmins);
/// Resetting another user's password; users change their own with the
/// current one.
pub const USER_SET_PASSWORD: Permission = permission("plinth:user:set_password", TenantAdmins);

pub const SESSION_LIST: Permission = owned("plinth:session:list", TenantAdmins);
pub const SESSION_REVOKE: Permission = owned("plinth:session:revoke", TenantAdmins);

pub const TOKEN_VERIFY: Permission = permission("plinth:token:verify", TenantKeys);
pub const SIGNING_KEY_ROTATE: Permission = permission("plinth:signing_key:rotate", PlatformAdmins);

pub const API_KEY_CREATE: Permission = permission("plinth:api_key:create", TenantAdmins);
pub const API_KEY_LIST: Permission = permission("plinth:api_key:list", TenantAdmins);
pub const API_KEY_ROTATE: Permission = owned("plinth:api_key:rotate", TenantAdmins);
pub const API_KEY_REVOKE: Permission = owned("plinth:api_key:revoke", TenantAdmins);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every core permission.
    const ALL: &[Permission] = &[
        TENANT_CREATE,
        TENANT_READ,
        TENANT_LIST,
        TENANT_UPDATE,
        TENANT_SET_STATUS,
        TENANT_SIGNUP,
        COMPANY_CREATE,
        COMPANY_READ,
        COMPANY_LIST,
        COMPANY_UPDATE,
        USER_CREATE,
        USER_READ,
        USER_LIST,
        USER_UPDATE,
        USER_SET_PASSWORD,
        SESSION_LIST,
        SESSION_REVOKE,
        TOKEN_VERIFY,
        SIGNING_KEY_ROTATE,
        API_KEY_CREATE,
        API_KEY_LIST,
        API_KEY_ROTATE,
        API_KEY_REVOKE,
    ];

    #[test]
    fn every_core_permission_is_a_distinct_plinth_name_of_three_segments() {
        let mut names: Vec<_> = ALL.iter().map(|permission| permission.name).collect();
        for name in &names {
            let segments: Vec<_> = name.split(':').collect();
            assert_eq!(segments.len(), 3, "{name}");
            assert_eq!(segments[0], "plinth", "{name}");
            assert!(
                segments.iter().all(|segment| !segment.is_empty()
                    && segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
