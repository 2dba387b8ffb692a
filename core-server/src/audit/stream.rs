//! The event stream: every committed audit event appended to the Redis
//! stream of its chain, in chain order, at least once.
//!
//! The store's feed is the outbox: a durable cursor marks how far along it
//! the stream has been published, so events committed before a crash are
//! published after the restart. Each entry's id is `<sequence>-0`, and a
//! script adds only ids above the stream's last, so replicas publishing the
//! same events at once (or a repeat after a crash between publishing and
//! moving the cursor) add nothing twice and never out of order.

use std::{sync::Arc, time::Duration};

use plinth_platform::{
    audit::{AuditEvent, FeedCursor},
    shared_redis::{Link, SharedRedis},
    store::Store,
};
use tokio::sync::watch;

/// Events read from the store at once.
const EVENTS_PER_READ: i64 = 500;
/// How often the publisher looks for unpublished events without news.
const POLL: Duration = Duration::from_secs(1);
/// Longest a publishing script may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the publisher waits after a failure.
const BACKOFF: Duration = Duration::from_secs(1);
/// Entries a chain's stream keeps (approximately: Redis trims whole nodes).
pub const STREAM_LENGTH: u64 = 100_000;

/// Adds the entries above the stream's last id; an id at or below it was
/// published already. KEYS[1]: the stream; ARGV: the length to keep, then
/// (id, action, event) for each entry. Answers how many were added.
const PUBLISH: &str = r"
local added = 0
for i = 2, #ARGV, 3 do
  local reply = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i],
    'action', ARGV[i + 1], 'event', ARGV[i + 2])
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'equal or smaller', 1, true) then
      return reply
    end
  else
    added = added + 1
  end
end
return added
";

/// The publisher of one replica.
pub struct EventStream;

impl EventStream {
    /// Publishes until the server drains: after each local commit, and
    /// every second for what other replicas left unpublished.
    pub fn start(store: Store, redis: Arc<SharedRedis>, mut draining: watch::Receiver<bool>) {
        tokio::spawn(async move {
            let mut news = store.audit_news();
            let mut connection = None;
            loop {
                let delay = match publish_pending(&store, &redis, &mut connection).await {
                    Ok(()) => POLL,
                    Err(error) => {
                        tracing::warn!(%error, "publishing audit events to Redis");
                        BACKOFF
                    }
                };
                tokio::select! {
                    heard = news.changed() => if heard.is_err() { return },
                    () = tokio::time::sleep(delay) => {}
                    _ = draining.wait_for(|draining| *draining) => return,
                }
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("store: {0}")]
    Store(#[from] plinth_platform::store::StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    TimedOut,
}

/// Publishes everything after the stream cursor, moving it along. The
/// publisher keeps a connection of its own: a chain's stream refusing an
/// entry says nothing of Redis's health for everyone else.
async fn publish_pending(
    store: &Store,
    redis: &SharedRedis,
    connection: &mut Option<Link>,
) -> Result<(), PublishError> {
    let mut cursor = store.audit.stream_cursor().await?;
    loop {
        let events = store
            .audit
            .feed_after(cursor, None, EVENTS_PER_READ)
            .await?;
        let Some((last, _)) = events.last() else {
            return Ok(());
        };
        let last = *last;
        let complete = (events.len() as i64) < EVENTS_PER_READ;
        let connection = match connection {
            Some(connection) => connection,
            None => connection.insert(redis.own_connection(COMMAND_TIMEOUT).await?),
        };
        for run in events.chunk_by(|(_, a), (_, b)| a.chain_id == b.chain_id) {
            publish_run(redis, connection, run).await?;
        }
        store.audit.advance_stream_cursor(last).await?;
        cursor = last;
        if complete {
            return Ok(());
        }
    }
}

/// Publishes consecutive events of one chain.
async fn publish_run(
    redis: &SharedRedis,
    connection: &mut Link,
    run: &[(FeedCursor, AuditEvent)],
) -> Result<(), PublishError> {
    let Some((_, first)) = run.first() else {
        return Ok(());
    };
    let mut script = redis::cmd("EVAL");
    script
        .arg(PUBLISH)
        .arg(1)
        .arg(redis.key(&format!("audit:{}", first.chain_id)))
        .arg(STREAM_LENGTH);
    for (_, event) in run {
        script
            .arg(format!("{}-0", event.sequence))
            .arg(&event.action)
            .arg(event.export_line());
    }
    tokio::time::timeout(COMMAND_TIMEOUT, script.query_async::<i64>(connection))
        .await
        .map_err(|_| PublishError::TimedOut)??;
    Ok(())
}
