//! Resolving callers from API keys over real gRPC.

use chrono::Duration;
use plinth_api::auth::v1::{
    PrincipalKind, WhoAmIRequest, WhoAmIResponse, auth_service_client::AuthServiceClient,
};
use plinth_platform::{
    audit::Actor,
    clock,
    error::UNAUTHENTICATED_MESSAGE,
    identity::api_keys::{self, NewApiKey},
};
use plinth_tests::{Backend, Credentials, Sandbox, create_key, error_reason};
use tonic::{Code, Request};

crate::on_both_backends!(
    the_bootstrap_key_is_an_operator_key,
    a_module_key_is_seen_as_its_module,
    every_bad_key_gets_the_same_unauthenticated_answer,
    a_revoked_key_is_refused,
    an_expired_key_is_refused,
    a_malformed_bearer_token_is_refused,
);

async fn who_am_i(sandbox: &Sandbox, key: &str) -> Result<WhoAmIResponse, tonic::Status> {
    AuthServiceClient::with_interceptor(sandbox.channel().await, Credentials::api_key(key))
        .who_am_i(WhoAmIRequest {})
        .await
        .map(tonic::Response::into_inner)
}

fn assert_unauthenticated(result: Result<WhoAmIResponse, tonic::Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::Unauthenticated, "{case}");
    assert_eq!(status.message(), UNAUTHENTICATED_MESSAGE, "{case}");
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_UNAUTHENTICATED"),
        "{case}"
    );
}

async fn the_bootstrap_key_is_an_operator_key(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    let me = who_am_i(&sandbox, &sandbox.operator_key).await.unwrap();

    assert_eq!(me.kind(), PrincipalKind::Operator);
    assert!(!me.api_key_id.is_empty());
    assert!(me.module_id.is_empty());
}

async fn a_module_key_is_seen_as_its_module(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let issued = create_key(
        &sandbox,
        NewApiKey {
            name: "finance".to_owned(),
            module_id: Some("finance".to_owned()),
            scopes: vec!["invoices".to_owned()],
            ..NewApiKey::default()
        },
    )
    .await;

    let me = who_am_i(&sandbox, &issued.secret).await.unwrap();

    assert_eq!(me.kind(), PrincipalKind::Module);
    assert_eq!(me.module_id, "finance");
    assert_eq!(me.api_key_id, issued.record.id.to_string());
    assert_eq!(me.scopes, ["invoices"]);
}

async fn every_bad_key_gets_the_same_unauthenticated_answer(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    // `plk_<key id>_<secret>`: the secret itself may contain `_`.
    let key_part = sandbox
        .operator_key
        .splitn(3, '_')
        .take(2)
        .collect::<Vec<_>>()
        .join("_");
    let wrong_secret = format!("{key_part}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let unknown_id = format!("plk_{}_secret", uuid::Uuid::now_v7().simple());

    for (case, key) in [
        ("wrong secret", wrong_secret.as_str()),
        ("unknown key id", unknown_id.as_str()),
        ("malformed", "not-a-key"),
        ("empty", ""),
    ] {
        assert_unauthenticated(who_am_i(&sandbox, key).await, case);
    }
    let no_key = AuthServiceClient::new(sandbox.channel().await)
        .who_am_i(WhoAmIRequest {})
        .await;
    assert_unauthenticated(no_key.map(tonic::Response::into_inner), "missing");
}

async fn a_revoked_key_is_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let issued = create_key(
        &sandbox,
        NewApiKey {
            name: "soon revoked".to_owned(),
            ..NewApiKey::default()
        },
    )
    .await;
    let store = sandbox.database.open_store().await;
    let mut tx = store.begin().await.unwrap();
    api_keys::revoke(&mut tx, &issued.record, Actor::default(), "")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_unauthenticated(who_am_i(&sandbox, &issued.secret).await, "revoked");
}

async fn an_expired_key_is_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let issued = create_key(
        &sandbox,
        NewApiKey {
            name: "expired".to_owned(),
            expires_at: Some(clock::now() - Duration::seconds(1)),
            ..NewApiKey::default()
        },
    )
    .await;

    assert_unauthenticated(who_am_i(&sandbox, &issued.secret).await, "expired");
}

async fn a_malformed_bearer_token_is_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut request = Request::new(WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("authorization", "Bearer e30.e30.sig".parse().unwrap());

    let result = AuthServiceClient::new(sandbox.channel().await)
        .who_am_i(request)
        .await;

    assert_unauthenticated(result.map(tonic::Response::into_inner), "bearer");
}
