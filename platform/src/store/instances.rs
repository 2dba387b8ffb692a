//! Running module instances: each registered under the key it chose, on a
//! lease. Registration, status changes and removal are written (and
//! audited) as they happen, each numbered by the next revision in the
//! change log that watchers follow; lease renewals are written in batches,
//! so a heartbeat costs no transaction of its own, and are not changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, types::Json};
use uuid::Uuid;

use super::{SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

stored_enum! {
    /// What an instance reports, or its probes found.
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum InstanceStatus {
        Starting => "starting",
        Serving => "serving",
        NotServing => "not_serving",
        Draining => "draining",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct InstanceRecord {
    pub instance_id: Uuid,
    pub module_id: String,
    pub instance_key: String,
    pub version: String,
    pub endpoint: String,
    #[sqlx(json)]
    pub labels: BTreeMap<String, String>,
    #[sqlx(try_from = "String")]
    pub status: InstanceStatus,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    pub lease_expires_at: DateTime<Utc>,
}

/// A renewal to write: the instance's last heartbeat and new lease end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub instance_id: Uuid,
    pub last_heartbeat_at: DateTime<Utc>,
    pub lease_expires_at: DateTime<Utc>,
}

/// A change to an instance, numbered by its revision.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceChange {
    pub revision: i64,
    pub removed: bool,
    /// As the change left it (as it was, for a removal).
    #[sqlx(json)]
    pub instance: InstanceRecord,
}

/// Reads instances.
#[async_trait::async_trait]
pub trait InstanceStore: Send + Sync {
    /// Instances whose lease runs past `now`, counted by status.
    async fn live_by_status(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(InstanceStatus, i64)>, StoreError>;

    async fn instance(&self, instance_id: Uuid) -> Result<Option<InstanceRecord>, StoreError>;

    /// A module's instances whose lease runs past `now`, oldest first.
    async fn live_instances_of(
        &self,
        module_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<InstanceRecord>, StoreError>;

    /// Instances whose lease ended before `now`, at most `limit`.
    async fn lapsed(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError>;

    /// The revision of the last committed change (0 before any); every
    /// change up to it has committed.
    async fn revision(&self) -> Result<i64, StoreError>;

    /// Every instance, whatever its lease, with the revision read before
    /// them: changes after that revision may already show in the rows.
    async fn all_instances(&self) -> Result<(i64, Vec<InstanceRecord>), StoreError>;

    /// Kept changes after `revision`, in order, at most `limit`.
    async fn changes_after(
        &self,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<InstanceChange>, StoreError>;

    /// Forgets changes made before `before` (the oldest first, so the kept
    /// ones stay contiguous); how many.
    async fn forget_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

macro_rules! instance_columns {
    () => {
        "instance_id, module_id, instance_key, version, endpoint, labels, status, \
         registered_at, last_heartbeat_at, lease_expires_at"
    };
}

/// Registers an instance, or (same module and key) replaces its version,
/// endpoint, labels and lease; returns it as stored (the first
/// registration's id and time are kept) with the change's revision. None
/// when the module already runs `max_per_module` instances under other
/// keys: the module's row is locked first, so registrations running at
/// once count each other.
pub async fn register(
    tx: &mut Tx,
    instance: &InstanceRecord,
    max_per_module: i64,
    audit: AuditDraft,
) -> Result<Option<(InstanceRecord, i64)>, StoreError> {
    let others: i64 = in_tx!(tx, connection => {
        sqlx::query("UPDATE modules SET updated_at = updated_at WHERE module_id = $1")
            .bind(&instance.module_id)
            .execute(&mut *connection)
            .await?;
        sqlx::query_scalar(
            "SELECT count(*) FROM module_instances WHERE module_id = $1 AND instance_key <> $2",
        )
        .bind(&instance.module_id)
        .bind(&instance.instance_key)
        .fetch_one(&mut *connection)
        .await?
    });
    if others >= max_per_module {
        return Ok(None);
    }
    let stored: InstanceRecord = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "INSERT INTO module_instances (",
            instance_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (module_id, instance_key) DO UPDATE SET \
             version = excluded.version, endpoint = excluded.endpoint, \
             labels = excluded.labels, status = excluded.status, \
             last_heartbeat_at = excluded.last_heartbeat_at, \
             lease_expires_at = excluded.lease_expires_at \
             RETURNING ",
            instance_columns!()
        ))
        .bind(instance.instance_id)
        .bind(&instance.module_id)
        .bind(&instance.instance_key)
        .bind(&instance.version)
        .bind(&instance.endpoint)
        .bind(Json(&instance.labels))
        .bind(instance.status.as_str())
        .bind(instance.registered_at)
        .bind(instance.last_heartbeat_at)
        .bind(instance.lease_expires_at)
        .fetch_one(connection)
        .await?
    });
    let revision = record_change(tx, false, &stored).await?;
    super::audit_log::append(tx, audit).await?;
    Ok(Some((stored, revision)))
}

/// Writes a status change; the change's revision.
pub async fn set_status(
    tx: &mut Tx,
    instance_id: Uuid,
    status: InstanceStatus,
    audit: AuditDraft,
) -> Result<i64, StoreError> {
    let changed: Option<InstanceRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "UPDATE module_instances SET status = $2 WHERE instance_id = $1 RETURNING ",
            instance_columns!()
        ))
        .bind(instance_id)
        .bind(status.as_str())
        .fetch_optional(connection)
        .await?
    });
    let changed = changed.ok_or(StoreError::NotFound)?;
    let revision = record_change(tx, false, &changed).await?;
    super::audit_log::append(tx, audit).await?;
    Ok(revision)
}

/// Writes lease renewals gathered since the last batch; a lease never
/// moves back, and instances removed meanwhile are skipped.
pub async fn renew(tx: &mut Tx, renewals: &[Renewal]) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        for renewal in renewals {
            sqlx::query(
                "UPDATE module_instances SET last_heartbeat_at = $2, lease_expires_at = $3 \
                 WHERE instance_id = $1 AND lease_expires_at < $3",
            )
            .bind(renewal.instance_id)
            .bind(renewal.last_heartbeat_at)
            .bind(renewal.lease_expires_at)
            .execute(&mut *connection)
            .await?;
        }
    });
    Ok(())
}

/// Removes an instance; with `lapsed_before`, only if its lease ended
/// before then (so a renewal written meanwhile keeps it). The removal's
/// revision, if it was removed.
pub async fn remove(
    tx: &mut Tx,
    instance_id: Uuid,
    lapsed_before: Option<DateTime<Utc>>,
    audit: AuditDraft,
) -> Result<Option<i64>, StoreError> {
    let removed: Option<InstanceRecord> = in_tx!(tx, connection => {
        sqlx::query_as(concat!(
            "DELETE FROM module_instances WHERE instance_id = $1 \
             AND ($2 IS NULL OR lease_expires_at < $2) RETURNING ",
            instance_columns!()
        ))
        .bind(instance_id)
        .bind(lapsed_before)
        .fetch_optional(connection)
        .await?
    });
    let Some(removed) = removed else {
        return Ok(None);
    };
    let revision = record_change(tx, true, &removed).await?;
    super::audit_log::append(tx, audit).await?;
    Ok(Some(revision))
}

/// Numbers a change by the next revision and logs it. Taking the counter
/// row holds other writers of changes until this transaction ends, so
/// revisions commit in the order they are taken.
async fn record_change(
    tx: &mut Tx,
    removed: bool,
    instance: &InstanceRecord,
) -> Result<i64, StoreError> {
    let changed_at = crate::clock::now();
    Ok(in_tx!(tx, connection => {
        let revision: i64 = sqlx::query_scalar(
            "UPDATE instance_revision SET revision = revision + 1 RETURNING revision",
        )
        .fetch_one(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO instance_changes (revision, removed, instance, changed_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(revision)
        .bind(removed)
        .bind(Json(instance))
        .bind(changed_at)
        .execute(&mut *connection)
        .await?;
        revision
    }))
}

macro_rules! impl_instance_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl InstanceStore for SqlStore<$db> {
            async fn live_by_status(
                &self,
                now: DateTime<Utc>,
            ) -> Result<Vec<(InstanceStatus, i64)>, StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status, COUNT(*) FROM module_instances WHERE lease_expires_at > $1 \
                     GROUP BY status",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(status, count)| Ok((InstanceStatus::try_from(status)?, count)))
                    .collect()
            }

            async fn instance(
                &self,
                instance_id: Uuid,
            ) -> Result<Option<InstanceRecord>, StoreError> {
                self.row_where(
                    concat!(
                        "SELECT ",
                        instance_columns!(),
                        " FROM module_instances WHERE instance_id = $1"
                    ),
                    instance_id,
                )
                .await
            }

            async fn live_instances_of(
                &self,
                module_id: &str,
                now: DateTime<Utc>,
            ) -> Result<Vec<InstanceRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    instance_columns!(),
                    " FROM module_instances WHERE module_id = $1 AND lease_expires_at > $2 \
                     ORDER BY registered_at, instance_id"
                ))
                .bind(module_id)
                .bind(now)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn lapsed(
                &self,
                now: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT instance_id FROM module_instances WHERE lease_expires_at < $1 \
                     ORDER BY lease_expires_at LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revision(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT revision FROM instance_revision")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn all_instances(&self) -> Result<(i64, Vec<InstanceRecord>), StoreError> {
                let revision = self.revision().await?;
                let instances = sqlx::query_as(concat!(
                    "SELECT ",
                    instance_columns!(),
                    " FROM module_instances ORDER BY registered_at, instance_id"
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok((revision, instances))
            }

            async fn changes_after(
                &self,
                revision: i64,
                limit: i64,
            ) -> Result<Vec<InstanceChange>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT revision, removed, instance FROM instance_changes \
                     WHERE revision > $1 ORDER BY revision LIMIT $2",
                )
                .bind(revision)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn forget_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                Ok(sqlx::query(
                    "DELETE FROM instance_changes WHERE revision <= \
                     (SELECT max(revision) FROM instance_changes WHERE changed_at < $1)",
                )
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }
        }
    };
}
impl_instance_store!(Postgres);
impl_instance_store!(Sqlite);
