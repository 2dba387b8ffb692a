//! Sessions and their rotating refresh tokens.

use chrono::Duration;
use plinth_platform::{
    clock,
    store::{
        Page, Store, StoreError,
        sessions::{self, RefreshOutcome, RefreshTokenRecord, SessionQuery, SessionRecord},
    },
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, event, events_of, fresh_store, stored_tenant, stored_user};

crate::on_both_backends!(
    a_session_reads_back_by_id_and_by_its_refresh_token,
    a_refresh_token_is_spent_once_and_its_successor_works,
    a_spent_token_presented_again_is_reported_as_reuse,
    an_unknown_refresh_token_is_refused,
    revoking_keeps_the_first_revocation,
    revoking_a_users_sessions_spares_the_one_kept_and_audits_their_number,
    listing_leaves_out_revoked_sessions_unless_asked,
);

fn refresh_token(hash: u8) -> RefreshTokenRecord {
    let now = clock::now();
    RefreshTokenRecord {
        token_hash: vec![hash; 32],
        issued_at: now,
        expires_at: now + Duration::days(1),
    }
}

/// A stored session of a new user, with the refresh token whose hash is
/// `[hash; 32]`.
async fn stored_session(store: &Store, hash: u8) -> SessionRecord {
    let acme = stored_tenant(store, &format!("acme-{hash}")).await;
    let user = stored_user(store, acme.id, "ada@acme.example").await.user;
    session_of(store, user.id, acme.id, hash).await
}

async fn session_of(store: &Store, user_id: Uuid, tenant_id: Uuid, hash: u8) -> SessionRecord {
    let now = clock::now();
    let session = SessionRecord {
        id: Uuid::now_v7(),
        user_id,
        tenant_id,
        peer_address: "127.0.0.1:1234".to_owned(),
        created_at: now,
        last_refreshed_at: now,
        expires_at: now + Duration::days(30),
        revoked_at: None,
        revoke_reason: None,
    };
    committed(store, async |tx| {
        sessions::insert(
            tx,
            &session,
            &refresh_token(hash),
            event("auth.login.succeeded", Some(tenant_id)),
        )
        .await
    })
    .await
    .unwrap();
    session
}

/// The session of the unspent refresh token whose hash is `[hash; 32]`.
async fn session_holding(store: &Store, hash: u8) -> Option<SessionRecord> {
    store
        .sessions
        .session_of_refresh_token(&[hash; 32])
        .await
        .unwrap()
}

async fn spend(store: &Store, presented: u8, successor: u8) -> RefreshOutcome {
    committed(store, async |tx| {
        sessions::spend_refresh_token(
            tx,
            &[presented; 32],
            &refresh_token(successor),
            clock::now(),
        )
        .await
    })
    .await
    .unwrap()
}

async fn a_session_reads_back_by_id_and_by_its_refresh_token(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let session = stored_session(&store, 1).await;

    assert_eq!(
        store.sessions.get_session(session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(session_holding(&store, 1).await, Some(session));
}

async fn a_refresh_token_is_spent_once_and_its_successor_works(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let session = stored_session(&store, 1).await;

    let first = spend(&store, 1, 2).await;
    let second = spend(&store, 2, 3).await;

    assert!(matches!(first, RefreshOutcome::Rotated(rotated) if rotated.id == session.id));
    assert!(matches!(second, RefreshOutcome::Rotated(rotated) if rotated.id == session.id));
    assert_eq!(session_holding(&store, 1).await, None);
}

async fn a_spent_token_presented_again_is_reported_as_reuse(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let session = stored_session(&store, 1).await;
    spend(&store, 1, 2).await;

    let again = spend(&store, 1, 3).await;

    assert_eq!(
        again,
        RefreshOutcome::Reused {
            session_id: session.id,
            tenant_id: session.tenant_id
        }
    );
}

async fn an_unknown_refresh_token_is_refused(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;

    assert_eq!(spend(&store, 9, 10).await, RefreshOutcome::Refused);
}

async fn revoking_keeps_the_first_revocation(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let session = stored_session(&store, 1).await;
    let first = clock::now();
    let revoke = async |at, reason: &str| {
        committed(&store, async |tx| {
            sessions::revoke(
                tx,
                session.id,
                reason,
                at,
                event("auth.session.revoked", Some(session.tenant_id)),
            )
            .await
        })
        .await
    };

    revoke(first, "logout").await.unwrap();
    let again = revoke(first + Duration::hours(1), "admin").await.unwrap();
    let missing = committed(&store, async |tx| {
        sessions::revoke(
            tx,
            Uuid::now_v7(),
            "x",
            first,
            event("auth.session.revoked", None),
        )
        .await
    })
    .await;

    assert_eq!(again.revoked_at, Some(first));
    assert_eq!(again.revoke_reason.as_deref(), Some("logout"));
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn revoking_a_users_sessions_spares_the_one_kept_and_audits_their_number(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let kept = stored_session(&store, 1).await;
    let second = session_of(&store, kept.user_id, kept.tenant_id, 2).await;
    let third = session_of(&store, kept.user_id, kept.tenant_id, 3).await;

    let revoke_all_but_kept = async || {
        committed(&store, async |tx| {
            sessions::revoke_user_sessions(
                tx,
                kept.user_id,
                Some(kept.id),
                "password_changed",
                clock::now(),
                event("auth.user.sessions_revoked", Some(kept.tenant_id)),
            )
            .await
        })
        .await
        .unwrap()
    };

    let revoked = revoke_all_but_kept().await;
    let none_left = revoke_all_but_kept().await;

    let mut revoked_sorted = revoked.clone();
    revoked_sorted.sort();
    assert_eq!(revoked_sorted, [second.id, third.id]);
    assert!(none_left.is_empty());
    let chain = events_of(&store, &kept.tenant_id.to_string()).await;
    let bulk: Vec<_> = chain
        .iter()
        .filter(|event| event.action == "auth.user.sessions_revoked")
        .collect();
    assert_eq!(bulk.len(), 1, "a revocation of nothing records nothing");
    assert!(
        bulk[0].details.contains("\"sessions\":2"),
        "{}",
        bulk[0].details
    );
}

async fn listing_leaves_out_revoked_sessions_unless_asked(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let live = stored_session(&store, 1).await;
    let revoked = session_of(&store, live.user_id, live.tenant_id, 2).await;
    let revoked = committed(&store, async |tx| {
        sessions::revoke(
            tx,
            revoked.id,
            "logout",
            clock::now(),
            event("auth.session.revoked", None),
        )
        .await
    })
    .await
    .unwrap();
    let listed = async |include_inactive| {
        let query = SessionQuery {
            user_id: live.user_id,
            include_inactive,
            now: clock::now(),
            page: Page {
                after: None,
                limit: 10,
            },
        };
        store.sessions.list_sessions(query).await.unwrap()
    };

    let active = listed(false).await;
    let all = listed(true).await;

    assert_eq!(active, std::slice::from_ref(&live));
    assert_eq!(all, [live, revoked]);
}
