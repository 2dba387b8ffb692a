//! Modules' configuration layers, a tenant's and its companies' (each the
//! JSON text as written, secret values sealed), and the log of changes to
//! resolved configurations that watchers follow: every write that may
//! change one takes the next revision in its transaction.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::AuditDraft;

/// One layer: the tenant's (`company_id` `None`) or a company's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLayerRecord {
    pub tenant_id: Uuid,
    pub module_id: String,
    pub company_id: Option<Uuid>,
    /// A JSON object, as written (secret values sealed).
    pub document: String,
    pub etag: String,
    pub updated_at: DateTime<Utc>,
}

/// The row as stored: '' for the tenant's layer.
#[derive(sqlx::FromRow)]
struct LayerRow {
    tenant_id: Uuid,
    module_id: String,
    company_id: String,
    document: String,
    etag: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<LayerRow> for ConfigLayerRecord {
    type Error = StoreError;

    fn try_from(row: LayerRow) -> Result<ConfigLayerRecord, StoreError> {
        let company_id = match row.company_id.as_str() {
            "" => None,
            id => Some(Uuid::try_parse(id).map_err(|error| StoreError::Internal(Box::new(error)))?),
        };
        Ok(ConfigLayerRecord {
            tenant_id: row.tenant_id,
            module_id: row.module_id,
            company_id,
            document: row.document,
            etag: row.etag,
            updated_at: row.updated_at,
        })
    }
}

macro_rules! layer_select {
    () => {
        "SELECT tenant_id, module_id, company_id, document, etag, updated_at FROM module_configs \
         WHERE tenant_id = $1 AND module_id = $2"
    };
}

fn stored_company(company_id: Option<Uuid>) -> String {
    company_id.map(|id| id.to_string()).unwrap_or_default()
}

/// What may have changed the resolved configuration of a module: in one
/// tenant (and its companies) or one company, or, with no tenant, in every
/// tenant that follows the module's active version.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConfigChangeRecord {
    pub revision: i64,
    pub module_id: String,
    pub tenant_id: Option<Uuid>,
    /// '' for the tenant (or every tenant).
    pub company_id: String,
}

impl ConfigChangeRecord {
    pub fn company(&self) -> Option<Uuid> {
        Uuid::try_parse(&self.company_id).ok()
    }
}

/// Reads configuration layers and their changes.
#[async_trait::async_trait]
pub trait ModuleConfigStore: Send + Sync {
    async fn layer(
        &self,
        tenant_id: Uuid,
        module_id: &str,
        company_id: Option<Uuid>,
    ) -> Result<Option<ConfigLayerRecord>, StoreError>;

    /// The tenant's layer and its companies' of the module, the tenant's
    /// first.
    async fn layers(
        &self,
        tenant_id: Uuid,
        module_id: &str,
    ) -> Result<Vec<ConfigLayerRecord>, StoreError>;

    /// The revision of the last committed change (0 before any).
    async fn config_revision(&self) -> Result<i64, StoreError>;

    /// Kept changes to the module after `revision`, in order, at most
    /// `limit`, with the revision they were read up to (every change up to
    /// it has committed; later ones may be missing from the rows).
    async fn config_changes_after(
        &self,
        module_id: &str,
        revision: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ConfigChangeRecord>), StoreError>;

    /// The oldest revision kept (0 when none is).
    async fn oldest_config_change(&self) -> Result<i64, StoreError>;

    /// Forgets changes made before `before`; how many.
    async fn forget_config_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Writes a layer (added or replaced) and its audit event.
pub async fn put_layer(
    tx: &mut Tx,
    layer: &ConfigLayerRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO module_configs \
             (tenant_id, module_id, company_id, document, etag, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, module_id, company_id) \
             DO UPDATE SET document = $4, etag = $5, updated_at = $6",
        )
        .bind(layer.tenant_id)
        .bind(&layer.module_id)
        .bind(stored_company(layer.company_id))
        .bind(&layer.document)
        .bind(&layer.etag)
        .bind(layer.updated_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// A layer inside a transaction (lock the tenant first, so that it holds
/// until commit).
pub async fn layer_in(
    tx: &mut Tx,
    tenant_id: Uuid,
    module_id: &str,
    company_id: Option<Uuid>,
) -> Result<Option<ConfigLayerRecord>, StoreError> {
    let row: Option<LayerRow> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(layer_select!(), " AND company_id = $3"))
        .bind(tenant_id)
        .bind(module_id)
        .bind(stored_company(company_id))
        .fetch_optional(connection)
        .await?
    });
    row.map(ConfigLayerRecord::try_from).transpose()
}

/// Every layer of the module in the tenant inside a transaction, the
/// tenant's first.
pub async fn layers_in(
    tx: &mut Tx,
    tenant_id: Uuid,
    module_id: &str,
) -> Result<Vec<ConfigLayerRecord>, StoreError> {
    let rows: Vec<LayerRow> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(layer_select!(), " ORDER BY company_id"))
        .bind(tenant_id)
        .bind(module_id)
        .fetch_all(connection)
        .await?
    });
    rows.into_iter().map(ConfigLayerRecord::try_from).collect()
}

/// Numbers a change to the module's resolved configuration (in a tenant,
/// a company, or with no tenant every tenant following its active version)
/// by the next revision. Taking the counter holds other writers of changes
/// until this transaction ends, so revisions commit in order.
pub async fn record_change(
    tx: &mut Tx,
    module_id: &str,
    tenant_id: Option<Uuid>,
    company_id: Option<Uuid>,
) -> Result<i64, StoreError> {
    let changed_at = crate::clock::now();
    Ok(in_tx!(tx, connection => {
        let revision: i64 = sqlx::query_scalar(
            "UPDATE config_revision SET revision = revision + 1 RETURNING revision",
        )
        .fetch_one(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO config_changes (revision, module_id, tenant_id, company_id, changed_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(revision)
        .bind(module_id)
        .bind(tenant_id)
        .bind(stored_company(company_id))
        .bind(changed_at)
        .execute(&mut *connection)
        .await?;
        revision
    }))
}

macro_rules! impl_module_config_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl ModuleConfigStore for SqlStore<$db> {
            async fn layer(
                &self,
                tenant_id: Uuid,
                module_id: &str,
                company_id: Option<Uuid>,
            ) -> Result<Option<ConfigLayerRecord>, StoreError> {
                let row: Option<LayerRow> =
                    sqlx::query_as(concat!(layer_select!(), " AND company_id = $3"))
                        .bind(tenant_id)
                        .bind(module_id)
                        .bind(stored_company(company_id))
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(ConfigLayerRecord::try_from).transpose()
            }

            async fn layers(
                &self,
                tenant_id: Uuid,
                module_id: &str,
            ) -> Result<Vec<ConfigLayerRecord>, StoreError> {
                let rows: Vec<LayerRow> =
                    sqlx::query_as(concat!(layer_select!(), " ORDER BY company_id"))
                        .bind(tenant_id)
                        .bind(module_id)
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter().map(ConfigLayerRecord::try_from).collect()
            }

            async fn config_revision(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT revision FROM config_revision")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn config_changes_after(
                &self,
                module_id: &str,
                revision: i64,
                limit: i64,
            ) -> Result<(i64, Vec<ConfigChangeRecord>), StoreError> {
                let read_up_to = self.config_revision().await?;
                let changes = sqlx::query_as(
                    "SELECT revision, module_id, tenant_id, company_id FROM config_changes \
                     WHERE module_id = $1 AND revision > $2 AND revision <= $3 \
                     ORDER BY revision LIMIT $4",
                )
                .bind(module_id)
                .bind(revision)
                .bind(read_up_to)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok((read_up_to, changes))
            }

            async fn oldest_config_change(&self) -> Result<i64, StoreError> {
                let oldest: Option<i64> =
                    sqlx::query_scalar("SELECT MIN(revision) FROM config_changes")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(oldest.unwrap_or(0))
            }

            async fn forget_config_changes(
                &self,
                before: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                Ok(
                    sqlx::query("DELETE FROM config_changes WHERE changed_at < $1")
                        .bind(before)
                        .execute(&self.pool)
                        .await?
                        .rows_affected(),
                )
            }
        }
    };
}
impl_module_config_store!(Postgres);
impl_module_config_store!(Sqlite);
