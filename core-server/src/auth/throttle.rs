//! Login throttling with growing delays instead of a lockout an attacker
//! could aim at someone: after a few free failures each further attempt
//! waits twice as long as the last, up to a cap, and a success clears it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Longest delay ever asked for.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// Entries kept before stale ones are dropped.
const PRUNE_ABOVE: usize = 100_000;

struct Strikes {
    failures: u32,
    last_failure: Instant,
}

/// Failure counters for one kind of key (accounts, or peers).
pub struct Throttle {
    free_failures: u32,
    strikes: Mutex<HashMap<String, Strikes>>,
}

impl Throttle {
    pub fn new(free_failures: u32) -> Throttle {
        Throttle {
            free_failures,
            strikes: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `key` must wait.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let strikes = self
            .strikes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(entry) = strikes.get(key) else {
            return Ok(());
        };
        let delay = self.delay(entry.failures);
        let waited = entry.last_failure.elapsed();
        if waited < delay {
            Err(delay - waited)
        } else {
            Ok(())
        }
    }

    pub fn fail(&self, key: &str) {
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

    pub fn clear(&self, key: &str) {
        self.strikes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }

    fn delay(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free_failures) {
            None => Duration::ZERO,
            Some(over) => Duration::from_secs(1u64 << over.min(20)).min(MAX_DELAY),
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

    #[test]
    fn a_key_waits_after_its_free_failures_and_success_clears_it() {
        let throttle = Throttle::new(1);
        throttle.fail("a");
        let retry_after = throttle.check("a").unwrap_err();
        assert!(retry_after <= Duration::from_secs(1));
        assert!(throttle.check("b").is_ok(), "other keys are unaffected");
        throttle.clear("a");
        assert!(throttle.check("a").is_ok());
    }
}
