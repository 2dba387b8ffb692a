//! Running module instances: each registered under the key it chose, on a
//! lease. Registration, status changes and removal are written (and
//! audited) as they happen; lease renewals are written in batches, so a
//! heartbeat costs no transaction of its own.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, types::Json};
use uuid::Uuid;

use super::{SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

stored_enum! {
    /// What an instance reports, or its probes found.
    pub enum InstanceStatus {
        Starting => "starting",
        Serving => "serving",
        NotServing => "not_serving",
        Draining => "draining",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

/// Reads instances.
#[async_trait::async_trait]
pub trait InstanceStore: Send + Sync {
    async fn instance(&self, instance_id: Uuid) -> Result<Option<InstanceRecord>, StoreError>;

    /// A module's instances whose lease runs past `now`, oldest first.
    async fn live_instances_of(
        &self,
        module_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<InstanceRecord>, StoreError>;

    /// Instances whose lease ended before `now`, at most `limit`.
    async fn lapsed(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError>;
}

macro_rules! instance_columns {
    () => {
        "instance_id, module_id, instance_key, version, endpoint, labels, status, \
         registered_at, last_heartbeat_at, lease_expires_at"
    };
}

/// Registers an instance, or (same module and key) replaces its version,
/// endpoint, labels and lease; returns it as stored (the first
/// registration's id and time are kept).
pub async fn register(
    tx: &mut Tx,
    instance: &InstanceRecord,
    audit: AuditDraft,
) -> Result<InstanceRecord, StoreError> {
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
    super::audit_log::append(tx, audit).await?;
    Ok(stored)
}

/// Writes a status change.
pub async fn set_status(
    tx: &mut Tx,
    instance_id: Uuid,
    status: InstanceStatus,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query("UPDATE module_instances SET status = $2 WHERE instance_id = $1")
            .bind(instance_id)
            .bind(status.as_str())
            .execute(connection)
            .await?
            .rows_affected()
    });
    super::audited(tx, changed, audit).await
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
/// before then (so a renewal written meanwhile keeps it). Whether it was
/// removed.
pub async fn remove(
    tx: &mut Tx,
    instance_id: Uuid,
    lapsed_before: Option<DateTime<Utc>>,
    audit: AuditDraft,
) -> Result<bool, StoreError> {
    let removed = in_tx!(tx, connection => {
        sqlx::query(
            "DELETE FROM module_instances WHERE instance_id = $1 \
             AND ($2 IS NULL OR lease_expires_at < $2)",
        )
        .bind(instance_id)
        .bind(lapsed_before)
        .execute(connection)
        .await?
        .rows_affected()
    });
    if removed == 0 {
        return Ok(false);
    }
    super::audit_log::append(tx, audit).await?;
    Ok(true)
}

macro_rules! impl_instance_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl InstanceStore for SqlStore<$db> {
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
        }
    };
}
impl_instance_store!(Postgres);
impl_instance_store!(Sqlite);
