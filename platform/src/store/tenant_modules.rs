//! Modules in tenants: each tenant's standing with a module (its state,
//! version pin and features) and each company's switch and features. Every
//! write bumps the tenant's module version in its transaction, which the
//! caches of every replica are keyed by.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, types::Json};
use uuid::Uuid;

use super::{SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

stored_enum! {
    /// Where a module stands in a tenant (see the TenantService proto).
    pub enum TenantModuleState {
        Enabling => "enabling",
        Provisioning => "provisioning",
        Enabled => "enabled",
        Disabling => "disabling",
        Disabled => "disabled",
        Failed => "failed",
    }
}

impl TenantModuleState {
    /// Whether the tenant has the module (enabled, or on its way there):
    /// what its dependents need, and what the module key may see.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            TenantModuleState::Enabling
                | TenantModuleState::Provisioning
                | TenantModuleState::Enabled
        )
    }
}

/// Features switched on or off, by key.
pub type Features = BTreeMap<String, bool>;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantModuleRecord {
    pub tenant_id: Uuid,
    pub module_id: String,
    #[sqlx(try_from = "String")]
    pub state: TenantModuleState,
    /// `None` follows the catalog's active version.
    pub version_pin: Option<String>,
    #[sqlx(json)]
    pub features: Features,
    pub failure: String,
    /// Whether the module's default roles were created in the tenant.
    pub roles_seeded: bool,
    pub enabled_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CompanyModuleRecord {
    pub company_id: Uuid,
    pub module_id: String,
    pub tenant_id: Uuid,
    pub switched_off: bool,
    #[sqlx(json)]
    pub features: Features,
    pub updated_at: DateTime<Utc>,
}

/// Everything about a tenant's modules, as of one module version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantModules {
    pub version: i64,
    pub modules: Vec<TenantModuleRecord>,
    pub companies: Vec<CompanyModuleRecord>,
}

/// Reads tenants' modules.
#[async_trait::async_trait]
pub trait TenantModuleStore: Send + Sync {
    /// The tenant's modules and company switches with the module version
    /// read before them (rows may already show later changes); `None` for
    /// an unknown tenant.
    async fn tenant_modules(&self, tenant_id: Uuid) -> Result<Option<TenantModules>, StoreError>;

    /// The tenant's module version; `None` for an unknown tenant.
    async fn modules_version(&self, tenant_id: Uuid) -> Result<Option<i64>, StoreError>;

    /// Tenants holding the module (see [`TenantModuleState::is_held`]), by
    /// id, after `after`, at most `limit`.
    async fn tenants_holding(
        &self,
        module_id: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Uuid>, StoreError>;
}

macro_rules! tenant_module_columns {
    () => {
        "tenant_id, module_id, state, version_pin, features, failure, roles_seeded, \
         enabled_at, updated_at"
    };
}

macro_rules! company_module_columns {
    () => {
        "company_id, module_id, tenant_id, switched_off, features, updated_at"
    };
}

/// The tenant's modules inside a transaction (lock the tenant first).
pub async fn modules_in(
    tx: &mut Tx,
    tenant_id: Uuid,
) -> Result<Vec<TenantModuleRecord>, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "SELECT ",
            tenant_module_columns!(),
            " FROM tenant_modules WHERE tenant_id = $1 ORDER BY module_id"
        ))
        .bind(tenant_id)
        .fetch_all(connection)
        .await?
    }))
}

/// A company's standing with a module inside a transaction.
pub async fn company_module_in(
    tx: &mut Tx,
    company_id: Uuid,
    module_id: &str,
) -> Result<Option<CompanyModuleRecord>, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "SELECT ",
            company_module_columns!(),
            " FROM company_modules WHERE company_id = $1 AND module_id = $2"
        ))
        .bind(company_id)
        .bind(module_id)
        .fetch_optional(connection)
        .await?
    }))
}

/// Writes a tenant's standing with a module, and its audit event.
pub async fn put(
    tx: &mut Tx,
    record: &TenantModuleRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO tenant_modules (",
            tenant_module_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, module_id) DO UPDATE SET state = $3, version_pin = $4, \
             features = $5, failure = $6, roles_seeded = $7, enabled_at = $8, updated_at = $9"
        ))
        .bind(record.tenant_id)
        .bind(&record.module_id)
        .bind(record.state.as_str())
        .bind(&record.version_pin)
        .bind(Json(&record.features))
        .bind(&record.failure)
        .bind(record.roles_seeded)
        .bind(record.enabled_at)
        .bind(record.updated_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Writes a company's standing with a module, and its audit event.
pub async fn put_company(
    tx: &mut Tx,
    record: &CompanyModuleRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO company_modules (",
            company_module_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (company_id, module_id) DO UPDATE SET switched_off = $4, \
             features = $5, updated_at = $6"
        ))
        .bind(record.company_id)
        .bind(&record.module_id)
        .bind(record.tenant_id)
        .bind(record.switched_off)
        .bind(Json(&record.features))
        .bind(record.updated_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Bumps the tenant's module version; the new one.
pub async fn bump_version(tx: &mut Tx, tenant_id: Uuid) -> Result<i64, StoreError> {
    let version: Option<i64> = in_tx!(tx, connection => {
        sqlx::query_scalar(
            "UPDATE tenants SET modules_version = modules_version + 1 WHERE id = $1 \
             RETURNING modules_version",
        )
        .bind(tenant_id)
        .fetch_optional(connection)
        .await?
    });
    version.ok_or(StoreError::NotFound)
}

macro_rules! impl_tenant_module_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl TenantModuleStore for SqlStore<$db> {
            async fn tenant_modules(
                &self,
                tenant_id: Uuid,
            ) -> Result<Option<TenantModules>, StoreError> {
                let Some(version) = self.modules_version(tenant_id).await? else {
                    return Ok(None);
                };
                let modules = sqlx::query_as(concat!(
                    "SELECT ",
                    tenant_module_columns!(),
                    " FROM tenant_modules WHERE tenant_id = $1 ORDER BY module_id"
                ))
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                let companies = sqlx::query_as(concat!(
                    "SELECT ",
                    company_module_columns!(),
                    " FROM company_modules WHERE tenant_id = $1 ORDER BY module_id, company_id"
                ))
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(Some(TenantModules {
                    version,
                    modules,
                    companies,
                }))
            }

            async fn modules_version(&self, tenant_id: Uuid) -> Result<Option<i64>, StoreError> {
                self.row_where::<(i64,), _>(
                    "SELECT modules_version FROM tenants WHERE id = $1",
                    tenant_id,
                )
                .await
                .map(|row| row.map(|(version,)| version))
            }

            async fn tenants_holding(
                &self,
                module_id: &str,
                after: Option<Uuid>,
                limit: i64,
            ) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT tenant_id FROM tenant_modules WHERE module_id = $1 \
                     AND state IN ('enabling', 'provisioning', 'enabled') \
                     AND ($2 IS NULL OR tenant_id > $2) ORDER BY tenant_id LIMIT $3",
                )
                .bind(module_id)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_tenant_module_store!(Postgres);
impl_tenant_module_store!(Sqlite);
