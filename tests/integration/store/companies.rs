//! Companies: writers, reads, counts and references.

use plinth_platform::store::{
    Page, Reference, StoreError, TenantRows,
    companies::{self, CompanyFilter, CompanyStatus},
    count_in_tenant,
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{
    assert_conflict_recorded_nothing, committed, company_record, event, fresh_store, stored_tenant,
};

crate::on_both_backends!(
    a_company_reads_back_by_id_and_by_code_within_its_tenant,
    codes_are_unique_within_a_tenant_only,
    a_company_of_a_missing_tenant_is_a_missing_reference,
    counting_counts_the_tenants_own_companies,
    an_archived_company_is_listed_by_its_status,
);

async fn a_company_reads_back_by_id_and_by_code_within_its_tenant(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let other = stored_tenant(&store, "other").await;
    let company = company_record(acme.id, "hq");

    committed(&store, async |tx| {
        companies::insert(tx, &company, event("tenant.company.created", Some(acme.id))).await
    })
    .await
    .unwrap();

    assert_eq!(
        store.companies.get_company(company.id).await.unwrap(),
        Some(company.clone())
    );
    assert_eq!(
        store
            .companies
            .get_company_by_code(acme.id, "hq")
            .await
            .unwrap(),
        Some(company)
    );
    assert_eq!(
        store
            .companies
            .get_company_by_code(other.id, "hq")
            .await
            .unwrap(),
        None
    );
}

async fn codes_are_unique_within_a_tenant_only(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let other = stored_tenant(&store, "other").await;
    for company in [
        company_record(acme.id, "hq"),
        company_record(other.id, "hq"),
    ] {
        committed(&store, async |tx| {
            companies::insert(
                tx,
                &company,
                event("tenant.company.created", Some(company.tenant_id)),
            )
            .await
        })
        .await
        .unwrap();
    }
    let twin = company_record(acme.id, "hq");

    let result = committed(&store, async |tx| {
        companies::insert(tx, &twin, event("tenant.company.created", Some(acme.id))).await
    })
    .await;

    assert_conflict_recorded_nothing(&store, result, acme.id, 2).await;
}

async fn a_company_of_a_missing_tenant_is_a_missing_reference(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let orphan = company_record(Uuid::now_v7(), "hq");

    let result = committed(&store, async |tx| {
        companies::insert(tx, &orphan, event("tenant.company.created", None)).await
    })
    .await;

    // PostgreSQL names the constraint, so the reference is known; SQLite
    // reports only that some reference is missing.
    let expected = match backend {
        Backend::Postgres => Reference::Tenant,
        Backend::Sqlite => Reference::Unnamed,
    };
    assert!(
        matches!(result, Err(StoreError::MissingReference(reference)) if reference == expected),
        "{result:?}"
    );
}

async fn counting_counts_the_tenants_own_companies(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let other = stored_tenant(&store, "other").await;
    for (tenant_id, code) in [(acme.id, "a"), (acme.id, "b"), (other.id, "c")] {
        let company = company_record(tenant_id, code);
        committed(&store, async |tx| {
            companies::insert(
                tx,
                &company,
                event("tenant.company.created", Some(tenant_id)),
            )
            .await
        })
        .await
        .unwrap();
    }

    let count = committed(&store, async |tx| {
        count_in_tenant(tx, TenantRows::Companies, acme.id).await
    })
    .await
    .unwrap();

    assert_eq!(count, 2);
}

async fn an_archived_company_is_listed_by_its_status(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let active = company_record(acme.id, "active");
    let mut archived = company_record(acme.id, "archived");
    for company in [&active, &archived] {
        committed(&store, async |tx| {
            companies::insert(tx, company, event("tenant.company.created", Some(acme.id))).await
        })
        .await
        .unwrap();
    }
    archived.status = CompanyStatus::Archived;
    committed(&store, async |tx| {
        companies::update(
            tx,
            &archived,
            event("tenant.company.updated", Some(acme.id)),
        )
        .await
    })
    .await
    .unwrap();

    let filter = CompanyFilter {
        status: Some(CompanyStatus::Archived),
        ..CompanyFilter::default()
    };
    let listed = store
        .companies
        .list_companies(
            acme.id,
            &filter,
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();

    assert_eq!(listed, [archived]);
}
