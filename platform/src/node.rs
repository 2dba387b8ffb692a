//! What every Plinth server process starts with, built once: the store, the
//! Redis link, caller identity and the invalidation bus its caches share.

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    clock,
    config::Config,
    identity::{
        api_keys::ApiKeys, layer::Authentication, tenant_states::TenantStates,
        tokens::TokenVerifier,
    },
    invalidation::Invalidator,
    metrics::{GaugeReader, Metrics, SERVED_DESCRIPTOR_SETS},
    rate_limits::RateLimiter,
    server::{self, ServeError, ServiceSet, stack::Callers},
    shared_redis::SharedRedis,
    store::{Store, instances::InstanceStatus},
};

/// A server process's shared parts, before its services are added.
pub struct Node {
    pub config: Config,
    pub store: Store,
    /// Set when `redis_url` is configured; opened once for everything.
    pub redis: Option<Arc<SharedRedis>>,
    pub api_keys: Arc<ApiKeys>,
    pub tokens: Arc<TokenVerifier>,
    /// Caches register here to hear about changes, local and remote.
    pub invalidator: Arc<Invalidator>,
    /// What the process counts, served on the admin port.
    pub metrics: Arc<Metrics>,
    /// Turns true when shutdown begins, so long-lived streams end cleanly
    /// instead of holding the drain open.
    draining: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Connects to Redis (when configured) and builds caller identity, with
    /// its caches registered on the invalidation bus.
    pub async fn start(config: Config, store: Store) -> Result<Node, redis::RedisError> {
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(
                SharedRedis::connect(url, &config.redis_prefix).await?,
            )),
            None => None,
        };
        let invalidator = Invalidator::new(redis.clone());
        let metrics = Arc::new(Metrics::new(SERVED_DESCRIPTOR_SETS));
        let tenant_states = Arc::new(TenantStates::new(store.tenants.clone()));
        let api_keys = Arc::new(ApiKeys::new(
            store.api_keys.clone(),
            tenant_states.clone(),
            metrics.cache("api_keys"),
        ));
        let tokens = Arc::new(TokenVerifier::new(
            config.token_settings(),
            store.clone(),
            metrics.cache("access_tokens"),
        ));
        metrics.read_at_scrape(store_gauges(&metrics, store.clone()));
        invalidator.register(tenant_states);
        invalidator.register(api_keys.clone());
        invalidator.register(tokens.clone());
        Ok(Node {
            config,
            store,
            redis,
            api_keys,
            tokens,
            invalidator,
            metrics,
            draining: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Turns true when the server begins shutting down.
    pub fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Serves `services` on `listener` until `shutdown`, then drains.
    pub async fn serve(
        self,
        services: ServiceSet,
        anonymous_methods: &[&'static str],
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let (api_key_limit, user_limit) = self.config.rate_limits();
        let callers = Callers {
            authentication: Authentication::new(self.api_keys, self.tokens, anonymous_methods),
            rate_limiter: Arc::new(RateLimiter::new(api_key_limit, user_limit, self.redis)),
        };
        let draining = self.draining;
        let shutdown = async move {
            shutdown.await;
            draining.send_replace(true);
        };
        server::serve(
            &self.config,
            self.store,
            callers,
            self.metrics,
            services,
            listener,
            shutdown,
        )
        .await
    }
}

/// Reads the store's gauges: pool connections, the callback outbox, and
/// live leases by status.
fn store_gauges(metrics: &Metrics, store: Store) -> GaugeReader {
    let connections =
        ["idle", "in_use", "max"].map(|state| metrics.gauge("plinth_database_connections", state));
    let callback_backlog = metrics.gauge("plinth_callback_backlog", "outbox");
    let leases: Arc<[_]> = InstanceStatus::ALL
        .iter()
        .map(|&status| {
            (
                status,
                metrics.gauge("plinth_registry_leases", status.as_str()),
            )
        })
        .collect();
    Box::new(move || {
        let now = store.connections();
        for (gauge, value) in connections.iter().zip([now.idle, now.in_use, now.max]) {
            gauge.set(i64::from(value));
        }
        let (store, callback_backlog, leases) =
            (store.clone(), callback_backlog.clone(), leases.clone());
        Box::pin(async move {
            if let Ok(backlog) = store.callbacks.backlog().await {
                callback_backlog.set(backlog);
            }
            if let Ok(live) = store.instances.live_by_status(clock::now()).await {
                for (status, gauge) in leases.iter() {
                    let count = live.iter().find(|(counted, _)| counted == status);
                    gauge.set(count.map_or(0, |(_, count)| *count));
                }
            }
        })
    })
}
