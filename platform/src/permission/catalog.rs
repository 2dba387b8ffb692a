//! Every permission of the core, as a typed value: its `plinth:` name, what
//! it allows (declared at start-up, so roles may grant it), and whether the
//! owner of the resource holds it without a grant. Who holds the others is
//! RBAC's answer (see [`crate::access`]).

/// A core permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub name: &'static str,
    pub description: &'static str,
    /// Whether the owner of the resource (a user on its own account, a key
    /// on itself) holds it too.
    pub owner_holds: bool,
}

const fn permission(name: &'static str, description: &'static str) -> Permission {
    Permission {
        name,
        description,
        owner_holds: false,
    }
}

const fn owned(name: &'static str, description: &'static str) -> Permission {
    Permission {
        name,
        description,
        owner_holds: true,
    }
}

pub const TENANT_CREATE: Permission = permission("plinth:tenant:create", "Create tenants");
pub const TENANT_READ: Permission = permission("plinth:tenant:read", "Read the tenant");
pub const TENANT_LIST: Permission = permission("plinth:tenant:list", "List every tenant");
pub const TENANT_UPDATE: Permission = permission("plinth:tenant:update", "Change tenants");
pub const TENANT_SET_STATUS: Permission = permission(
    "plinth:tenant:set_status",
    "Suspend, reactivate or delete tenants",
);
pub const TENANT_SIGNUP: Permission =
    permission("plinth:tenant:signup", "Sign up tenants with their admin");

pub const COMPANY_CREATE: Permission = permission("plinth:company:create", "Create companies");
pub const COMPANY_READ: Permission = permission("plinth:company:read", "Read companies");
pub const COMPANY_LIST: Permission = permission("plinth:company:list", "List companies");
pub const COMPANY_UPDATE: Permission =
    permission("plinth:company:update", "Rename or archive companies");

pub const USER_CREATE: Permission = permission("plinth:user:create", "Create users");
pub const USER_READ: Permission = owned("plinth:user:read", "Read users");
pub const USER_LIST: Permission = permission("plinth:user:list", "List users");
pub const USER_UPDATE: Permission =
    permission("plinth:user:update", "Rename, disable or enable users");
/// Resetting another user's password; users change their own with the
/// current one.
pub const USER_SET_PASSWORD: Permission =
    permission("plinth:user:set_password", "Reset other users' passwords");

pub const SESSION_LIST: Permission = owned("plinth:session:list", "List users' sessions");
pub const SESSION_REVOKE: Permission = owned("plinth:session:revoke", "Revoke users' sessions");

pub const TOKEN_VERIFY: Permission =
    permission("plinth:token:verify", "Verify users' bearer tokens");
pub const SIGNING_KEY_ROTATE: Permission =
    permission("plinth:signing_key:rotate", "Rotate the token signing key");

pub const API_KEY_CREATE: Permission = permission("plinth:api_key:create", "Create API keys");
pub const API_KEY_LIST: Permission = permission("plinth:api_key:list", "List API keys");
pub const API_KEY_ROTATE: Permission = owned("plinth:api_key:rotate", "Rotate API keys");
pub const API_KEY_REVOKE: Permission = owned("plinth:api_key:revoke", "Revoke API keys");

pub const ROLE_CREATE: Permission = permission("plinth:role:create", "Create roles");
pub const ROLE_READ: Permission = permission("plinth:role:read", "Read roles");
pub const ROLE_UPDATE: Permission = permission("plinth:role:update", "Change roles");
pub const ROLE_DELETE: Permission = permission("plinth:role:delete", "Delete roles");
pub const ROLE_ASSIGN: Permission =
    permission("plinth:role:assign", "Bind users to roles and unbind them");
/// Granting, through a role or a binding, what the caller does not hold.
pub const ROLE_ESCALATE: Permission = permission(
    "plinth:role:escalate",
    "Grant permissions the caller does not hold",
);
pub const ROLE_BINDING_READ: Permission =
    owned("plinth:role_binding:read", "List who holds which role");
/// Asking what another user may do (a user may always ask about itself).
pub const RBAC_CHECK: Permission = owned(
    "plinth:rbac:check",
    "Check, list and look up other users' permissions",
);
pub const PERMISSION_REGISTER: Permission = permission(
    "plinth:permission:register",
    "Declare permissions of any module",
);
pub const PERMISSION_READ: Permission =
    permission("plinth:permission:read", "List declared permissions");

/// Every core permission, declared under `plinth:` at start-up.
pub const MODULE_MANAGE: Permission = permission(
    "plinth:module:manage",
    "Register any module's versions and manage the module catalog",
);

pub const MODULE_ENABLE: Permission = permission(
    "plinth:module:enable",
    "Enable and disable modules for the tenant and its companies",
);
pub const MODULE_READ: Permission =
    permission("plinth:module:read", "See which modules the tenant has");
pub const MODULE_CONFIG_READ: Permission = permission(
    "plinth:module_config:read",
    "Read modules' configuration in the tenant",
);
pub const MODULE_CONFIG_WRITE: Permission = permission(
    "plinth:module_config:write",
    "Write modules' configuration in the tenant",
);
pub const TEMPLATE_MANAGE: Permission = permission(
    "plinth:template:manage",
    "Create, change and delete industry templates",
);

pub const AUDIT_READ: Permission = permission(
    "plinth:audit:read",
    "Read, tail and verify the tenant's audit log",
);
/// Held by module keys: recording their module's events, and reading them.
pub const AUDIT_RECORD: Permission = permission(
    "plinth:audit:record",
    "Record and read the caller module's own audit events",
);

pub const ALL: &[Permission] = &[
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
    ROLE_CREATE,
    ROLE_READ,
    ROLE_UPDATE,
    ROLE_DELETE,
    ROLE_ASSIGN,
    ROLE_ESCALATE,
    ROLE_BINDING_READ,
    RBAC_CHECK,
    PERMISSION_REGISTER,
    PERMISSION_READ,
    MODULE_MANAGE,
    MODULE_ENABLE,
    MODULE_READ,
    MODULE_CONFIG_READ,
    MODULE_CONFIG_WRITE,
    TEMPLATE_MANAGE,
    AUDIT_READ,
    AUDIT_RECORD,
];

/// What every user holds in its own tenant, as a member.
pub const MEMBERSHIP: &[Permission] = &[
    TENANT_READ,
    COMPANY_READ,
    COMPANY_LIST,
    PERMISSION_READ,
    MODULE_READ,
];

/// What a module key holds in every tenant of its scope.
pub const MODULE_KEY: &[Permission] = &[
    TOKEN_VERIFY,
    TENANT_READ,
    COMPANY_READ,
    COMPANY_LIST,
    PERMISSION_READ,
    ROLE_READ,
    RBAC_CHECK,
    MODULE_READ,
    MODULE_CONFIG_READ,
    AUDIT_RECORD,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_permission_is_a_distinct_valid_plinth_permission() {
        let mut names: Vec<_> = ALL.iter().map(|permission| permission.name).collect();
        for name in &names {
            assert!(crate::permission::check_permission(name).is_ok(), "{name}");
            assert!(name.starts_with("plinth:"), "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for held in MEMBERSHIP.iter().chain(MODULE_KEY) {
            assert!(ALL.contains(held), "{}", held.name);
        }
    }
}
