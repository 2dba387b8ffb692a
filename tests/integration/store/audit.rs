//! The audit chains: per tenant, gapless under concurrency, idempotent.

use plinth_platform::{
    audit::{self, Actor, AuditDraft, FeedCursor, GENESIS_HASH},
    store::{Store, audit_log},
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, events_of, fresh_store};

crate::on_both_backends!(
    audit_events_form_a_verifiable_chain_per_tenant,
    concurrent_appends_form_one_gapless_chain,
    a_repeated_idempotency_key_returns_the_original_event,
    an_idempotency_key_repeated_within_one_batch_is_recorded_once,
    a_batch_commits_its_runs_in_the_feed_in_commit_order,
    a_rolled_back_append_leaves_no_trace_in_chain_or_feed,
    a_transaction_of_many_appends_commits_them_in_the_feed,
);

fn module_event(tenant: Uuid, action: &str) -> AuditDraft {
    let actor = Actor {
        module_id: "finance".to_owned(),
        ..Actor::default()
    };
    AuditDraft::new(actor, action, "invoice", "42").in_tenant(Some(tenant))
}

async fn append(store: &Store, draft: AuditDraft) -> audit::AuditEvent {
    committed(store, async |tx| audit_log::append(tx, draft).await)
        .await
        .unwrap()
}

async fn audit_events_form_a_verifiable_chain_per_tenant(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let (tenant_a, tenant_b) = (Uuid::now_v7(), Uuid::now_v7());

    for index in 0..5 {
        let tenant = if index % 2 == 0 { tenant_a } else { tenant_b };
        append(&store, module_event(tenant, "finance.invoice.approved")).await;
    }

    let chain_a = events_of(&store, &tenant_a.to_string()).await;
    let chain_b = events_of(&store, &tenant_b.to_string()).await;
    let sequences =
        |chain: &[audit::AuditEvent]| chain.iter().map(|event| event.sequence).collect::<Vec<_>>();
    assert_eq!(sequences(&chain_a), [1, 2, 3]);
    assert_eq!(sequences(&chain_b), [1, 2]);
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
            let mut tx = store.begin().await?;
            audit_log::append(&mut tx, module_event(tenant, "finance.invoice.posted")).await?;
            tx.commit().await
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
    let mut draft = module_event(tenant, "finance.invoice.approved");
    draft.idempotency_key = "invoice-42-approved".to_owned();

    let first = append(&store, draft.clone()).await;
    let second = committed(&store, async |tx| {
        audit_log::append_batch(tx, vec![draft]).await
    })
    .await
    .unwrap();

    assert_eq!(second[0].event, first);
    assert!(second[0].duplicate);
    assert_eq!(events_of(&store, &tenant.to_string()).await.len(), 1);
}

async fn an_idempotency_key_repeated_within_one_batch_is_recorded_once(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = Uuid::now_v7();
    let mut keyed = module_event(tenant, "finance.invoice.approved");
    keyed.idempotency_key = "invoice-42-approved".to_owned();
    let batch = vec![
        module_event(tenant, "finance.invoice.created"),
        keyed.clone(),
        keyed,
    ];

    let recorded = committed(&store, async |tx| audit_log::append_batch(tx, batch).await)
        .await
        .unwrap();

    assert_eq!(recorded[1].event, recorded[2].event);
    assert!(!recorded[1].duplicate && recorded[2].duplicate);
    assert_eq!(events_of(&store, &tenant.to_string()).await.len(), 2);
}

async fn a_batch_commits_its_runs_in_the_feed_in_commit_order(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let (tenant_a, tenant_b) = (Uuid::now_v7(), Uuid::now_v7());
    let head = store.audit.feed_head().await.unwrap();

    append(&store, module_event(tenant_a, "finance.invoice.created")).await;
    committed(&store, async |tx| {
        audit_log::append_batch(
            tx,
            vec![
                module_event(tenant_b, "finance.invoice.created"),
                module_event(tenant_b, "finance.invoice.sent"),
            ],
        )
        .await
    })
    .await
    .unwrap();
    append(&store, module_event(tenant_a, "finance.invoice.paid")).await;

    let fed = store
        .audit
        .feed_after(FeedCursor::after_position(head), None, 100)
        .await
        .unwrap();
    let order: Vec<(i64, String)> = fed
        .iter()
        .map(|(cursor, event)| (cursor.position - head, event.action.clone()))
        .collect();
    assert_eq!(
        order,
        [
            (1, "finance.invoice.created".to_owned()),
            (2, "finance.invoice.created".to_owned()),
            (2, "finance.invoice.sent".to_owned()),
            (3, "finance.invoice.paid".to_owned()),
        ]
    );
    assert_eq!(store.audit.feed_head().await.unwrap(), head + 3);
}

async fn a_rolled_back_append_leaves_no_trace_in_chain_or_feed(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = Uuid::now_v7();
    let head = store.audit.feed_head().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    audit_log::append(&mut tx, module_event(tenant, "finance.invoice.created"))
        .await
        .unwrap();
    drop(tx);

    assert!(events_of(&store, &tenant.to_string()).await.is_empty());
    assert_eq!(store.audit.feed_head().await.unwrap(), head);
    append(&store, module_event(tenant, "finance.invoice.created")).await;
    assert_eq!(store.audit.feed_head().await.unwrap(), head + 1);
}

async fn a_transaction_of_many_appends_commits_them_in_the_feed(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let (tenant_a, tenant_b) = (Uuid::now_v7(), Uuid::now_v7());
    let head = store.audit.feed_head().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    for _ in 0..1_000 {
        audit_log::append(&mut tx, module_event(tenant_a, "finance.invoice.created"))
            .await
            .unwrap();
    }
    for index in 0..600 {
        let tenant = if index % 2 == 0 { tenant_a } else { tenant_b };
        audit_log::append(&mut tx, module_event(tenant, "finance.invoice.sent"))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    // One run for the first thousand, then one per alternation.
    assert_eq!(store.audit.feed_head().await.unwrap(), head + 600);
    let mut fed = Vec::new();
    let mut after = FeedCursor::after_position(head);
    loop {
        let page = store.audit.feed_after(after, None, 500).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        after = *last;
        fed.extend(page);
    }
    assert_eq!(fed.len(), 1_600);
    assert_eq!(events_of(&store, &tenant_b.to_string()).await.len(), 300);
}
