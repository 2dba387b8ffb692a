//! TailEvents: the events of every chain in the caller's scope as they
//! commit, in feed order, after a cursor that survives restarts and works on
//! any replica.
//!
//! One feed per replica reads the store's feed after each commit it hears
//! of (its own at once, other replicas' through the invalidator, and every
//! second) and broadcasts each event. A tail first catches up from the store
//! on its own, then subscribes, closes the gap once more from the store, and
//! follows the broadcast, skipping what it already passed. A tail that falls
//! a whole broadcast buffer behind is told to resync from its cursor and
//! ends: the broadcast never waits for it, so writers never do either.

use std::{sync::Arc, time::Duration};

use plinth_platform::{
    access::{Access, Scope, is_platform_admin},
    audit::{AuditEvent, FeedCursor},
    enablement::Enablement,
    error::ApiError,
    identity::{Principal, PrincipalKind},
    invalidation::{Cache, Change, Invalidator},
    outlet::{End, Messages, Outlet},
    store::Store,
    versions::Freshness,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use uuid::Uuid;

use crate::permissions::AUDIT_READ;

/// Tails one replica serves at once.
pub const MAX_TAILS: usize = 1_000;
/// Events a tail may fall behind the feed before it must resync.
pub const TAIL_BUFFER: usize = 4_096;
/// Events read from the store at once.
const EVENTS_PER_READ: i64 = 500;
/// How often the feed reads the store without news of a commit.
const POLL: Duration = Duration::from_secs(1);
/// Longest cursor text accepted (two 64-bit numbers, hex of them).
const MAX_CURSOR: usize = 2 * 41;

/// A cursor as clients hold it (opaque to them).
pub fn cursor_text(cursor: FeedCursor) -> String {
    hex::encode(format!("{}.{}", cursor.position, cursor.sequence))
}

/// A cursor from [`cursor_text`], or `None` when it is not one.
pub fn parse_cursor(text: &str) -> Option<FeedCursor> {
    if text.len() > MAX_CURSOR {
        return None;
    }
    let decoded = String::from_utf8(hex::decode(text).ok()?).ok()?;
    let (position, sequence) = decoded.split_once('.')?;
    let cursor = FeedCursor {
        position: position.parse().ok()?,
        sequence: sequence.parse().ok()?,
    };
    (cursor.position >= 0 && cursor.sequence >= 0).then_some(cursor)
}

/// A tail as asked (validated).
#[derive(Debug, Clone)]
pub struct TailRequest {
    pub action_prefix: Option<String>,
    pub after: Option<FeedCursor>,
    pub checkpoint_every: Duration,
}

/// What a tail receives.
#[derive(Debug)]
pub enum TailMessage {
    Event {
        cursor: FeedCursor,
        event: Arc<AuditEvent>,
    },
    Checkpoint {
        cursor: FeedCursor,
    },
    /// The tail fell behind and ends: resume after `cursor`.
    Resync {
        cursor: FeedCursor,
    },
}

pub type TailStream = Messages<TailMessage>;

type FedEvent = (FeedCursor, Arc<AuditEvent>);

/// Tells the feed the last feed position a replica announced (this one's
/// own announcements included); after missed messages, the end of time.
struct News(watch::Sender<i64>);

impl Cache for News {
    fn apply(&self, change: Change) {
        match change {
            Change::Audit { position } => {
                self.0.send_replace(position);
            }
            Change::Everything => {
                self.0.send_replace(i64::MAX);
            }
            _ => {}
        }
    }
}

/// This replica's reader of the store's feed.
struct Feed {
    events: broadcast::Sender<FedEvent>,
    /// Held while reading: a tail subscribes between reads, so whatever the
    /// feed skips for want of receivers was committed before it subscribed.
    reading: tokio::sync::Mutex<()>,
}

impl Feed {
    fn start(
        store: Store,
        invalidator: Arc<Invalidator>,
        draining: watch::Receiver<bool>,
    ) -> Arc<Feed> {
        let (events, _) = broadcast::channel(TAIL_BUFFER);
        let feed = Arc::new(Feed {
            events,
            reading: tokio::sync::Mutex::new(()),
        });
        let (sender, remote_news) = watch::channel(0);
        invalidator.register(Arc::new(News(sender)));
        tokio::spawn(feed.clone().run(store, invalidator, remote_news, draining));
        feed
    }

    async fn run(
        self: Arc<Feed>,
        store: Store,
        invalidator: Arc<Invalidator>,
        mut remote_news: watch::Receiver<i64>,
        mut draining: watch::Receiver<bool>,
    ) {
        let mut local_news = store.audit_news();
        let mut read_through = FeedCursor::default();
        let mut announced = 0;
        let mut polled = true;
        loop {
            let local = *local_news.borrow_and_update();
            if local > announced {
                // Other replicas' tails hear of this replica's commits.
                announced = local;
                invalidator.changed(Change::Audit { position: local }).await;
            }
            // Read only for news past what was read (an announcement of
            // this replica's own commit comes back here too), or on the poll.
            let heard = *remote_news.borrow_and_update();
            if polled || local > read_through.position || heard > read_through.position {
                match self.read(&store, read_through).await {
                    Ok(cursor) => read_through = cursor,
                    Err(error) => tracing::warn!(%error, "reading the audit feed"),
                }
            }
            polled = false;
            tokio::select! {
                heard = local_news.changed() => if heard.is_err() { return },
                heard = remote_news.changed() => if heard.is_err() { return },
                () = tokio::time::sleep(POLL) => polled = true,
                _ = draining.wait_for(|draining| *draining) => return,
            }
        }
    }

    /// Broadcasts the events committed after `after`; with no tail to tell,
    /// only moves past them. The cursor reached.
    async fn read(&self, store: &Store, mut after: FeedCursor) -> Result<FeedCursor, ApiError> {
        let _reading = self.reading.lock().await;
        if self.events.receiver_count() == 0 {
            return Ok(FeedCursor::after_position(store.audit.feed_head().await?));
        }
        loop {
            let events = store.audit.feed_after(after, None, EVENTS_PER_READ).await?;
            let complete = (events.len() as i64) < EVENTS_PER_READ;
            for (cursor, event) in events {
                after = cursor;
                // No receiver left is no reason to stop reading.
                let _ = self.events.send((cursor, Arc::new(event)));
            }
            if complete {
                return Ok(after);
            }
        }
    }
}

/// Which events a tail sees.
#[derive(Debug, Clone)]
enum TailScope {
    Everything,
    /// One tenant's chain.
    Tenant(Uuid),
    /// A module's events and the core's about it, in the tenants (or the
    /// one tenant) where the module is enabled.
    Module {
        module_id: String,
        tenant_id: Option<Uuid>,
    },
}

pub struct Tails {
    store: Store,
    access: Access,
    enablement: Arc<Enablement>,
    feed: Arc<Feed>,
    draining: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
}

impl Tails {
    pub fn start(
        store: Store,
        access: Access,
        enablement: Arc<Enablement>,
        invalidator: Arc<Invalidator>,
        draining: watch::Receiver<bool>,
    ) -> Tails {
        let feed = Feed::start(store.clone(), invalidator, draining.clone());
        Tails {
            store,
            access,
            enablement,
            feed,
            draining,
            slots: Arc::new(Semaphore::new(MAX_TAILS)),
        }
    }

    pub async fn tail(
        &self,
        principal: &Principal,
        asked: TailRequest,
    ) -> Result<TailStream, ApiError> {
        let scope = self.scope(principal).await?;
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::RateLimited {
                scope: "tails",
                retry_after: Duration::from_secs(5),
            })?;
        let after = match asked.after {
            Some(after) => after,
            None => FeedCursor::after_position(self.store.audit.feed_head().await?),
        };
        let (outlet, stream) = Outlet::open(self.draining.clone());
        let tail = Tail {
            store: self.store.clone(),
            enablement: self.enablement.clone(),
            feed: self.feed.clone(),
            scope,
            action_prefix: asked.action_prefix,
            checkpoint_every: asked.checkpoint_every,
            outlet,
            cursor: after,
        };
        tokio::spawn(tail.run(slot));
        Ok(stream)
    }

    /// The caller's scope; refusals audited.
    async fn scope(&self, principal: &Principal) -> Result<TailScope, ApiError> {
        if principal.kind() == PrincipalKind::Anonymous {
            return Err(ApiError::Unauthenticated);
        }
        if is_platform_admin(principal) {
            return Ok(TailScope::Everything);
        }
        let tenant_id = principal.tenant_scope();
        if let Some(tenant_id) = tenant_id {
            let held = self
                .access
                .held(principal, Scope::tenant(tenant_id))
                .await?;
            if held.allows(AUDIT_READ.name) {
                return Ok(TailScope::Tenant(tenant_id));
            }
        }
        match principal.module_id() {
            Some(module_id) => Ok(TailScope::Module {
                module_id: module_id.to_owned(),
                tenant_id,
            }),
            None => {
                self.access
                    .require(principal, AUDIT_READ, Scope::tenant_or_platform(tenant_id))
                    .await?;
                Ok(TailScope::Everything)
            }
        }
    }
}

struct Tail {
    store: Store,
    enablement: Arc<Enablement>,
    feed: Arc<Feed>,
    scope: TailScope,
    action_prefix: Option<String>,
    checkpoint_every: Duration,
    outlet: Outlet<TailMessage>,
    /// Every event up to here was sent or is not in scope.
    cursor: FeedCursor,
}

impl Tail {
    async fn run(mut self, _slot: OwnedSemaphorePermit) {
        let ended = self.follow().await;
        let cursor = self.cursor;
        self.outlet
            .finish(ended, || TailMessage::Checkpoint { cursor })
            .await;
    }

    async fn follow(&mut self) -> Result<(), End> {
        self.catch_up().await?;
        let mut live = {
            let _between_reads = self.feed.reading.lock().await;
            self.feed.events.subscribe()
        };
        self.catch_up().await?;
        let checkpoint = tokio::time::sleep(self.checkpoint_every);
        tokio::pin!(checkpoint);
        loop {
            tokio::select! {
                fed = live.recv() => match fed {
                    Ok((cursor, event)) => {
                        if cursor > self.cursor && self.offer(cursor, event).await? {
                            checkpoint.as_mut().reset(tokio::time::Instant::now() + self.checkpoint_every);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let cursor = self.cursor;
                        self.outlet.send(TailMessage::Resync { cursor }).await?;
                        return Ok(());
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(End::ShuttingDown),
                },
                () = &mut checkpoint => {
                    let cursor = self.cursor;
                    self.outlet.send(TailMessage::Checkpoint { cursor }).await?;
                    checkpoint.as_mut().reset(tokio::time::Instant::now() + self.checkpoint_every);
                }
                () = self.outlet.shutting_down() => return Err(End::ShuttingDown),
            }
        }
    }

    /// Sends what the store holds after the cursor, until it holds no more.
    async fn catch_up(&mut self) -> Result<(), End> {
        let chain = match &self.scope {
            TailScope::Tenant(tenant_id)
            | TailScope::Module {
                tenant_id: Some(tenant_id),
                ..
            } => Some(tenant_id.to_string()),
            _ => None,
        };
        loop {
            let events = self
                .store
                .audit
                .feed_after(self.cursor, chain.as_deref(), EVENTS_PER_READ)
                .await
                .map_err(ApiError::from)?;
            let complete = (events.len() as i64) < EVENTS_PER_READ;
            for (cursor, event) in events {
                self.offer(cursor, Arc::new(event)).await?;
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// Passes an event, sending it when it is in scope; whether it was sent.
    async fn offer(&mut self, cursor: FeedCursor, event: Arc<AuditEvent>) -> Result<bool, End> {
        let wanted = self.wants(&event).await?;
        self.cursor = cursor;
        if wanted {
            self.outlet
                .send(TailMessage::Event { cursor, event })
                .await?;
        }
        Ok(wanted)
    }

    async fn wants(&self, event: &AuditEvent) -> Result<bool, ApiError> {
        if let Some(prefix) = &self.action_prefix
            && !event.action.starts_with(prefix.as_str())
        {
            return Ok(false);
        }
        match &self.scope {
            TailScope::Everything => Ok(true),
            TailScope::Tenant(tenant_id) => Ok(event.chain_id == tenant_id.to_string()),
            TailScope::Module {
                module_id,
                tenant_id,
            } => {
                let Ok(event_tenant) = Uuid::try_parse(&event.tenant_id) else {
                    return Ok(false);
                };
                if tenant_id.is_some_and(|scoped| scoped != event_tenant)
                    || !event.concerns_module(module_id)
                {
                    return Ok(false);
                }
                match self
                    .enablement
                    .snapshot(event_tenant, Freshness::Cached)
                    .await
                {
                    Ok(snapshot) => Ok(snapshot.holds(module_id)),
                    Err(ApiError::NotFound { .. }) => Ok(false),
                    Err(error) => Err(error),
                }
            }
        }
    }
}
