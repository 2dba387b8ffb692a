//! Writes of several aggregates in one transaction commit or roll back
//! together, with their audit events.

use plinth_platform::store::{StoreError, companies, tenants, users};
use plinth_tests::Backend;

use super::{
    committed, company_record, event, events_of, fresh_store, new_user, stored_tenant,
    tenant_record,
};

crate::on_both_backends!(
    writes_of_several_aggregates_commit_together,
    a_failing_write_rolls_back_the_others_and_their_events,
    a_transaction_dropped_without_commit_leaves_nothing,
);

async fn writes_of_several_aggregates_commit_together(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = tenant_record("acme");
    let company = company_record(tenant.id, "hq");
    let admin = new_user(tenant.id, "ada@acme.example");

    committed(&store, async |tx| {
        tenants::insert(tx, &tenant, event("tenant.created", Some(tenant.id))).await?;
        companies::insert(
            tx,
            &company,
            event("tenant.company.created", Some(tenant.id)),
        )
        .await?;
        users::insert(tx, &admin, event("auth.user.created", Some(tenant.id))).await
    })
    .await
    .unwrap();

    assert!(store.tenants.get_tenant(tenant.id).await.unwrap().is_some());
    assert!(
        store
            .companies
            .get_company(company.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.users.get_user(admin.user.id).await.unwrap().is_some());
    assert_eq!(events_of(&store, &tenant.id.to_string()).await.len(), 3);
}

async fn a_failing_write_rolls_back_the_others_and_their_events(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let taken = stored_tenant(&store, "taken").await;
    let tenant = tenant_record("fresh");
    let admin = new_user(tenant.id, "ada@fresh.example");
    let twin = tenant_record("taken");

    let result = committed(&store, async |tx| {
        tenants::insert(tx, &tenant, event("tenant.created", Some(tenant.id))).await?;
        users::insert(tx, &admin, event("auth.user.created", Some(tenant.id))).await?;
        tenants::insert(tx, &twin, event("tenant.created", Some(twin.id))).await
    })
    .await;

    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert_eq!(store.tenants.get_tenant(tenant.id).await.unwrap(), None);
    assert_eq!(store.users.get_user(admin.user.id).await.unwrap(), None);
    assert!(events_of(&store, &tenant.id.to_string()).await.is_empty());
    assert_eq!(events_of(&store, &taken.id.to_string()).await.len(), 1);
}

async fn a_transaction_dropped_without_commit_leaves_nothing(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let tenant = tenant_record("acme");

    {
        let mut tx = store.begin().await.unwrap();
        tenants::insert(&mut tx, &tenant, event("tenant.created", Some(tenant.id)))
            .await
            .unwrap();
    }

    assert_eq!(store.tenants.get_tenant(tenant.id).await.unwrap(), None);
    assert!(events_of(&store, &tenant.id.to_string()).await.is_empty());
}
