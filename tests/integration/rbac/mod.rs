//! RBAC over real gRPC: the model (inheritance, cycles, wildcards, company
//! scope, expiry, escalation, protected roles and admins, declarations),
//! the checks modules ask, isolation between tenants, and consistency
//! across replicas.

mod bad_input;
mod checks;
mod consistency;
mod isolation;
mod model;

use plinth_api::{
    auth::v1::{CreateUserRequest, WhoAmIRequest},
    rbac::v1::{
        AssignRoleRequest, CheckRequest, CreateRoleRequest, PermissionDeclaration,
        RegisterPermissionsRequest, Role, RoleBinding,
    },
};
use plinth_tests::{Clients, Credentials, Sandbox};

use crate::tokens::{PASSWORD, sign_up, tokens};

/// Permissions of two test modules, declared by the operator.
pub const DECLARED: &[&str] = &[
    "inventory:item:read",
    "inventory:item:write",
    "inventory:stock:count",
    "finance:invoice:approve",
    "finance:invoice:read",
];

/// A user with clients presenting its bearer token.
pub struct Member {
    pub user_id: String,
    pub clients: Clients,
    pub access_token: String,
}

/// A signed-up tenant and its first admin.
pub struct Tenant {
    pub id: String,
    pub code: String,
    pub admin: Member,
}

pub async fn declare(sandbox: &Sandbox) {
    let mut operator = sandbox.operator().await;
    for module_id in ["inventory", "finance"] {
        let permissions = DECLARED
            .iter()
            .filter(|name| name.starts_with(&format!("{module_id}:")))
            .map(|name| PermissionDeclaration {
                name: (*name).to_owned(),
                description: String::new(),
            })
            .collect();
        operator
            .rbac
            .register_permissions(RegisterPermissionsRequest {
                module_id: module_id.to_owned(),
                permissions,
            })
            .await
            .expect("an operator declares module permissions");
    }
}

/// A user logged in, with clients that present its token.
pub async fn logged_in(sandbox: &Sandbox, tenant_code: &str, email: &str) -> Member {
    let pair = tokens(sandbox, tenant_code, email).await;
    let mut clients = sandbox
        .clients_with(Credentials::bearer(&pair.access_token))
        .await;
    let me = clients
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    Member {
        user_id: me.user_id,
        clients,
        access_token: pair.access_token,
    }
}

/// Signs up tenant `code` and logs its admin in.
pub async fn tenant(sandbox: &Sandbox, code: &str) -> Tenant {
    let id = sign_up(sandbox, code).await;
    let admin = logged_in(sandbox, code, &format!("admin@{code}.example")).await;
    Tenant {
        id,
        code: code.to_owned(),
        admin,
    }
}

impl Tenant {
    /// A new user of the tenant (made by its admin), logged in.
    pub async fn member(&mut self, sandbox: &Sandbox, name: &str) -> Member {
        let email = format!("{name}@{}.example", self.code);
        self.admin
            .clients
            .auth
            .create_user(CreateUserRequest {
                tenant_id: self.id.clone(),
                email: email.clone(),
                display_name: name.to_owned(),
                password: PASSWORD.to_owned(),
            })
            .await
            .expect("the admin creates a user");
        logged_in(sandbox, &self.code, &email).await
    }
}

pub fn role_request(
    tenant_id: &str,
    key: &str,
    permissions: &[&str],
    parents: &[&Role],
) -> CreateRoleRequest {
    CreateRoleRequest {
        tenant_id: tenant_id.to_owned(),
        key: key.to_owned(),
        display_name: key.to_owned(),
        description: String::new(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        parent_role_ids: parents.iter().map(|role| role.id.clone()).collect(),
    }
}

/// Creates a role as `clients`, which must be allowed to.
pub async fn create_role(
    clients: &mut Clients,
    tenant_id: &str,
    key: &str,
    permissions: &[&str],
    parents: &[&Role],
) -> Role {
    clients
        .rbac
        .create_role(role_request(tenant_id, key, permissions, parents))
        .await
        .expect("role created")
        .into_inner()
        .role
        .unwrap()
}

pub fn assignment(
    tenant_id: &str,
    user_id: &str,
    role: &Role,
    company_id: &str,
) -> AssignRoleRequest {
    AssignRoleRequest {
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.to_owned(),
        role_id: role.id.clone(),
        company_id: company_id.to_owned(),
        expires_at: None,
    }
}

/// Binds a role as `clients`, which must be allowed to; the binding and the
/// answer's consistency token.
pub async fn assign(
    clients: &mut Clients,
    tenant_id: &str,
    user_id: &str,
    role: &Role,
    company_id: &str,
) -> (RoleBinding, String) {
    let answer = clients
        .rbac
        .assign_role(assignment(tenant_id, user_id, role, company_id))
        .await
        .expect("role bound")
        .into_inner();
    (answer.binding.unwrap(), answer.consistency_token)
}

pub fn check_request(
    tenant_id: &str,
    user_id: &str,
    permission: &str,
    company_id: &str,
) -> CheckRequest {
    CheckRequest {
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.to_owned(),
        permission: permission.to_owned(),
        company_id: company_id.to_owned(),
        consistency: None,
        explain: false,
    }
}

/// Whether the user holds the permission, asked by `clients`.
pub async fn allowed(
    clients: &mut Clients,
    tenant_id: &str,
    user_id: &str,
    permission: &str,
    company_id: &str,
) -> bool {
    clients
        .rbac
        .check(check_request(tenant_id, user_id, permission, company_id))
        .await
        .expect("check answered")
        .into_inner()
        .allowed
}
