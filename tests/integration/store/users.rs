//! Users: writers, credentials, counts and listing.

use plinth_platform::{
    clock,
    store::{
        Page, StoreError, TenantRows, count_in_tenant,
        users::{self, UserFilter, UserStatus},
    },
};
use plinth_tests::Backend;

use super::{
    assert_conflict_recorded_nothing, committed, event, events_of, fresh_store, new_user,
    stored_tenant, stored_user,
};

crate::on_both_backends!(
    a_user_and_its_password_hash_read_back_together,
    an_email_is_unique_within_a_tenant_only,
    a_status_change_and_a_password_change_are_read_back_and_audited,
    changing_the_password_of_a_missing_user_is_not_found,
    counting_counts_the_tenants_own_users,
    listing_filters_by_status_and_email_prefix,
    a_login_is_noted_without_an_audit_event,
);

async fn a_user_and_its_password_hash_read_back_together(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let user = stored_user(&store, acme.id, "ada@acme.example").await;

    let credentials = store
        .users
        .find_credentials(acme.id, "ada@acme.example")
        .await
        .unwrap()
        .unwrap();

    assert_eq!(credentials.user, user.user);
    assert_eq!(credentials.password_hash, user.password_hash);
    assert_eq!(
        store.users.get_user(user.user.id).await.unwrap(),
        Some(user.user)
    );
}

async fn an_email_is_unique_within_a_tenant_only(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let other = stored_tenant(&store, "other").await;
    stored_user(&store, acme.id, "ada@example.com").await;
    stored_user(&store, other.id, "ada@example.com").await;
    let twin = new_user(acme.id, "ada@example.com");

    let result = committed(&store, async |tx| {
        users::insert(tx, &twin, event("auth.user.created", Some(acme.id))).await
    })
    .await;

    assert_conflict_recorded_nothing(&store, result, acme.id, 2).await;
}

async fn a_status_change_and_a_password_change_are_read_back_and_audited(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let mut user = stored_user(&store, acme.id, "ada@acme.example").await.user;
    user.status = UserStatus::Disabled;
    user.display_name = "Ada L.".to_owned();

    committed(&store, async |tx| {
        users::update(tx, &user, event("auth.user.updated", Some(acme.id))).await?;
        users::set_password_hash(
            tx,
            user.id,
            "$argon2id$new",
            clock::now(),
            event("auth.user.password_changed", Some(acme.id)),
        )
        .await
    })
    .await
    .unwrap();

    let credentials = store
        .users
        .find_credentials(acme.id, &user.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credentials.user, user);
    assert_eq!(credentials.password_hash, "$argon2id$new");
    let actions: Vec<_> = events_of(&store, &acme.id.to_string())
        .await
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "auth.user.created",
            "auth.user.updated",
            "auth.user.password_changed"
        ]
    );
}

async fn changing_the_password_of_a_missing_user_is_not_found(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;

    let result = committed(&store, async |tx| {
        users::set_password_hash(
            tx,
            uuid::Uuid::now_v7(),
            "$argon2id$new",
            clock::now(),
            event("auth.user.password_changed", Some(acme.id)),
        )
        .await
    })
    .await;

    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(events_of(&store, &acme.id.to_string()).await.len(), 1);
}

async fn counting_counts_the_tenants_own_users(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let other = stored_tenant(&store, "other").await;
    stored_user(&store, acme.id, "a@acme.example").await;
    stored_user(&store, acme.id, "b@acme.example").await;
    stored_user(&store, other.id, "c@other.example").await;

    let count = committed(&store, async |tx| {
        count_in_tenant(tx, TenantRows::Users, acme.id).await
    })
    .await
    .unwrap();

    assert_eq!(count, 2);
}

async fn listing_filters_by_status_and_email_prefix(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let ada = stored_user(&store, acme.id, "ada@acme.example").await.user;
    stored_user(&store, acme.id, "bob@acme.example").await;
    let mut adam = stored_user(&store, acme.id, "adam@acme.example").await.user;
    adam.status = UserStatus::Disabled;
    committed(&store, async |tx| {
        users::update(tx, &adam, event("auth.user.updated", Some(acme.id))).await
    })
    .await
    .unwrap();
    let filter = UserFilter {
        status: Some(UserStatus::Active),
        email_prefix: Some("ad".to_owned()),
    };

    let listed = store
        .users
        .list_users(
            acme.id,
            &filter,
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();

    assert_eq!(listed, [ada]);
}

async fn a_login_is_noted_without_an_audit_event(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let user = stored_user(&store, acme.id, "ada@acme.example").await.user;
    let at = clock::now();

    store.users.record_login(user.id, at).await.unwrap();

    let read = store.users.get_user(user.id).await.unwrap().unwrap();
    assert_eq!(read.last_login_at, Some(at));
    assert_eq!(events_of(&store, &acme.id.to_string()).await.len(), 2);
}
