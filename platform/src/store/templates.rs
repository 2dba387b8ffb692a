//! Industry templates: the modules (in display order, required or
//! optional, each with a starting tenant configuration) a tenant of an
//! industry gets. Modules refer to the catalog.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::AuditDraft;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateRecord {
    pub code: String,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub etag: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateModuleRecord {
    pub module_id: String,
    pub required: bool,
    /// A JSON object, or '' for none.
    pub tenant_config: String,
}

/// A template with its modules in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub template: TemplateRecord,
    pub modules: Vec<TemplateModuleRecord>,
}

/// Reads templates.
#[async_trait::async_trait]
pub trait TemplateStore: Send + Sync {
    async fn template(&self, code: &str) -> Result<Option<Template>, StoreError>;

    /// Templates by code after `after`, at most `limit`.
    async fn list_templates(
        &self,
        include_inactive: bool,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Template>, StoreError>;
}

macro_rules! template_columns {
    () => {
        "code, name, description, active, etag, created_at, updated_at"
    };
}

/// Writes a template: added when `first` (a conflict when its code is
/// taken), else replaced with its modules.
pub async fn put(
    tx: &mut Tx,
    template: &Template,
    first: bool,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let record = &template.template;
    let sql = if first {
        concat!(
            "INSERT INTO industry_templates (",
            template_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
    } else {
        "UPDATE industry_templates SET name = $2, description = $3, active = $4, etag = $5, \
         created_at = $6, updated_at = $7 WHERE code = $1"
    };
    let written = in_tx!(tx, connection => {
        let written = sqlx::query(sql)
            .bind(&record.code)
            .bind(&record.name)
            .bind(&record.description)
            .bind(record.active)
            .bind(&record.etag)
            .bind(record.created_at)
            .bind(record.updated_at)
            .execute(&mut *connection)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM industry_template_modules WHERE template_code = $1")
            .bind(&record.code)
            .execute(&mut *connection)
            .await?;
        for (position, module) in template.modules.iter().enumerate() {
            sqlx::query(
                "INSERT INTO industry_template_modules \
                 (template_code, position, module_id, required, tenant_config) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&record.code)
            .bind(position as i32)
            .bind(&module.module_id)
            .bind(module.required)
            .bind(&module.tenant_config)
            .execute(&mut *connection)
            .await?;
        }
        written
    });
    super::audited(tx, written, audit).await
}

/// Deletes a template and its modules; NotFound when there is none.
pub async fn delete(tx: &mut Tx, code: &str, audit: AuditDraft) -> Result<(), StoreError> {
    let deleted = in_tx!(tx, connection => {
        sqlx::query("DELETE FROM industry_templates WHERE code = $1")
            .bind(code)
            .execute(connection)
            .await?
            .rows_affected()
    });
    super::audited(tx, deleted, audit).await
}

macro_rules! impl_template_store {
    ($db:ty) => {
        impl SqlStore<$db> {
            async fn with_modules(
                &self,
                records: Vec<TemplateRecord>,
            ) -> Result<Vec<Template>, StoreError> {
                let mut templates = Vec::with_capacity(records.len());
                for template in records {
                    let modules = sqlx::query_as(
                        "SELECT module_id, required, tenant_config FROM industry_template_modules \
                         WHERE template_code = $1 ORDER BY position",
                    )
                    .bind(&template.code)
                    .fetch_all(&self.pool)
                    .await?;
                    templates.push(Template { template, modules });
                }
                Ok(templates)
            }
        }

        #[async_trait::async_trait]
        impl TemplateStore for SqlStore<$db> {
            async fn template(&self, code: &str) -> Result<Option<Template>, StoreError> {
                let record: Option<TemplateRecord> = self
                    .row_where(
                        concat!(
                            "SELECT ",
                            template_columns!(),
                            " FROM industry_templates WHERE code = $1"
                        ),
                        code,
                    )
                    .await?;
                Ok(self.with_modules(record.into_iter().collect()).await?.pop())
            }

            async fn list_templates(
                &self,
                include_inactive: bool,
                after: Option<&str>,
                limit: i64,
            ) -> Result<Vec<Template>, StoreError> {
                let records = sqlx::query_as(concat!(
                    "SELECT ",
                    template_columns!(),
                    " FROM industry_templates WHERE ($1 OR active) \
                     AND ($2 IS NULL OR code > $2) ORDER BY code LIMIT $3"
                ))
                .bind(include_inactive)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                self.with_modules(records).await
            }
        }
    };
}
impl_template_store!(Postgres);
impl_template_store!(Sqlite);
