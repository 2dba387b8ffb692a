//! Appending to and reading the audit hash chains and their feed.
//!
//! [`append`] and [`append_batch`] are the mechanism every write uses: they
//! take the open transaction of the change, so the change and its record
//! commit or roll back together. The runs they append take their places in
//! the feed (the order events committed in, across chains) when the
//! transaction commits.

// Before the submodules, which use it too.
macro_rules! audit_columns {
    () => {
        "id, chain_id, sequence, tenant_id, company_id, occurred_at, recorded_at, \
         actor_user_id, actor_module_id, actor_api_key_id, peer_address, actor_user_claimed, \
         action, resource_type, resource_id, outcome, details, request_id, idempotency_key, \
         idempotency_digest, previous_hash, hash"
    };
}

mod append;
mod filters;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::{SqlStore, StoreError};
use crate::audit::{Actor, AuditEvent, FeedCursor, Outcome};

pub use append::{Appended, append, append_batch};
pub(crate) use append::{FeedRun, take_feed_positions};
pub use filters::EventQuery;
use filters::push_filters;

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

    /// The chain's last sequence and hash; `None` for a chain never written.
    async fn chain_head(&self, chain_id: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError>;

    /// One page of a chain's events matching `query`.
    async fn query(&self, query: &EventQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// Up to `limit` events committed after `after`, in feed order, of one
    /// chain or of all.
    async fn feed_after(
        &self,
        after: FeedCursor,
        chain_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(FeedCursor, AuditEvent)>, StoreError>;

    /// The last feed position committed.
    async fn feed_head(&self) -> Result<i64, StoreError>;

    /// How far the event stream has been published.
    async fn stream_cursor(&self) -> Result<FeedCursor, StoreError>;

    /// Moves the event stream's cursor forward to `cursor` (never back).
    async fn advance_stream_cursor(&self, cursor: FeedCursor) -> Result<(), StoreError>;
}

#[derive(sqlx::FromRow)]
struct AuditEventRow {
    id: uuid::Uuid,
    chain_id: String,
    sequence: i64,
    tenant_id: String,
    company_id: String,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    actor_user_id: String,
    actor_module_id: String,
    actor_api_key_id: String,
    peer_address: String,
    actor_user_claimed: bool,
    action: String,
    resource_type: String,
    resource_id: String,
    outcome: String,
    details: String,
    request_id: String,
    idempotency_key: String,
    idempotency_digest: Option<Vec<u8>>,
    previous_hash: Vec<u8>,
    hash: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct FeedEventRow {
    feed_position: i64,
    #[sqlx(flatten)]
    event: AuditEventRow,
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
                user_claimed: row.actor_user_claimed,
            },
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            outcome,
            details: row.details,
            request_id: row.request_id,
            idempotency_key: row.idempotency_key,
            idempotency_digest: row.idempotency_digest.unwrap_or_default(),
            previous_hash: row.previous_hash,
            hash: row.hash,
        })
    }
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

            async fn chain_head(
                &self,
                chain_id: &str,
            ) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT sequence, head_hash FROM audit_chain_heads WHERE chain_id = $1",
                )
                .bind(chain_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn query(&self, query: &EventQuery) -> Result<Vec<AuditEvent>, StoreError> {
                let mut select =
                    QueryBuilder::<$db>::new(concat!("SELECT ", audit_columns!(), " FROM audit_events"));
                push_filters(&mut select, query);
                select
                    .push(if query.descending {
                        " ORDER BY sequence DESC LIMIT "
                    } else {
                        " ORDER BY sequence LIMIT "
                    })
                    .push_bind(query.limit);
                let rows: Vec<AuditEventRow> =
                    select.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(AuditEvent::try_from).collect()
            }

            async fn feed_after(
                &self,
                after: FeedCursor,
                chain_id: Option<&str>,
                limit: i64,
            ) -> Result<Vec<(FeedCursor, AuditEvent)>, StoreError> {
                let mut select = QueryBuilder::<$db>::new(
                    "SELECT f.position AS feed_position, e.id, e.chain_id, e.sequence, \
                     e.tenant_id, e.company_id, e.occurred_at, e.recorded_at, e.actor_user_id, \
                     e.actor_module_id, e.actor_api_key_id, e.peer_address, \
                     e.actor_user_claimed, e.action, e.resource_type, e.resource_id, \
                     e.outcome, e.details, e.request_id, e.idempotency_key, \
                     e.idempotency_digest, e.previous_hash, e.hash \
                     FROM audit_feed f JOIN audit_events e ON e.chain_id = f.chain_id \
                     AND e.sequence >= f.first_sequence AND e.sequence <= f.last_sequence \
                     WHERE f.position >= ",
                );
                select
                    .push_bind(after.position)
                    .push(" AND (f.position > ")
                    .push_bind(after.position)
                    .push(" OR e.sequence > ")
                    .push_bind(after.sequence)
                    .push(")");
                if let Some(chain_id) = chain_id {
                    select.push(" AND f.chain_id = ").push_bind(chain_id);
                }
                select
                    .push(" ORDER BY f.position, e.sequence LIMIT ")
                    .push_bind(limit);
                let rows: Vec<FeedEventRow> =
                    select.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| {
                        let event = AuditEvent::try_from(row.event)?;
                        let cursor = FeedCursor {
                            position: row.feed_position,
                            sequence: event.sequence,
                        };
                        Ok((cursor, event))
                    })
                    .collect()
            }

            async fn feed_head(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT position FROM audit_feed_head")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn stream_cursor(&self) -> Result<FeedCursor, StoreError> {
                let (position, sequence) =
                    sqlx::query_as("SELECT position, sequence FROM audit_stream_cursor")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(FeedCursor { position, sequence })
            }

            async fn advance_stream_cursor(&self, cursor: FeedCursor) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE audit_stream_cursor SET position = $1, sequence = $2 \
                     WHERE position < $1 OR (position = $1 AND sequence < $2)",
                )
                .bind(cursor.position)
                .bind(cursor.sequence)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}
impl_audit_log!(Postgres);
impl_audit_log!(Sqlite);
