//! Login, tokens and sessions over real gRPC: the full flow, forged tokens,
//! suspension, concurrent refresh, and equal answers for unknown accounts.

use std::time::{Duration, Instant};

use plinth_api::auth::v1::{
    CreateUserRequest, GetJwksRequest, ListUsersRequest, LoginRequest, LoginResponse,
    LogoutRequest, PrincipalKind, RefreshRequest, RotateSigningKeyRequest, TokenPair,
    VerifyTokenRequest, WhoAmIRequest,
};
use plinth_api::tenant::v1::{SetTenantStatusRequest, SignupRequest, TenantStatus};
use plinth_tests::{
    Backend, Credentials, Sandbox, all_at_once, error_reason, forgeries::Forger, module_key,
    violated_fields,
};
use tonic::Code;

use crate::tenants::{create_company, create_tenant};

crate::on_both_backends!(
    the_whole_flow_from_signup_to_logout,
    forged_and_broken_tokens_are_refused,
    suspending_a_tenant_stops_its_logins_and_its_tokens,
    concurrent_refreshes_of_one_token_give_exactly_one_pair,
    a_tenant_admin_cannot_reach_another_tenant,
    disabling_a_user_ends_its_sessions,
    super_admins_are_platform_users_made_by_operators_only,
);

pub const PASSWORD: &str = "rocket skates and anvils";

/// Signs up tenant `code` with admin `admin@<code>.example`; its id.
pub async fn sign_up(sandbox: &Sandbox, code: &str) -> String {
    let mut operator = sandbox.operator().await;
    operator
        .tenants
        .signup(SignupRequest {
            tenant_code: code.to_owned(),
            tenant_name: format!("Tenant {code}"),
            admin_email: format!("admin@{code}.example"),
            admin_display_name: "Admin".to_owned(),
            admin_password: PASSWORD.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .id
}

pub async fn login(
    sandbox: &Sandbox,
    tenant_code: &str,
    email: &str,
    password: &str,
) -> Result<LoginResponse, tonic::Status> {
    sandbox
        .clients_with(Credentials::default())
        .await
        .auth
        .login(LoginRequest {
            tenant_code: tenant_code.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn tokens(sandbox: &Sandbox, tenant_code: &str, email: &str) -> TokenPair {
    login(sandbox, tenant_code, email, PASSWORD)
        .await
        .unwrap()
        .tokens
        .unwrap()
}

async fn verify(
    sandbox: &Sandbox,
    key: &str,
    access_token: &str,
) -> Result<plinth_api::auth::v1::VerifyTokenResponse, tonic::Status> {
    sandbox
        .clients(key)
        .await
        .auth
        .verify_token(VerifyTokenRequest {
            access_token: access_token.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
}

async fn the_whole_flow_from_signup_to_logout(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let acme = create_tenant(&mut operator, "acme", None).await;
    create_company(&mut operator, &acme.id, "hq").await.unwrap();
    let initech = sign_up(&sandbox, "initech").await;
    let admin_tokens = tokens(&sandbox, "initech", "admin@initech.example").await;
    let mut admin = sandbox
        .clients_with(Credentials::bearer(&admin_tokens.access_token))
        .await;
    admin
        .auth
        .create_user(CreateUserRequest {
            tenant_id: initech.clone(),
            email: "milton@initech.example".to_owned(),
            display_name: "Milton".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .expect("a tenant admin creates users in its tenant");

    let session = tokens(&sandbox, "initech", "milton@initech.example").await;
    crate::modules::enabled_for(&sandbox, &initech, "crm").await;
    let key = module_key(&sandbox, "crm").await;
    let verified = verify(&sandbox, &key, &session.access_token).await.unwrap();
    assert_eq!(verified.tenant_id, initech);
    assert_eq!(verified.email, "milton@initech.example");
    assert_eq!(verified.session_id, session.session_id);
    let acting = sandbox
        .clients_with(Credentials::module_for_user(&key, &session.access_token))
        .await
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acting.kind(), PrincipalKind::ModuleForUser);

    let mut anonymous = sandbox.clients_with(Credentials::default()).await;
    let refreshed = anonymous
        .auth
        .refresh(RefreshRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(refreshed.session_id, session.session_id);
    verify(&sandbox, &key, &refreshed.access_token)
        .await
        .expect("the new access token verifies");

    let reuse = anonymous
        .auth
        .refresh(RefreshRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        error_reason(&reuse).as_deref(),
        Some("ERROR_REASON_REFRESH_TOKEN_REUSED")
    );
    assert_refused(
        verify(&sandbox, &key, &refreshed.access_token).await,
        "after reuse the session is dead",
    );
    assert_refused(
        anonymous
            .auth
            .refresh(RefreshRequest {
                refresh_token: refreshed.refresh_token,
            })
            .await,
        "the successor of a reused token",
    );

    let second = tokens(&sandbox, "initech", "milton@initech.example").await;
    verify(&sandbox, &key, &second.access_token).await.unwrap();
    anonymous
        .auth
        .logout(LogoutRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .unwrap();
    assert_refused(
        verify(&sandbox, &key, &second.access_token).await,
        "after logout",
    );
    assert_refused(
        sandbox
            .clients_with(Credentials::bearer(&second.access_token))
            .await
            .auth
            .who_am_i(WhoAmIRequest {})
            .await,
        "a logged-out token as bearer",
    );
}

async fn forged_and_broken_tokens_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let initech = sign_up(&sandbox, "initech").await;
    let session = tokens(&sandbox, "initech", "admin@initech.example").await;
    crate::modules::enabled_for(&sandbox, &initech, "crm").await;
    let key = module_key(&sandbox, "crm").await;
    let genuine = verify(&sandbox, &key, &session.access_token).await.unwrap();
    let store = sandbox.database.open_store().await;
    let forger = Forger::publish(
        &store,
        genuine.user_id.parse().unwrap(),
        genuine.tenant_id.parse().unwrap(),
        genuine.session_id.parse().unwrap(),
    )
    .await;
    // An unknown kid reloads the key set at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verify(&sandbox, &key, &forger.genuine())
        .await
        .expect("control: a well-formed token from the test key verifies");

    for (case, token) in forger.forgeries() {
        let status = verify(&sandbox, &key, &token).await.expect_err(case);
        if case == "oversized" {
            // Past 8 KiB a token is refused unread: as a field, with a violation.
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(violated_fields(&status), ["access_token"]);
            continue;
        }
        assert_eq!(status.code(), Code::Unauthenticated, "{case}");
        assert_eq!(
            status.message(),
            plinth_platform::error::UNAUTHENTICATED_MESSAGE,
            "{case}"
        );
    }
    let jwks = sandbox
        .operator()
        .await
        .auth
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(jwks.keys.iter().any(|jwk| jwk.kid == forger.current_kid()));
    assert!(
        jwks.keys.iter().all(|jwk| jwk.kid != forger.retired_kid()),
        "keys past their grace are unpublished"
    );
}

async fn suspending_a_tenant_stops_its_logins_and_its_tokens(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let tenant_id = sign_up(&sandbox, "initech").await;
    let session = tokens(&sandbox, "initech", "admin@initech.example").await;
    crate::modules::enabled_for(&sandbox, &tenant_id, "crm").await;
    let key = module_key(&sandbox, "crm").await;
    verify(&sandbox, &key, &session.access_token).await.unwrap();

    let mut operator = sandbox.operator().await;
    operator
        .tenants
        .set_tenant_status(SetTenantStatusRequest {
            id: tenant_id.clone(),
            status: TenantStatus::Suspended.into(),
            reason: "unpaid".to_owned(),
        })
        .await
        .unwrap();

    assert_refused(
        verify(&sandbox, &key, &session.access_token).await,
        "token of a suspended tenant",
    );
    let refused_login = login(&sandbox, "initech", "admin@initech.example", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        error_reason(&refused_login).as_deref(),
        Some("ERROR_REASON_INVALID_CREDENTIALS")
    );
    operator
        .tenants
        .set_tenant_status(SetTenantStatusRequest {
            id: tenant_id,
            status: TenantStatus::Active.into(),
            reason: "paid".to_owned(),
        })
        .await
        .unwrap();
    verify(&sandbox, &key, &session.access_token)
        .await
        .expect("reactivation restores the session");
}

async fn concurrent_refreshes_of_one_token_give_exactly_one_pair(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    sign_up(&sandbox, "initech").await;
    for _ in 0..5 {
        let session = tokens(&sandbox, "initech", "admin@initech.example").await;
        let client = sandbox.clients_with(Credentials::default()).await.auth;
        let (successes, _) = all_at_once(8, |_| {
            let mut client = client.clone();
            let refresh_token = session.refresh_token.clone();
            async move { client.refresh(RefreshRequest { refresh_token }).await }
        })
        .await;
        assert_eq!(successes, 1);
    }
}

async fn a_tenant_admin_cannot_reach_another_tenant(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    sign_up(&sandbox, "initech").await;
    let globex = sign_up(&sandbox, "globex").await;
    let admin = tokens(&sandbox, "initech", "admin@initech.example").await;
    let mut initech_admin = sandbox
        .clients_with(Credentials::bearer(&admin.access_token))
        .await;

    let listing = initech_admin
        .auth
        .list_users(ListUsersRequest {
            tenant_id: globex.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(listing.code(), Code::PermissionDenied);
    let creating = initech_admin
        .auth
        .create_user(CreateUserRequest {
            tenant_id: globex,
            email: "mole@globex.example".to_owned(),
            display_name: "Mole".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(creating.code(), Code::PermissionDenied);
    let rotating = initech_admin
        .auth
        .rotate_signing_key(RotateSigningKeyRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        rotating.code(),
        Code::PermissionDenied,
        "only platform admins rotate keys"
    );
}

async fn disabling_a_user_ends_its_sessions(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let initech = sign_up(&sandbox, "initech").await;
    let mut operator = sandbox.operator().await;
    operator
        .auth
        .create_user(CreateUserRequest {
            tenant_id: initech.clone(),
            email: "milton@initech.example".to_owned(),
            display_name: "Milton".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    let session = tokens(&sandbox, "initech", "milton@initech.example").await;
    crate::modules::enabled_for(&sandbox, &initech, "crm").await;
    let key = module_key(&sandbox, "crm").await;
    let me = verify(&sandbox, &key, &session.access_token).await.unwrap();

    operator
        .auth
        .update_user(plinth_api::auth::v1::UpdateUserRequest {
            id: me.user_id,
            status: Some(plinth_api::auth::v1::UserStatus::Disabled.into()),
            ..Default::default()
        })
        .await
        .unwrap();

    assert_refused(
        verify(&sandbox, &key, &session.access_token).await,
        "token of a disabled user",
    );
    assert_refused(
        sandbox
            .clients_with(Credentials::default())
            .await
            .auth
            .refresh(RefreshRequest {
                refresh_token: session.refresh_token,
            })
            .await,
        "refresh of a disabled user",
    );
}

/// Medians of 20 tries each: an unknown account and a wrong password cost the
/// same and answer the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_take_the_same_time_and_answer_the_same() {
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| {
        config.login_free_failures_per_account = 100;
        config.login_free_failures_per_peer = 1000;
    })
    .await;
    sign_up(&sandbox, "initech").await;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut answers = std::collections::HashSet::new();
    for round in 0..21 {
        let mut attempts = [
            (
                &mut unknown,
                format!("nobody{round}@initech.example"),
                PASSWORD,
            ),
            (
                &mut wrong,
                "admin@initech.example".to_owned(),
                "not the right password",
            ),
        ];
        // Alternate which goes first, so drift within a round cancels out.
        if round % 2 == 1 {
            attempts.reverse();
        }
        for (samples, email, password) in attempts {
            let started = Instant::now();
            let status = login(&sandbox, "initech", &email, password)
                .await
                .unwrap_err();
            let elapsed = started.elapsed();
            if round > 0 {
                samples.push(elapsed);
            }
            answers.insert((
                status.code(),
                status.message().to_owned(),
                error_reason(&status),
            ));
        }
    }
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let (unknown, wrong) = (median(&mut unknown), median(&mut wrong));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();

    assert_eq!(answers.len(), 1, "one answer for both: {answers:?}");
    assert!(
        (0.8..=1.2).contains(&ratio),
        "unknown {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_for_one_account_are_delayed_not_locked() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    sign_up(&sandbox, "initech").await;

    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            login(
                &sandbox,
                "initech",
                "ADMIN@initech.example",
                "wrong guess of mine",
            )
            .await
            .unwrap_err(),
        );
    }

    assert!(
        statuses[..5]
            .iter()
            .all(|status| status.code() == Code::Unauthenticated)
    );
    let throttled = statuses.last().unwrap();
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert_eq!(
        error_reason(throttled).as_deref(),
        Some("ERROR_REASON_RATE_LIMITED")
    );
    use tonic_types::StatusExt;
    assert!(
        throttled
            .get_details_retry_info()
            .and_then(|retry| retry.retry_delay)
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    login(&sandbox, "initech", "admin@initech.example", PASSWORD)
        .await
        .expect("after the delay the right password works: no lockout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_whose_write_fails_answers_an_error() {
    let sandbox = Sandbox::start(Backend::Postgres).await;
    sign_up(&sandbox, "initech").await;
    let session = tokens(&sandbox, "initech", "admin@initech.example").await;

    sandbox.database.drop_now().await;
    let result = sandbox
        .clients_with(Credentials::default())
        .await
        .auth
        .logout(LogoutRequest {
            refresh_token: session.refresh_token,
        })
        .await;

    let status = result.expect_err("a revocation that was not written must not report success");
    assert_ne!(status.code(), Code::Ok);
    assert!(
        !status.message().to_lowercase().contains("sql"),
        "no SQL leaks: {}",
        status.message()
    );
}

async fn super_admins_are_platform_users_made_by_operators_only(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    sign_up(&sandbox, "initech").await;
    let mut operator = sandbox.operator().await;
    let platform = operator
        .tenants
        .get_tenant(plinth_api::tenant::v1::GetTenantRequest {
            key: Some(plinth_api::tenant::v1::get_tenant_request::Key::Code(
                "platform".to_owned(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let new_admin = |email: &str| CreateUserRequest {
        tenant_id: platform.id.clone(),
        email: email.to_owned(),
        display_name: "Root".to_owned(),
        password: PASSWORD.to_owned(),
    };
    let tenant_admin = tokens(&sandbox, "initech", "admin@initech.example").await;
    let refused = sandbox
        .clients_with(Credentials::bearer(&tenant_admin.access_token))
        .await
        .auth
        .create_user(new_admin("usurper@platform.example"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let root = operator
        .auth
        .create_user(new_admin("root@platform.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(root.user.unwrap().platform_admin);
    let root_tokens = tokens(&sandbox, "platform", "root@platform.example").await;
    let mut super_admin = sandbox
        .clients_with(Credentials::bearer(&root_tokens.access_token))
        .await;
    create_tenant(&mut super_admin, "made-by-root", None).await;
    super_admin
        .auth
        .create_user(new_admin("second-root@platform.example"))
        .await
        .expect("a super admin makes another");
}
