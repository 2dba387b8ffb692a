//! API-key management over real gRPC: secrets shown once, rotation with a
//! grace period, revocation, and who may manage which key.

use std::time::Duration;

use plinth_api::auth::v1::{
    ApiKey, CreateApiKeyRequest, ListApiKeysRequest, RateLimit, RevokeApiKeyRequest,
    RotateApiKeyRequest, WhoAmIRequest,
};
use plinth_tests::{Backend, Clients, Sandbox, error_reason, violated_fields};
use tonic::Code;

use crate::tenants::create_tenant;

crate::on_both_backends!(
    a_created_key_works_and_its_secret_is_never_listed,
    a_revoked_key_is_refused_at_once,
    a_rotated_keys_old_secret_works_within_its_grace_and_not_after,
    a_module_key_manages_itself_but_no_other_key,
    a_tenant_scoped_key_manages_keys_of_its_tenant_only,
    invalid_key_requests_report_each_field,
);

async fn create(
    clients: &mut Clients,
    request: CreateApiKeyRequest,
) -> Result<(ApiKey, String), tonic::Status> {
    clients.auth.create_api_key(request).await.map(|response| {
        let response = response.into_inner();
        (response.api_key.unwrap(), response.secret)
    })
}

fn module_key_request(module: &str) -> CreateApiKeyRequest {
    CreateApiKeyRequest {
        name: format!("{module} worker"),
        module_id: module.to_owned(),
        scopes: vec!["events:write".to_owned()],
        ..Default::default()
    }
}

async fn who_am_i(
    sandbox: &Sandbox,
    secret: &str,
) -> Result<plinth_api::auth::v1::WhoAmIResponse, tonic::Status> {
    sandbox
        .clients(secret)
        .await
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .map(tonic::Response::into_inner)
}

async fn a_created_key_works_and_its_secret_is_never_listed(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    let (key, secret) = create(&mut operator, module_key_request("finance"))
        .await
        .unwrap();

    assert_eq!(
        who_am_i(&sandbox, &secret).await.unwrap().module_id,
        "finance"
    );
    let listed = operator
        .auth
        .list_api_keys(ListApiKeysRequest {
            module_id: "finance".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut listed_key = listed
        .api_keys
        .into_iter()
        .next()
        .expect("the key is listed");
    // Use is recorded in the background; compare everything else.
    listed_key.last_used_at = None;
    assert_eq!(listed_key, key);
    // `plk_<key id>_<secret>`: the secret itself may contain `_`.
    let hidden = secret.splitn(3, '_').nth(2).unwrap();
    assert!(!format!("{listed_key:?}").contains(hidden));
}

async fn a_revoked_key_is_refused_at_once(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let (key, secret) = create(&mut operator, module_key_request("finance"))
        .await
        .unwrap();
    who_am_i(&sandbox, &secret).await.expect("works before");

    operator
        .auth
        .revoke_api_key(RevokeApiKeyRequest { id: key.id })
        .await
        .unwrap();

    let status = who_am_i(&sandbox, &secret).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn a_rotated_keys_old_secret_works_within_its_grace_and_not_after(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let (key, old_secret) = create(&mut operator, module_key_request("finance"))
        .await
        .unwrap();

    let rotated = operator
        .auth
        .rotate_api_key(RotateApiKeyRequest {
            id: key.id,
            grace_period: Some(prost_types::Duration {
                seconds: 2,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();

    assert_ne!(rotated.secret, old_secret);
    who_am_i(&sandbox, &rotated.secret)
        .await
        .expect("the new secret works");
    who_am_i(&sandbox, &old_secret)
        .await
        .expect("the old secret works within its grace");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        who_am_i(&sandbox, &old_secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    who_am_i(&sandbox, &rotated.secret)
        .await
        .expect("the new secret still works");
}

async fn a_module_key_manages_itself_but_no_other_key(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let (finance, finance_secret) = create(&mut operator, module_key_request("finance"))
        .await
        .unwrap();
    let (crm, _) = create(&mut operator, module_key_request("crm"))
        .await
        .unwrap();
    let mut finance_module = sandbox.clients(&finance_secret).await;

    let other = finance_module
        .auth
        .revoke_api_key(RevokeApiKeyRequest { id: crm.id })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let creating = create(&mut finance_module, module_key_request("finance"))
        .await
        .unwrap_err();
    assert_eq!(creating.code(), Code::PermissionDenied);

    let rotated = finance_module
        .auth
        .rotate_api_key(RotateApiKeyRequest {
            id: finance.id.clone(),
            grace_period: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rotated
            .api_key
            .unwrap()
            .previous_secret_expires_at
            .map(|at| at.seconds > 0),
        Some(true),
        "the default grace keeps the old secret alive"
    );
    finance_module
        .auth
        .revoke_api_key(RevokeApiKeyRequest { id: finance.id })
        .await
        .unwrap();
    assert_eq!(
        who_am_i(&sandbox, &rotated.secret)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

async fn a_tenant_scoped_key_manages_keys_of_its_tenant_only(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let acme = create_tenant(&mut operator, "acme", None).await;
    let globex = create_tenant(&mut operator, "globex", None).await;
    let (_, acme_admin_secret) = create(
        &mut operator,
        CreateApiKeyRequest {
            name: "acme admin".to_owned(),
            tenant_id: acme.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (globex_key, _) = create(
        &mut operator,
        CreateApiKeyRequest {
            name: "globex module".to_owned(),
            module_id: "finance".to_owned(),
            tenant_id: globex.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut acme_admin = sandbox.clients(&acme_admin_secret).await;

    let (own, _) = create(
        &mut acme_admin,
        CreateApiKeyRequest {
            name: "acme finance".to_owned(),
            module_id: "finance".to_owned(),
            tenant_id: acme.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(own.tenant_id, acme.id);
    let foreign = create(
        &mut acme_admin,
        CreateApiKeyRequest {
            name: "in globex".to_owned(),
            tenant_id: globex.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let platform_wide = create(&mut acme_admin, module_key_request("finance"))
        .await
        .unwrap_err();
    assert_eq!(platform_wide.code(), Code::PermissionDenied);
    let listing = acme_admin
        .auth
        .list_api_keys(ListApiKeysRequest {
            tenant_id: globex.id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(listing.code(), Code::PermissionDenied);
    let revoking = acme_admin
        .auth
        .revoke_api_key(RevokeApiKeyRequest { id: globex_key.id })
        .await
        .unwrap_err();
    assert_eq!(revoking.code(), Code::NotFound);
}

async fn invalid_key_requests_report_each_field(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    let status = create(
        &mut operator,
        CreateApiKeyRequest {
            name: String::new(),
            module_id: "Finance!".to_owned(),
            tenant_id: "not-a-uuid".to_owned(),
            scopes: vec![String::new()],
            ttl: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            rate_limit: Some(RateLimit {
                calls_per_second: 0,
                burst: 1,
            }),
        },
    )
    .await
    .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_INVALID_ARGUMENT")
    );
    assert_eq!(
        violated_fields(&status),
        [
            "name",
            "module_id",
            "tenant_id",
            "scopes[0]",
            "ttl",
            "rate_limit.calls_per_second"
        ]
    );
    let grace = operator
        .auth
        .rotate_api_key(RotateApiKeyRequest {
            id: uuid::Uuid::now_v7().to_string(),
            grace_period: Some(prost_types::Duration {
                seconds: 30 * 24 * 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&grace), ["grace_period"]);
}
