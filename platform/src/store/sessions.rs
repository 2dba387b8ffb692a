//! Login sessions and their rotating refresh tokens (stored as SHA-256).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, Tx, in_tx};
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
    /// The token was already spent: its session must be revoked.
    Reused { session_id: Uuid, tenant_id: Uuid },
    /// Unknown, expired, or its session is revoked or expired.
    Refused,
}

/// Reads sessions.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// The session of an unspent refresh token.
    async fn session_of_refresh_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<SessionRecord>, StoreError>;

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError>;

    async fn list_sessions(&self, query: SessionQuery) -> Result<Vec<SessionRecord>, StoreError>;
}

/// A page of one user's sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionQuery {
    pub user_id: Uuid,
    /// Revoked and expired ones too; otherwise those live at `now`.
    pub include_inactive: bool,
    pub now: DateTime<Utc>,
    pub page: Page,
}

macro_rules! session_columns {
    () => {
        "id, user_id, tenant_id, peer_address, created_at, last_refreshed_at, expires_at, \
         revoked_at, revoke_reason"
    };
}

async fn insert_refresh_token(
    tx: &mut Tx,
    session_id: Uuid,
    token: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&token.token_hash)
        .bind(session_id)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .execute(connection)
        .await?;
    });
    Ok(())
}

/// Starts a session with its first refresh token.
pub async fn insert(
    tx: &mut Tx,
    session: &SessionRecord,
    refresh_token: &RefreshTokenRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
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
        .execute(connection)
        .await?;
    });
    insert_refresh_token(tx, session.id, refresh_token).await?;
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Spends `presented_hash` and stores `successor`; of concurrent uses of one
/// token exactly one rotates. On `Reused` the caller revokes the session in
/// the same transaction; on `Refused` it rolls back.
pub async fn spend_refresh_token(
    tx: &mut Tx,
    presented_hash: &[u8],
    successor: &RefreshTokenRecord,
    now: DateTime<Utc>,
) -> Result<RefreshOutcome, StoreError> {
    let spent: Option<(Uuid, DateTime<Utc>)> = in_tx!(tx, connection => {
        sqlx::query_as(
            "UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL \
             RETURNING session_id, expires_at",
        )
        .bind(presented_hash)
        .bind(now)
        .fetch_optional(connection)
        .await?
    });
    let Some((session_id, token_expires_at)) = spent else {
        let reused: Option<(Uuid, Uuid)> = in_tx!(tx, connection => {
            sqlx::query_as(
                "SELECT s.id, s.tenant_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
                 WHERE t.token_hash = $1",
            )
            .bind(presented_hash)
            .fetch_optional(connection)
            .await?
        });
        return Ok(match reused {
            Some((session_id, tenant_id)) => RefreshOutcome::Reused {
                session_id,
                tenant_id,
            },
            None => RefreshOutcome::Refused,
        });
    };
    let session: SessionRecord = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE sessions SET last_refreshed_at = $2 WHERE id = $1 RETURNING ",
            session_columns!()
        ))
        .bind(session_id)
        .bind(now)
        .fetch_one(connection)
        .await?
    });
    if token_expires_at <= now || session.revoked_at.is_some() || session.expires_at <= now {
        return Ok(RefreshOutcome::Refused);
    }
    insert_refresh_token(tx, session_id, successor).await?;
    Ok(RefreshOutcome::Rotated(session))
}

/// Revokes one session (keeping the first revocation) and returns it.
pub async fn revoke(
    tx: &mut Tx,
    id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
    audit: AuditDraft,
) -> Result<SessionRecord, StoreError> {
    let revoked: Option<SessionRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2), \
             revoke_reason = COALESCE(revoke_reason, $3) WHERE id = $1 RETURNING ",
            session_columns!()
        ))
        .bind(id)
        .bind(at)
        .bind(reason)
        .fetch_optional(connection)
        .await?
    });
    super::audited_row(tx, revoked, audit).await
}

/// Revokes every live session of a user but `keep` and returns their ids;
/// `audit` is recorded, with their number, when there were any.
pub async fn revoke_user_sessions(
    tx: &mut Tx,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
    at: DateTime<Utc>,
    mut audit: AuditDraft,
) -> Result<Vec<Uuid>, StoreError> {
    let revoked: Vec<(Uuid,)> = in_tx!(tx, connection => {
        sqlx::query_as(
            "UPDATE sessions SET revoked_at = $3, revoke_reason = $4 \
             WHERE user_id = $1 AND revoked_at IS NULL AND ($2 IS NULL OR id <> $2) RETURNING id",
        )
        .bind(user_id)
        .bind(keep)
        .bind(at)
        .bind(reason)
        .fetch_all(connection)
        .await?
    });
    if !revoked.is_empty() {
        audit.details = crate::audit::canonical_json(
            &serde_json::json!({ "reason": reason, "sessions": revoked.len() }),
        );
        super::audit_log::append(tx, audit).await?;
    }
    Ok(revoked.into_iter().map(|(id,)| id).collect())
}

macro_rules! impl_session_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl SessionStore for SqlStore<$db> {
            async fn session_of_refresh_token(
                &self,
                token_hash: &[u8],
            ) -> Result<Option<SessionRecord>, StoreError> {
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
                self.row_where(
                    concat!(
                        "SELECT ",
                        session_columns!(),
                        " FROM sessions WHERE id = $1"
                    ),
                    id,
                )
                .await
            }

            async fn list_sessions(
                &self,
                query: SessionQuery,
            ) -> Result<Vec<SessionRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE user_id = $1 \
                     AND ($2 OR (revoked_at IS NULL AND expires_at > $3)) \
                     AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
                ))
                .bind(query.user_id)
                .bind(query.include_inactive)
                .bind(query.now)
                .bind(query.page.after)
                .bind(query.page.limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_session_store!(Postgres);
impl_session_store!(Sqlite);
