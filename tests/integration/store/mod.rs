//! The store contract, run identically against PostgreSQL and SQLite: every
//! aggregate's reads and writers, writes composing in one transaction, and
//! the two migrations defining one schema.

mod api_keys;
mod audit;
mod companies;
mod composition;
mod instances;
mod modules;
mod rbac;
mod schema;
mod sessions;
mod signing_keys;
mod tenants;
mod users;

use plinth_platform::{
    audit::{Actor, AuditDraft, AuditEvent, PLATFORM_CHAIN},
    clock,
    store::{
        Store, StoreError, Tx,
        companies::{CompanyRecord, CompanyStatus},
        tenants::{TenantRecord, TenantStatus},
        users::{NewUser, UserRecord, UserStatus},
    },
};
use plinth_tests::{Backend, TestDatabase};
use uuid::Uuid;

/// A fresh, migrated store (the database lives as long as the guard).
pub async fn fresh_store(backend: Backend) -> (TestDatabase, Store) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    (database, store)
}

/// Runs `write` in a transaction of its own and commits it when it succeeds.
pub async fn committed<T>(
    store: &Store,
    write: impl AsyncFnOnce(&mut Tx) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = store.begin().await?;
    let written = write(&mut tx).await?;
    tx.commit().await?;
    Ok(written)
}

pub fn operator() -> Actor {
    Actor {
        api_key_id: "test".to_owned(),
        ..Actor::default()
    }
}

pub fn event(action: &str, tenant: Option<Uuid>) -> AuditDraft {
    AuditDraft::new(operator(), action, "thing", "1").in_tenant(tenant)
}

pub async fn events_of(store: &Store, chain_id: &str) -> Vec<AuditEvent> {
    store.audit.read_chain(chain_id, 1, 1000).await.unwrap()
}

/// A write refused as a conflict, whose tenant's chain still holds only
/// the `events` recorded before it.
pub async fn assert_conflict_recorded_nothing<T: std::fmt::Debug>(
    store: &Store,
    refused: Result<T, StoreError>,
    tenant_id: Uuid,
    events: usize,
) {
    assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    assert_eq!(events_of(store, &tenant_id.to_string()).await.len(), events);
}

pub async fn platform_events(store: &Store) -> Vec<AuditEvent> {
    events_of(store, PLATFORM_CHAIN).await
}

pub fn tenant_record(code: &str) -> TenantRecord {
    TenantRecord::new(code.to_owned(), format!("{code} inc"), TenantStatus::Active)
}

pub fn company_record(tenant_id: Uuid, code: &str) -> CompanyRecord {
    let now = clock::now();
    CompanyRecord {
        id: Uuid::now_v7(),
        tenant_id,
        code: code.to_owned(),
        name: format!("{code} ltd"),
        status: CompanyStatus::Active,
        created_at: now,
        updated_at: now,
    }
}

pub fn new_user(tenant_id: Uuid, email: &str) -> NewUser {
    let now = clock::now();
    NewUser {
        user: UserRecord {
            id: Uuid::now_v7(),
            tenant_id,
            email: email.to_owned(),
            display_name: "Ada".to_owned(),
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
    }
}

/// A stored tenant.
pub async fn stored_tenant(store: &Store, code: &str) -> TenantRecord {
    let tenant = tenant_record(code);
    committed(store, async |tx| {
        plinth_platform::store::tenants::insert(
            tx,
            &tenant,
            event("tenant.created", Some(tenant.id)),
        )
        .await
    })
    .await
    .unwrap();
    tenant
}

/// A stored user of a stored tenant.
pub async fn stored_user(store: &Store, tenant_id: Uuid, email: &str) -> NewUser {
    let user = new_user(tenant_id, email);
    committed(store, async |tx| {
        plinth_platform::store::users::insert(
            tx,
            &user,
            event("auth.user.created", Some(tenant_id)),
        )
        .await
    })
    .await
    .unwrap();
    user
}
