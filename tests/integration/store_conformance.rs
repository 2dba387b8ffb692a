//! The store contract, run identically against PostgreSQL and SQLite.

use chrono::Duration;
use plinth_platform::{
    audit::{self, Actor, AuditDraft, GENESIS_HASH, PLATFORM_CHAIN},
    clock,
    identity::api_keys::{ApiKeys, NewApiKey},
    store::{ApiKeyRecord, Store, StoreError},
};
use plinth_tests::{Backend, TestDatabase};
use uuid::Uuid;

crate::on_both_backends!(
    a_created_api_key_reads_back_unchanged,
    creating_a_key_records_its_audit_event_in_the_same_chain,
    a_failed_change_writes_no_audit_event,
    revoking_keeps_the_first_revocation_time,
    revoking_a_missing_key_is_not_found_and_audits_nothing,
    operator_keys_count_as_usable_until_revoked_or_expired,
    audit_events_form_a_verifiable_chain_per_tenant,
    concurrent_appends_form_one_gapless_chain,
    a_repeated_idempotency_key_returns_the_original_event,
    an_idempotency_key_repeated_within_a_batch_is_recorded_once,
);

fn operator() -> Actor {
    Actor {
        api_key_id: "test".to_owned(),
        ..Actor::default()
    }
}

fn module_event(module: &str, tenant: Uuid, action: &str) -> AuditDraft {
    let actor = Actor {
        module_id: module.to_owned(),
        ..Actor::default()
    };
    AuditDraft::new(actor, action, "invoice", "42").in_tenant(Some(tenant))
}

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
    }
}

fn created_event(record: &ApiKeyRecord) -> AuditDraft {
    AuditDraft::new(
        operator(),
        "auth.api_key.created",
        "api_key",
        &record.id.to_string(),
    )
}

/// A fresh, migrated store (the database lives as long as the guard).
async fn fresh_store(backend: Backend) -> (TestDatabase, Store) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    (database, store)
}

/// A fresh store holding one module key, created with its audit event.
async fn store_with_a_key(backend: Backend) -> (TestDatabase, Store, ApiKeyRecord) {
    let (database, store) = fresh_store(backend).await;
    let record = key_record("finance worker");
    store
        .api_keys
        .create(&record, created_event(&record))
        .await
        .unwrap();
    (database, store, record)
}

async fn events_of(store: &Store, chain_id: &str) -> Vec<audit::AuditEvent> {
    store.audit.read_chain(chain_id, 1, 100).await.unwrap()
}

async fn a_created_api_key_reads_back_unchanged(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;

    assert_eq!(store.api_keys.get(record.id).await.unwrap(), Some(record));
}

async fn creating_a_key_records_its_audit_event_in_the_same_chain(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;

    let chain = events_of(&store, PLATFORM_CHAIN).await;
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].action, "auth.api_key.created");
    assert_eq!(chain[0].resource_id, record.id.to_string());
    assert_eq!(chain[0].actor, operator());
}

async fn a_failed_change_writes_no_audit_event(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;

    let duplicate = store.api_keys.create(&record, created_event(&record)).await;

    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "{duplicate:?}"
    );
    let chain = events_of(&store, PLATFORM_CHAIN).await;
    assert_eq!(
        chain.len(),
        1,
        "the refused change left an audit event behind"
    );
}

async fn revoking_keeps_the_first_revocation_time(backend: Backend) {
    let (_database, store, record) = store_with_a_key(backend).await;
    let first = clock::now();
    let revoke_event = || AuditDraft::new(operator(), "auth.api_key.revoked", "api_key", "k");

    store
        .api_keys
        .revoke(record.id, first, revoke_event())
        .await
        .unwrap();
    let again = store
        .api_keys
        .revoke(record.id, first + Duration::hours(1), revoke_event())
        .await
        .unwrap();

    assert_eq!(again.revoked_at, Some(first));
}

async fn revoking_a_missing_key_is_not_found_and_audits_nothing(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;

    let result = store
        .api_keys
        .revoke(
            Uuid::now_v7(),
            clock::now(),
            AuditDraft::new(operator(), "auth.api_key.revoked", "api_key", "k"),
        )
        .await;

    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert!(events_of(&store, PLATFORM_CHAIN).await.is_empty());
}

async fn operator_keys_count_as_usable_until_revoked_or_expired(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let keys = ApiKeys::new(store.api_keys.clone());
    let now = clock::now();
    assert!(!store.api_keys.has_usable_operator_key(now).await.unwrap());

    let module_key = NewApiKey {
        name: "module".to_owned(),
        module_id: Some("finance".to_owned()),
        ..NewApiKey::default()
    };
    keys.create(module_key, operator()).await.unwrap();
    assert!(
        !store.api_keys.has_usable_operator_key(now).await.unwrap(),
        "a module key is no operator key"
    );

    let expiring = NewApiKey {
        name: "short".to_owned(),
        expires_at: Some(now + Duration::minutes(5)),
        ..NewApiKey::default()
    };
    keys.create(expiring, operator()).await.unwrap();
    assert!(store.api_keys.has_usable_operator_key(now).await.unwrap());
    assert!(
        !store
            .api_keys
            .has_usable_operator_key(now + Duration::minutes(6))
            .await
            .unwrap()
    );
}

async fn audit_events_form_a_verifiable_chain_per_tenant(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let (tenant_a, tenant_b) = (Uuid::now_v7(), Uuid::now_v7());

    for index in 0..5 {
        let tenant = if index % 2 == 0 { tenant_a } else { tenant_b };
        store
            .audit
            .record(vec![module_event(
                "finance",
                tenant,
                "finance.invoice.approved",
            )])
            .await
            .unwrap();
    }

    let chain_a = events_of(&store, &tenant_a.to_string()).await;
    let chain_b = events_of(&store, &tenant_b.to_string()).await;
    assert_eq!(
        chain_a
            .iter()
            .map(|event| event.sequence)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        chain_b
            .iter()
            .map(|event| event.sequence)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    for chain in [&chain_a, &chain_b] {
        let verification = audit::verify_chain(&GENESIS_HASH, chain);
        assert_eq!(verification.first_broken_sequence, None);
        assert_eq!(verification.head_hash, chain.last().unwrap().hash);
    }
}

async fn concurrent_appends_form_one_gapless_chain(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = Uuid::now_v7();

    let writers = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .audit
                .record(vec![module_event(
                    "finance",
                    tenant,
                    "finance.invoice.posted",
                )])
                .await
        })
    });
    for writer in writers {
        writer.await.unwrap().unwrap();
    }

    let chain = events_of(&store, &tenant.to_string()).await;
    assert_eq!(
        chain.iter().map(|event| event.sequence).collect::<Vec<_>>(),
        (1..=16).collect::<Vec<_>>()
    );
    assert_eq!(
        audit::verify_chain(&GENESIS_HASH, &chain).first_broken_sequence,
        None
    );
}

async fn a_repeated_idempotency_key_returns_the_original_event(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = Uuid::now_v7();
    let mut draft = module_event("finance", tenant, "finance.invoice.approved");
    draft.idempotency_key = "invoice-42-approved".to_owned();

    let first = store.audit.record(vec![draft.clone()]).await.unwrap();
    let second = store.audit.record(vec![draft]).await.unwrap();

    assert_eq!(first, second);
    assert_eq!(events_of(&store, &tenant.to_string()).await.len(), 1);
}

async fn an_idempotency_key_repeated_within_a_batch_is_recorded_once(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = Uuid::now_v7();
    let mut keyed = module_event("finance", tenant, "finance.invoice.approved");
    keyed.idempotency_key = "invoice-42-approved".to_owned();
    let batch = vec![
        module_event("finance", tenant, "finance.invoice.created"),
        keyed.clone(),
        keyed,
    ];

    let recorded = store.audit.record(batch).await.unwrap();

    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[1], recorded[2]);
    assert_eq!(events_of(&store, &tenant.to_string()).await.len(), 2);
}
