//! Watches of module instances: a snapshot from the feed (or the changes
//! after a revision, from the store's log), then the feed's live changes
//! of the watched modules, checkpoints while silent, and a clean end when
//! the server shuts down. A watcher that misses changes (it fell behind
//! the broadcast, or the feed reloaded) catches up from the log, or
//! resyncs when the log no longer holds what it missed.

use std::{sync::Arc, time::Duration};

use plinth_platform::{
    error::ApiError,
    identity::Principal,
    outlet::{End, Messages, Outlet},
    store::instances::{InstanceChange, InstanceRecord},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

use crate::{
    catalog::{self, Catalog},
    feed::{CHANGES_PER_READ, Feed},
};

/// Watches one replica serves at once.
pub const MAX_WATCHES: usize = 1_000;
/// Instances per snapshot message.
pub const SNAPSHOT_PART: usize = 100;
/// How long a new watch waits for the feed to first catch up.
const READY_WAIT: Duration = Duration::from_secs(5);

/// A watch as asked (already validated).
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub module_ids: Vec<String>,
    pub after_revision: Option<u64>,
    pub checkpoint_every: Duration,
}

/// What a watcher receives; each brings it to `revision`.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Snapshot {
        revision: i64,
        resync: bool,
        instances: Vec<InstanceRecord>,
        complete: bool,
    },
    Change(Arc<InstanceChange>),
    Checkpoint {
        revision: i64,
    },
}

pub type WatchStream = Messages<WatchEvent>;

pub struct Watches {
    feed: Arc<Feed>,
    catalog: Arc<Catalog>,
    draining: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
}

impl Watches {
    pub fn new(feed: Arc<Feed>, catalog: Arc<Catalog>, draining: watch::Receiver<bool>) -> Watches {
        Watches {
            feed,
            catalog,
            draining,
            slots: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }

    /// Starts a watch of registered modules.
    pub async fn watch(
        &self,
        principal: &Principal,
        asked: WatchRequest,
    ) -> Result<WatchStream, ApiError> {
        catalog::authenticated(principal)?;
        for module_id in &asked.module_ids {
            self.catalog.current(module_id).await?;
        }
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::RateLimited {
                scope: "watches",
                retry_after: Duration::from_secs(5),
            })?;
        tokio::time::timeout(READY_WAIT, self.feed.ready())
            .await
            .map_err(|_| ApiError::Unavailable)?;
        // A watcher that does not read falls behind the broadcast past the
        // outlet's queue, and later catches up from the log.
        let (outlet, stream) = Outlet::open(self.draining.clone());
        let watcher = Watcher {
            feed: self.feed.clone(),
            module_ids: asked.module_ids,
            checkpoint_every: asked.checkpoint_every,
            outlet,
            position: 0,
        };
        tokio::spawn(watcher.run(asked.after_revision, slot));
        Ok(stream)
    }
}

type Changes = broadcast::Receiver<Arc<InstanceChange>>;

struct Watcher {
    feed: Arc<Feed>,
    module_ids: Vec<String>,
    checkpoint_every: Duration,
    outlet: Outlet<WatchEvent>,
    /// The revision the watcher has been brought to.
    position: i64,
}

impl Watcher {
    async fn run(mut self, after_revision: Option<u64>, _slot: OwnedSemaphorePermit) {
        let ended = self.follow(after_revision).await;
        let revision = self.position;
        self.outlet
            .finish(ended, || WatchEvent::Checkpoint { revision })
            .await;
    }

    async fn follow(&mut self, after_revision: Option<u64>) -> Result<(), End> {
        let mut changes = match after_revision {
            None => self.snapshot(false).await?,
            Some(after) => self.resume(after).await?,
        };
        let checkpoint = tokio::time::sleep(self.checkpoint_every);
        tokio::pin!(checkpoint);
        loop {
            tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) if change.revision <= self.position => {}
                    Ok(change) if change.revision == self.position + 1 => {
                        self.position = change.revision;
                        if self.module_ids.contains(&change.instance.module_id) {
                            self.send(WatchEvent::Change(change)).await?;
                            checkpoint.as_mut().reset(tokio::time::Instant::now() + self.checkpoint_every);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        changes = self.resume(self.position as u64).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(End::ShuttingDown),
                },
                () = &mut checkpoint => {
                    self.send(WatchEvent::Checkpoint { revision: self.position }).await?;
                    checkpoint.as_mut().reset(tokio::time::Instant::now() + self.checkpoint_every);
                }
                () = self.outlet.shutting_down() => return Err(End::ShuttingDown),
            }
        }
    }

    /// Sends the watched instances at the feed's revision; the changes
    /// after it.
    async fn snapshot(&mut self, resync: bool) -> Result<Changes, End> {
        let (revision, instances, changes) = self.feed.snapshot(&self.module_ids);
        self.position = revision;
        let parts = instances.len().div_ceil(SNAPSHOT_PART).max(1);
        let mut instances = instances.into_iter();
        for part in 0..parts {
            self.send(WatchEvent::Snapshot {
                revision,
                resync: resync && part == 0,
                instances: instances.by_ref().take(SNAPSHOT_PART).collect(),
                complete: part + 1 == parts,
            })
            .await?;
        }
        Ok(changes)
    }

    /// Sends the watched modules' changes after `after` from the log, then
    /// follows the feed; resyncs when the log no longer holds them all or
    /// never reached `after`.
    async fn resume(&mut self, after: u64) -> Result<Changes, End> {
        // Subscribed first: every change the feed reads from now on is
        // received, and all before are at most the log's revision read next.
        let changes = self.feed.subscribe();
        let feed = self.feed.clone();
        let store = feed.store();
        let current = store.instances.revision().await.map_err(ApiError::from)?;
        let Ok(mut position) = i64::try_from(after) else {
            return self.snapshot(true).await;
        };
        if position > current {
            return self.snapshot(true).await;
        }
        while position < current {
            let read = store
                .instances
                .changes_after(position, CHANGES_PER_READ)
                .await
                .map_err(ApiError::from)?;
            if read
                .first()
                .is_none_or(|first| first.revision != position + 1)
            {
                return self.snapshot(true).await;
            }
            for change in read {
                position = change.revision;
                if self.module_ids.contains(&change.instance.module_id) {
                    self.position = position;
                    self.send(WatchEvent::Change(Arc::new(change))).await?;
                }
            }
        }
        self.position = position;
        Ok(changes)
    }

    async fn send(&mut self, event: WatchEvent) -> Result<(), End> {
        self.outlet.send(event).await
    }
}
