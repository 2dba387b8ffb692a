//! This replica's view of the instance change log: every instance as of
//! the latest revision read, each module's latest revision, and a
//! broadcast of each change as it is read. The log is read when a change
//! is announced (at once for this replica's own writes, through the
//! invalidation bus for other replicas' when Redis is configured) and at
//! least every [`POLL_EVERY`] otherwise.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock, Weak},
    time::Duration,
};

use plinth_platform::{
    error::ApiError,
    invalidation::{Cache, Change},
    store::{
        Store,
        instances::{InstanceChange, InstanceRecord},
    },
};
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

/// How often the log is read when no change was announced.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Changes read per statement.
pub const CHANGES_PER_READ: i64 = 500;
/// Changes a watcher may fall behind the broadcast before it catches up
/// from the store instead.
const BROADCAST_CAPACITY: usize = 1024;
/// How long a write waits for this replica's view to include it.
const OWN_WRITE_WAIT: Duration = Duration::from_secs(2);
/// Wait before reading the log again after a failure.
const RETRY_DELAY: Duration = Duration::from_millis(500);

pub struct Feed {
    store: Store,
    view: Mutex<View>,
    /// The revision of each module's latest change, apart from the view:
    /// discovery reads it on every call.
    module_revisions: RwLock<HashMap<String, i64>>,
    changes: broadcast::Sender<Arc<InstanceChange>>,
    announced: Notify,
    /// The revision the view has reached; -1 until it first caught up.
    reached: watch::Sender<i64>,
}

#[derive(Default)]
struct View {
    revision: i64,
    instances: HashMap<Uuid, InstanceRecord>,
}

impl Feed {
    /// Also starts following the log.
    pub fn start(store: Store) -> Arc<Feed> {
        let feed = Arc::new(Feed {
            store,
            view: Mutex::default(),
            module_revisions: RwLock::default(),
            changes: broadcast::Sender::new(BROADCAST_CAPACITY),
            announced: Notify::new(),
            reached: watch::Sender::new(-1),
        });
        tokio::spawn(follow(Arc::downgrade(&feed)));
        feed
    }

    /// Waits until the view includes `revision` (a write of this replica),
    /// or a bounded time: other replicas' writes arrive within the poll.
    pub async fn include(&self, revision: i64) {
        self.announced.notify_one();
        let mut reached = self.reached.subscribe();
        let included = reached.wait_for(|reached| *reached >= revision);
        if tokio::time::timeout(OWN_WRITE_WAIT, included)
            .await
            .is_err()
        {
            tracing::warn!(revision, "the instance view did not catch up in time");
        }
    }

    /// Waits until the view first caught up with the log.
    pub async fn ready(&self) {
        let mut reached = self.reached.subscribe();
        let _ = reached.wait_for(|reached| *reached >= 0).await;
    }

    /// The revision of the latest change to `module_id`'s instances that
    /// the view holds (0 when none since the log began); none until the
    /// view first caught up.
    pub fn module_revision(&self, module_id: &str) -> Option<i64> {
        if *self.reached.borrow() < 0 {
            return None;
        }
        let revisions = self
            .module_revisions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(revisions.get(module_id).copied().unwrap_or(0))
    }

    /// The instances of `module_ids` at the view's revision (oldest
    /// registration first), and a receiver of every change after it.
    pub fn snapshot(
        &self,
        module_ids: &[String],
    ) -> (
        i64,
        Vec<InstanceRecord>,
        broadcast::Receiver<Arc<InstanceChange>>,
    ) {
        let view = lock(&self.view);
        let mut instances: Vec<InstanceRecord> = view
            .instances
            .values()
            .filter(|instance| module_ids.contains(&instance.module_id))
            .cloned()
            .collect();
        instances.sort_by_key(|instance| (instance.registered_at, instance.instance_id));
        (view.revision, instances, self.changes.subscribe())
    }

    /// A receiver of every change read from now on: each change after the
    /// store's current revision, at least.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<InstanceChange>> {
        self.changes.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the log until it is exhausted.
    async fn catch_up(&self) -> Result<(), ApiError> {
        loop {
            let after = lock(&self.view).revision;
            let changes = self
                .store
                .instances
                .changes_after(after, CHANGES_PER_READ)
                .await?;
            let exhausted = (changes.len() as i64) < CHANGES_PER_READ;
            match changes.first() {
                None => break,
                Some(first) if first.revision != after + 1 => {
                    // Changes this view missed were forgotten: start over
                    // from the rows (watchers see the gap and resync).
                    tracing::warn!(after, "instance changes were forgotten; reloading");
                    self.reload().await?;
                    continue;
                }
                Some(_) => {}
            }
            let mut view = lock(&self.view);
            let mut module_revisions = self
                .module_revisions
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for change in changes {
                view.apply(&change);
                module_revisions.insert(change.instance.module_id.clone(), change.revision);
                let _ = self.changes.send(Arc::new(change));
            }
            drop((view, module_revisions));
            if exhausted {
                break;
            }
        }
        let revision = lock(&self.view).revision;
        self.reached.send_replace(revision);
        Ok(())
    }

    /// Replaces the view with the rows; the changes after the revision
    /// read with them are replayed by the next catch-up, which may find
    /// them already in the rows and leaves each instance as its last change
    /// did.
    async fn reload(&self) -> Result<(), ApiError> {
        let (revision, instances) = self.store.instances.all_instances().await?;
        let mut view = lock(&self.view);
        view.revision = revision;
        view.instances = instances
            .into_iter()
            .map(|instance| (instance.instance_id, instance))
            .collect();
        Ok(())
    }
}

impl View {
    fn apply(&mut self, change: &InstanceChange) {
        let instance = &change.instance;
        if change.removed {
            self.instances.remove(&instance.instance_id);
        } else {
            self.instances
                .insert(instance.instance_id, instance.clone());
        }
        self.revision = change.revision;
    }
}

impl Cache for Feed {
    fn apply(&self, change: Change) {
        match change {
            Change::Instances { revision } if revision <= *self.reached.borrow() => {}
            Change::Instances { .. } | Change::Everything => self.announced.notify_one(),
            Change::ApiKey(_)
            | Change::Subjects
            | Change::SigningKeys
            | Change::Rbac { .. }
            | Change::Modules { .. }
            | Change::Catalog
            | Change::Audit { .. } => {}
        }
    }
}

/// Loads the view, then reads the log whenever a change is announced or
/// the poll comes round, while the feed lives.
async fn follow(feed: Weak<Feed>) {
    let mut loaded = false;
    loop {
        let Some(strong) = feed.upgrade() else {
            return;
        };
        let read = match loaded {
            true => strong.catch_up().await,
            false => match strong.reload().await {
                Ok(()) => strong.catch_up().await,
                Err(error) => Err(error),
            },
        };
        match read {
            Ok(()) => loaded = true,
            Err(error) => {
                tracing::warn!(%error, "reading instance changes failed; retrying");
                drop(strong);
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(POLL_EVERY, strong.announced.notified()).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
