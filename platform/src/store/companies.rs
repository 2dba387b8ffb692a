//! Companies: legal entities or branches inside a tenant.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

stored_enum! {
    /// Lifecycle of a company.
    pub enum CompanyStatus {
        Active => "active",
        Archived => "archived",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CompanyRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub code: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: CompanyStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Optional filters of a company listing.
#[derive(Debug, Clone, Default)]
pub struct CompanyFilter {
    pub status: Option<CompanyStatus>,
    pub code_prefix: Option<String>,
}

/// Reads companies.
#[async_trait::async_trait]
pub trait CompanyStore: Send + Sync {
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
}

macro_rules! company_columns {
    () => {
        "id, tenant_id, code, name, status, created_at, updated_at"
    };
}

pub async fn insert(
    tx: &mut Tx,
    company: &CompanyRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO companies (",
            company_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(company.id)
        .bind(company.tenant_id)
        .bind(&company.code)
        .bind(&company.name)
        .bind(company.status.as_str())
        .bind(company.created_at)
        .bind(company.updated_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Writes name and status of an existing company.
pub async fn update(
    tx: &mut Tx,
    company: &CompanyRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query("UPDATE companies SET name = $2, status = $3, updated_at = $4 WHERE id = $1")
            .bind(company.id)
            .bind(&company.name)
            .bind(company.status.as_str())
            .bind(company.updated_at)
            .execute(connection)
            .await?
            .rows_affected()
    });
    super::audited(tx, changed, audit).await
}

macro_rules! impl_company_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl CompanyStore for SqlStore<$db> {
            async fn get_company(&self, id: Uuid) -> Result<Option<CompanyRecord>, StoreError> {
                self.row_where(
                    concat!(
                        "SELECT ",
                        company_columns!(),
                        " FROM companies WHERE id = $1"
                    ),
                    id,
                )
                .await
            }

            async fn get_company_by_code(
                &self,
                tenant_id: Uuid,
                code: &str,
            ) -> Result<Option<CompanyRecord>, StoreError> {
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
                .bind(filter.status.map(CompanyStatus::as_str))
                .bind(&filter.code_prefix)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_company_store!(Postgres);
impl_company_store!(Sqlite);
