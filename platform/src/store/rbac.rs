//! Roles, the permissions they grant, and the bindings of users to them.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::AuditDraft;

/// The key of the system role every tenant has for its administrators.
pub const TENANT_ADMIN_ROLE: &str = "tenant-admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Unique within the tenant.
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// Made by the platform; cannot be deleted or stripped.
    pub system: bool,
    pub permissions: Vec<String>,
    pub etag: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user holding a role, tenant-wide or for one company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub company_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// Reads roles and bindings.
#[async_trait::async_trait]
pub trait RbacStore: Send + Sync {
    /// Whether the user holds its tenant's `tenant-admin` role tenant-wide.
    async fn is_tenant_admin(&self, user_id: Uuid) -> Result<bool, StoreError>;
}

pub async fn insert_role(
    tx: &mut Tx,
    role: &RoleRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO roles (id, tenant_id, key, display_name, description, system, etag, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(role.id)
        .bind(role.tenant_id)
        .bind(&role.key)
        .bind(&role.display_name)
        .bind(&role.description)
        .bind(role.system)
        .bind(&role.etag)
        .bind(role.created_at)
        .bind(role.updated_at)
        .execute(&mut *connection)
        .await?;
        for permission in &role.permissions {
            sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                .bind(role.id)
                .bind(permission)
                .execute(&mut *connection)
                .await?;
        }
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

pub async fn bind(tx: &mut Tx, binding: &RoleBinding, audit: AuditDraft) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, company_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(binding.id)
        .bind(binding.tenant_id)
        .bind(binding.user_id)
        .bind(binding.role_id)
        // '' stands for tenant-wide, so the unique key treats it as a value.
        .bind(binding.company_id.map(|id| id.to_string()).unwrap_or_default())
        .bind(binding.created_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

macro_rules! impl_rbac_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl RbacStore for SqlStore<$db> {
            async fn is_tenant_admin(&self, user_id: Uuid) -> Result<bool, StoreError> {
                let bound: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM role_bindings b JOIN roles r ON r.id = b.role_id \
                     WHERE b.user_id = $1 AND b.company_id = '' AND r.system AND r.key = $2 \
                     AND r.tenant_id = b.tenant_id LIMIT 1",
                )
                .bind(user_id)
                .bind(TENANT_ADMIN_ROLE)
                .fetch_optional(&self.pool)
                .await?;
                Ok(bound.is_some())
            }
        }
    };
}
impl_rbac_store!(Postgres);
impl_rbac_store!(Sqlite);
