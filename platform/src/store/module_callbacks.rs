//! The outbox of lifecycle callbacks: each written in the transaction of
//! the change it reports, delivered at least once afterwards, oldest first
//! per tenant and module, by whichever replica claims it; deleted once
//! delivered (or given up on).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, types::Json};
use uuid::Uuid;

use super::{SqlStore, StoreError, Tx, in_tx, stored_enum};

stored_enum! {
    /// What happened, for the module to hear.
    pub enum CallbackKind {
        TenantEnabled => "tenant_enabled",
        TenantDisabled => "tenant_disabled",
        CompanyEnabled => "company_enabled",
        CompanyDisabled => "company_disabled",
    }
}

/// Who made the change a callback reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallbackActor {
    pub user_id: Option<Uuid>,
    pub module_id: Option<String>,
    pub api_key_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CallbackRecord {
    /// The same for every attempt.
    pub operation_id: Uuid,
    pub tenant_id: Uuid,
    pub module_id: String,
    /// '' for tenant callbacks.
    pub company_id: String,
    #[sqlx(try_from = "String")]
    pub callback: CallbackKind,
    pub module_version: String,
    #[sqlx(json)]
    pub actor: CallbackActor,
    /// Attempts made so far.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
}

impl CallbackRecord {
    pub fn company(&self) -> Option<Uuid> {
        Uuid::try_parse(&self.company_id).ok()
    }
}

/// Reads and claims callbacks to deliver.
#[async_trait::async_trait]
pub trait CallbackStore: Send + Sync {
    /// Callbacks in the outbox, due or waiting to be retried.
    async fn backlog(&self) -> Result<i64, StoreError>;

    /// Callbacks due at `now`, unclaimed (or whose claim lapsed), each the
    /// oldest of its tenant and module, at most `limit`.
    async fn due_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CallbackRecord>, StoreError>;

    /// Claims a due callback until `until` and counts the attempt; false
    /// when another replica claimed it first.
    async fn claim_callback(
        &self,
        operation_id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Releases a failed attempt, to be tried again at `next_attempt_at`.
    async fn retry_callback(
        &self,
        operation_id: Uuid,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;
}

/// Adds a callback to deliver once the transaction commits.
pub async fn enqueue(tx: &mut Tx, callback: &CallbackRecord) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO module_callbacks (operation_id, tenant_id, module_id, company_id, \
             callback, module_version, actor, attempts, next_attempt_at, claimed_until, \
             last_error, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(callback.operation_id)
        .bind(callback.tenant_id)
        .bind(&callback.module_id)
        .bind(&callback.company_id)
        .bind(callback.callback.as_str())
        .bind(&callback.module_version)
        .bind(Json(&callback.actor))
        .bind(callback.attempts)
        .bind(callback.next_attempt_at)
        .bind(callback.claimed_until)
        .bind(&callback.last_error)
        .bind(callback.created_at)
        .execute(connection)
        .await?;
    });
    Ok(())
}

/// Removes a delivered (or abandoned) callback; false when it was gone.
pub async fn remove(tx: &mut Tx, operation_id: Uuid) -> Result<bool, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query("DELETE FROM module_callbacks WHERE operation_id = $1")
            .bind(operation_id)
            .execute(connection)
            .await?
            .rows_affected()
            > 0
    }))
}

macro_rules! impl_callback_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl CallbackStore for SqlStore<$db> {
            async fn backlog(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM module_callbacks")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn due_callbacks(
                &self,
                now: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<CallbackRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT c.operation_id, c.tenant_id, c.module_id, c.company_id, c.callback, \
                     c.module_version, c.actor, c.attempts, c.next_attempt_at, c.claimed_until, \
                     c.last_error, c.created_at FROM module_callbacks c \
                     WHERE c.next_attempt_at <= $1 \
                     AND (c.claimed_until IS NULL OR c.claimed_until < $1) \
                     AND NOT EXISTS (SELECT 1 FROM module_callbacks older \
                         WHERE older.tenant_id = c.tenant_id AND older.module_id = c.module_id \
                         AND older.operation_id < c.operation_id) \
                     ORDER BY c.next_attempt_at LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_callback(
                &self,
                operation_id: Uuid,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                Ok(sqlx::query(
                    "UPDATE module_callbacks SET claimed_until = $3, attempts = attempts + 1 \
                     WHERE operation_id = $1 AND next_attempt_at <= $2 \
                     AND (claimed_until IS NULL OR claimed_until < $2)",
                )
                .bind(operation_id)
                .bind(now)
                .bind(until)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1)
            }

            async fn retry_callback(
                &self,
                operation_id: Uuid,
                next_attempt_at: DateTime<Utc>,
                error: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE module_callbacks SET next_attempt_at = $2, claimed_until = NULL, \
                     last_error = $3 WHERE operation_id = $1",
                )
                .bind(operation_id)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}
impl_callback_store!(Postgres);
impl_callback_store!(Sqlite);
