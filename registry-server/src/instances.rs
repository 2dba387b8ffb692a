//! Running instances on leases. Registration, status changes and removal
//! are written (and audited) at once, and announced to every replica's
//! feed; a heartbeat only records its renewal in memory, and a background
//! task writes the renewals gathered each [`FLUSH_EVERY`] in one
//! transaction, then removes instances whose lease lapsed (on any replica:
//! leases live in the shared store) and forgets changes older than
//! [`KEEP_CHANGES`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use chrono::{DateTime, Utc};
use plinth_platform::{
    audit::{Actor, AuditDraft},
    clock,
    error::ApiError,
    identity::Principal,
    invalidation::{Change, Invalidator},
    store::{
        Store,
        instances::{self, InstanceChange, InstanceRecord, InstanceStatus, Renewal},
    },
};
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use crate::{catalog::Catalog, feed::Feed};

/// How often gathered renewals are written and lapsed leases swept.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A lease is swept only this long after it lapsed, so renewals gathered
/// on another replica have been written.
const SWEEP_GRACE: Duration = Duration::from_secs(2);
/// Lapsed instances removed per sweep.
const SWEEP_BATCH: i64 = 100;
/// How long instance changes are kept for watchers to resume from.
pub const KEEP_CHANGES: Duration = Duration::from_secs(3600);
/// How often changes older than that are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Instances one module runs at once (registered, lease running or not
/// yet swept).
pub const MAX_INSTANCES_PER_MODULE: i64 = 1_000;

pub const MIN_LEASE: Duration = Duration::from_secs(5);
pub const MAX_LEASE: Duration = Duration::from_secs(300);
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A registration as asked (already validated).
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub module_id: String,
    pub version: String,
    pub endpoint: String,
    pub labels: BTreeMap<String, String>,
    pub lease: Duration,
    pub instance_key: String,
}

/// What this replica knows of an instance it has seen.
#[derive(Debug, Clone)]
struct Known {
    module_id: String,
    version: String,
    endpoint: String,
    lease: Duration,
    status: InstanceStatus,
    /// The end of the lease as this replica last saw or renewed it.
    lease_expires_at: DateTime<Utc>,
}

pub struct Instances {
    store: Store,
    catalog: Arc<Catalog>,
    feed: Arc<Feed>,
    invalidator: Arc<Invalidator>,
    known: Mutex<HashMap<Uuid, Known>>,
    renewals: Mutex<HashMap<Uuid, Renewal>>,
}

impl Instances {
    /// Also starts the task that writes renewals, sweeps lapsed leases and
    /// forgets what other replicas removed.
    pub fn start(
        catalog: Arc<Catalog>,
        feed: Arc<Feed>,
        invalidator: Arc<Invalidator>,
    ) -> Arc<Instances> {
        let removals = feed.subscribe();
        let instances = Arc::new(Instances {
            store: feed.store().clone(),
            catalog,
            feed,
            invalidator,
            known: Mutex::default(),
            renewals: Mutex::default(),
        });
        tokio::spawn(keep_leases(Arc::downgrade(&instances), removals));
        instances
    }

    /// Tells every replica of a committed change, and waits until this
    /// replica's feed has it, so the caller's next read here sees it.
    async fn announce(&self, revision: i64) {
        self.invalidator
            .changed(Change::Instances { revision })
            .await;
        self.feed.include(revision).await;
    }

    pub async fn register(
        &self,
        principal: &Principal,
        asked: NewInstance,
    ) -> Result<InstanceRecord, ApiError> {
        self.catalog
            .may_act_for(principal, &asked.module_id)
            .await?;
        self.catalog
            .registered_version(&asked.module_id, &asked.version)
            .await?;
        let now = clock::now();
        let record = InstanceRecord {
            instance_id: Uuid::now_v7(),
            module_id: asked.module_id,
            instance_key: asked.instance_key,
            version: asked.version,
            endpoint: asked.endpoint,
            labels: asked.labels,
            status: InstanceStatus::Starting,
            registered_at: now,
            last_heartbeat_at: now,
            lease_expires_at: now + asked.lease,
        };
        let event = event(
            principal.actor(),
            &principal.request_id,
            "registry.instance.registered",
            &record,
        );
        let mut tx = self.store.begin().await?;
        let (stored, revision) =
            instances::register(&mut tx, &record, MAX_INSTANCES_PER_MODULE, event)
                .await?
                .ok_or_else(|| ApiError::FailedPrecondition {
                    resource_type: "module",
                    state: format!("running its limit of {MAX_INSTANCES_PER_MODULE} instances"),
                })?;
        tx.commit().await?;
        self.announce(revision).await;
        lock(&self.renewals).remove(&stored.instance_id);
        lock(&self.known).insert(
            stored.instance_id,
            Known {
                module_id: stored.module_id.clone(),
                version: stored.version.clone(),
                endpoint: stored.endpoint.clone(),
                lease: asked.lease,
                status: stored.status,
                lease_expires_at: stored.lease_expires_at,
            },
        );
        Ok(stored)
    }

    /// Renews the lease (in memory until the next flush) and records a
    /// changed status at once. The lease's end and the status.
    pub async fn heartbeat(
        &self,
        principal: &Principal,
        instance_id: Uuid,
        reported: Option<InstanceStatus>,
    ) -> Result<(DateTime<Utc>, InstanceStatus), ApiError> {
        let known = self.known(instance_id).await?;
        self.catalog
            .may_act_for(principal, &known.module_id)
            .await?;
        let mut status = known.status;
        if let Some(reported) = reported.filter(|reported| *reported != known.status) {
            let draft = AuditDraft::new(
                principal.actor(),
                "registry.instance.status_changed",
                "instance",
                &instance_id.to_string(),
            )
            .in_tenant(None)
            .with_request_id(&principal.request_id)
            .with_details(serde_json::json!({ "status": reported.as_str() }));
            let mut tx = self.store.begin().await?;
            let revision = instances::set_status(&mut tx, instance_id, reported, draft).await?;
            tx.commit().await?;
            self.announce(revision).await;
            status = reported;
            if let Some(entry) = lock(&self.known).get_mut(&instance_id) {
                entry.status = reported;
            }
        }
        let now = clock::now();
        let renewal = Renewal {
            instance_id,
            last_heartbeat_at: now,
            lease_expires_at: now + known.lease,
        };
        lock(&self.renewals).insert(instance_id, renewal);
        if let Some(entry) = lock(&self.known).get_mut(&instance_id) {
            entry.lease_expires_at = renewal.lease_expires_at;
        }
        Ok((renewal.lease_expires_at, status))
    }

    pub async fn deregister(
        &self,
        principal: &Principal,
        instance_id: Uuid,
    ) -> Result<(), ApiError> {
        let known = self.known(instance_id).await?;
        self.catalog
            .may_act_for(principal, &known.module_id)
            .await?;
        let draft = AuditDraft::new(
            principal.actor(),
            "registry.instance.deregistered",
            "instance",
            &instance_id.to_string(),
        )
        .in_tenant(None)
        .with_request_id(&principal.request_id);
        let mut tx = self.store.begin().await?;
        let removed = instances::remove(&mut tx, instance_id, None, draft).await?;
        tx.commit().await?;
        self.forget(instance_id);
        if let Some(revision) = removed {
            self.announce(revision).await;
        }
        Ok(())
    }

    /// What this replica knows of an instance whose lease still runs: read
    /// from the store when it registered elsewhere, or when the lease seen
    /// here has ended (another replica may have renewed it). A lapsed
    /// lease is NOT_FOUND, swept or not.
    async fn known(&self, instance_id: Uuid) -> Result<Known, ApiError> {
        let now = clock::now();
        let seen = lock(&self.known).get(&instance_id).cloned();
        if let Some(known) = seen.filter(|known| known.lease_expires_at > now) {
            return Ok(known);
        }
        let gone = ApiError::NotFound {
            resource_type: "instance",
        };
        let Some(stored) = self
            .store
            .instances
            .instance(instance_id)
            .await?
            .filter(|stored| stored.lease_expires_at > now)
        else {
            self.forget(instance_id);
            return Err(gone);
        };
        let lease = (stored.lease_expires_at - stored.last_heartbeat_at)
            .to_std()
            .unwrap_or(DEFAULT_LEASE)
            .clamp(MIN_LEASE, MAX_LEASE);
        let known = Known {
            module_id: stored.module_id,
            version: stored.version,
            endpoint: stored.endpoint,
            lease,
            status: stored.status,
            lease_expires_at: stored.lease_expires_at,
        };
        lock(&self.known).insert(instance_id, known.clone());
        Ok(known)
    }

    /// Instances whose lease this replica last saw running, to probe: id,
    /// module, version and endpoint.
    pub fn heard_from(&self) -> Vec<(Uuid, String, String, String)> {
        let now = clock::now();
        lock(&self.known)
            .iter()
            .filter(|(_, known)| known.lease_expires_at > now)
            .map(|(instance_id, known)| {
                (
                    *instance_id,
                    known.module_id.clone(),
                    known.version.clone(),
                    known.endpoint.clone(),
                )
            })
            .collect()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records what probing found (audited as the registry's own act).
    pub async fn probed(&self, instance_id: Uuid, status: InstanceStatus) -> Result<(), ApiError> {
        let draft = AuditDraft::new(
            Actor::default(),
            "registry.instance.probed",
            "instance",
            &instance_id.to_string(),
        )
        .in_tenant(None)
        .with_details(serde_json::json!({ "status": status.as_str() }));
        let mut tx = self.store.begin().await?;
        let revision = instances::set_status(&mut tx, instance_id, status, draft).await?;
        tx.commit().await?;
        self.announce(revision).await;
        if let Some(entry) = lock(&self.known).get_mut(&instance_id) {
            entry.status = status;
        }
        Ok(())
    }

    fn forget(&self, instance_id: Uuid) {
        lock(&self.known).remove(&instance_id);
        lock(&self.renewals).remove(&instance_id);
    }

    /// Writes the gathered renewals, then removes lapsed instances.
    async fn flush_and_sweep(&self) -> Result<(), ApiError> {
        let renewals: Vec<Renewal> = lock(&self.renewals)
            .drain()
            .map(|(_, renewal)| renewal)
            .collect();
        if !renewals.is_empty() {
            let mut tx = self.store.begin().await?;
            instances::renew(&mut tx, &renewals).await?;
            tx.commit().await?;
        }
        let now = clock::now();
        let cutoff = now - SWEEP_GRACE;
        for instance_id in self.store.instances.lapsed(cutoff, SWEEP_BATCH).await? {
            let draft = AuditDraft::new(
                Actor::default(),
                "registry.instance.expired",
                "instance",
                &instance_id.to_string(),
            )
            .in_tenant(None);
            let mut tx = self.store.begin().await?;
            let removed = instances::remove(&mut tx, instance_id, Some(cutoff), draft).await?;
            tx.commit().await?;
            self.forget(instance_id);
            if let Some(revision) = removed {
                self.announce(revision).await;
            }
        }
        Ok(())
    }

    /// Forgets instances another replica removed; when changes were
    /// missed, everything this replica knew (it reads the store again).
    fn hear(&self, change: Result<Arc<InstanceChange>, RecvError>) {
        match change {
            Ok(change) if change.removed => self.forget(change.instance.instance_id),
            Ok(_) => {}
            Err(_) => lock(&self.known).clear(),
        }
    }
}

/// Runs while the registry lives.
async fn keep_leases(
    instances: Weak<Instances>,
    mut changes: broadcast::Receiver<Arc<InstanceChange>>,
) {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut forget = tokio::time::interval(FORGET_EVERY);
    loop {
        tokio::select! {
            _ = flush.tick() => {
                let Some(instances) = instances.upgrade() else {
                    return;
                };
                if let Err(error) = instances.flush_and_sweep().await {
                    tracing::warn!(%error, "writing instance leases failed; retrying");
                }
            }
            _ = forget.tick() => {
                let Some(instances) = instances.upgrade() else {
                    return;
                };
                let before = clock::now() - KEEP_CHANGES;
                if let Err(error) = instances.store.instances.forget_changes(before).await {
                    tracing::warn!(%error, "forgetting old instance changes failed");
                }
            }
            change = changes.recv() => {
                if matches!(change, Err(RecvError::Closed)) {
                    return;
                }
                let Some(instances) = instances.upgrade() else {
                    return;
                };
                instances.hear(change);
            }
        }
    }
}

/// Named by module and key: a registration may turn out to be of an
/// instance registered before, under its first id.
fn event(actor: Actor, request_id: &str, action: &str, instance: &InstanceRecord) -> AuditDraft {
    let name = format!("{}/{}", instance.module_id, instance.instance_key);
    AuditDraft::new(actor, action, "instance", &name)
        .in_tenant(None)
        .with_request_id(request_id)
        .with_details(serde_json::json!({
            "module_id": instance.module_id,
            "instance_key": instance.instance_key,
            "version": instance.version,
        }))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
