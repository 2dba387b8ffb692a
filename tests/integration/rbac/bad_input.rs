//! Careless and hostile inputs to the RBAC writes and listings: each is
//! refused field by field, small, and changes nothing.

use plinth_api::rbac::v1::{
    GetRoleRequest, ListPermissionsRequest, ListRolesRequest, LookupUsersRequest,
    PermissionDeclaration, RegisterPermissionsRequest, UpdateRoleRequest,
};
use plinth_tests::{Backend, Sandbox, violated_fields};
use tonic::Code;

use super::{assignment, create_role, declare, role_request, tenant};

crate::on_both_backends!(
    role_fields_past_their_limits_are_field_violations,
    binding_fields_past_their_limits_are_field_violations,
    declarations_past_their_limits_are_field_violations,
    listings_refuse_bad_pages,
);

fn assert_fields(status: &tonic::Status, fields: &[&str]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut violated = violated_fields(status);
    violated.sort();
    let mut expected: Vec<String> = fields.iter().map(|field| (*field).to_owned()).collect();
    expected.sort();
    assert_eq!(violated, expected);
    assert!(status.details().len() < 4096, "the error stays small");
}

async fn role_fields_past_their_limits_are_field_violations(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let good = role_request(&acme.id, "clerk", &["inventory:item:read"], &[]);

    let cases = [
        (
            plinth_api::rbac::v1::CreateRoleRequest {
                key: "Clerk!".to_owned(),
                display_name: "x".repeat(201),
                description: "x".repeat(2001),
                ..good.clone()
            },
            vec!["key", "display_name", "description"],
        ),
        (
            plinth_api::rbac::v1::CreateRoleRequest {
                permissions: vec!["inventory:item:read".to_owned(); 501],
                parent_role_ids: vec![uuid::Uuid::now_v7().to_string(); 21],
                ..good.clone()
            },
            vec!["permissions", "parent_role_ids"],
        ),
        (
            plinth_api::rbac::v1::CreateRoleRequest {
                tenant_id: "acme".to_owned(),
                parent_role_ids: vec!["not-a-uuid".to_owned(), String::new()],
                ..good.clone()
            },
            vec!["tenant_id", "parent_role_ids[0]", "parent_role_ids[1]"],
        ),
    ];
    for (request, fields) in cases {
        let refused = admin.rbac.create_role(request).await.unwrap_err();
        assert_fields(&refused, &fields);
    }
    let role = create_role(admin, &acme.id, "clerk", &["inventory:item:read"], &[]).await;
    let update = admin
        .rbac
        .update_role(UpdateRoleRequest {
            id: role.id.clone(),
            display_name: Some(String::new()),
            etag: "e".repeat(65),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_fields(&update, &["display_name", "etag"]);
    let no_key = admin
        .rbac
        .get_role(GetRoleRequest { key: None })
        .await
        .unwrap_err();
    assert_fields(&no_key, &["key"]);
}

async fn binding_fields_past_their_limits_are_field_violations(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let role = create_role(admin, &acme.id, "clerk", &["inventory:item:read"], &[]).await;
    let good = assignment(&acme.id, &acme.admin.user_id, &role, "");
    let far = std::time::SystemTime::now() + std::time::Duration::from_secs(11 * 366 * 86_400);

    let cases = [
        (
            plinth_api::rbac::v1::AssignRoleRequest {
                expires_at: Some(far.into()),
                company_id: "north".to_owned(),
                ..good.clone()
            },
            vec!["expires_at", "company_id"],
        ),
        (
            plinth_api::rbac::v1::AssignRoleRequest {
                expires_at: Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: -1,
                }),
                user_id: String::new(),
                role_id: String::new(),
                ..good.clone()
            },
            vec!["expires_at", "user_id", "role_id"],
        ),
    ];
    for (request, fields) in cases {
        let refused = admin.rbac.assign_role(request).await.unwrap_err();
        assert_fields(&refused, &fields);
    }
}

async fn declarations_past_their_limits_are_field_violations(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let declaration = |name: &str, description: &str| PermissionDeclaration {
        name: name.to_owned(),
        description: description.to_owned(),
    };

    let cases = [
        (
            RegisterPermissionsRequest {
                module_id: "Inventory".to_owned(),
                permissions: vec![],
            },
            vec!["module_id", "permissions"],
        ),
        (
            RegisterPermissionsRequest {
                module_id: "inventory".to_owned(),
                permissions: vec![declaration("inventory:item:read", ""); 501],
            },
            vec!["permissions"],
        ),
        (
            RegisterPermissionsRequest {
                module_id: "inventory".to_owned(),
                permissions: vec![
                    declaration("inventory:item:read", &"x".repeat(501)),
                    declaration("inventory:item:*", ""),
                    declaration("inventory:item:read", ""),
                ],
            },
            vec![
                "permissions[0].description",
                "permissions[1].name",
                "permissions[2].name",
            ],
        ),
    ];
    for (request, fields) in cases {
        let refused = operator
            .rbac
            .register_permissions(request)
            .await
            .unwrap_err();
        assert_fields(&refused, &fields);
    }
    let listed = operator
        .rbac
        .list_permissions(ListPermissionsRequest {
            module_id: "inventory".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.permissions.is_empty(), "nothing was declared");
}

async fn listings_refuse_bad_pages(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let acme = tenant(&sandbox, "acme").await;
    let mut operator = sandbox.operator().await;

    let permissions = operator
        .rbac
        .list_permissions(ListPermissionsRequest {
            page_size: 501,
            page_token: "zz".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let roles = operator
        .rbac
        .list_roles(ListRolesRequest {
            tenant_id: acme.id.clone(),
            page_size: -1,
            page_token: "x".repeat(1000),
        })
        .await
        .unwrap_err();
    let users = operator
        .rbac
        .lookup_users(LookupUsersRequest {
            tenant_id: acme.id.clone(),
            permission: "inventory:item:read".to_owned(),
            page_size: i32::MAX,
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_fields(&permissions, &["page_size", "page_token"]);
    assert_fields(&roles, &["page_size"]);
    assert_fields(&users, &["page_size"]);
    let first = operator
        .rbac
        .list_permissions(ListPermissionsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let second = operator
        .rbac
        .list_permissions(ListPermissionsRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.permissions.last().unwrap().name < second.permissions[0].name);
}
