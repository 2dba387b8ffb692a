//! Login sessions and their rotating refresh tokens (stored as SHA-256).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError};
use crate::audit::AuditDraft;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub peer_address: String,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
}

/// A refresh token as stored: its hash and lifetime.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: Vec<u8>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was spent and its successor stored.
    Rotated(SessionRecord),
    /// The token was already spent: its session is now revoked.
    Reused { session_id: Uuid, tenant_id: Uuid },
    /// Unknown, expired, or its session is revoked or expired.
    Refused,
}

#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(
        &self,
        session: &SessionRecord,
        refresh_token: &RefreshTokenRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;

    /// Spends `presented_hash` and stores `successor` in one transaction; of
    /// concurrent uses of one token exactly one rotates. A reuse revokes the
    /// session and records `reuse_audit` (with the session id filled in).
    async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        successor: &RefreshTokenRecord,
        now: DateTime<Utc>,
        reuse_audit: AuditDraft,
    ) -> Result<RefreshOutcome, StoreError>;

    /// The session of an unspent refresh token.
    async fn session_of_refresh_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<SessionRecord>, StoreError>;

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError>;

    async fn list_sessions(
        &self,
        user_id: Uuid,
        include_inactive: bool,
        now: DateTime<Utc>,
        page: Page,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Revokes one session (keeping the first revocation) and returns it.
    async fn revoke_session(
        &self,
        id: Uuid,
        reason: &str,
        at: DateTime<Utc>,
        audit: AuditDraft,
    ) -> Result<SessionRecord, StoreError>;

    /// Revokes every live session of a user but `keep`; returns their ids.
    async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError>;
}

macro_rules! session_columns {
    () => {
        "id, user_id, tenant_id, peer_address, created_at, last_refreshed_at, expires_at, \
         revoked_at, revoke_reason"
    };
}

macro_rules! impl_session_store {
    ($db:ty) => {
        impl SqlStore<$db> {
            async fn insert_refresh_token(
                transaction: &mut sqlx::Transaction<'_, $db>,
                session_id: Uuid,
                token: &RefreshTokenRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&token.token_hash)
                .bind(session_id)
                .bind(token.issued_at)
                .bind(token.expires_at)
                .execute(&mut **transaction)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl SessionStore for SqlStore<$db> {
            async fn create_session(
                &self,
                session: &SessionRecord,
                refresh_token: &RefreshTokenRecord,
                audit: AuditDraft,
            ) -> Result<(), StoreError> {
                let mut transaction = self.begin_write().await?;
                sqlx::query(concat!(
                    "INSERT INTO sessions (",
                    session_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(session.id)
                .bind(session.user_id)
                .bind(session.tenant_id)
                .bind(&session.peer_address)
                .bind(session.created_at)
                .bind(session.last_refreshed_at)
                .bind(session.expires_at)
                .bind(session.revoked_at)
                .bind(&session.revoke_reason)
                .execute(&mut *transaction)
                .await?;
                Self::insert_refresh_token(&mut transaction, session.id, refresh_token).await?;
                Self::append_audit(&mut transaction, audit).await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn rotate_refresh_token(
                &self,
                presented_hash: &[u8],
                successor: &RefreshTokenRecord,
                now: DateTime<Utc>,
                reuse_audit: AuditDraft,
            ) -> Result<RefreshOutcome, StoreError> {
                let mut transaction = self.begin_write().await?;
                let spent: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(
                    "UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL \
                     RETURNING session_id, expires_at",
                )
                .bind(presented_hash)
                .bind(now)
                .fetch_optional(&mut *transaction)
                .await?;
                let Some((session_id, token_expires_at)) = spent else {
                    let reused: Option<(Uuid, Uuid)> = sqlx::query_as(
                        "SELECT s.id, s.tenant_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
                         WHERE t.token_hash = $1",
                    )
                    .bind(presented_hash)
                    .fetch_optional(&mut *transaction)
                    .await?;
                    let Some((session_id, tenant_id)) = reused else {
                        return Ok(RefreshOutcome::Refused);
                    };
                    sqlx::query(
                        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2), \
                         revoke_reason = COALESCE(revoke_reason, 'refresh_token_reused') WHERE id = $1",
                    )
                    .bind(session_id)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
                    let mut audit = reuse_audit.in_tenant(Some(tenant_id));
                    audit.resource_id = session_id.to_string();
                    Self::append_audit(&mut transaction, audit).await?;
                    transaction.commit().await?;
                    return Ok(RefreshOutcome::Reused { session_id, tenant_id });
                };
                let session: SessionRecord = sqlx::query_as(concat!(
                    "UPDATE sessions SET last_refreshed_at = $2 WHERE id = $1 RETURNING ",
                    session_columns!()
                ))
                .bind(session_id)
                .bind(now)
                .fetch_one(&mut *transaction)
                .await?;
                if token_expires_at <= now || session.revoked_at.is_some() || session.expires_at <= now {
                    // Spending a dead token changes nothing worth keeping.
                    transaction.rollback().await?;
                    return Ok(RefreshOutcome::Refused);
                }
                Self::insert_refresh_token(&mut transaction, session_id, successor).await?;
                transaction.commit().await?;
                Ok(RefreshOutcome::Rotated(session))
            }

            async fn session_of_refresh_token(&self, token_hash: &[u8]) -> Result<Option<SessionRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE id = (SELECT session_id FROM refresh_tokens \
                     WHERE token_hash = $1 AND spent_at IS NULL)"
                ))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn get_session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_sessions(
                &self,
                user_id: Uuid,
                include_inactive: bool,
                now: DateTime<Utc>,
                page: Page,
            ) -> Result<Vec<SessionRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE user_id = $1 \
                     AND ($2 OR (revoked_at IS NULL AND expires_at > $3)) \
                     AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
                ))
                .bind(user_id)
                .bind(include_inactive)
                .bind(now)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revoke_session(
                &self,
                id: Uuid,
                reason: &str,
                at: DateTime<Utc>,
                audit: AuditDraft,
            ) -> Result<SessionRecord, StoreError> {
                self.fetch_audited::<SessionRecord>(
                    sqlx::query_as(concat!(
                        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2), \
                         revoke_reason = COALESCE(revoke_reason, $3) WHERE id = $1 RETURNING ",
                        session_columns!()
                    ))
                    .bind(id)
                    .bind(at)
                    .bind(reason),
                    audit,
                )
                .await
            }

            async fn revoke_user_sessions(
                &self,
                user_id: Uuid,
                keep: Option<Uuid>,
                reason: &str,
                at: DateTime<Utc>,
            ) -> Result<Vec<Uuid>, StoreError> {
                let revoked: Vec<(Uuid,)> = sqlx::query_as(
                    "UPDATE sessions SET revoked_at = $3, revoke_reason = $4 \
                     WHERE user_id = $1 AND revoked_at IS NULL AND ($2 IS NULL OR id <> $2) RETURNING id",
                )
                .bind(user_id)
                .bind(keep)
                .bind(at)
                .bind(reason)
                .fetch_all(&self.pool)
                .await?;
                Ok(revoked.into_iter().map(|(id,)| id).collect())
            }
        }
    };
}
impl_session_store!(Postgres);
impl_session_store!(Sqlite);
