//! Declared permissions: each module declares those of its namespace (the
//! core declares `plinth:`); checks and role grants may name only these.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::AuditDraft;

/// A declared permission.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PermissionRecord {
    pub name: String,
    pub module_id: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// Optional filters of a permission listing, and where the page starts.
#[derive(Debug, Clone, Default)]
pub struct PermissionFilter {
    pub module_id: Option<String>,
    pub name_prefix: Option<String>,
    /// Names after this one.
    pub after: Option<String>,
}

/// Reads declarations.
#[async_trait::async_trait]
pub trait PermissionStore: Send + Sync {
    async fn is_declared(&self, permission: &str) -> Result<bool, StoreError>;

    /// Whether any declared permission starts with `prefix`.
    async fn any_declared_under(&self, prefix: &str) -> Result<bool, StoreError>;

    async fn list_permissions(
        &self,
        filter: &PermissionFilter,
        limit: i64,
    ) -> Result<Vec<PermissionRecord>, StoreError>;
}

/// Declares permissions of one module, or updates their descriptions;
/// returns them as stored. Declarations are platform-wide: the audit event
/// goes to the platform chain.
pub async fn declare(
    tx: &mut Tx,
    declarations: &[PermissionRecord],
    audit: AuditDraft,
) -> Result<Vec<PermissionRecord>, StoreError> {
    let mut stored = Vec::with_capacity(declarations.len());
    in_tx!(tx, connection => {
        for declaration in declarations {
            let row: PermissionRecord = sqlx::query_as(
                "INSERT INTO permissions (name, module_id, description, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) \
                 DO UPDATE SET description = excluded.description \
                 RETURNING name, module_id, description, created_at",
            )
            .bind(&declaration.name)
            .bind(&declaration.module_id)
            .bind(&declaration.description)
            .bind(declaration.created_at)
            .fetch_one(&mut *connection)
            .await?;
            stored.push(row);
        }
    });
    super::audit_log::append(tx, audit).await?;
    Ok(stored)
}

/// How many permissions the module has declared.
pub async fn count_declared(tx: &mut Tx, module_id: &str) -> Result<i64, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query_scalar("SELECT COUNT(*) FROM permissions WHERE module_id = $1")
            .bind(module_id)
            .fetch_one(connection)
            .await?
    }))
}

/// The first string after every string that starts with `prefix` (ASCII).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    if let Some(last) = end.pop() {
        end.push(char::from(last as u8 + 1));
    }
    end
}

macro_rules! impl_permission_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl PermissionStore for SqlStore<$db> {
            async fn is_declared(&self, permission: &str) -> Result<bool, StoreError> {
                let found: Option<(i32,)> = self
                    .row_where("SELECT 1 FROM permissions WHERE name = $1", permission)
                    .await?;
                Ok(found.is_some())
            }

            async fn any_declared_under(&self, prefix: &str) -> Result<bool, StoreError> {
                let found: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM permissions WHERE name >= $1 AND name < $2 LIMIT 1",
                )
                .bind(prefix)
                .bind(prefix_end(prefix))
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.is_some())
            }

            async fn list_permissions(
                &self,
                filter: &PermissionFilter,
                limit: i64,
            ) -> Result<Vec<PermissionRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT name, module_id, description, created_at FROM permissions \
                     WHERE ($1 IS NULL OR module_id = $1) \
                     AND ($2 IS NULL OR substr(name, 1, length($2)) = $2) \
                     AND ($3 IS NULL OR name > $3) ORDER BY name LIMIT $4",
                )
                .bind(&filter.module_id)
                .bind(&filter.name_prefix)
                .bind(&filter.after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_permission_store!(Postgres);
impl_permission_store!(Sqlite);
