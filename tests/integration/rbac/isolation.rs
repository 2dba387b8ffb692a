//! Tenant A's admin and A-scoped keys see nothing of tenant B through any
//! RBAC call: B's real ids and ids that exist nowhere both answer NOT_FOUND,
//! and B is unchanged afterwards.

use plinth_api::rbac::v1::{
    CheckBatchRequest, CheckItem, DeleteRoleRequest, GetRoleRequest, ListRoleBindingsRequest,
    ListRolesRequest, ListUserPermissionsRequest, LookupCompaniesRequest, LookupUsersRequest,
    RoleKey, UnassignRoleRequest, UpdateRoleRequest, get_role_request,
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{Backend, Clients, Sandbox, create_key};
use tonic::Code;
use uuid::Uuid;

use super::{assign, assignment, check_request, create_role, declare, role_request, tenant};
use crate::tenants::create_company;

crate::on_both_backends!(another_tenants_roles_bindings_and_users_are_not_found);

/// Ids of one tenant's RBAC resources.
struct Ids {
    tenant: String,
    user: String,
    role: String,
    role_key: String,
    binding: String,
    company: String,
}

impl Ids {
    fn generated() -> Ids {
        let id = || Uuid::now_v7().to_string();
        Ids {
            tenant: id(),
            user: id(),
            role: id(),
            role_key: "tenant-admin".to_owned(),
            binding: id(),
            company: id(),
        }
    }
}

/// Every RBAC call that names one of `target`'s ids, from `own_tenant`
/// where the call also needs a tenant; each must fail, and the name and
/// status of each failure is returned.
async fn every_call(
    clients: &mut Clients,
    own_tenant: &str,
    own_user: &str,
    own_role: &plinth_api::rbac::v1::Role,
    target: &Ids,
) -> Vec<(&'static str, tonic::Status)> {
    let rbac = &mut clients.rbac;
    let t = target;
    let mut refused = Vec::new();
    macro_rules! refused {
        ($name:literal, $call:expr) => {
            match $call.await {
                Ok(answer) => panic!("{} answered {:?}", $name, answer),
                Err(status) => refused.push(($name, status)),
            }
        };
    }
    refused!(
        "CreateRole",
        rbac.create_role(role_request(
            &t.tenant,
            "spy",
            &["inventory:item:read"],
            &[]
        ))
    );
    refused!(
        "GetRole by id",
        rbac.get_role(GetRoleRequest {
            key: Some(get_role_request::Key::Id(t.role.clone()))
        })
    );
    refused!(
        "GetRole by key",
        rbac.get_role(GetRoleRequest {
            key: Some(get_role_request::Key::TenantKey(RoleKey {
                tenant_id: t.tenant.clone(),
                key: t.role_key.clone()
            })),
        })
    );
    refused!(
        "ListRoles",
        rbac.list_roles(ListRolesRequest {
            tenant_id: t.tenant.clone(),
            ..Default::default()
        })
    );
    refused!(
        "UpdateRole",
        rbac.update_role(UpdateRoleRequest {
            id: t.role.clone(),
            display_name: Some("mine".to_owned()),
            ..Default::default()
        })
    );
    refused!(
        "DeleteRole",
        rbac.delete_role(DeleteRoleRequest { id: t.role.clone() })
    );
    let mut their_role = own_role.clone();
    their_role.id = t.role.clone();
    refused!(
        "AssignRole in their tenant",
        rbac.assign_role(assignment(&t.tenant, &t.user, &their_role, ""))
    );
    refused!(
        "AssignRole of their user",
        rbac.assign_role(assignment(own_tenant, &t.user, own_role, ""))
    );
    refused!(
        "AssignRole of their role",
        rbac.assign_role(assignment(own_tenant, own_user, &their_role, ""))
    );
    refused!(
        "AssignRole in their company",
        rbac.assign_role(assignment(own_tenant, own_user, own_role, &t.company))
    );
    refused!(
        "UnassignRole",
        rbac.unassign_role(UnassignRoleRequest {
            binding_id: t.binding.clone()
        })
    );
    refused!(
        "ListRoleBindings",
        rbac.list_role_bindings(ListRoleBindingsRequest {
            tenant_id: t.tenant.clone(),
            ..Default::default()
        })
    );
    refused!(
        "Check in their tenant",
        rbac.check(check_request(&t.tenant, &t.user, "inventory:item:read", ""))
    );
    refused!(
        "Check of their user",
        rbac.check(check_request(
            own_tenant,
            &t.user,
            "inventory:item:read",
            ""
        ))
    );
    refused!(
        "Check in their company",
        rbac.check(check_request(
            own_tenant,
            own_user,
            "inventory:item:read",
            &t.company
        ))
    );
    refused!(
        "CheckBatch",
        rbac.check_batch(CheckBatchRequest {
            tenant_id: t.tenant.clone(),
            user_id: t.user.clone(),
            items: vec![CheckItem {
                permission: "inventory:item:read".to_owned(),
                company_id: String::new()
            }],
            ..Default::default()
        })
    );
    refused!(
        "ListUserPermissions",
        rbac.list_user_permissions(ListUserPermissionsRequest {
            tenant_id: t.tenant.clone(),
            user_id: t.user.clone(),
            ..Default::default()
        })
    );
    refused!(
        "LookupCompanies",
        rbac.lookup_companies(LookupCompaniesRequest {
            tenant_id: t.tenant.clone(),
            user_id: t.user.clone(),
            permission: "inventory:item:read".to_owned(),
            consistency: None,
        })
    );
    refused!(
        "LookupUsers",
        rbac.lookup_users(LookupUsersRequest {
            tenant_id: t.tenant.clone(),
            permission: "inventory:item:read".to_owned(),
            ..Default::default()
        })
    );
    refused!(
        "LookupUsers in their company",
        rbac.lookup_users(LookupUsersRequest {
            tenant_id: own_tenant.to_owned(),
            permission: "inventory:item:read".to_owned(),
            company_id: t.company.clone(),
            ..Default::default()
        })
    );
    refused
}

async fn snapshot(
    operator: &mut Clients,
    tenant_id: &str,
) -> (
    Vec<plinth_api::rbac::v1::Role>,
    Vec<plinth_api::rbac::v1::RoleBinding>,
) {
    let roles = operator
        .rbac
        .list_roles(ListRolesRequest {
            tenant_id: tenant_id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .roles;
    let bindings = operator
        .rbac
        .list_role_bindings(ListRoleBindingsRequest {
            tenant_id: tenant_id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bindings;
    (roles, bindings)
}

async fn another_tenants_roles_bindings_and_users_are_not_found(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut globex = tenant(&sandbox, "globex").await;
    let globex_user = globex.member(&sandbox, "mole").await;
    let globex_admin = &mut globex.admin.clients;
    let globex_company = create_company(globex_admin, &globex.id, "hq")
        .await
        .unwrap()
        .id;
    let globex_role = create_role(
        globex_admin,
        &globex.id,
        "clerk",
        &["inventory:item:read"],
        &[],
    )
    .await;
    let (globex_binding, _) = assign(
        globex_admin,
        &globex.id,
        &globex_user.user_id,
        &globex_role,
        "",
    )
    .await;
    let acme_role = create_role(
        &mut acme.admin.clients,
        &acme.id,
        "clerk",
        &["inventory:item:read"],
        &[],
    )
    .await;
    let scoped = |module_id: Option<&str>| NewApiKey {
        name: "acme-scoped".to_owned(),
        module_id: module_id.map(str::to_owned),
        tenant_id: Some(Uuid::parse_str(&acme.id).unwrap()),
        ..NewApiKey::default()
    };
    let acme_operator_key = create_key(&sandbox, scoped(None)).await.secret;
    let acme_module_key = create_key(&sandbox, scoped(Some("inventory"))).await.secret;
    let mut operator = sandbox.operator().await;
    let before = snapshot(&mut operator, &globex.id).await;
    let real = Ids {
        tenant: globex.id.clone(),
        user: globex_user.user_id.clone(),
        role: globex_role.id.clone(),
        role_key: globex_role.key.clone(),
        binding: globex_binding.id.clone(),
        company: globex_company,
    };

    let callers = [
        ("acme admin", acme.admin.clients.clone()),
        (
            "acme operator key",
            sandbox.clients(&acme_operator_key).await,
        ),
        ("acme module key", sandbox.clients(&acme_module_key).await),
    ];
    for (caller, mut clients) in callers {
        for (ids_kind, ids) in [("real", &real), ("generated", &Ids::generated())] {
            for (call, status) in
                every_call(&mut clients, &acme.id, &acme.admin.user_id, &acme_role, ids).await
            {
                assert_eq!(
                    status.code(),
                    Code::NotFound,
                    "{caller}, {ids_kind} ids, {call}: {status:?}"
                );
            }
        }
    }

    assert_eq!(snapshot(&mut operator, &globex.id).await, before);
}
