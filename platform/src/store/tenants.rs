//! Tenants and their companies.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError};
use crate::audit::AuditDraft;

/// The reserved tenant whose users are platform super admins.
pub const PLATFORM_TENANT_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0000);
pub const PLATFORM_TENANT_CODE: &str = "platform";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRecord {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    /// `provisioning`, `active`, `suspended`, `inactive` or `deleted`.
    pub status: String,
    /// 0 means unlimited.
    pub max_users: i32,
    pub max_companies: i32,
    pub industry: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CompanyRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub code: String,
    pub name: String,
    /// `active` or `archived`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tenant's caps, 0 meaning unlimited.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(super) struct TenantLimits {
    pub max_users: i32,
    pub max_companies: i32,
}

/// Optional filters of a tenant listing.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<String>,
    pub code_prefix: Option<String>,
    pub industry: Option<String>,
    pub include_deleted: bool,
}

/// Optional filters of a company listing.
#[derive(Debug, Clone, Default)]
pub struct CompanyFilter {
    pub status: Option<String>,
    pub code_prefix: Option<String>,
}

/// Why a creation inside a tenant was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("tenant limit {limit} of {value} reached")]
    Reached { limit: &'static str, value: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_tenant(
        &self,
        tenant: &TenantRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, StoreError>;
    async fn get_tenant_by_code(&self, code: &str) -> Result<Option<TenantRecord>, StoreError>;
    async fn list_tenants(
        &self,
        filter: &TenantFilter,
        page: Page,
    ) -> Result<Vec<TenantRecord>, StoreError>;
    /// Writes name, status, limits and industry of an existing tenant.
    async fn update_tenant(
        &self,
        tenant: &TenantRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;

    /// Creates a company unless the tenant's `max_companies` is reached; two
    /// concurrent creations cannot both take the last place.
    async fn create_company(
        &self,
        company: &CompanyRecord,
        audit: AuditDraft,
    ) -> Result<(), LimitError>;
    async fn get_company(&self, id: Uuid) -> Result<Option<CompanyRecord>, StoreError>;
    async fn get_company_by_code(
        &self,
        tenant_id: Uuid,
        code: &str,
    ) -> Result<Option<CompanyRecord>, StoreError>;
    async fn list_companies(
        &self,
        tenant_id: Uuid,
        filter: &CompanyFilter,
        page: Page,
    ) -> Result<Vec<CompanyRecord>, StoreError>;
    /// Writes name and status of an existing company.
    async fn update_company(
        &self,
        company: &CompanyRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
}

macro_rules! tenant_columns {
    () => {
        "id, code, name, status, max_users, max_companies, industry, created_at, updated_at"
    };
}

macro_rules! company_columns {
    () => {
        "id, tenant_id, code, name, status, created_at, updated_at"
    };
}

macro_rules! impl_tenant_store {
    ($db:ty) => {
        impl SqlStore<$db> {
            /// Locks the tenant row for the rest of the transaction (a no-op
            /// update does in both databases), so counts taken after it stay
            /// true until commit, and returns the tenant's limits.
            pub(super) async fn lock_tenant(
                transaction: &mut sqlx::Transaction<'_, $db>,
                tenant_id: Uuid,
            ) -> Result<TenantLimits, StoreError> {
                sqlx::query_as(
                    "UPDATE tenants SET updated_at = updated_at WHERE id = $1 \
                     RETURNING max_users, max_companies",
                )
                .bind(tenant_id)
                .fetch_optional(&mut **transaction)
                .await?
                .ok_or(StoreError::MissingReference)
            }
        }

        #[async_trait::async_trait]
        impl TenantStore for SqlStore<$db> {
            async fn create_tenant(&self, tenant: &TenantRecord, audit: AuditDraft) -> Result<(), StoreError> {
                let mut transaction = self.begin_write().await?;
                Self::insert_tenant(&mut transaction, tenant).await?;
                Self::append_audit(&mut transaction, audit).await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn get_tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn get_tenant_by_code(&self, code: &str) -> Result<Option<TenantRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE code = $1"))
                    .bind(code)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_tenants(&self, filter: &TenantFilter, page: Page) -> Result<Vec<TenantRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    tenant_columns!(),
                    " FROM tenants WHERE ($1 IS NULL OR status = $1) \
                     AND ($2 IS NULL OR substr(code, 1, length($2)) = $2) \
                     AND ($3 IS NULL OR industry = $3) \
                     AND ($4 OR $1 IS NOT NULL OR status <> 'deleted') \
                     AND ($5 IS NULL OR id > $5) ORDER BY id LIMIT $6"
                ))
                .bind(&filter.status)
                .bind(&filter.code_prefix)
                .bind(&filter.industry)
                .bind(filter.include_deleted)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_tenant(&self, tenant: &TenantRecord, audit: AuditDraft) -> Result<(), StoreError> {
                self.execute_audited(
                    sqlx::query(
                        "UPDATE tenants SET name = $2, status = $3, max_users = $4, max_companies = $5, \
                        industry = $6, updated_at = $7 WHERE id = $1",
                    )
                    .bind(tenant.id)
                    .bind(&tenant.name)
                    .bind(&tenant.status)
                    .bind(tenant.max_users)
                    .bind(tenant.max_companies)
                    .bind(&tenant.industry)
                    .bind(tenant.updated_at),
                    audit,
                )
                .await
            }

            async fn create_company(&self, company: &CompanyRecord, audit: AuditDraft) -> Result<(), LimitError> {
                let mut transaction = self.begin_write().await?;
                let max_companies = Self::lock_tenant(&mut transaction, company.tenant_id).await?.max_companies;
                if max_companies > 0 {
                    let companies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM companies WHERE tenant_id = $1")
                        .bind(company.tenant_id)
                        .fetch_one(&mut *transaction)
                        .await
                        .map_err(StoreError::from)?;
                    if companies >= i64::from(max_companies) {
                        return Err(LimitError::Reached { limit: "max_companies", value: max_companies });
                    }
                }
                sqlx::query(concat!(
                    "INSERT INTO companies (",
                    company_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(company.id)
                .bind(company.tenant_id)
                .bind(&company.code)
                .bind(&company.name)
                .bind(&company.status)
                .bind(company.created_at)
                .bind(company.updated_at)
                .execute(&mut *transaction)
                .await
                .map_err(StoreError::from)?;
                Self::append_audit(&mut transaction, audit).await?;
                transaction.commit().await.map_err(StoreError::from)?;
                Ok(())
            }

            async fn get_company(&self, id: Uuid) -> Result<Option<CompanyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", company_columns!(), " FROM companies WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn get_company_by_code(&self, tenant_id: Uuid, code: &str) -> Result<Option<CompanyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    company_columns!(),
                    " FROM companies WHERE tenant_id = $1 AND code = $2"
                ))
                .bind(tenant_id)
                .bind(code)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_companies(
                &self,
                tenant_id: Uuid,
                filter: &CompanyFilter,
                page: Page,
            ) -> Result<Vec<CompanyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    company_columns!(),
                    " FROM companies WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR substr(code, 1, length($3)) = $3) \
                     AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
                ))
                .bind(tenant_id)
                .bind(&filter.status)
                .bind(&filter.code_prefix)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_company(&self, company: &CompanyRecord, audit: AuditDraft) -> Result<(), StoreError> {
                self.execute_audited(
                    sqlx::query("UPDATE companies SET name = $2, status = $3, updated_at = $4 WHERE id = $1")
                    .bind(company.id)
                    .bind(&company.name)
                    .bind(&company.status)
                    .bind(company.updated_at),
                    audit,
                )
                .await
            }
        }

        impl SqlStore<$db> {
            pub(super) async fn insert_tenant(
                transaction: &mut sqlx::Transaction<'_, $db>,
                tenant: &TenantRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    "INSERT INTO tenants (",
                    tenant_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(tenant.id)
                .bind(&tenant.code)
                .bind(&tenant.name)
                .bind(&tenant.status)
                .bind(tenant.max_users)
                .bind(tenant.max_companies)
                .bind(&tenant.industry)
                .bind(tenant.created_at)
                .bind(tenant.updated_at)
                .execute(&mut **transaction)
                .await?;
                Ok(())
            }
        }
    };
}
impl_tenant_store!(Postgres);
impl_tenant_store!(Sqlite);
