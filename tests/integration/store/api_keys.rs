//! API keys: writers keep their audit events with them; reads and listing.

use chrono::Duration;
use plinth_platform::{
    audit::PLATFORM_CHAIN,
    clock,
    identity::api_keys::{self, NewApiKey},
    store::{self, ApiKeyFilter, ApiKeyRecord, Page, Store, StoreError},
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, event, events_of, fresh_store, operator, platform_events, stored_tenant};

crate::on_both_backends!(
    a_created_api_key_reads_back_unchanged,
    creating_a_key_records_its_audit_event_in_the_same_chain,
    a_failed_change_writes_no_audit_event,
    revoking_keeps_the_first_revocation_time,
    revoking_a_missing_key_is_not_found_and_audits_nothing,
    rotating_keeps_the_previous_secret_until_its_grace_ends,
    a_revoked_key_cannot_be_rotated,
    operator_keys_count_as_usable_until_revoked_or_expired,
    listing_filters_by_tenant_and_leaves_out_revoked_keys,
    a_tenant_keys_event_goes_to_the_tenants_chain,
);

fn key_record(name: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        module_id: Some("finance".to_owned()),
        tenant_id: None,
        scopes: vec!["read".to_owned(), "write".to_owned()],
        secret_hash: vec![7; 32],
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        created_at: clock::now(),
        expires_at: Some(clock::now() + Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
        rate_limit_calls_per_second: Some(50),
        rate_limit_burst: Some(100),
    }
}

async fn insert(store: &Store, record: &ApiKeyRecord) -> Result<(), StoreError> {
    committed(store, async |tx| {
        store::api_keys::insert(tx, record, event("auth.api_key.created", record.tenant_id)).await
    })
    .await
}

/// A fresh store holding one module key, created with its audit event.
async fn store_with_a_key(backend: Backend) -> (plinth_tests::TestDatabase, Store, ApiKeyRecord) {
    let (database, store) = fresh_store(backend).await;
    let record = key_record("finance worker");
    insert(&store, &record).await.unwrap();
    (database, store, record)
}

async fn revoke(
    store: &Store,
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<ApiKeyRecord, StoreError> {
    committed(store, async |tx| {
        store::api_keys::revoke(tx, id, at, event("auth.api_key.revoked", None)).await
    })
    .await
}

async fn a_created_api_key_reads_back_unchanged(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;

    assert_eq!(store.api_keys.get(record.id).await.unwrap(), Some(record));
}

async fn creating_a_key_records_its_audit_event_in_the_same_chain(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;

    let mut tx = store.begin().await.unwrap();
    let issued = api_keys::insert_new(
        &mut tx,
        NewApiKey {
            name: "worker".to_owned(),
            ..NewApiKey::default()
        },
        operator(),
        "request-1",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let chain = platform_events(&store).await;
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].action, "auth.api_key.created");
    assert_eq!(chain[0].resource_id, issued.record.id.to_string());
    assert_eq!(chain[0].request_id, "request-1");
    assert_eq!(chain[0].actor, operator());
}

async fn a_failed_change_writes_no_audit_event(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;

    let duplicate = insert(&store, &record).await;

    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "{duplicate:?}"
    );
    assert_eq!(
        platform_events(&store).await.len(),
        1,
        "the refused change left an audit event behind"
    );
}

async fn revoking_keeps_the_first_revocation_time(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;
    let first = clock::now();

    revoke(&store, record.id, first).await.unwrap();
    let again = revoke(&store, record.id, first + Duration::hours(1))
        .await
        .unwrap();

    assert_eq!(again.revoked_at, Some(first));
}

async fn revoking_a_missing_key_is_not_found_and_audits_nothing(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;

    let result = revoke(&store, Uuid::now_v7(), clock::now()).await;

    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert!(events_of(&store, PLATFORM_CHAIN).await.is_empty());
}

async fn rotating_keeps_the_previous_secret_until_its_grace_ends(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;
    let grace_ends = clock::now() + Duration::hours(1);

    let rotated = committed(&store, async |tx| {
        store::api_keys::rotate(
            tx,
            record.id,
            &[9; 32],
            grace_ends,
            event("auth.api_key.rotated", None),
        )
        .await
    })
    .await
    .unwrap();

    assert_eq!(rotated.secret_hash, vec![9; 32]);
    assert_eq!(rotated.previous_secret_hash, Some(record.secret_hash));
    assert_eq!(rotated.previous_secret_expires_at, Some(grace_ends));
}

async fn a_revoked_key_cannot_be_rotated(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;
    revoke(&store, record.id, clock::now()).await.unwrap();

    let result = committed(&store, async |tx| {
        store::api_keys::rotate(
            tx,
            record.id,
            &[9; 32],
            clock::now(),
            event("auth.api_key.rotated", None),
        )
        .await
    })
    .await;

    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

async fn operator_keys_count_as_usable_until_revoked_or_expired(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let now = clock::now();
    assert!(!store.api_keys.has_usable_operator_key(now).await.unwrap());

    insert(&store, &key_record("module")).await.unwrap();
    assert!(
        !store.api_keys.has_usable_operator_key(now).await.unwrap(),
        "a module key is no operator key"
    );
    let expiring = ApiKeyRecord {
        module_id: None,
        expires_at: Some(now + Duration::minutes(5)),
        ..key_record("short")
    };
    insert(&store, &expiring).await.unwrap();
    assert!(store.api_keys.has_usable_operator_key(now).await.unwrap());
    assert!(
        !store
            .api_keys
            .has_usable_operator_key(now + Duration::minutes(6))
            .await
            .unwrap()
    );
}

async fn listing_filters_by_tenant_and_leaves_out_revoked_keys(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let live = ApiKeyRecord {
        tenant_id: Some(acme.id),
        ..key_record("live")
    };
    let revoked = ApiKeyRecord {
        tenant_id: Some(acme.id),
        ..key_record("revoked")
    };
    for record in [&live, &revoked, &key_record("elsewhere")] {
        insert(&store, record).await.unwrap();
    }
    let revoked = revoke(&store, revoked.id, clock::now()).await.unwrap();
    let filter = |include_revoked| ApiKeyFilter {
        tenant_id: Some(acme.id),
        include_revoked,
        ..ApiKeyFilter::default()
    };
    let page = Page {
        after: None,
        limit: 10,
    };

    assert_eq!(
        store.api_keys.list(&filter(false), page).await.unwrap(),
        std::slice::from_ref(&live)
    );
    assert_eq!(
        store.api_keys.list(&filter(true), page).await.unwrap(),
        [live, revoked]
    );
}

async fn a_tenant_keys_event_goes_to_the_tenants_chain(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;

    let mut tx = store.begin().await.unwrap();
    api_keys::insert_new(
        &mut tx,
        NewApiKey {
            name: "acme worker".to_owned(),
            tenant_id: Some(acme.id),
            ..NewApiKey::default()
        },
        operator(),
        "",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let actions: Vec<_> = events_of(&store, &acme.id.to_string())
        .await
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(actions, ["tenant.created", "auth.api_key.created"]);
}
