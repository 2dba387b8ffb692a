//! Appending to and reading the audit hash chains and their feed.
//!
//! [`append`] and [`append_batch`] are the mechanism every write uses: they
//! take the open transaction of the change, so the change and its record
//! commit or roll back together. The runs they append take their places in
//! the feed (the order events committed in, across chains) when the
//! transaction commits.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::{
    Actor, AuditDraft, AuditEvent, FeedCursor, GENESIS_HASH, MODULE_RESOURCE_TYPES, Outcome,
};

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

/// A page of one chain's events. Every filter set narrows it; the text
/// filters are never empty strings (a filter left out is `None`).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub chain_id: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor_user_id: Option<String>,
    pub actor_module_id: Option<String>,
    pub actor_api_key_id: Option<String>,
    pub actions: Vec<String>,
    pub action_prefix: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: Option<Outcome>,
    pub request_id: Option<String>,
    pub company_id: Option<String>,
    /// Events recorded by this module or about it (module isolation).
    pub visible_to_module: Option<String>,
    /// Only sequences above this.
    pub after_sequence: i64,
    /// Only sequences below this (a descending page's keyset).
    pub before_sequence: Option<i64>,
    pub descending: bool,
    pub limit: i64,
}

/// Appended events of one chain, taking their feed position at commit.
#[derive(Debug, Clone)]
pub(crate) struct FeedRun {
    chain_id: String,
    first_sequence: i64,
    last_sequence: i64,
}

/// One draft's place in its chain.
#[derive(Debug, Clone)]
pub struct Appended {
    pub event: AuditEvent,
    /// The draft's idempotency key was used before in its chain by its
    /// module: `event` is the one first recorded with it, and nothing was
    /// appended for this draft.
    pub duplicate: bool,
}

/// Rows per multi-row INSERT: 22 parameters each stay far below both
/// backends' limits on bound parameters.
const ROWS_PER_INSERT: usize = 100;

macro_rules! audit_columns {
    () => {
        "id, chain_id, sequence, tenant_id, company_id, occurred_at, recorded_at, \
         actor_user_id, actor_module_id, actor_api_key_id, peer_address, actor_user_claimed, \
         action, resource_type, resource_id, outcome, details, request_id, idempotency_key, \
         idempotency_digest, previous_hash, hash"
    };
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

/// Appends `draft` to its chain inside the caller's transaction.
pub async fn append(tx: &mut Tx, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
    let mut appended = append_batch(tx, vec![draft]).await?;
    Ok(appended.remove(0).event)
}

/// Appends drafts of one chain, in order, inside the caller's transaction,
/// so the change they record and the records commit or roll back together.
/// Locking the chain head first serialises appends per chain until commit.
/// A draft whose idempotency key its module already used in the chain (or
/// earlier in the batch) is not appended: it gets the event recorded first.
pub async fn append_batch(
    tx: &mut Tx,
    drafts: Vec<AuditDraft>,
) -> Result<Vec<Appended>, StoreError> {
    let Some(first) = drafts.first() else {
        return Ok(Vec::new());
    };
    let chain_id = first.chain_id();
    let one_actor = drafts.iter().all(|draft| {
        draft.chain_id() == chain_id && draft.actor.module_id == first.actor.module_id
    });
    if !one_actor {
        return Err(StoreError::Internal(
            "an audit batch must belong to one chain and one module".into(),
        ));
    }
    let (mut sequence, mut previous_hash) = lock_chain_head(tx, &chain_id).await?;
    let first_sequence = sequence + 1;
    let mut earlier = recorded_with_keys(tx, &chain_id, &drafts).await?;
    let mut appended = Vec::with_capacity(drafts.len());
    let mut new_events = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let key = (draft.actor.module_id.clone(), draft.idempotency_key.clone());
        if let Some(original) = earlier.iter().find(|event| {
            !key.1.is_empty() && event.actor.module_id == key.0 && event.idempotency_key == key.1
        }) {
            appended.push(Appended {
                event: original.clone(),
                duplicate: true,
            });
            continue;
        }
        sequence += 1;
        let event = draft.seal(sequence, previous_hash);
        previous_hash = event
            .hash
            .clone()
            .try_into()
            .map_err(|_| StoreError::Internal("an audit hash is not 32 bytes".into()))?;
        if !event.idempotency_key.is_empty() {
            earlier.push(event.clone());
        }
        new_events.push(event.clone());
        appended.push(Appended {
            event,
            duplicate: false,
        });
    }
    if new_events.is_empty() {
        return Ok(appended);
    }
    insert_events(tx, &new_events).await?;
    in_tx!(tx, connection => {
        sqlx::query(
            "UPDATE audit_chain_heads SET sequence = $2, head_hash = $3 WHERE chain_id = $1",
        )
        .bind(&chain_id)
        .bind(sequence)
        .bind(previous_hash.as_slice())
        .execute(&mut *connection)
        .await?;
    });
    match tx.appended.last_mut() {
        // Appends that continue the transaction's last run extend it.
        Some(run) if run.chain_id == chain_id && run.last_sequence + 1 == first_sequence => {
            run.last_sequence = sequence;
        }
        _ => tx.appended.push(FeedRun {
            chain_id,
            first_sequence,
            last_sequence: sequence,
        }),
    }
    Ok(appended)
}

/// The chain's last sequence and hash, its head row locked until commit.
async fn lock_chain_head(tx: &mut Tx, chain_id: &str) -> Result<(i64, [u8; 32]), StoreError> {
    let (sequence, head_hash): (i64, Vec<u8>) = in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO audit_chain_heads (chain_id, sequence, head_hash) \
             VALUES ($1, 0, $2) ON CONFLICT (chain_id) DO NOTHING",
        )
        .bind(chain_id)
        .bind(GENESIS_HASH.as_slice())
        .execute(&mut *connection)
        .await?;
        sqlx::query_as(
            "UPDATE audit_chain_heads SET sequence = sequence \
             WHERE chain_id = $1 RETURNING sequence, head_hash",
        )
        .bind(chain_id)
        .fetch_one(&mut *connection)
        .await?
    });
    let head_hash = head_hash
        .try_into()
        .map_err(|_| StoreError::Internal("audit chain head hash is not 32 bytes".into()))?;
    Ok((sequence, head_hash))
}

/// The events of the chain already recorded under the drafts' keys (by
/// their module).
async fn recorded_with_keys(
    tx: &mut Tx,
    chain_id: &str,
    drafts: &[AuditDraft],
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut module_id = String::new();
    let mut keys = Vec::new();
    for draft in drafts {
        if !draft.idempotency_key.is_empty() {
            module_id.clone_from(&draft.actor.module_id);
            keys.push(draft.idempotency_key.clone());
        }
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<AuditEventRow> = in_tx!(tx, connection => {
        let mut select =
            QueryBuilder::new(concat!("SELECT ", audit_columns!(), " FROM audit_events"));
        select
            .push(" WHERE chain_id = ")
            .push_bind(chain_id)
            .push(" AND actor_module_id = ")
            .push_bind(module_id.as_str())
            .push(" AND idempotency_key <> '' AND idempotency_key IN (");
        let mut separated = select.separated(", ");
        for key in &keys {
            separated.push_bind(key.as_str());
        }
        select.push(")");
        select.build_query_as().fetch_all(&mut *connection).await?
    });
    rows.into_iter().map(AuditEvent::try_from).collect()
}

async fn insert_events(tx: &mut Tx, events: &[AuditEvent]) -> Result<(), StoreError> {
    // Bound parameters per statement stay well under both backends' limits.
    for chunk in events.chunks(ROWS_PER_INSERT) {
        in_tx!(tx, connection => {
            let mut insert = QueryBuilder::new(concat!(
                "INSERT INTO audit_events (",
                audit_columns!(),
                ") "
            ));
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.id)
                    .push_bind(event.chain_id.as_str())
                    .push_bind(event.sequence)
                    .push_bind(event.tenant_id.as_str())
                    .push_bind(event.company_id.as_str())
                    .push_bind(event.occurred_at)
                    .push_bind(event.recorded_at)
                    .push_bind(event.actor.user_id.as_str())
                    .push_bind(event.actor.module_id.as_str())
                    .push_bind(event.actor.api_key_id.as_str())
                    .push_bind(event.actor.peer_address.as_str())
                    .push_bind(event.actor.user_claimed)
                    .push_bind(event.action.as_str())
                    .push_bind(event.resource_type.as_str())
                    .push_bind(event.resource_id.as_str())
                    .push_bind(event.outcome.as_str())
                    .push_bind(event.details.as_str())
                    .push_bind(event.request_id.as_str())
                    .push_bind(event.idempotency_key.as_str())
                    .push_bind(
                        (!event.idempotency_digest.is_empty())
                            .then_some(event.idempotency_digest.as_slice()),
                    )
                    .push_bind(event.previous_hash.as_slice())
                    .push_bind(event.hash.as_slice());
            });
            insert.build().execute(&mut *connection).await?;
        });
    }
    Ok(())
}

/// Gives the runs the transaction appended their feed positions, as its
/// last statement: the counter row then stays locked only until commit, so
/// positions commit in order without gaps. Returns the last position taken.
pub(crate) async fn take_feed_positions(tx: &mut Tx) -> Result<Option<i64>, StoreError> {
    if tx.appended.is_empty() {
        return Ok(None);
    }
    let runs = std::mem::take(&mut tx.appended);
    let count = i64::try_from(runs.len())
        .map_err(|_| StoreError::Internal("too many audit runs in one transaction".into()))?;
    let last: i64 = in_tx!(tx, connection => {
        sqlx::query_scalar(
            "UPDATE audit_feed_head SET position = position + $1 RETURNING position",
        )
        .bind(count)
        .fetch_one(&mut *connection)
        .await?
    });
    let positions = (last - count + 1..).zip(&runs).collect::<Vec<_>>();
    for chunk in positions.chunks(ROWS_PER_INSERT) {
        in_tx!(tx, connection => {
            let mut insert = QueryBuilder::new(
                "INSERT INTO audit_feed (position, chain_id, first_sequence, last_sequence) ",
            );
            insert.push_values(chunk, |mut row, (position, run)| {
                row.push_bind(*position)
                    .push_bind(run.chain_id.as_str())
                    .push_bind(run.first_sequence)
                    .push_bind(run.last_sequence);
            });
            insert.build().execute(&mut *connection).await?;
        });
    }
    Ok(Some(last))
}

/// Adds `query`'s filters (all but the order and limit) to `select`.
fn push_filters<DB>(select: &mut QueryBuilder<DB>, query: &EventQuery)
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    select
        .push(" WHERE chain_id = ")
        .push_bind(query.chain_id.as_str())
        .push(" AND sequence > ")
        .push_bind(query.after_sequence);
    if let Some(before) = query.before_sequence {
        select.push(" AND sequence < ").push_bind(before);
    }
    if let Some(since) = query.since {
        select.push(" AND recorded_at >= ").push_bind(since);
    }
    if let Some(until) = query.until {
        select.push(" AND recorded_at < ").push_bind(until);
    }
    // `<> ''` lets prepared (generic) plans match the partial indexes.
    let equal = [
        ("actor_user_id", &query.actor_user_id),
        ("actor_module_id", &query.actor_module_id),
        ("actor_api_key_id", &query.actor_api_key_id),
        ("resource_type", &query.resource_type),
        ("resource_id", &query.resource_id),
        ("request_id", &query.request_id),
        ("company_id", &query.company_id),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            select
                .push(format!(" AND {column} <> '' AND {column} = "))
                .push_bind(value.as_str());
        }
    }
    if let Some(outcome) = query.outcome {
        select.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if !query.actions.is_empty() {
        select.push(" AND action IN (");
        let mut actions = select.separated(", ");
        for action in &query.actions {
            actions.push_bind(action.as_str());
        }
        select.push(")");
    }
    if let Some(prefix) = &query.action_prefix {
        // Actions are ASCII below DEL, so the prefix's range ends there.
        select
            .push(" AND action >= ")
            .push_bind(prefix.as_str())
            .push(" AND action < ")
            .push_bind(format!("{prefix}\u{7f}"));
    }
    if let Some(module_id) = &query.visible_to_module {
        select
            .push(" AND (actor_module_id = ")
            .push_bind(module_id.as_str())
            .push(" OR (resource_id = ")
            .push_bind(module_id.as_str())
            .push(" AND resource_type IN (");
        let mut types = select.separated(", ");
        for resource_type in MODULE_RESOURCE_TYPES {
            types.push_bind(resource_type);
        }
        select.push(")))");
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
