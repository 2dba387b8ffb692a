//! The one Redis connection a server opens, shared by everything that
//! coordinates replicas (cache invalidation, login and signup counters,
//! rate limits).
//!
//! Redis is an accelerator, never a dependency of an answer: every command
//! has a short deadline, and after a failure the callers' local fallbacks are
//! used at once, without trying Redis again, until it answers again.
//!
//! One URL names a single Redis; several, separated by commas, name seed
//! nodes of a Redis Cluster. Every key a caller uses stands alone (scripts
//! and transactions touch one key), so the cluster routes each command to
//! its key's node; invalidations use classic pub/sub, which a cluster
//! broadcasts to every node.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    Cmd, FromRedisValue, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};

/// Longest a command may take before Redis counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

/// How long after a failure commands skip Redis before trying it again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A Redis connection with a deadline on every command and a breaker that
/// skips Redis while it is down.
pub struct SharedRedis {
    /// One per node named, for subscriptions, taken in turn.
    subscribers: Vec<redis::Client>,
    next_subscriber: AtomicUsize,
    connection: Link,
    prefix: String,
    /// Since when Redis is not answering, while it is not.
    down_since: Mutex<Option<Instant>>,
}

/// A connection to one Redis, or to a cluster's nodes.
#[derive(Clone)]
pub enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, command: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(command),
            Link::Cluster(connection) => connection.req_packed_command(command),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}

impl SharedRedis {
    /// Connects to `url` (one Redis, or a cluster's seed nodes separated by
    /// commas); every key and channel starts with `prefix:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<SharedRedis, redis::RedisError> {
        let subscribers = url
            .split(',')
            .map(|node| redis::Client::open(node.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let connection = open_link(&subscribers, COMMAND_TIMEOUT).await?;
        Ok(SharedRedis {
            subscribers,
            next_subscriber: AtomicUsize::new(0),
            connection,
            prefix: prefix.to_owned(),
            down_since: Mutex::new(None),
        })
    }

    /// `prefix:name`, the deployment's own key or channel.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// A connection of the caller's own, whose commands may take up to
    /// `timeout`, outside the breaker: for work whose failures say nothing
    /// of Redis's health for everyone else.
    pub async fn own_connection(&self, timeout: Duration) -> Result<Link, redis::RedisError> {
        open_link(&self.subscribers, timeout).await
    }

    /// For a subscription, which needs a connection of its own: each call
    /// names the next node, so that resubscribing after a node failed tries
    /// another.
    pub fn subscriber(&self) -> &redis::Client {
        let next = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        &self.subscribers[next % self.subscribers.len()]
    }

    /// Runs `command`, or answers `None` at once while Redis is down; `what`
    /// names it in the log.
    pub async fn command<T: FromRedisValue>(
        &self,
        what: &'static str,
        command: &redis::Cmd,
    ) -> Option<T> {
        self.guarded(what, |mut connection| async move {
            command.query_async(&mut connection).await
        })
        .await
    }

    /// Like [`SharedRedis::command`], for a pipeline.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        what: &'static str,
        pipeline: &redis::Pipeline,
    ) -> Option<T> {
        self.guarded(what, |mut connection| async move {
            pipeline.query_async(&mut connection).await
        })
        .await
    }

    /// Like [`SharedRedis::command`], for a script (sent by its hash, and
    /// loaded first when Redis does not know it).
    pub async fn script<T: FromRedisValue>(
        &self,
        what: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        self.guarded(what, |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await
    }

    async fn guarded<T, Query>(
        &self,
        what: &'static str,
        query: impl FnOnce(Link) -> Query,
    ) -> Option<T>
    where
        Query: Future<Output = redis::RedisResult<T>>,
    {
        if self.skipping() {
            return None;
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, query(self.connection.clone())).await {
            Ok(Ok(value)) => {
                if self.down_since().take().is_some() {
                    tracing::info!("redis answers again");
                }
                Some(value)
            }
            Ok(Err(error)) => self.failed(what, &error.to_string()),
            Err(_) => self.failed(what, "timed out"),
        }
    }

    fn down_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Skip Redis for a while after it failed, then try it again.
    fn skipping(&self) -> bool {
        self.down_since()
            .is_some_and(|since| since.elapsed() < RETRY_AFTER)
    }

    fn failed<T>(&self, what: &'static str, error: &str) -> Option<T> {
        let was_down = self.down_since().replace(Instant::now()).is_some();
        if !was_down {
            tracing::warn!(what, error, "redis is not answering; using local fallbacks");
        }
        None
    }
}

/// A connection to the one node of `nodes`, or to the cluster they seed.
async fn open_link(nodes: &[redis::Client], timeout: Duration) -> Result<Link, redis::RedisError> {
    if let [single] = nodes {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        return Ok(Link::Single(
            single.get_connection_manager_with_config(config).await?,
        ));
    }
    let cluster =
        ClusterClient::builder(nodes.iter().map(|node| node.get_connection_info().clone()))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()?;
    Ok(Link::Cluster(cluster.get_async_connection().await?))
}
