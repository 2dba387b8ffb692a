//! Tenants: writers, reads, locking, listing.

use plinth_platform::store::{
    Page, Reference, StoreError,
    tenants::{self, PLATFORM_TENANT_CODE, TenantFilter, TenantStatus},
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, event, events_of, fresh_store, stored_tenant, tenant_record};

crate::on_both_backends!(
    a_tenant_reads_back_by_id_and_by_code,
    the_platform_tenant_exists_after_migration,
    a_taken_code_is_a_conflict_and_records_nothing,
    an_update_is_read_back_and_audited_in_the_tenants_chain,
    updating_a_missing_tenant_is_not_found,
    locking_a_missing_tenant_is_a_missing_tenant_reference,
    listing_filters_by_status_and_code_prefix_and_pages_by_id,
);

async fn a_tenant_reads_back_by_id_and_by_code(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = stored_tenant(&store, "acme").await;

    assert_eq!(
        store.tenants.get_tenant(tenant.id).await.unwrap(),
        Some(tenant.clone())
    );
    assert_eq!(
        store.tenants.get_tenant_by_code("acme").await.unwrap(),
        Some(tenant)
    );
    assert_eq!(
        store.tenants.get_tenant(Uuid::now_v7()).await.unwrap(),
        None
    );
}

async fn the_platform_tenant_exists_after_migration(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;

    let platform = store
        .tenants
        .get_tenant_by_code(PLATFORM_TENANT_CODE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(platform.id, tenants::PLATFORM_TENANT_ID);
    assert_eq!(platform.status, TenantStatus::Active);
}

async fn a_taken_code_is_a_conflict_and_records_nothing(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    stored_tenant(&store, "acme").await;
    let twin = tenant_record("acme");

    let result = committed(&store, async |tx| {
        tenants::insert(tx, &twin, event("tenant.created", Some(twin.id))).await
    })
    .await;

    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert!(events_of(&store, &twin.id.to_string()).await.is_empty());
}

async fn an_update_is_read_back_and_audited_in_the_tenants_chain(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let mut tenant = stored_tenant(&store, "acme").await;
    tenant.name = "Acme Corporation".to_owned();
    tenant.status = TenantStatus::Suspended;
    tenant.max_users = 7;

    committed(&store, async |tx| {
        tenants::update(tx, &tenant, event("tenant.updated", Some(tenant.id))).await
    })
    .await
    .unwrap();

    assert_eq!(
        store.tenants.get_tenant(tenant.id).await.unwrap(),
        Some(tenant.clone())
    );
    let actions: Vec<_> = events_of(&store, &tenant.id.to_string())
        .await
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(actions, ["tenant.created", "tenant.updated"]);
}

async fn updating_a_missing_tenant_is_not_found(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let ghost = tenant_record("ghost");

    let result = committed(&store, async |tx| {
        tenants::update(tx, &ghost, event("tenant.updated", Some(ghost.id))).await
    })
    .await;

    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert!(events_of(&store, &ghost.id.to_string()).await.is_empty());
}

async fn locking_a_missing_tenant_is_a_missing_tenant_reference(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;

    let result = committed(&store, async |tx| tenants::lock(tx, Uuid::now_v7()).await).await;

    assert!(
        matches!(result, Err(StoreError::MissingReference(Reference::Tenant))),
        "{result:?}"
    );
}

async fn listing_filters_by_status_and_code_prefix_and_pages_by_id(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let first = stored_tenant(&store, "north-a").await;
    let second = stored_tenant(&store, "north-b").await;
    stored_tenant(&store, "south").await;
    let mut suspended = stored_tenant(&store, "north-c").await;
    suspended.status = TenantStatus::Suspended;
    committed(&store, async |tx| {
        tenants::update(tx, &suspended, event("tenant.updated", Some(suspended.id))).await
    })
    .await
    .unwrap();
    let north = TenantFilter {
        code_prefix: Some("north".to_owned()),
        status: Some(TenantStatus::Active),
        ..TenantFilter::default()
    };

    let page_one = store
        .tenants
        .list_tenants(
            &north,
            Page {
                after: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    let page_two = store
        .tenants
        .list_tenants(
            &north,
            Page {
                after: Some(first.id),
                limit: 10,
            },
        )
        .await
        .unwrap();

    assert_eq!(page_one, [first]);
    assert_eq!(page_two, [second]);
}
