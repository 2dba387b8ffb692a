//! Credentials presented together: a module acts for a user only inside its
//! key's tenant scope; any other mix is refused with one reason, never
//! resolved to either credential. Duplicate credential headers are refused.

use plinth_api::{
    auth::v1::{ListUsersRequest, PrincipalKind, VerifyTokenRequest, WhoAmIRequest},
    tenant::v1::{GetTenantRequest, get_tenant_request},
};
use plinth_platform::{error::UNAUTHENTICATED_MESSAGE, identity::api_keys::NewApiKey};
use plinth_tests::{Backend, Credentials, Sandbox, create_key, error_reason};
use tonic::{Code, Status};

use crate::tokens::{sign_up, tokens};

crate::on_both_backends!(
    a_key_of_one_tenant_with_a_token_of_another_is_refused_everywhere,
    an_operator_key_with_a_bearer_token_is_refused,
    a_module_key_acts_for_a_user_of_its_own_tenant,
    a_tenant_scoped_key_cannot_verify_another_tenants_token,
    a_credential_header_sent_twice_is_refused,
);

/// Two signed-up tenants, X and Z, with an admin token of each.
struct TwoTenants {
    sandbox: Sandbox,
    x_id: String,
    z_id: String,
    x_token: String,
    z_token: String,
}

async fn two_tenants(backend: Backend) -> TwoTenants {
    let sandbox = Sandbox::start(backend).await;
    let x_id = sign_up(&sandbox, "tenant-x").await;
    let z_id = sign_up(&sandbox, "tenant-z").await;
    let x_token = tokens(&sandbox, "tenant-x", "admin@tenant-x.example")
        .await
        .access_token;
    let z_token = tokens(&sandbox, "tenant-z", "admin@tenant-z.example")
        .await
        .access_token;
    TwoTenants {
        sandbox,
        x_id,
        z_id,
        x_token,
        z_token,
    }
}

impl TwoTenants {
    /// Both tenants enable `module_id`, so that its keys may act there.
    async fn both_enable(&self, module_id: &str) {
        for tenant_id in [&self.x_id, &self.z_id] {
            crate::modules::enabled_for(&self.sandbox, tenant_id, module_id).await;
        }
    }
}

async fn key(sandbox: &Sandbox, module: Option<&str>, tenant_id: Option<&str>) -> String {
    create_key(
        sandbox,
        NewApiKey {
            name: "key".to_owned(),
            module_id: module.map(str::to_owned),
            tenant_id: tenant_id.map(|id| id.parse().unwrap()),
            ..NewApiKey::default()
        },
    )
    .await
    .secret
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::PermissionDenied, "{case}");
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_CREDENTIALS_CONFLICT"),
        "{case}"
    );
}

async fn a_key_of_one_tenant_with_a_token_of_another_is_refused_everywhere(backend: Backend) {
    let tenants = two_tenants(backend).await;
    let x_module_key = key(&tenants.sandbox, Some("crm"), Some(&tenants.x_id)).await;
    let mut mixed = tenants
        .sandbox
        .clients_with(Credentials::module_for_user(
            &x_module_key,
            &tenants.z_token,
        ))
        .await;

    assert_conflict(mixed.auth.who_am_i(WhoAmIRequest {}).await, "WhoAmI");
    assert_conflict(
        mixed
            .tenants
            .get_tenant(GetTenantRequest {
                key: Some(get_tenant_request::Key::Id(tenants.z_id.clone())),
            })
            .await,
        "GetTenant",
    );
    assert_conflict(
        mixed
            .auth
            .list_users(ListUsersRequest {
                tenant_id: tenants.z_id.clone(),
                ..Default::default()
            })
            .await,
        "ListUsers",
    );
    assert_conflict(
        mixed
            .auth
            .verify_token(VerifyTokenRequest {
                access_token: tenants.z_token.clone(),
            })
            .await,
        "VerifyToken",
    );
}

async fn an_operator_key_with_a_bearer_token_is_refused(backend: Backend) {
    let tenants = two_tenants(backend).await;
    let z_operator_key = key(&tenants.sandbox, None, Some(&tenants.z_id)).await;

    for (case, operator_key, token) in [
        (
            "tenant Z's operator key with X's token",
            &z_operator_key,
            &tenants.x_token,
        ),
        (
            "tenant Z's operator key with Z's token",
            &z_operator_key,
            &tenants.z_token,
        ),
        (
            "the platform operator key with X's token",
            &tenants.sandbox.operator_key,
            &tenants.x_token,
        ),
    ] {
        let mut mixed = tenants
            .sandbox
            .clients_with(Credentials::module_for_user(operator_key, token))
            .await;
        assert_conflict(mixed.auth.who_am_i(WhoAmIRequest {}).await, case);
        assert_conflict(
            mixed
                .auth
                .list_users(ListUsersRequest {
                    tenant_id: tenants.x_id.clone(),
                    ..Default::default()
                })
                .await,
            case,
        );
    }
}

async fn a_module_key_acts_for_a_user_of_its_own_tenant(backend: Backend) {
    let tenants = two_tenants(backend).await;
    tenants.both_enable("crm").await;
    for module_key in [
        key(&tenants.sandbox, Some("crm"), Some(&tenants.x_id)).await,
        key(&tenants.sandbox, Some("crm"), None).await,
    ] {
        let mut acting = tenants
            .sandbox
            .clients_with(Credentials::module_for_user(&module_key, &tenants.x_token))
            .await;

        let me = acting
            .auth
            .who_am_i(WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.kind(), PrincipalKind::ModuleForUser);
        assert_eq!(me.tenant_id, tenants.x_id);
        acting
            .tenants
            .get_tenant(GetTenantRequest {
                key: Some(get_tenant_request::Key::Id(tenants.x_id.clone())),
            })
            .await
            .expect("the user's own tenant");
        let other = acting
            .tenants
            .get_tenant(GetTenantRequest {
                key: Some(get_tenant_request::Key::Id(tenants.z_id.clone())),
            })
            .await
            .unwrap_err();
        assert_eq!(other.code(), Code::NotFound);
    }
}

async fn a_tenant_scoped_key_cannot_verify_another_tenants_token(backend: Backend) {
    let tenants = two_tenants(backend).await;
    tenants.both_enable("crm").await;
    let x_module_key = key(&tenants.sandbox, Some("crm"), Some(&tenants.x_id)).await;
    let mut module = tenants.sandbox.clients(&x_module_key).await;

    let own = module
        .auth
        .verify_token(VerifyTokenRequest {
            access_token: tenants.x_token.clone(),
        })
        .await
        .expect("a token of the key's tenant")
        .into_inner();
    let other = module
        .auth
        .verify_token(VerifyTokenRequest {
            access_token: tenants.z_token.clone(),
        })
        .await
        .unwrap_err();

    assert_eq!(own.email, "admin@tenant-x.example");
    assert_eq!(other.code(), Code::PermissionDenied);
    assert!(
        !format!("{other:?}").contains("tenant-z.example"),
        "no email leaks"
    );
}

async fn a_credential_header_sent_twice_is_refused(backend: Backend) {
    let tenants = two_tenants(backend).await;
    let module_key = key(&tenants.sandbox, Some("crm"), None).await;
    let channel = tenants.sandbox.channel().await;
    let twice = |header: &'static str, first: String, second: String| {
        let mut request = tonic::Request::new(WhoAmIRequest {});
        request
            .metadata_mut()
            .append(header, first.parse().unwrap());
        request
            .metadata_mut()
            .append(header, second.parse().unwrap());
        request
    };

    for (case, request) in [
        (
            "the same key twice",
            twice("x-api-key", module_key.clone(), module_key.clone()),
        ),
        (
            "two keys",
            twice(
                "x-api-key",
                module_key.clone(),
                tenants.sandbox.operator_key.clone(),
            ),
        ),
        (
            "two bearer tokens",
            twice(
                "authorization",
                format!("Bearer {}", tenants.x_token),
                format!("Bearer {}", tenants.z_token),
            ),
        ),
    ] {
        let status =
            plinth_api::auth::v1::auth_service_client::AuthServiceClient::new(channel.clone())
                .who_am_i(request)
                .await
                .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}");
        assert_eq!(status.message(), UNAUTHENTICATED_MESSAGE, "{case}");
    }
}
