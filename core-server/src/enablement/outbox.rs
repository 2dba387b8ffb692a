//! Delivering after-change callbacks from the outbox: every replica looks
//! for due callbacks each second (and at once after its own changes),
//! claims one at a time, delivers it and records the outcome. A failed
//! attempt waits 1 s, doubling up to 5 min; after [`MAX_ATTEMPTS`] the
//! outbox gives up. An acknowledgement (or giving up) moves the tenant
//! module on: ENABLING to PROVISIONING or ENABLED (FAILED when given up),
//! DISABLING to DISABLED.

use std::{sync::Arc, time::Duration};

use plinth_platform::{
    audit::{Actor, AuditDraft, Outcome},
    clock,
    enablement::Enablement,
    error::ApiError,
    identity::Principal,
    invalidation::{Change, Invalidator},
    store::{
        Store, Tx,
        module_callbacks::{self, CallbackKind, CallbackRecord},
        tenant_modules::{self, TenantModuleRecord, TenantModuleState},
        tenants,
    },
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    ModuleParts,
    callbacks::{Callbacks, Delivered, Delivery, Target, actor_of},
    catalog::Catalog,
    enabled_state,
};
use crate::{auth::signing::KeyEncryptionKey, module_config::resolve_now};

/// Attempts before the outbox gives up on a callback.
pub const MAX_ATTEMPTS: i32 = 24;
/// How often each replica looks for due callbacks.
const POLL: Duration = Duration::from_secs(1);
/// How long a claim holds a callback against other replicas.
const CLAIM: Duration = Duration::from_secs(30);
/// Due callbacks taken per look.
const BATCH: i64 = 32;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// Longest error kept with a callback, in characters.
const MAX_ERROR: usize = 300;

pub struct Outbox {
    store: Store,
    catalog: Arc<Catalog>,
    callbacks: Arc<Callbacks>,
    cache: Arc<Enablement>,
    invalidator: Arc<Invalidator>,
    encryption: Arc<KeyEncryptionKey>,
    wake: Arc<Notify>,
}

/// Queues a callback in the transaction of the change it reports.
pub async fn enqueue(
    tx: &mut Tx,
    principal: &Principal,
    record: &TenantModuleRecord,
    company_id: Option<Uuid>,
    kind: CallbackKind,
    module_version: &str,
) -> Result<(), ApiError> {
    let now = clock::now();
    module_callbacks::enqueue(
        tx,
        &CallbackRecord {
            operation_id: Uuid::now_v7(),
            tenant_id: record.tenant_id,
            module_id: record.module_id.clone(),
            company_id: company_id.map(|id| id.to_string()).unwrap_or_default(),
            callback: kind,
            module_version: module_version.to_owned(),
            actor: actor_of(principal),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: String::new(),
            created_at: now,
        },
    )
    .await?;
    Ok(())
}

/// How a callback left the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Acknowledged,
    Skipped,
    GaveUp,
}

impl Outbox {
    /// Delivers for as long as the runtime runs.
    pub fn start(parts: &ModuleParts, callbacks: Arc<Callbacks>) -> Arc<Outbox> {
        let parts = parts.clone();
        let outbox = Arc::new(Outbox {
            store: parts.store,
            catalog: parts.catalog,
            callbacks,
            cache: parts.cache,
            invalidator: parts.invalidator,
            encryption: parts.encryption,
            wake: Arc::new(Notify::new()),
        });
        let (running, wake) = (Arc::downgrade(&outbox), outbox.wake.clone());
        tokio::spawn(async move {
            loop {
                let woken = wake.notified();
                let Some(outbox) = running.upgrade() else {
                    return;
                };
                if let Err(error) = outbox.deliver_due().await {
                    tracing::warn!(%error, "delivering module callbacks");
                }
                drop(outbox);
                let _ = tokio::time::timeout(POLL, woken).await;
            }
        });
        outbox
    }

    /// Looks for due callbacks now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn deliver_due(&self) -> Result<(), ApiError> {
        let now = clock::now();
        let due = self.store.callbacks.due_callbacks(now, BATCH).await?;
        let deliveries = due.into_iter().map(|callback| async move {
            let claimed_until = now + chrono::Duration::from_std(CLAIM).unwrap_or_default();
            match self
                .store
                .callbacks
                .claim_callback(callback.operation_id, now, claimed_until)
                .await
            {
                Ok(true) => {
                    if let Err(error) = self.deliver(callback).await {
                        tracing::warn!(%error, "delivering a module callback");
                    }
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "claiming a module callback"),
            }
        });
        futures_util::future::join_all(deliveries).await;
        Ok(())
    }

    /// One attempt (the claim counted it) and what follows from it.
    async fn deliver(&self, callback: CallbackRecord) -> Result<(), ApiError> {
        let attempt = callback.attempts + 1;
        let version = self
            .catalog
            .version(&callback.module_id, &callback.module_version)
            .await?;
        let tenant = self
            .store
            .tenants
            .get_tenant(callback.tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        let config = resolve_now(
            &self.store,
            &self.encryption,
            &version,
            tenant.id,
            callback.company(),
            0,
        )
        .await?
        .document;
        let mut target = Target::tenant(&tenant, &version.version, config);
        if let Some(company_id) = callback.company() {
            target = target.in_company(company_id);
        }
        let delivered = self
            .callbacks
            .deliver(
                &version,
                target,
                Delivery {
                    kind: callback.callback,
                    operation_id: callback.operation_id,
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    actor: callback.actor.clone(),
                },
            )
            .await?;
        let ending = match delivered {
            Delivered::Acknowledged => Ending::Acknowledged,
            Delivered::Skipped => Ending::Skipped,
            Delivered::Failed(error) if attempt < MAX_ATTEMPTS => {
                let wait = retry_after(attempt);
                let next = clock::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                let error: String = error.chars().take(MAX_ERROR).collect();
                return Ok(self
                    .store
                    .callbacks
                    .retry_callback(callback.operation_id, next, &error)
                    .await?);
            }
            Delivered::Failed(error) => {
                let error: String = error.chars().take(MAX_ERROR).collect();
                return self
                    .finish(
                        CallbackRecord {
                            last_error: error,
                            attempts: attempt,
                            ..callback
                        },
                        Ending::GaveUp,
                    )
                    .await;
            }
        };
        self.finish(
            CallbackRecord {
                attempts: attempt,
                ..callback
            },
            ending,
        )
        .await
    }

    /// Removes a callback that ended, moves its tenant module on, and
    /// audits the outcome, in one transaction.
    async fn finish(&self, callback: CallbackRecord, ending: Ending) -> Result<(), ApiError> {
        let mut tx = self.store.begin().await?;
        tenants::lock(&mut tx, callback.tenant_id).await?;
        if !module_callbacks::remove(&mut tx, callback.operation_id).await? {
            return Ok(());
        }
        let record = tenant_modules::modules_in(&mut tx, callback.tenant_id)
            .await?
            .into_iter()
            .find(|record| record.module_id == callback.module_id);
        let next_state = match (
            callback.callback,
            record.as_ref().map(|record| record.state),
        ) {
            (CallbackKind::TenantEnabled, Some(TenantModuleState::Enabling)) => {
                Some(match ending {
                    Ending::GaveUp => TenantModuleState::Failed,
                    Ending::Acknowledged | Ending::Skipped => {
                        let version = self
                            .catalog
                            .version(&callback.module_id, &callback.module_version)
                            .await?;
                        enabled_state(&version)
                    }
                })
            }
            (CallbackKind::TenantDisabled, Some(TenantModuleState::Disabling)) => {
                Some(TenantModuleState::Disabled)
            }
            _ => None,
        };
        let (action, outcome) = match ending {
            Ending::Acknowledged => ("tenant.module.callback_delivered", Outcome::Success),
            Ending::Skipped => ("tenant.module.callback_skipped", Outcome::Success),
            Ending::GaveUp => ("tenant.module.callback_failed", Outcome::Failure),
        };
        let mut event = AuditDraft::new(
            Actor::default(),
            action,
            "tenant_module",
            &callback.module_id,
        )
        .in_tenant(Some(callback.tenant_id))
        .with_details(serde_json::json!({
            "callback": callback.callback.as_str(),
            "operation_id": callback.operation_id,
            "company_id": callback.company(),
            "attempts": callback.attempts,
            "error": callback.last_error,
            "state": next_state.map(TenantModuleState::as_str),
        }));
        event.outcome = outcome;
        let mut version = None;
        match (record, next_state) {
            (Some(record), Some(state)) => {
                let failure = match state {
                    TenantModuleState::Failed => format!(
                        "OnTenantEnabled was not acknowledged after {} attempts: {}",
                        callback.attempts, callback.last_error
                    ),
                    _ => String::new(),
                };
                let moved = TenantModuleRecord {
                    state,
                    failure,
                    updated_at: clock::now(),
                    ..record
                };
                tenant_modules::put(&mut tx, &moved, event).await?;
                if state == TenantModuleState::Failed {
                    plinth_platform::store::module_configs::record_change(
                        &mut tx,
                        &moved.module_id,
                        Some(moved.tenant_id),
                        None,
                    )
                    .await?;
                }
                version = Some(tenant_modules::bump_version(&mut tx, callback.tenant_id).await?);
            }
            _ => plinth_platform::store::audit_log::append(&mut tx, event)
                .await
                .map(drop)?,
        }
        tx.commit().await?;
        if let Some(version) = version {
            self.cache.learn(callback.tenant_id, version);
            self.invalidator
                .changed(Change::Modules {
                    tenant_id: callback.tenant_id,
                    version,
                })
                .await;
        }
        Ok(())
    }
}

/// The wait after failed attempt `attempt` (1 for the first).
fn retry_after(attempt: i32) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    (FIRST_RETRY * 2u32.pow(doublings)).min(LONGEST_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_from_a_second_doubling_to_five_minutes() {
        let waits: Vec<u64> = (1..=12)
            .map(|attempt| retry_after(attempt).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(retry_after(i32::MAX), LONGEST_RETRY);
    }
}
