//! Login throttling with growing delays instead of a lockout an attacker
//! could aim at someone: after a few free failures each further attempt
//! waits twice as long as the last, up to a cap, and a success clears it.
//!
//! Counters live in process and, when configured, in Redis too, so that all
//! replicas count together; while Redis does not answer, the local counters
//! apply alone, at once (see [`SharedRedis`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use plinth_platform::{config::Config, shared_redis::SharedRedis};
use sha2::{Digest, Sha256};

/// Longest delay ever asked for.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// Entries kept before stale ones are dropped.
const PRUNE_ABOVE: usize = 100_000;

struct Strikes {
    failures: u32,
    last_failure: Instant,
}

/// Shared counters in Redis: a hash per key with `failures` and `last_ms`.
struct Shared {
    redis: Arc<SharedRedis>,
    scope: &'static str,
}

impl Shared {
    /// Keys hold a hash of the account, not the email itself.
    fn key(&self, key: &str) -> String {
        self.redis.key(&format!(
            "{}:{}",
            self.scope,
            hex::encode(Sha256::digest(key.as_bytes()))
        ))
    }
}

/// Counters for one kind of key (accounts, peers): each counted attempt
/// beyond the free ones makes the next one wait longer.
pub struct Throttle {
    free_failures: u32,
    strikes: Mutex<HashMap<String, Strikes>>,
    shared: Option<Shared>,
}

impl Throttle {
    /// Counters of this replica only.
    pub fn new(free_failures: u32) -> Throttle {
        Throttle {
            free_failures,
            strikes: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Shared through Redis (under the deployment's prefix and `scope`) when
    /// a connection is given, local otherwise.
    pub fn configured(
        free_failures: u32,
        scope: &'static str,
        redis: Option<&Arc<SharedRedis>>,
    ) -> Throttle {
        Throttle {
            shared: redis.map(|redis| Shared {
                redis: redis.clone(),
                scope,
            }),
            ..Throttle::new(free_failures)
        }
    }

    /// `Err(retry_after)` while `key` must wait.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        let wait = self.local_wait(key).max(self.shared_wait(key).await);
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub async fn count(&self, key: &str) {
        self.count_locally(key);
        let Some(shared) = &self.shared else {
            return;
        };
        let redis_key = shared.key(key);
        let mut count = redis::pipe();
        count
            .atomic()
            .cmd("HINCRBY")
            .arg(&redis_key)
            .arg("failures")
            .arg(1)
            .ignore()
            .cmd("HSET")
            .arg(&redis_key)
            .arg("last_ms")
            .arg(chrono::Utc::now().timestamp_millis())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&redis_key)
            .arg(2 * MAX_DELAY.as_millis() as u64)
            .ignore();
        shared
            .redis
            .pipeline::<()>("count a failed attempt", &count)
            .await;
    }

    pub async fn clear(&self, key: &str) {
        self.strikes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
        let Some(shared) = &self.shared else {
            return;
        };
        let mut delete = redis::cmd("DEL");
        delete.arg(shared.key(key));
        shared
            .redis
            .command::<()>("clear failed attempts", &delete)
            .await;
    }

    fn local_wait(&self, key: &str) -> Duration {
        let strikes = self
            .strikes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        strikes.get(key).map_or(Duration::ZERO, |entry| {
            self.delay(entry.failures)
                .saturating_sub(entry.last_failure.elapsed())
        })
    }

    async fn shared_wait(&self, key: &str) -> Duration {
        let Some(shared) = &self.shared else {
            return Duration::ZERO;
        };
        let mut read = redis::cmd("HMGET");
        read.arg(shared.key(key)).arg("failures").arg("last_ms");
        match shared
            .redis
            .command::<(Option<u32>, Option<i64>)>("read failed attempts", &read)
            .await
        {
            Some((Some(failures), Some(last_ms))) => {
                let waited = (chrono::Utc::now().timestamp_millis() - last_ms).max(0) as u64;
                self.delay(failures)
                    .saturating_sub(Duration::from_millis(waited))
            }
            _ => Duration::ZERO,
        }
    }

    fn count_locally(&self, key: &str) {
        let mut strikes = self
            .strikes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if strikes.len() > PRUNE_ABOVE {
            strikes.retain(|_, entry| entry.last_failure.elapsed() < MAX_DELAY);
        }
        let entry = strikes.entry(key.to_owned()).or_insert(Strikes {
            failures: 0,
            last_failure: Instant::now(),
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = Instant::now();
    }

    fn delay(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free_failures) {
            None => Duration::ZERO,
            Some(over) => Duration::from_secs(1u64 << over.min(20)).min(MAX_DELAY),
        }
    }
}

/// The two throttles a login passes: per account and per peer address.
pub struct LoginThrottles {
    pub accounts: Throttle,
    pub peers: Throttle,
}

impl LoginThrottles {
    pub fn new(config: &Config, redis: Option<&Arc<SharedRedis>>) -> LoginThrottles {
        LoginThrottles {
            accounts: Throttle::configured(
                config.login_free_failures_per_account,
                "login:account",
                redis,
            ),
            peers: Throttle::configured(config.login_free_failures_per_peer, "login:peer", redis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_pass_then_delays_grow() {
        let throttle = Throttle::new(2);
        assert_eq!(throttle.delay(1), Duration::ZERO);
        assert_eq!(throttle.delay(2), Duration::from_secs(1));
        assert_eq!(throttle.delay(3), Duration::from_secs(2));
        assert_eq!(throttle.delay(6), Duration::from_secs(16));
        assert_eq!(throttle.delay(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn a_key_waits_after_its_free_failures_and_success_clears_it() {
        let throttle = Throttle::new(1);
        throttle.count("a").await;
        let retry_after = throttle.check("a").await.unwrap_err();
        assert!(retry_after <= Duration::from_secs(1));
        assert!(
            throttle.check("b").await.is_ok(),
            "other keys are unaffected"
        );
        throttle.clear("a").await;
        assert!(throttle.check("a").await.is_ok());
    }
}
