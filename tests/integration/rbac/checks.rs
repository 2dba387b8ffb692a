//! The questions modules ask, who may ask them, and their bad inputs.

use plinth_api::auth::v1::CreateUserRequest;
use plinth_api::rbac::v1::{
    CheckBatchRequest, CheckItem, CheckRequest, Consistency, GrantSource,
    ListUserPermissionsRequest, LookupCompaniesRequest, LookupUsersRequest, consistency,
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{Backend, Credentials, Sandbox, assert_refusal, create_key, violated_fields};
use tonic::Code;

use super::{allowed, assign, check_request, create_role, declare, tenant};
use crate::{tenants::create_company, tokens::PASSWORD};

crate::on_both_backends!(
    an_explanation_names_the_binding_and_the_role_that_granted,
    a_batch_answers_each_item_and_sums_them_up,
    checks_compiled_at_once_each_get_their_own_answer,
    the_effective_set_lists_grants_as_written,
    company_lookup_names_companies_or_all_of_them,
    user_lookup_pages_through_the_holders,
    users_ask_about_themselves_and_modules_about_anyone_in_scope,
    malformed_questions_are_field_violations,
);

async fn an_explanation_names_the_binding_and_the_role_that_granted(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let base = create_role(admin, &acme.id, "base", &["inventory:item:*"], &[]).await;
    let clerk = create_role(admin, &acme.id, "clerk", &[], &[&base]).await;
    let (binding, _) = assign(admin, &acme.id, &ada.user_id, &clerk, "").await;
    let explain = |permission: &str| plinth_api::rbac::v1::CheckRequest {
        explain: true,
        ..check_request(&acme.id, &ada.user_id, permission, "")
    };

    let granted = admin
        .rbac
        .check(explain("inventory:item:write"))
        .await
        .unwrap()
        .into_inner();
    let refused = admin
        .rbac
        .check(explain("finance:invoice:read"))
        .await
        .unwrap()
        .into_inner();
    let member = admin
        .rbac
        .check(explain("plinth:company:list"))
        .await
        .unwrap()
        .into_inner();

    let grant = granted.explanation.unwrap().granted_by.unwrap();
    assert_eq!(grant.source(), GrantSource::RoleBinding);
    assert_eq!(grant.pattern, "inventory:item:*");
    assert_eq!(grant.binding_id, binding.id);
    assert_eq!(
        (grant.role_key.as_str(), grant.granting_role_key.as_str()),
        ("clerk", "base")
    );
    assert!(!refused.allowed);
    assert_eq!(refused.explanation.unwrap().granted_by, None);
    assert_eq!(
        member.explanation.unwrap().granted_by.unwrap().source(),
        GrantSource::Membership
    );
}

async fn a_batch_answers_each_item_and_sums_them_up(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let north = create_company(admin, &acme.id, "north").await.unwrap().id;
    let approver = create_role(
        admin,
        &acme.id,
        "approver",
        &["finance:invoice:approve"],
        &[],
    )
    .await;
    assign(admin, &acme.id, &ada.user_id, &approver, &north).await;
    let item = |permission: &str, company_id: &str| CheckItem {
        permission: permission.to_owned(),
        company_id: company_id.to_owned(),
    };

    let answer = admin
        .rbac
        .check_batch(CheckBatchRequest {
            tenant_id: acme.id.clone(),
            user_id: ada.user_id.clone(),
            items: vec![
                item("finance:invoice:approve", &north),
                item("finance:invoice:approve", ""),
                item("plinth:tenant:read", ""),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let allowed: Vec<bool> = answer.results.iter().map(|result| result.allowed).collect();
    assert_eq!(allowed, [true, false, true]);
    assert_eq!(answer.results[0].company_id, north);
    assert!(!answer.all_allowed);
    assert!(answer.any_allowed);
    assert!(!answer.consistency_token.is_empty());
}

/// Compiles running together share store statements; each must still get
/// its own user's and scope's grants.
async fn checks_compiled_at_once_each_get_their_own_answer(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let admin = &mut acme.admin.clients;
    let north = create_company(admin, &acme.id, "north").await.unwrap().id;
    let south = create_company(admin, &acme.id, "south").await.unwrap().id;
    let reader = create_role(admin, &acme.id, "reader", &["inventory:item:read"], &[]).await;
    let mut users = Vec::new();
    for index in 0..8 {
        let user = admin
            .auth
            .create_user(CreateUserRequest {
                tenant_id: acme.id.clone(),
                email: format!("user{index}@acme.example"),
                display_name: format!("user {index}"),
                password: PASSWORD.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        // Even users read everywhere, odd ones in north only.
        let company_id = if index % 2 == 0 { "" } else { north.as_str() };
        assign(admin, &acme.id, &user.id, &reader, company_id).await;
        users.push(user.id);
    }
    let mut asked = Vec::new();
    for (index, user_id) in users.iter().enumerate() {
        for company_id in ["", north.as_str(), south.as_str()] {
            let expected = index % 2 == 0 || company_id == north;
            let request = CheckRequest {
                consistency: Some(Consistency {
                    requirement: Some(consistency::Requirement::FullyConsistent(true)),
                }),
                ..check_request(&acme.id, user_id, "inventory:item:read", company_id)
            };
            let mut client = admin.rbac.clone();
            asked.push(tokio::spawn(async move {
                let answer = client
                    .check(request)
                    .await
                    .map(|answer| answer.into_inner().allowed);
                (answer, expected)
            }));
        }
    }

    for check in asked {
        let (answer, expected) = check.await.unwrap();
        assert_eq!(answer.expect("check answered"), expected);
    }
}

async fn the_effective_set_lists_grants_as_written(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let north = create_company(admin, &acme.id, "north").await.unwrap().id;
    let items = create_role(admin, &acme.id, "items", &["inventory:item:*"], &[]).await;
    let approver = create_role(
        admin,
        &acme.id,
        "approver",
        &["finance:invoice:approve"],
        &[],
    )
    .await;
    assign(admin, &acme.id, &ada.user_id, &items, "").await;
    assign(admin, &acme.id, &ada.user_id, &approver, &north).await;
    let listed = |company_id: &str| ListUserPermissionsRequest {
        tenant_id: acme.id.clone(),
        user_id: ada.user_id.clone(),
        company_id: company_id.to_owned(),
        consistency: None,
    };

    let tenant_wide = admin
        .rbac
        .list_user_permissions(listed(""))
        .await
        .unwrap()
        .into_inner();
    let in_north = admin
        .rbac
        .list_user_permissions(listed(&north))
        .await
        .unwrap()
        .into_inner();

    let membership = [
        "plinth:company:list",
        "plinth:company:read",
        "plinth:module:read",
        "plinth:permission:read",
        "plinth:tenant:read",
    ];
    let mut expected: Vec<&str> = ["inventory:item:*"].into_iter().chain(membership).collect();
    expected.sort_unstable();
    assert_eq!(tenant_wide.permissions, expected);
    expected.push("finance:invoice:approve");
    expected.sort_unstable();
    assert_eq!(in_north.permissions, expected);
}

async fn company_lookup_names_companies_or_all_of_them(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let ada = acme.member(&sandbox, "ada").await;
    let admin = &mut acme.admin.clients;
    let north = create_company(admin, &acme.id, "north").await.unwrap().id;
    let south = create_company(admin, &acme.id, "south").await.unwrap().id;
    create_company(admin, &acme.id, "west").await.unwrap();
    let approver = create_role(admin, &acme.id, "approver", &["finance:*"], &[]).await;
    let reader = create_role(admin, &acme.id, "reader", &["inventory:item:read"], &[]).await;
    assign(admin, &acme.id, &ada.user_id, &approver, &north).await;
    assign(admin, &acme.id, &ada.user_id, &approver, &south).await;
    assign(admin, &acme.id, &ada.user_id, &reader, "").await;
    let lookup = |permission: &str| LookupCompaniesRequest {
        tenant_id: acme.id.clone(),
        user_id: ada.user_id.clone(),
        permission: permission.to_owned(),
        consistency: None,
    };

    let approve = admin
        .rbac
        .lookup_companies(lookup("finance:invoice:approve"))
        .await
        .unwrap()
        .into_inner();
    let read = admin
        .rbac
        .lookup_companies(lookup("inventory:item:read"))
        .await
        .unwrap()
        .into_inner();
    let count = admin
        .rbac
        .lookup_companies(lookup("inventory:stock:count"))
        .await
        .unwrap()
        .into_inner();

    let mut expected = vec![north, south];
    expected.sort();
    assert!(!approve.all_companies);
    assert_eq!(approve.company_ids, expected);
    assert!(read.all_companies);
    assert!(read.company_ids.is_empty());
    assert!(!count.all_companies && count.company_ids.is_empty());
}

async fn user_lookup_pages_through_the_holders(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut holders = Vec::new();
    for name in ["ada", "bob", "cy"] {
        holders.push(acme.member(&sandbox, name).await.user_id);
    }
    let bystander = acme.member(&sandbox, "dee").await;
    let admin = &mut acme.admin.clients;
    let approver = create_role(admin, &acme.id, "approver", &["finance:invoice:*"], &[]).await;
    for user_id in &holders {
        assign(admin, &acme.id, user_id, &approver, "").await;
    }
    let page = |page_token: String| LookupUsersRequest {
        tenant_id: acme.id.clone(),
        permission: "finance:invoice:approve".to_owned(),
        page_size: 2,
        page_token,
        ..Default::default()
    };

    let first = admin
        .rbac
        .lookup_users(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let second = admin
        .rbac
        .lookup_users(page(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();

    // The tenant admin holds `*`: it is a holder too.
    let mut expected = holders.clone();
    expected.push(acme.admin.user_id.clone());
    expected.sort();
    let mut found: Vec<String> = first.user_ids.into_iter().chain(second.user_ids).collect();
    found.sort();
    assert_eq!(found, expected);
    assert!(second.next_page_token.is_empty());
    assert!(!found.contains(&bystander.user_id));
}

async fn users_ask_about_themselves_and_modules_about_anyone_in_scope(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut ada = acme.member(&sandbox, "ada").await;
    let bob = acme.member(&sandbox, "bob").await;
    crate::modules::enabled_for(&sandbox, &acme.id, "inventory").await;
    let module_key = create_key(
        &sandbox,
        NewApiKey {
            name: "inventory".to_owned(),
            module_id: Some("inventory".to_owned()),
            ..NewApiKey::default()
        },
    )
    .await
    .secret;

    let about_self = ada
        .clients
        .rbac
        .check(check_request(&acme.id, "", "inventory:item:read", ""))
        .await
        .expect("a user asks about itself");
    let about_other = ada
        .clients
        .rbac
        .check(check_request(
            &acme.id,
            &bob.user_id,
            "inventory:item:read",
            "",
        ))
        .await
        .unwrap_err();
    let mut module = sandbox.clients(&module_key).await;
    let by_module = allowed(
        &mut module,
        &acme.id,
        &bob.user_id,
        "plinth:tenant:read",
        "",
    )
    .await;
    let mut acting = sandbox
        .clients_with(Credentials::module_for_user(&module_key, &ada.access_token))
        .await;
    let for_user = acting
        .rbac
        .check(check_request(&acme.id, "", "plinth:tenant:read", ""))
        .await
        .unwrap()
        .into_inner();
    let without_subject = module
        .rbac
        .check(check_request(&acme.id, "", "plinth:tenant:read", ""))
        .await
        .unwrap_err();

    assert!(!about_self.into_inner().allowed);
    assert_eq!(about_other.code(), Code::NotFound);
    assert!(by_module);
    assert!(for_user.allowed);
    assert_eq!(violated_fields(&without_subject), ["user_id"]);
}

async fn malformed_questions_are_field_violations(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    declare(&sandbox).await;
    let acme = tenant(&sandbox, "acme").await;
    let globex = tenant(&sandbox, "globex").await;
    let mut operator = sandbox.operator().await;
    let user_id = acme.admin.user_id.clone();
    let with = |consistency: consistency::Requirement| plinth_api::rbac::v1::CheckRequest {
        consistency: Some(Consistency {
            requirement: Some(consistency),
        }),
        ..check_request(&acme.id, &user_id, "inventory:item:read", "")
    };
    let globex_token = operator
        .rbac
        .check(check_request(
            &globex.id,
            &globex.admin.user_id,
            "inventory:item:read",
            "",
        ))
        .await
        .unwrap()
        .into_inner()
        .consistency_token;

    let cases = [
        (check_request(&acme.id, &user_id, "", ""), "permission"),
        (check_request(&acme.id, &user_id, "a:b", ""), "permission"),
        (
            check_request(&acme.id, &user_id, &"a:b:c".repeat(100), ""),
            "permission",
        ),
        (
            check_request("acme", &user_id, "inventory:item:read", ""),
            "tenant_id",
        ),
        (
            check_request(&acme.id, "ada", "inventory:item:read", ""),
            "user_id",
        ),
        (
            check_request(&acme.id, &user_id, "inventory:item:read", "x"),
            "company_id",
        ),
        (
            with(consistency::Requirement::AtLeastAsFresh(
                "forged".to_owned(),
            )),
            "consistency.at_least_as_fresh",
        ),
        (
            with(consistency::Requirement::AtLeastAsFresh(globex_token)),
            "consistency.at_least_as_fresh",
        ),
    ];
    for (request, field) in cases {
        let refused = operator.rbac.check(request).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert_eq!(violated_fields(&refused), [field]);
    }
    let oversized = operator
        .rbac
        .check_batch(CheckBatchRequest {
            tenant_id: acme.id.clone(),
            user_id: user_id.clone(),
            items: vec![CheckItem::default(); 101],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&oversized), ["items"]);
    let empty = operator
        .rbac
        .check_batch(CheckBatchRequest {
            tenant_id: acme.id.clone(),
            user_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refusal(
        &empty,
        Code::InvalidArgument,
        "ERROR_REASON_INVALID_ARGUMENT",
    );
}
