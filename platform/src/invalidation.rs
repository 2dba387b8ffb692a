//! Cache invalidation across replicas: a bus that caches register with. A
//! change is applied to this replica's caches at once, then published on a
//! Redis channel that every replica applies. Without Redis (or while it is
//! unreachable) other replicas converge within their cache lifetimes: 30 s
//! for API keys, 2 s for session, user and tenant states and compiled RBAC
//! grants, 60 s for signing keys.

use std::{
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use futures_util::StreamExt;
use uuid::Uuid;

use crate::shared_redis::SharedRedis;

/// Wait between attempts to (re)subscribe.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// An API key was revoked or rotated.
    ApiKey(Uuid),
    /// A session, user or tenant changed state.
    Subjects,
    /// A signing key was rotated.
    SigningKeys,
    /// A tenant's roles or bindings changed, committing this RBAC version.
    Rbac { tenant_id: Uuid, version: i64 },
    /// Module instances changed, up to this revision of their change log.
    Instances { revision: i64 },
    /// A tenant's modules or their configuration changed, committing this
    /// module version.
    Modules { tenant_id: Uuid, version: i64 },
    /// The module catalog changed (a module registered, activated,
    /// deactivated, updated or deleted).
    Catalog,
    /// Audit events committed, up to this position of the feed.
    Audit { position: i64 },
    /// Anything may have changed (messages may have been missed).
    Everything,
}

impl Change {
    fn encode(self) -> String {
        match self {
            Change::ApiKey(id) => format!("api_key:{id}"),
            Change::Subjects => "subjects".to_owned(),
            Change::SigningKeys => "signing_keys".to_owned(),
            Change::Rbac { tenant_id, version } => format!("rbac:{tenant_id}:{version}"),
            Change::Instances { revision } => format!("instances:{revision}"),
            Change::Modules { tenant_id, version } => format!("modules:{tenant_id}:{version}"),
            Change::Catalog => "catalog".to_owned(),
            Change::Audit { position } => format!("audit:{position}"),
            Change::Everything => "everything".to_owned(),
        }
    }

    fn decode(text: &str) -> Option<Change> {
        match text {
            "subjects" => Some(Change::Subjects),
            "signing_keys" => Some(Change::SigningKeys),
            "everything" => Some(Change::Everything),
            "catalog" => Some(Change::Catalog),
            other => {
                if let Some(id) = other.strip_prefix("api_key:") {
                    return Uuid::try_parse(id).ok().map(Change::ApiKey);
                }
                if let Some(revision) = other.strip_prefix("instances:") {
                    let revision = revision.parse().ok()?;
                    return Some(Change::Instances { revision });
                }
                if let Some(position) = other.strip_prefix("audit:") {
                    let position = position.parse().ok()?;
                    return Some(Change::Audit { position });
                }
                let (kind, tenant_and_version) = other.split_once(':')?;
                let (tenant_id, version) = tenant_and_version.split_once(':')?;
                let (tenant_id, version) =
                    (Uuid::try_parse(tenant_id).ok()?, version.parse().ok()?);
                match kind {
                    "rbac" => Some(Change::Rbac { tenant_id, version }),
                    "modules" => Some(Change::Modules { tenant_id, version }),
                    _ => None,
                }
            }
        }
    }
}

/// An in-process cache that forgets what a change makes stale.
pub trait Cache: Send + Sync {
    fn apply(&self, change: Change);
}

/// Applies changes to the registered caches here and tells other replicas.
pub struct Invalidator {
    caches: RwLock<Vec<Arc<dyn Cache>>>,
    redis: Option<Arc<SharedRedis>>,
}

impl Invalidator {
    /// Without Redis, changes stay on this replica.
    pub fn new(redis: Option<Arc<SharedRedis>>) -> Arc<Invalidator> {
        let invalidator = Arc::new(Invalidator {
            caches: RwLock::new(Vec::new()),
            redis,
        });
        if invalidator.redis.is_some() {
            tokio::spawn(subscribe(Arc::downgrade(&invalidator)));
        }
        invalidator
    }

    /// Makes `cache` hear every change, local or from other replicas.
    pub fn register(&self, cache: Arc<dyn Cache>) {
        self.caches
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(cache);
    }

    /// Applies `change` here, then publishes it. A failed publish is logged:
    /// the change itself is already durable, and other replicas converge
    /// within their cache lifetimes.
    pub async fn changed(&self, change: Change) {
        self.apply(change);
        if let Some(redis) = &self.redis {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(redis.key(CHANNEL)).arg(change.encode());
            redis
                .command::<i64>("publish an invalidation", &publish)
                .await;
        }
    }

    fn apply(&self, change: Change) {
        let caches = self
            .caches
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for cache in caches.iter() {
            cache.apply(change);
        }
    }
}

/// The channel, under the deployment's prefix.
const CHANNEL: &str = "invalidate";

/// Applies what other replicas publish, resubscribing after failures; each
/// (re)subscription clears everything, as messages may have been missed.
async fn subscribe(invalidator: Weak<Invalidator>) {
    loop {
        let Some(strong) = invalidator.upgrade() else {
            return;
        };
        let Some(redis) = strong.redis.clone() else {
            return;
        };
        drop(strong);
        match redis.subscriber().get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(redis.key(CHANNEL)).await {
                Ok(()) => {
                    if let Some(invalidator) = invalidator.upgrade() {
                        invalidator.apply(Change::Everything);
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Some(invalidator) = invalidator.upgrade() else {
                            return;
                        };
                        let payload: String = message.get_payload().unwrap_or_default();
                        match Change::decode(&payload) {
                            Some(change) => invalidator.apply(change),
                            None => tracing::warn!(%payload, "ignoring an unknown invalidation"),
                        }
                    }
                    tracing::warn!("invalidation subscription ended; resubscribing");
                }
                Err(error) => tracing::warn!(%error, "could not subscribe to invalidations"),
            },
            Err(error) => tracing::warn!(%error, "could not connect for invalidations"),
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_wire() {
        for change in [
            Change::ApiKey(Uuid::now_v7()),
            Change::Subjects,
            Change::SigningKeys,
            Change::Rbac {
                tenant_id: Uuid::now_v7(),
                version: i64::MAX,
            },
            Change::Instances { revision: 7 },
            Change::Modules {
                tenant_id: Uuid::now_v7(),
                version: 3,
            },
            Change::Catalog,
            Change::Audit { position: 12 },
            Change::Everything,
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode("api_key:nonsense"), None);
        assert_eq!(Change::decode("rbac:nonsense:1"), None);
        assert_eq!(Change::decode("instances:-x"), None);
        assert_eq!(Change::decode(&format!("rbac:{}:x", Uuid::nil())), None);
        assert_eq!(Change::decode(&format!("other:{}:1", Uuid::nil())), None);
    }
}
