//! The RBAC model: inheritance, cycles, wildcards, company scope, expiry,
//! escalation, protected roles and admins, declarations.

use plinth_api::{
    auth::v1::{UpdateUserRequest, UserStatus},
    rbac::v1::{
        DeleteRoleRequest, GetRoleRequest, PermissionDeclaration, PermissionList,
        RegisterPermissionsRequest, RoleIdList, RoleKey, UnassignRoleRequest, UpdateRoleRequest,
        get_role_request,
    },
};
use plinth_platform::store::rbac::TENANT_ADMIN_ROLE;
use plinth_tests::{Backend, Sandbox, assert_refusal, create_key, violated_fields};
use tonic::Code;

use super::{allowed, assign, assignment, create_role, declare, role_request, tenant};
use crate::tenants::create_company;

crate::on_both_backends!(
    a_role_grants_what_its_ancestors_grant,
    a_parent_change_that_closes_a_cycle_is_refused_naming_it,
    wildcards_cover_whole_trailing_segments,
    a_company_binding_grants_only_in_its_company,
    an_expired_binding_grants_nothing,
    nobody_grants_more_than_they_hold,
    the_last_tenant_admin_cannot_be_unbound_or_disabled,
    system_roles_cannot_be_deleted_or_stripped,
    undeclared_permissions_are_refused_in_checks_and_grants,
    reserved_and_foreign_namespaces_cannot_be_declared,
    a_stale_etag_is_refused,
    a_super_admins_use_of_another_tenant_is_audited_there,
);

async fn a_role_grants_what_its_ancestors_grant(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let viewer = create_role(admin, &acme.id, "viewer", &["inventory:item:read"], &[]).await;
    let clerk = create_role(
        admin,
        &acme.id,
        "clerk",
        &["inventory:item:write"],
        &[&viewer],
    )
    .await;
    let auditor = create_role(admin, &acme.id, "auditor", &["finance:invoice:read"], &[]).await;
    let manager = create_role(admin, &acme.id, "manager", &[], &[&clerk, &auditor]).await;
    assert!(!allowed(admin, &acme.id, &ada.user_id, "inventory:item:read", "").await);

    assign(admin, &acme.id, &ada.user_id, &manager, "").await;

    for permission in [
        "inventory:item:read",
        "inventory:item:write",
        "finance:invoice:read",
    ] {
        assert!(
            allowed(admin, &acme.id, &ada.user_id, permission, "").await,
            "{permission}"
        );
    }
    assert!(!allowed(admin, &acme.id, &ada.user_id, "finance:invoice:approve", "").await);
}

async fn a_parent_change_that_closes_a_cycle_is_refused_naming_it(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let a = create_role(admin, &acme.id, "role-a", &["inventory:item:read"], &[]).await;
    let b = create_role(admin, &acme.id, "role-b", &[], &[&a]).await;
    let c = create_role(admin, &acme.id, "role-c", &[], &[&b]).await;

    let refused = admin
        .rbac
        .update_role(UpdateRoleRequest {
            id: a.id.clone(),
            parent_role_ids: Some(RoleIdList {
                role_ids: vec![c.id.clone()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_ROLE_CYCLE",
    );
    let info = tonic_types::StatusExt::get_details_error_info(&refused).unwrap();
    assert_eq!(
        info.metadata["path"],
        "role-a -> role-c -> role-b -> role-a"
    );
    let unchanged = admin
        .rbac
        .get_role(GetRoleRequest {
            key: Some(get_role_request::Key::Id(a.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    assert_eq!(unchanged, a);
}

async fn wildcards_cover_whole_trailing_segments(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let bob = acme.member(&sandbox, "bob").await;
    let admin = &mut acme.admin.clients;
    let items = create_role(admin, &acme.id, "items", &["inventory:item:*"], &[]).await;
    let stock = create_role(admin, &acme.id, "stock", &["inventory:*"], &[]).await;
    assign(admin, &acme.id, &ada.user_id, &items, "").await;
    assign(admin, &acme.id, &bob.user_id, &stock, "").await;

    let table = [
        (&ada, "inventory:item:read", true),
        (&ada, "inventory:item:write", true),
        (&ada, "inventory:stock:count", false),
        (&ada, "finance:invoice:read", false),
        (&bob, "inventory:item:read", true),
        (&bob, "inventory:stock:count", true),
        (&bob, "finance:invoice:read", false),
    ];
    for (member, permission, expected) in table {
        assert_eq!(
            allowed(admin, &acme.id, &member.user_id, permission, "").await,
            expected,
            "{permission}"
        );
    }
    for bad in ["inventory:*:read", "inventory:it*", "*:item:read"] {
        let refused = admin
            .rbac
            .create_role(role_request(&acme.id, "bad", &[bad], &[]))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&refused), ["permissions[0]"], "{bad}");
    }
    let wildcard_check = admin
        .rbac
        .check(super::check_request(
            &acme.id,
            &ada.user_id,
            "inventory:item:*",
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&wildcard_check), ["permission"]);
}

async fn a_company_binding_grants_only_in_its_company(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let north = create_company(admin, &acme.id, "north").await.unwrap().id;
    let south = create_company(admin, &acme.id, "south").await.unwrap().id;
    let approver = create_role(
        admin,
        &acme.id,
        "approver",
        &["finance:invoice:approve"],
        &[],
    )
    .await;
    let reader = create_role(admin, &acme.id, "reader", &["finance:invoice:read"], &[]).await;

    assign(admin, &acme.id, &ada.user_id, &approver, &north).await;
    assign(admin, &acme.id, &ada.user_id, &reader, "").await;

    let approve = "finance:invoice:approve";
    assert!(allowed(admin, &acme.id, &ada.user_id, approve, &north).await);
    assert!(!allowed(admin, &acme.id, &ada.user_id, approve, &south).await);
    assert!(!allowed(admin, &acme.id, &ada.user_id, approve, "").await);
    let read = "finance:invoice:read";
    assert!(allowed(admin, &acme.id, &ada.user_id, read, &south).await);
    assert!(allowed(admin, &acme.id, &ada.user_id, read, "").await);
}

async fn an_expired_binding_grants_nothing(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let reader = create_role(admin, &acme.id, "reader", &["finance:invoice:read"], &[]).await;
    let expires = std::time::SystemTime::now() + std::time::Duration::from_millis(1500);
    let request = plinth_api::rbac::v1::AssignRoleRequest {
        expires_at: Some(expires.into()),
        ..assignment(&acme.id, &ada.user_id, &reader, "")
    };
    admin.rbac.assign_role(request).await.unwrap();
    assert!(allowed(admin, &acme.id, &ada.user_id, "finance:invoice:read", "").await);

    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;

    assert!(!allowed(admin, &acme.id, &ada.user_id, "finance:invoice:read", "").await);
    let past = plinth_api::rbac::v1::AssignRoleRequest {
        expires_at: Some(std::time::SystemTime::now().into()),
        ..assignment(&acme.id, &ada.user_id, &reader, "")
    };
    let refused = admin.rbac.assign_role(past).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["expires_at"]);
}

async fn nobody_grants_more_than_they_hold(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut delegate = acme.member(&sandbox, "delegate").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let role_manager = create_role(
        admin,
        &acme.id,
        "role-manager",
        &[
            "plinth:role:create",
            "plinth:role:assign",
            "inventory:item:read",
        ],
        &[],
    )
    .await;
    let writer = create_role(admin, &acme.id, "writer", &["inventory:item:write"], &[]).await;
    assign(admin, &acme.id, &delegate.user_id, &role_manager, "").await;
    let delegated = &mut delegate.clients;

    let more = delegated
        .rbac
        .create_role(role_request(
            &acme.id,
            "more",
            &["inventory:item:write"],
            &[],
        ))
        .await
        .unwrap_err();
    let inherited = delegated
        .rbac
        .create_role(role_request(&acme.id, "child", &[], &[&writer]))
        .await
        .unwrap_err();
    let wider = delegated
        .rbac
        .create_role(role_request(&acme.id, "wider", &["inventory:*"], &[]))
        .await
        .unwrap_err();
    let binding = delegated
        .rbac
        .assign_role(assignment(&acme.id, &ada.user_id, &writer, ""))
        .await
        .unwrap_err();

    for refused in [&more, &inherited, &wider, &binding] {
        assert_refusal(
            refused,
            Code::PermissionDenied,
            "ERROR_REASON_PRIVILEGE_ESCALATION",
        );
    }
    let within = create_role(delegated, &acme.id, "reader", &["inventory:item:read"], &[]).await;
    assign(delegated, &acme.id, &ada.user_id, &within, "").await;
    assert!(!allowed(admin, &acme.id, &ada.user_id, "inventory:item:write", "").await);
}

async fn the_last_tenant_admin_cannot_be_unbound_or_disabled(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let second = acme.member(&sandbox, "second").await;
    let mut operator = sandbox.operator().await;
    let admin_role = operator
        .rbac
        .get_role(GetRoleRequest {
            key: Some(get_role_request::Key::TenantKey(RoleKey {
                tenant_id: acme.id.clone(),
                key: TENANT_ADMIN_ROLE.to_owned(),
            })),
        })
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    let first_binding = operator
        .rbac
        .list_role_bindings(plinth_api::rbac::v1::ListRoleBindingsRequest {
            tenant_id: acme.id.clone(),
            role_id: admin_role.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bindings
        .remove(0);
    let disable = |user_id: &str| UpdateUserRequest {
        id: user_id.to_owned(),
        status: Some(UserStatus::Disabled.into()),
        ..Default::default()
    };

    let unbinding = operator
        .rbac
        .unassign_role(UnassignRoleRequest {
            binding_id: first_binding.id.clone(),
        })
        .await
        .unwrap_err();
    let disabling = operator
        .auth
        .update_user(disable(&acme.admin.user_id))
        .await
        .unwrap_err();

    for refused in [&unbinding, &disabling] {
        assert_refusal(
            refused,
            Code::FailedPrecondition,
            "ERROR_REASON_LAST_TENANT_ADMIN",
        );
    }
    let (_, _) = assign(&mut operator, &acme.id, &second.user_id, &admin_role, "").await;
    operator
        .rbac
        .unassign_role(UnassignRoleRequest {
            binding_id: first_binding.id,
        })
        .await
        .expect("another permanent admin remains");
    let now_last = operator
        .auth
        .update_user(disable(&second.user_id))
        .await
        .unwrap_err();
    assert_refusal(
        &now_last,
        Code::FailedPrecondition,
        "ERROR_REASON_LAST_TENANT_ADMIN",
    );
}

async fn system_roles_cannot_be_deleted_or_stripped(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let admin_role = admin
        .rbac
        .get_role(GetRoleRequest {
            key: Some(get_role_request::Key::TenantKey(RoleKey {
                tenant_id: acme.id.clone(),
                key: TENANT_ADMIN_ROLE.to_owned(),
            })),
        })
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    assert!(admin_role.system);
    assert_eq!(admin_role.permissions, ["*"]);

    let deleting = admin
        .rbac
        .delete_role(DeleteRoleRequest {
            id: admin_role.id.clone(),
        })
        .await
        .unwrap_err();
    let stripping = admin
        .rbac
        .update_role(UpdateRoleRequest {
            id: admin_role.id.clone(),
            permissions: Some(PermissionList {
                permissions: vec!["inventory:item:read".to_owned()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();

    for refused in [&deleting, &stripping] {
        assert_refusal(
            refused,
            Code::FailedPrecondition,
            "ERROR_REASON_SYSTEM_ROLE",
        );
    }
    let renamed = admin
        .rbac
        .update_role(UpdateRoleRequest {
            id: admin_role.id.clone(),
            display_name: Some("Owners".to_owned()),
            ..Default::default()
        })
        .await
        .expect("a system role may be renamed")
        .into_inner()
        .role
        .unwrap();
    assert_eq!(renamed.permissions, ["*"]);
}

async fn undeclared_permissions_are_refused_in_checks_and_grants(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let user_id = acme.admin.user_id.clone();

    let typo = admin
        .rbac
        .check(super::check_request(
            &acme.id,
            &user_id,
            "inventory:item:raed",
            "",
        ))
        .await
        .unwrap_err();
    let granted_typo = admin
        .rbac
        .create_role(role_request(
            &acme.id,
            "typo",
            &["inventory:item:raed"],
            &[],
        ))
        .await
        .unwrap_err();
    let empty_namespace = admin
        .rbac
        .create_role(role_request(&acme.id, "crm", &["crm:*"], &[]))
        .await
        .unwrap_err();

    for refused in [&typo, &granted_typo, &empty_namespace] {
        assert_refusal(
            refused,
            Code::FailedPrecondition,
            "ERROR_REASON_UNKNOWN_PERMISSION",
        );
    }
    create_role(admin, &acme.id, "inventory-all", &["inventory:*"], &[]).await;
    assert!(allowed(admin, &acme.id, &user_id, "plinth:user:create", "").await);
}

async fn reserved_and_foreign_namespaces_cannot_be_declared(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let declaration = |module_id: &str, name: &str| RegisterPermissionsRequest {
        module_id: module_id.to_owned(),
        permissions: vec![PermissionDeclaration {
            name: name.to_owned(),
            description: String::new(),
        }],
    };

    for reserved in [
        "plinth", "auth", "tenant", "rbac", "registry", "audit", "module", "core", "system",
    ] {
        let refused = operator
            .rbac
            .register_permissions(declaration(reserved, &format!("{reserved}:thing:do")))
            .await
            .unwrap_err();
        assert_refusal(
            &refused,
            Code::InvalidArgument,
            "ERROR_REASON_RESERVED_NAMESPACE",
        );
    }
    let outside = operator
        .rbac
        .register_permissions(declaration("crm", "finance:invoice:read"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&outside), ["permissions[0].name"]);
    let crm_key = create_key(
        &sandbox,
        plinth_platform::identity::api_keys::NewApiKey {
            name: "crm".to_owned(),
            module_id: Some("crm".to_owned()),
            ..Default::default()
        },
    )
    .await
    .secret;
    let mut crm = sandbox.clients(&crm_key).await;
    let foreign = crm
        .rbac
        .register_permissions(declaration("finance", "finance:invoice:read"))
        .await
        .unwrap_err();
    assert_refusal(
        &foreign,
        Code::PermissionDenied,
        "ERROR_REASON_MODULE_NAMESPACE_VIOLATION",
    );
    let own = crm
        .rbac
        .register_permissions(declaration("crm", "crm:deal:read"))
        .await
        .expect("a module declares its own namespace")
        .into_inner();
    assert_eq!(own.permissions[0].module_id, "crm");
}

async fn a_stale_etag_is_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let role = create_role(admin, &acme.id, "clerk", &["inventory:item:read"], &[]).await;
    let rename = |name: &str, etag: &str| UpdateRoleRequest {
        id: role.id.clone(),
        display_name: Some(name.to_owned()),
        etag: etag.to_owned(),
        ..Default::default()
    };
    admin
        .rbac
        .update_role(rename("Clerks", &role.etag))
        .await
        .expect("the current etag");

    let stale = admin
        .rbac
        .update_role(rename("Clerks again", &role.etag))
        .await
        .unwrap_err();

    assert_refusal(&stale, Code::Aborted, "ERROR_REASON_ETAG_MISMATCH");
}

async fn a_super_admins_use_of_another_tenant_is_audited_there(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let acme = tenant(&sandbox, "acme").await;
    let mut operator = sandbox.operator().await;
    operator
        .auth
        .create_user(plinth_api::auth::v1::CreateUserRequest {
            tenant_id: plinth_platform::store::tenants::PLATFORM_TENANT_ID.to_string(),
            email: "root@platform.example".to_owned(),
            display_name: "Root".to_owned(),
            password: crate::tokens::PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    let mut root = super::logged_in(&sandbox, "platform", "root@platform.example").await;

    let roles = root
        .clients
        .rbac
        .list_roles(plinth_api::rbac::v1::ListRolesRequest {
            tenant_id: acme.id.clone(),
            ..Default::default()
        })
        .await
        .expect("a super admin holds plinth:* in every tenant")
        .into_inner()
        .roles;

    assert_eq!(roles.len(), 1);
    let store = sandbox.database.open_store().await;
    let chain = store.audit.read_chain(&acme.id, 1, 100).await.unwrap();
    let used = chain
        .iter()
        .find(|event| event.action == "access.platform_admin")
        .expect("the use is recorded in the tenant's chain");
    assert_eq!(used.resource_id, "plinth:role:read");
    assert_eq!(used.actor.user_id, root.user_id);
}
