//! The write transaction every aggregate's writers take, on either backend.

use std::sync::Arc;

use sqlx::{Postgres, Sqlite};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::{StoreError, audit_log};
use crate::audit::AuditDraft;

/// An open write transaction on either backend. Writers of every aggregate
/// take it, so several writes commit or roll back together; dropping it
/// without [`Tx::commit`] rolls back.
pub struct Tx {
    pub(super) connection: TxConnection,
    /// The chain runs appended, which take their feed positions at commit.
    pub(super) appended: Vec<audit_log::FeedRun>,
    audit_news: Arc<watch::Sender<i64>>,
    /// SQLite's one writer at a time, held until the transaction ends.
    _writer: Option<OwnedSemaphorePermit>,
}

pub enum TxConnection {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$connection` bound to the transaction's connection,
/// compiled once per backend: the SQL is written once and means the same on
/// both (`$n` placeholders, standard SQL).
macro_rules! in_tx {
    ($tx:expr, $connection:ident => $body:expr) => {
        match &mut $tx.connection {
            $crate::store::TxConnection::Postgres(transaction) => {
                let $connection = &mut **transaction;
                $body
            }
            $crate::store::TxConnection::Sqlite(transaction) => {
                let $connection = &mut **transaction;
                $body
            }
        }
    };
}
pub(crate) use in_tx;

impl Tx {
    pub(super) fn new(
        connection: TxConnection,
        audit_news: Arc<watch::Sender<i64>>,
        writer: Option<OwnedSemaphorePermit>,
    ) -> Tx {
        Tx {
            connection,
            appended: Vec::new(),
            audit_news,
            _writer: writer,
        }
    }

    /// Commits; audit events appended take their feed positions as the
    /// last statement, and this replica's tails hear of them once committed.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let committed_position = audit_log::take_feed_positions(&mut self).await?;
        match self.connection {
            TxConnection::Postgres(transaction) => transaction.commit().await?,
            TxConnection::Sqlite(transaction) => transaction.commit().await?,
        }
        if let Some(position) = committed_position {
            self.audit_news.send_if_modified(|heard| {
                let newer = position > *heard;
                *heard = (*heard).max(position);
                newer
            });
        }
        Ok(())
    }
}

/// Completes a write that must have changed a row (NotFound otherwise) by
/// appending the audit event that records it.
pub(super) async fn audited(
    tx: &mut Tx,
    rows_affected: u64,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    audited_row(tx, (rows_affected > 0).then_some(()), audit).await
}

/// Like [`audited`], for a write that returned the row it changed.
pub(super) async fn audited_row<Row>(
    tx: &mut Tx,
    changed: Option<Row>,
    audit: AuditDraft,
) -> Result<Row, StoreError> {
    let changed = changed.ok_or(StoreError::NotFound)?;
    audit_log::append(tx, audit).await?;
    Ok(changed)
}
