//! Tenants: the unit of isolation, with their lifecycle and limits.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, Reference, SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

/// The reserved tenant whose users are platform super admins.
pub const PLATFORM_TENANT_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0000);
pub const PLATFORM_TENANT_CODE: &str = "platform";

stored_enum! {
    /// Where a tenant is in its lifecycle.
    pub enum TenantStatus {
        /// Being set up: operators write into it, its users cannot log in yet.
        Provisioning => "provisioning",
        Active => "active",
        /// Blocked, reversibly: nothing is written into it, nobody of it acts.
        Suspended => "suspended",
        /// Closed; data kept.
        Inactive => "inactive",
        /// Soft-deleted; its code stays reserved.
        Deleted => "deleted",
    }
}

impl TenantStatus {
    /// Whether data may be written into the tenant.
    pub fn accepts_writes(self) -> bool {
        matches!(self, TenantStatus::Provisioning | TenantStatus::Active)
    }

    /// Whether the tenant's own users and keys may act.
    pub fn admits_callers(self) -> bool {
        self == TenantStatus::Active
    }

    /// provisioning → active ⇄ suspended → inactive; any → deleted.
    pub fn may_become(self, next: TenantStatus) -> bool {
        use TenantStatus::*;
        matches!(
            (self, next),
            (Provisioning, Active)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Suspended, Inactive)
                | (Provisioning | Active | Suspended | Inactive, Deleted)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRecord {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: TenantStatus,
    /// 0 means unlimited.
    pub max_users: i32,
    pub max_companies: i32,
    pub industry: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRecord {
    /// A tenant made now, without limits or industry.
    pub fn new(code: String, name: String, status: TenantStatus) -> TenantRecord {
        let now = crate::clock::now();
        TenantRecord {
            id: Uuid::now_v7(),
            code,
            name,
            status,
            max_users: 0,
            max_companies: 0,
            industry: String::new(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// Optional filters of a tenant listing.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub code_prefix: Option<String>,
    pub industry: Option<String>,
    pub include_deleted: bool,
}

/// Reads tenants.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    async fn get_tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, StoreError>;
    async fn get_tenant_by_code(&self, code: &str) -> Result<Option<TenantRecord>, StoreError>;
    async fn list_tenants(
        &self,
        filter: &TenantFilter,
        page: Page,
    ) -> Result<Vec<TenantRecord>, StoreError>;
}

macro_rules! tenant_columns {
    () => {
        "id, code, name, status, max_users, max_companies, industry, created_at, updated_at"
    };
}

pub async fn insert(
    tx: &mut Tx,
    tenant: &TenantRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO tenants (",
            tenant_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(tenant.id)
        .bind(&tenant.code)
        .bind(&tenant.name)
        .bind(tenant.status.as_str())
        .bind(tenant.max_users)
        .bind(tenant.max_companies)
        .bind(&tenant.industry)
        .bind(tenant.created_at)
        .bind(tenant.updated_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Writes name, status, limits and industry of an existing tenant.
pub async fn update(
    tx: &mut Tx,
    tenant: &TenantRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query(
            "UPDATE tenants SET name = $2, status = $3, max_users = $4, max_companies = $5, \
             industry = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(tenant.id)
        .bind(&tenant.name)
        .bind(tenant.status.as_str())
        .bind(tenant.max_users)
        .bind(tenant.max_companies)
        .bind(&tenant.industry)
        .bind(tenant.updated_at)
        .execute(connection)
        .await?
        .rows_affected()
    });
    super::audited(tx, changed, audit).await
}

/// Locks the tenant row for the rest of the transaction (a no-op update does
/// in both databases) and returns it, so that its status, and counts taken
/// after it, stay true until commit. A missing tenant is a missing reference.
pub async fn lock(tx: &mut Tx, tenant_id: Uuid) -> Result<TenantRecord, StoreError> {
    let locked: Option<TenantRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE tenants SET updated_at = updated_at WHERE id = $1 RETURNING ",
            tenant_columns!()
        ))
        .bind(tenant_id)
        .fetch_optional(connection)
        .await?
    });
    locked.ok_or(StoreError::MissingReference(Reference::Tenant))
}

macro_rules! impl_tenant_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl TenantStore for SqlStore<$db> {
            async fn get_tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, StoreError> {
                self.row_where(
                    concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1"),
                    id,
                )
                .await
            }

            async fn get_tenant_by_code(
                &self,
                code: &str,
            ) -> Result<Option<TenantRecord>, StoreError> {
                self.row_where(
                    concat!(
                        "SELECT ",
                        tenant_columns!(),
                        " FROM tenants WHERE code = $1"
                    ),
                    code,
                )
                .await
            }

            async fn list_tenants(
                &self,
                filter: &TenantFilter,
                page: Page,
            ) -> Result<Vec<TenantRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    tenant_columns!(),
                    " FROM tenants WHERE ($1 IS NULL OR status = $1) \
                     AND ($2 IS NULL OR substr(code, 1, length($2)) = $2) \
                     AND ($3 IS NULL OR industry = $3) \
                     AND ($4 OR $1 IS NOT NULL OR status <> 'deleted') \
                     AND ($5 IS NULL OR id > $5) ORDER BY id LIMIT $6"
                ))
                .bind(filter.status.map(TenantStatus::as_str))
                .bind(&filter.code_prefix)
                .bind(&filter.industry)
                .bind(filter.include_deleted)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_tenant_store!(Postgres);
impl_tenant_store!(Sqlite);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_survives_the_database() {
        for status in TenantStatus::ALL {
            assert_eq!(
                TenantStatus::try_from(status.as_str().to_owned()).unwrap(),
                *status
            );
        }
        assert!(TenantStatus::try_from("paused".to_owned()).is_err());
    }

    #[test]
    fn only_provisioning_and_active_tenants_take_writes() {
        let writable: Vec<_> = TenantStatus::ALL
            .iter()
            .copied()
            .filter(|status| status.accepts_writes())
            .collect();
        assert_eq!(writable, [TenantStatus::Provisioning, TenantStatus::Active]);
    }
}
