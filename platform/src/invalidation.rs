//! Cache invalidation across replicas. A change is applied to this
//! replica's caches at once, then published on a Redis channel that every
//! replica applies. Without Redis (or while it is unreachable) other replicas
//! converge within their cache lifetimes: 30 s for API keys, 2 s for
//! session, user and tenant states, 60 s for signing keys.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use uuid::Uuid;

use crate::identity::{api_keys::ApiKeys, tokens::TokenVerifier};

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
    /// Anything may have changed (messages may have been missed).
    Everything,
}

impl Change {
    fn encode(self) -> String {
        match self {
            Change::ApiKey(id) => format!("api_key:{id}"),
            Change::Subjects => "subjects".to_owned(),
            Change::SigningKeys => "signing_keys".to_owned(),
            Change::Everything => "everything".to_owned(),
        }
    }

    fn decode(text: &str) -> Option<Change> {
        match text {
            "subjects" => Some(Change::Subjects),
            "signing_keys" => Some(Change::SigningKeys),
            "everything" => Some(Change::Everything),
            other => other
                .strip_prefix("api_key:")
                .and_then(|id| Uuid::try_parse(id).ok())
                .map(Change::ApiKey),
        }
    }
}

struct Redis {
    client: redis::Client,
    publisher: redis::aio::ConnectionManager,
    channel: String,
}

/// Applies changes here and tells the other replicas.
pub struct Invalidator {
    api_keys: Arc<ApiKeys>,
    tokens: Arc<TokenVerifier>,
    redis: Option<Redis>,
}

impl Invalidator {
    /// Without `redis_url`, changes stay on this replica.
    pub async fn connect(
        api_keys: Arc<ApiKeys>,
        tokens: Arc<TokenVerifier>,
        redis_url: Option<&str>,
        prefix: &str,
    ) -> Result<Arc<Invalidator>, redis::RedisError> {
        let redis = match redis_url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url)?;
                let publisher = client.get_connection_manager().await?;
                Some(Redis {
                    client,
                    publisher,
                    channel: format!("{prefix}:invalidate"),
                })
            }
        };
        let invalidator = Arc::new(Invalidator {
            api_keys,
            tokens,
            redis,
        });
        if invalidator.redis.is_some() {
            tokio::spawn(subscribe(Arc::downgrade(&invalidator)));
        }
        Ok(invalidator)
    }

    /// Applies `change` here, then publishes it. A failed publish is logged:
    /// the change itself is already durable, and other replicas converge
    /// within their cache lifetimes.
    pub async fn changed(&self, change: Change) {
        self.apply(change);
        let Some(redis) = &self.redis else {
            return;
        };
        let mut publisher = redis.publisher.clone();
        let published: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&redis.channel)
            .arg(change.encode())
            .query_async(&mut publisher)
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, ?change, "could not publish a cache invalidation");
        }
    }

    fn apply(&self, change: Change) {
        match change {
            Change::ApiKey(id) => self.api_keys.evict(id),
            Change::Subjects => self.tokens.forget_states(),
            Change::SigningKeys => self.tokens.forget_keys(),
            Change::Everything => {
                self.api_keys.evict_all();
                self.tokens.forget_states();
                self.tokens.forget_keys();
            }
        }
    }
}

/// Applies what other replicas publish, resubscribing after failures; each
/// (re)subscription clears everything, as messages may have been missed.
async fn subscribe(invalidator: std::sync::Weak<Invalidator>) {
    loop {
        let Some(strong) = invalidator.upgrade() else {
            return;
        };
        let Some(redis) = &strong.redis else {
            return;
        };
        let (client, channel) = (redis.client.clone(), redis.channel.clone());
        drop(strong);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
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
            Change::Everything,
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode("api_key:nonsense"), None);
    }
}
