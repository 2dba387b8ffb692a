//! Appending to and reading the audit hash chains.
//!
//! [`append`] is the mechanism every write uses: it takes the open
//! transaction of the change, so the change and its record commit or roll
//! back together.

use sqlx::{Postgres, Sqlite};

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::{Actor, AuditDraft, AuditEvent, GENESIS_HASH, Outcome};

/// Reads audit events.
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
    /// Up to `limit` events of a chain from `from_sequence` on, ascending.
    async fn read_chain(
        &self,
        chain_id: &str,
        from_sequence: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}

macro_rules! audit_columns {
    () => {
        "id, chain_id, sequence, tenant_id, company_id, occurred_at, recorded_at, \
         actor_user_id, actor_module_id, actor_api_key_id, peer_address, action, \
         resource_type, resource_id, outcome, details, request_id, idempotency_key, \
         previous_hash, hash"
    };
}

#[derive(sqlx::FromRow)]
struct AuditEventRow {
    id: uuid::Uuid,
    chain_id: String,
    sequence: i64,
    tenant_id: String,
    company_id: String,
    occurred_at: chrono::DateTime<chrono::Utc>,
    recorded_at: chrono::DateTime<chrono::Utc>,
    actor_user_id: String,
    actor_module_id: String,
    actor_api_key_id: String,
    peer_address: String,
    action: String,
    resource_type: String,
    resource_id: String,
    outcome: String,
    details: String,
    request_id: String,
    idempotency_key: String,
    previous_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl TryFrom<AuditEventRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditEventRow) -> Result<AuditEvent, StoreError> {
        let outcome = Outcome::parse(&row.outcome).ok_or_else(|| {
            StoreError::Internal(format!("unknown audit outcome {:?}", row.outcome).into())
        })?;
        Ok(AuditEvent {
            id: row.id,
            chain_id: row.chain_id,
            sequence: row.sequence,
            tenant_id: row.tenant_id,
            company_id: row.company_id,
            occurred_at: row.occurred_at,
            recorded_at: row.recorded_at,
            actor: Actor {
                user_id: row.actor_user_id,
                module_id: row.actor_module_id,
                api_key_id: row.actor_api_key_id,
                peer_address: row.peer_address,
            },
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            outcome,
            details: row.details,
            request_id: row.request_id,
            idempotency_key: row.idempotency_key,
            previous_hash: row.previous_hash,
            hash: row.hash,
        })
    }
}

/// Appends `draft` to its chain inside the caller's transaction, so the
/// change it records and the record commit or roll back together. Taking the
/// chain head's next sequence locks the head row until commit, which
/// serialises appends per chain.
pub async fn append(tx: &mut Tx, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
    let chain_id = draft.chain_id();
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO audit_chain_heads (chain_id, sequence, head_hash) \
             VALUES ($1, 0, $2) ON CONFLICT (chain_id) DO NOTHING",
        )
        .bind(&chain_id)
        .bind(GENESIS_HASH.as_slice())
        .execute(&mut *connection)
        .await?;
        let (sequence, previous_hash): (i64, Vec<u8>) = sqlx::query_as(
            "UPDATE audit_chain_heads SET sequence = sequence + 1 \
             WHERE chain_id = $1 RETURNING sequence, head_hash",
        )
        .bind(&chain_id)
        .fetch_one(&mut *connection)
        .await?;
        let previous_hash: [u8; 32] = previous_hash.try_into().map_err(|_| {
            StoreError::Internal("audit chain head hash is not 32 bytes".into())
        })?;
        let event = draft.seal(sequence, previous_hash);
        sqlx::query(concat!(
            "INSERT INTO audit_events (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20)"
        ))
        .bind(event.id)
        .bind(&event.chain_id)
        .bind(event.sequence)
        .bind(&event.tenant_id)
        .bind(&event.company_id)
        .bind(event.occurred_at)
        .bind(event.recorded_at)
        .bind(&event.actor.user_id)
        .bind(&event.actor.module_id)
        .bind(&event.actor.api_key_id)
        .bind(&event.actor.peer_address)
        .bind(&event.action)
        .bind(&event.resource_type)
        .bind(&event.resource_id)
        .bind(event.outcome.as_str())
        .bind(&event.details)
        .bind(&event.request_id)
        .bind(&event.idempotency_key)
        .bind(&event.previous_hash)
        .bind(&event.hash)
        .execute(&mut *connection)
        .await?;
        sqlx::query("UPDATE audit_chain_heads SET head_hash = $2 WHERE chain_id = $1")
            .bind(&chain_id)
            .bind(&event.hash)
            .execute(&mut *connection)
            .await?;
        Ok(event)
    })
}

/// Like [`append`], but a draft whose idempotency key its module already
/// used in that chain returns the event first recorded with it.
pub async fn append_idempotent(tx: &mut Tx, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
    if !draft.idempotency_key.is_empty() {
        let original: Option<AuditEventRow> = in_tx!(tx, connection => {
            sqlx::query_as(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_events WHERE chain_id = $1 AND actor_module_id = $2 \
                 AND idempotency_key = $3"
            ))
            .bind(draft.chain_id())
            .bind(&draft.actor.module_id)
            .bind(&draft.idempotency_key)
            .fetch_optional(&mut *connection)
            .await?
        });
        if let Some(original) = original {
            return AuditEvent::try_from(original);
        }
    }
    append(tx, draft).await
}

macro_rules! impl_audit_log {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl AuditLog for SqlStore<$db> {
            async fn read_chain(
                &self,
                chain_id: &str,
                from_sequence: i64,
                limit: i64,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                let rows: Vec<AuditEventRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_events WHERE chain_id = $1 AND sequence >= $2 \
                     ORDER BY sequence LIMIT $3"
                ))
                .bind(chain_id)
                .bind(from_sequence)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(AuditEvent::try_from).collect()
            }
        }
    };
}
impl_audit_log!(Postgres);
impl_audit_log!(Sqlite);
