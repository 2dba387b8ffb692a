//! Writers: appends to a chain inside the caller's transaction, and the
//! feed positions its runs take at commit.

use sqlx::QueryBuilder;

use super::AuditEventRow;
use crate::{
    audit::{AuditDraft, AuditEvent, GENESIS_HASH},
    store::{StoreError, Tx, in_tx},
};

/// Rows per multi-row INSERT: 22 parameters each stay far below both
/// backends' limits on bound parameters.
const ROWS_PER_INSERT: usize = 100;

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
