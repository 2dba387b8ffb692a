//! The one Redis connection a server opens, shared by everything that
//! coordinates replicas (cache invalidation, login and signup counters,
//! rate limits).
//!
//! Redis is an accelerator, never a dependency of an answer: every command
//! has a short deadline, and after a failure the callers' local fallbacks are
//! used at once, without trying Redis again, until it answers again.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use redis::{
    FromRedisValue,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

/// Longest a command may take before Redis counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

/// How long after a failure commands skip Redis before trying it again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A Redis connection with a deadline on every command and a breaker that
/// skips Redis while it is down.
pub struct SharedRedis {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    /// Since when Redis is not answering, while it is not.
    down_since: Mutex<Option<Instant>>,
}

impl SharedRedis {
    /// Connects to `url`; every key and channel starts with `prefix:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<SharedRedis, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(SharedRedis {
            client,
            connection,
            prefix: prefix.to_owned(),
            down_since: Mutex::new(None),
        })
    }

    /// `prefix:name`, the deployment's own key or channel.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// For subscriptions, which need a connection of their own.
    pub fn client(&self) -> &redis::Client {
        &self.client
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
        query: impl FnOnce(ConnectionManager) -> Query,
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
