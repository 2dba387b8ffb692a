//! A tenant that is not active takes no writes (FAILED_PRECONDITION with
//! TENANT_NOT_ACTIVE), and its own keys are refused as its users' logins
//! are; revocations still work. A provisioning tenant takes writes.

use plinth_api::{
    auth::v1::{
        CreateApiKeyRequest, CreateUserRequest, RevokeApiKeyRequest, UpdateUserRequest,
        WhoAmIRequest,
    },
    tenant::v1::{DeleteTenantRequest, SetTenantStatusRequest, TenantStatus, UpdateCompanyRequest},
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{Backend, Clients, Sandbox, create_key, error_reason};
use tonic::{Code, Status};

use crate::{
    tenants::{create_company, create_provisioning_tenant, create_tenant},
    tokens::PASSWORD,
};

crate::on_both_backends!(
    a_suspended_tenants_own_keys_are_refused_until_it_is_reactivated,
    nothing_is_written_into_a_suspended_tenant,
    nothing_is_written_into_a_deleted_tenant,
    a_provisioning_tenant_takes_writes,
    keys_of_a_suspended_tenant_can_still_be_revoked,
);

async fn set_status(operator: &mut Clients, tenant_id: &str, status: TenantStatus) {
    operator
        .tenants
        .set_tenant_status(SetTenantStatusRequest {
            id: tenant_id.to_owned(),
            status: status.into(),
            reason: "test".to_owned(),
        })
        .await
        .unwrap();
}

fn assert_not_active<T: std::fmt::Debug>(result: Result<T, Status>, status: &str, case: &str) {
    let refusal = result.expect_err(case);
    assert_eq!(
        refusal.code(),
        Code::FailedPrecondition,
        "{case}: {refusal:?}"
    );
    let info = tonic_types::StatusExt::get_details_error_info(&refusal).unwrap();
    assert_eq!(info.reason, "ERROR_REASON_TENANT_NOT_ACTIVE", "{case}");
    assert_eq!(info.metadata["status"], status, "{case}");
}

fn user_request(tenant_id: &str, email: &str) -> CreateUserRequest {
    CreateUserRequest {
        tenant_id: tenant_id.to_owned(),
        email: email.to_owned(),
        display_name: "Ada".to_owned(),
        password: PASSWORD.to_owned(),
    }
}

async fn tenant_key(sandbox: &Sandbox, tenant_id: &str) -> String {
    create_key(
        sandbox,
        NewApiKey {
            name: "tenant operator".to_owned(),
            tenant_id: Some(tenant_id.parse().unwrap()),
            ..NewApiKey::default()
        },
    )
    .await
    .secret
}

async fn a_suspended_tenants_own_keys_are_refused_until_it_is_reactivated(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let key = tenant_key(&sandbox, &tenant.id).await;
    let mut scoped = sandbox.clients(&key).await;
    scoped
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .expect("active");

    set_status(&mut operator, &tenant.id, TenantStatus::Suspended).await;
    let refused = scoped.auth.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    let refused_write = scoped
        .auth
        .create_user(user_request(&tenant.id, "ada@acme.example"))
        .await
        .unwrap_err();
    set_status(&mut operator, &tenant.id, TenantStatus::Active).await;

    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("ERROR_REASON_UNAUTHENTICATED")
    );
    assert_eq!(refused_write.code(), Code::Unauthenticated);
    scoped
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .expect("reactivation restores the key");
}

async fn nothing_is_written_into_a_suspended_tenant(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let company = create_company(&mut operator, &tenant.id, "hq")
        .await
        .unwrap();
    let user = operator
        .auth
        .create_user(user_request(&tenant.id, "ada@acme.example"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    set_status(&mut operator, &tenant.id, TenantStatus::Suspended).await;

    assert_not_active(
        operator
            .auth
            .create_user(user_request(&tenant.id, "bob@acme.example"))
            .await,
        "suspended",
        "CreateUser",
    );
    assert_not_active(
        create_company(&mut operator, &tenant.id, "branch").await,
        "suspended",
        "CreateCompany",
    );
    assert_not_active(
        operator
            .tenants
            .update_company(UpdateCompanyRequest {
                id: company.id,
                name: Some("Renamed".to_owned()),
                ..Default::default()
            })
            .await,
        "suspended",
        "UpdateCompany",
    );
    assert_not_active(
        operator
            .auth
            .update_user(UpdateUserRequest {
                id: user.id,
                display_name: Some("Renamed".to_owned()),
                ..Default::default()
            })
            .await,
        "suspended",
        "UpdateUser",
    );
    assert_not_active(
        operator
            .auth
            .create_api_key(CreateApiKeyRequest {
                name: "worker".to_owned(),
                tenant_id: tenant.id,
                ..Default::default()
            })
            .await,
        "suspended",
        "CreateApiKey",
    );
}

async fn nothing_is_written_into_a_deleted_tenant(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    operator
        .tenants
        .delete_tenant(DeleteTenantRequest {
            id: tenant.id.clone(),
        })
        .await
        .unwrap();

    assert_not_active(
        operator
            .auth
            .create_user(user_request(&tenant.id, "ada@acme.example"))
            .await,
        "deleted",
        "CreateUser",
    );
    assert_not_active(
        create_company(&mut operator, &tenant.id, "hq").await,
        "deleted",
        "CreateCompany",
    );
}

async fn a_provisioning_tenant_takes_writes(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_provisioning_tenant(&mut operator, "acme").await;

    create_company(&mut operator, &tenant.id, "hq")
        .await
        .expect("operators set a provisioning tenant up");
    operator
        .auth
        .create_user(user_request(&tenant.id, "ada@acme.example"))
        .await
        .expect("operators set a provisioning tenant up");
}

async fn keys_of_a_suspended_tenant_can_still_be_revoked(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let key = operator
        .auth
        .create_api_key(CreateApiKeyRequest {
            name: "worker".to_owned(),
            tenant_id: tenant.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    set_status(&mut operator, &tenant.id, TenantStatus::Suspended).await;

    let revoked = operator
        .auth
        .revoke_api_key(RevokeApiKeyRequest { id: key.id })
        .await
        .expect("revocation only takes access away")
        .into_inner();

    assert!(revoked.api_key.unwrap().revoked_at.is_some());
}
