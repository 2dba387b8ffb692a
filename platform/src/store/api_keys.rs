//! API keys: an id (public) and the SHA-256 hash of a 256-bit secret.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, types::Json};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, Tx, in_tx};
use crate::{audit::AuditDraft, rate_limits::RateLimit};

/// A stored API key. Secrets are never stored, only their hashes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    /// Set for module keys; operator keys have none.
    pub module_id: Option<String>,
    /// Set for keys restricted to one tenant.
    pub tenant_id: Option<Uuid>,
    #[sqlx(json)]
    pub scopes: Vec<String>,
    pub secret_hash: Vec<u8>,
    /// The secret replaced by the last rotation, valid until it expires.
    pub previous_secret_hash: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key's own rate limit, both set or neither (see
    /// [`ApiKeyRecord::rate_limit`]).
    pub rate_limit_calls_per_second: Option<i32>,
    pub rate_limit_burst: Option<i32>,
}

impl ApiKeyRecord {
    /// The key's own limit; `None` takes the server's default for keys.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match (self.rate_limit_calls_per_second, self.rate_limit_burst) {
            (Some(calls_per_second), Some(burst)) => Some(RateLimit {
                calls_per_second: u32::try_from(calls_per_second).ok()?,
                burst: u32::try_from(burst).ok()?,
            }),
            _ => None,
        }
    }
}

/// A key's own rate limit as its two columns (calls per second, burst).
pub fn rate_limit_columns(limit: Option<RateLimit>) -> (Option<i32>, Option<i32>) {
    let column = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
    (
        limit.map(|limit| column(limit.calls_per_second)),
        limit.map(|limit| column(limit.burst)),
    )
}

/// Optional filters of a key listing.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyFilter {
    pub module_id: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub include_revoked: bool,
}

/// Reads API keys; notes their use.
#[async_trait::async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn get(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Whether some operator key (no module, no tenant) is neither revoked
    /// nor expired at `now`.
    async fn has_usable_operator_key(&self, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Keys matching `filter`, oldest first.
    async fn list(
        &self,
        filter: &ApiKeyFilter,
        page: Page,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Notes that the key was used; not audited (it changes nothing).
    async fn record_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;
}

macro_rules! api_key_columns {
    () => {
        "id, name, module_id, tenant_id, scopes, secret_hash, previous_secret_hash, \
         previous_secret_expires_at, created_at, expires_at, revoked_at, last_used_at, \
         rate_limit_calls_per_second, rate_limit_burst"
    };
}

pub async fn insert(tx: &mut Tx, key: &ApiKeyRecord, audit: AuditDraft) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(key.id)
        .bind(&key.name)
        .bind(&key.module_id)
        .bind(key.tenant_id)
        .bind(Json(&key.scopes))
        .bind(&key.secret_hash)
        .bind(&key.previous_secret_hash)
        .bind(key.previous_secret_expires_at)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .bind(key.rate_limit_calls_per_second)
        .bind(key.rate_limit_burst)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Revokes the key (keeping the first revocation time) and returns it.
pub async fn revoke(
    tx: &mut Tx,
    id: Uuid,
    at: DateTime<Utc>,
    audit: AuditDraft,
) -> Result<ApiKeyRecord, StoreError> {
    let revoked: Option<ApiKeyRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
            api_key_columns!()
        ))
        .bind(id)
        .bind(at)
        .fetch_optional(connection)
        .await?
    });
    super::audited_row(tx, revoked, audit).await
}

/// Replaces the secret; the previous one stays valid until
/// `previous_expires_at`. Revoked keys cannot be rotated (NotFound).
pub async fn rotate(
    tx: &mut Tx,
    id: Uuid,
    secret_hash: &[u8],
    previous_expires_at: DateTime<Utc>,
    audit: AuditDraft,
) -> Result<ApiKeyRecord, StoreError> {
    let rotated: Option<ApiKeyRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE api_keys SET previous_secret_hash = secret_hash, \
             previous_secret_expires_at = $3, secret_hash = $2 \
             WHERE id = $1 AND revoked_at IS NULL RETURNING ",
            api_key_columns!()
        ))
        .bind(id)
        .bind(secret_hash)
        .bind(previous_expires_at)
        .fetch_optional(connection)
        .await?
    });
    super::audited_row(tx, rotated, audit).await
}

/// Sets the key's own rate limit (`None`: the server's default for keys)
/// and returns it. Revoked keys cannot change (NotFound).
pub async fn set_rate_limit(
    tx: &mut Tx,
    id: Uuid,
    limit: Option<RateLimit>,
    audit: AuditDraft,
) -> Result<ApiKeyRecord, StoreError> {
    let (calls_per_second, burst) = rate_limit_columns(limit);
    let updated: Option<ApiKeyRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE api_keys SET rate_limit_calls_per_second = $2, rate_limit_burst = $3 \
             WHERE id = $1 AND revoked_at IS NULL RETURNING ",
            api_key_columns!()
        ))
        .bind(id)
        .bind(calls_per_second)
        .bind(burst)
        .fetch_optional(connection)
        .await?
    });
    super::audited_row(tx, updated, audit).await
}

macro_rules! impl_api_key_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl ApiKeyStore for SqlStore<$db> {
            async fn get(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
                self.row_where(
                    concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = $1"),
                    id,
                )
                .await
            }

            async fn has_usable_operator_key(
                &self,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let usable: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM api_keys WHERE module_id IS NULL AND tenant_id IS NULL \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(usable.is_some())
            }

            async fn list(&self, filter: &ApiKeyFilter, page: Page) -> Result<Vec<ApiKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE ($1 IS NULL OR module_id = $1) \
                     AND ($2 IS NULL OR tenant_id = $2) AND ($3 OR revoked_at IS NULL) \
                     AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
                ))
                .bind(&filter.module_id)
                .bind(filter.tenant_id)
                .bind(filter.include_revoked)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn record_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}
impl_api_key_store!(Postgres);
impl_api_key_store!(Sqlite);
