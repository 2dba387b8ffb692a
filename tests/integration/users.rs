//! AuthService users over real gRPC, and tenant isolation of tenant-scoped
//! administrators.

use plinth_api::auth::v1::{
    CreateUserRequest, GetUserRequest, ListUsersRequest, SetPasswordRequest, UpdateUserRequest,
    User, UserStatus,
};
use plinth_api::tenant::v1::{
    GetCompanyRequest, ListCompaniesRequest, TenantLimits, get_company_request,
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{Backend, Clients, Sandbox, create_key, error_reason, violated_fields};
use tonic::Code;

use crate::tenants::{create_company, create_tenant, created_at_once};

crate::on_both_backends!(
    a_user_is_created_with_a_normalised_email,
    email_variants_are_one_account,
    weak_passwords_are_refused_with_the_rule,
    the_user_limit_holds_under_concurrent_creation,
    disabling_a_user_is_visible_and_audited,
    an_admin_can_reset_a_password_but_not_to_a_weak_one,
    a_tenant_administrator_cannot_reach_another_tenant_by_id_code_or_list,
);

async fn create_user(
    clients: &mut Clients,
    tenant_id: &str,
    email: &str,
) -> Result<User, tonic::Status> {
    clients
        .auth
        .create_user(CreateUserRequest {
            tenant_id: tenant_id.to_owned(),
            email: email.to_owned(),
            display_name: "Someone".to_owned(),
            password: "a long and unusual passphrase".to_owned(),
        })
        .await
        .map(|response| response.into_inner().user.unwrap())
}

async fn a_user_is_created_with_a_normalised_email(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;

    let user = create_user(&mut operator, &tenant.id, "  Wile.E@ACME.example ")
        .await
        .unwrap();

    assert_eq!(user.email, "wile.e@acme.example");
    assert_eq!(user.status(), UserStatus::Active);
    assert!(!user.platform_admin);
}

async fn email_variants_are_one_account(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    create_user(&mut operator, &tenant.id, "wile@acme.example")
        .await
        .unwrap();

    for variant in [
        "WILE@acme.example",
        "ｗｉｌｅ@acme.example",
        " wile@ACME.EXAMPLE",
    ] {
        let status = create_user(&mut operator, &tenant.id, variant)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{variant}");
    }
}

async fn weak_passwords_are_refused_with_the_rule(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;

    for password in ["short", "password123", "acmeacme"] {
        let status = operator
            .auth
            .create_user(CreateUserRequest {
                tenant_id: tenant.id.clone(),
                email: "wile@acme.example".to_owned(),
                display_name: "Wile".to_owned(),
                password: password.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{password}");
        assert_eq!(
            error_reason(&status).as_deref(),
            Some("ERROR_REASON_WEAK_PASSWORD"),
            "{password}"
        );
        assert_eq!(violated_fields(&status), ["password"]);
    }
}

async fn the_user_limit_holds_under_concurrent_creation(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let limits = TenantLimits {
        max_users: 2,
        max_companies: 0,
    };

    let created = created_at_once(
        &mut operator,
        limits,
        6,
        |mut clients, tenant_id, index| async move {
            create_user(
                &mut clients,
                &tenant_id,
                &format!("user{index}@acme.example"),
            )
            .await
        },
    )
    .await;

    assert_eq!(created, 1, "exactly the last seat was taken");
}

async fn disabling_a_user_is_visible_and_audited(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let user = create_user(&mut operator, &tenant.id, "wile@acme.example")
        .await
        .unwrap();

    let updated = operator
        .auth
        .update_user(UpdateUserRequest {
            id: user.id.clone(),
            status: Some(UserStatus::Disabled.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();

    assert_eq!(updated.status(), UserStatus::Disabled);
    let listed = operator
        .auth
        .list_users(ListUsersRequest {
            tenant_id: tenant.id.clone(),
            status: UserStatus::Disabled.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users, [updated]);
    let store = sandbox.database.open_store().await;
    let chain = store.audit.read_chain(&tenant.id, 1, 100).await.unwrap();
    let actions: Vec<_> = chain.iter().map(|event| event.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "rbac.role.created",
            "auth.user.created",
            "auth.user.updated"
        ]
    );
}

async fn an_admin_can_reset_a_password_but_not_to_a_weak_one(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let user = create_user(&mut operator, &tenant.id, "wile@acme.example")
        .await
        .unwrap();
    let reset = |password: &str| SetPasswordRequest {
        user_id: user.id.clone(),
        current_password: String::new(),
        new_password: password.to_owned(),
    };

    operator
        .auth
        .set_password(reset("another rather long phrase"))
        .await
        .unwrap();
    let weak = operator
        .auth
        .set_password(reset("12345678"))
        .await
        .unwrap_err();

    assert_eq!(
        error_reason(&weak).as_deref(),
        Some("ERROR_REASON_WEAK_PASSWORD")
    );
}

/// Property: for many generated ids and codes, an administrator of tenant A
/// (a tenant-scoped key, or a tenant admin's token) sees tenant B's users and
/// companies exactly as if they did not exist, and can change none of them.
async fn a_tenant_administrator_cannot_reach_another_tenant_by_id_code_or_list(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant_a = operator
        .tenants
        .signup(plinth_api::tenant::v1::SignupRequest {
            tenant_code: "tenant-a".to_owned(),
            tenant_name: "Tenant A".to_owned(),
            admin_email: "admin@a.example".to_owned(),
            admin_display_name: "Admin A".to_owned(),
            admin_password: "a long and unusual passphrase".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let tenant_b = create_tenant(&mut operator, "tenant-b", None).await;
    let mut b_users = Vec::new();
    let mut b_companies = Vec::new();
    for index in 0..5 {
        b_users.push(
            create_user(&mut operator, &tenant_b.id, &format!("b{index}@b.example"))
                .await
                .unwrap(),
        );
        b_companies.push(
            create_company(&mut operator, &tenant_b.id, &format!("b-company-{index}"))
                .await
                .unwrap(),
        );
    }
    let a_user = create_user(&mut operator, &tenant_a.id, "a@a.example")
        .await
        .unwrap();
    let a_key = create_key(
        &sandbox,
        NewApiKey {
            name: "tenant a admin".to_owned(),
            tenant_id: Some(tenant_a.id.parse().unwrap()),
            ..NewApiKey::default()
        },
    )
    .await;
    let admin_token = sandbox
        .clients_with(plinth_tests::Credentials::default())
        .await
        .auth
        .login(plinth_api::auth::v1::LoginRequest {
            tenant_code: "tenant-a".to_owned(),
            email: "admin@a.example".to_owned(),
            password: "a long and unusual passphrase".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token;

    for credentials in [
        plinth_tests::Credentials::api_key(&a_key.secret),
        plinth_tests::Credentials::bearer(&admin_token),
    ] {
        let mut admin_a = sandbox.clients_with(credentials).await;
        assert_isolated(&mut admin_a, &a_user, &tenant_b, &b_users, &b_companies).await;
    }
    let b_user_in_b = operator
        .auth
        .get_user(GetUserRequest {
            id: b_users[0].id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        b_user_in_b.display_name, "Someone",
        "nothing of B was changed"
    );
}

async fn assert_isolated(
    admin_a: &mut Clients,
    a_user: &User,
    tenant_b: &plinth_api::tenant::v1::Tenant,
    b_users: &[User],
    b_companies: &[plinth_api::tenant::v1::Company],
) {
    let own = admin_a
        .auth
        .get_user(GetUserRequest {
            id: a_user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        own.user.unwrap().id,
        a_user.id,
        "its own tenant is reachable"
    );

    let unknown_ids: Vec<String> = (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let b_user_ids = b_users.iter().map(|user| user.id.clone());
    for id in b_user_ids.chain(unknown_ids.iter().cloned()) {
        let read = admin_a
            .auth
            .get_user(GetUserRequest { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(read.code(), Code::NotFound, "user {id}");
        let write = admin_a
            .auth
            .update_user(UpdateUserRequest {
                id: id.clone(),
                display_name: Some("taken over".to_owned()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(write.code(), Code::NotFound, "user {id}");
        let reset = admin_a
            .auth
            .set_password(SetPasswordRequest {
                user_id: id.clone(),
                current_password: String::new(),
                new_password: "a takeover passphrase of note".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(reset.code(), Code::NotFound, "user {id}");
    }
    for company in b_companies {
        for key in [
            get_company_request::Key::Id(company.id.clone()),
            get_company_request::Key::Code(plinth_api::tenant::v1::CompanyCode {
                tenant_id: tenant_b.id.clone(),
                code: company.code.clone(),
            }),
        ] {
            let read = admin_a
                .tenants
                .get_company(GetCompanyRequest { key: Some(key) })
                .await
                .unwrap_err();
            assert_eq!(read.code(), Code::NotFound);
        }
    }
    for tenant_id in std::iter::once(tenant_b.id.clone()).chain(unknown_ids) {
        let users = ListUsersRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let companies = ListCompaniesRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let refusals = [
            admin_a.auth.list_users(users).await.map(drop),
            admin_a.tenants.list_companies(companies).await.map(drop),
            create_user(admin_a, &tenant_id, "intruder@a.example")
                .await
                .map(drop),
        ];
        for refusal in refusals {
            assert_eq!(refusal.unwrap_err().code(), Code::PermissionDenied);
        }
    }
}
