//! Per-API-key and per-user rate limits, by GCRA (the generic cell rate
//! algorithm: one "theoretical arrival time" per subject, no counters to
//! reset). A limit is a steady rate of calls per second and a burst: how
//! many calls may come at once after a quiet spell.
//!
//! With Redis, replicas share each subject's budget: a replica leases a few
//! calls at a time from the subject's GCRA state in Redis (one script call)
//! and spends them locally, so a busy key costs a Redis round trip per lease,
//! not per call. A subject can therefore exceed its limit by at most one
//! lease per replica. While Redis does not answer, each replica applies the
//! limit on its own (see [`SharedRedis`]), so a deployment of N replicas
//! admits up to N times the limit until Redis returns.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::{error::ApiError, identity::Principal, shared_redis::SharedRedis};

/// A steady rate and a burst, both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub calls_per_second: u32,
    pub burst: u32,
}

/// The largest rate or burst a limit may name.
pub const MAX_RATE: u32 = 1_000_000;

impl RateLimit {
    /// The time one call uses up of the budget.
    fn emission_interval(self) -> Duration {
        Duration::from_secs(1) / self.calls_per_second.max(1)
    }

    /// Calls leased from Redis at once: what the rate allows in 20 ms, so
    /// that a busy subject asks Redis at most about 50 times a second, and
    /// never more than a quarter of the burst.
    fn lease_size(self) -> u32 {
        (self.calls_per_second / 50).clamp(1, (self.burst / 4).max(1))
    }
}

/// Whose budget a call spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    ApiKey(Uuid),
    User(Uuid),
}

impl Subject {
    /// The `scope` of a refusal's `RATE_LIMITED` metadata.
    fn scope(self) -> &'static str {
        match self {
            Subject::ApiKey(_) => "api_key",
            Subject::User(_) => "user",
        }
    }

    fn redis_name(self) -> String {
        match self {
            Subject::ApiKey(id) => format!("rate:key:{}", id.simple()),
            Subject::User(id) => format!("rate:user:{}", id.simple()),
        }
    }
}

/// Takes up to `ARGV[3]` calls from the GCRA state at `KEYS[1]`, with an
/// emission interval of `ARGV[1]` µs and a burst of `ARGV[2]`, on Redis's
/// clock (replicas' clocks may differ). Answers `{granted, retry_after_µs}`.
const LEASE_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local available = math.floor((now + window - tat) / interval)
if available < 1 then
  return {0, tat + interval - window - now}
end
local granted = math.min(available, tonumber(ARGV[3]))
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {granted, 0}
";

/// Leased calls are spent within this long or dropped, so a lease taken
/// long ago cannot add to a fresh burst.
const LEASE_LIFETIME: Duration = Duration::from_secs(1);

/// Subjects kept before idle ones (whose budget is full again) are dropped.
const PRUNE_ABOVE: usize = 100_000;

/// One subject's state on this replica.
struct Bucket {
    /// Local GCRA state: the theoretical arrival time of the next call.
    arrival: Instant,
    /// Calls leased from Redis, not yet spent, and until when they are good.
    leased: u32,
    lease_until: Instant,
    /// Redis refused the subject until then: refuse without asking again.
    refused_until: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            arrival: now,
            leased: 0,
            lease_until: now,
            refused_until: now,
        }
    }

    /// GCRA on this replica alone: admits, or says how long to wait.
    fn take_locally(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let interval = limit.emission_interval();
        let window = interval * limit.burst;
        let arrival = self.arrival.max(now);
        let allowed_from = arrival.checked_sub(window - interval).unwrap_or(now);
        if allowed_from > now {
            return Err(allowed_from - now);
        }
        self.arrival = arrival + interval;
        Ok(())
    }

    /// Idle: its budget is full again, as a new bucket's would be.
    fn is_idle(&self, now: Instant) -> bool {
        self.arrival <= now && self.lease_until <= now && self.refused_until <= now
    }
}

/// What this replica knows without asking Redis.
enum Known {
    Admitted,
    Refused(Duration),
    AskRedis,
}

/// The limits of the calls of one process.
pub struct RateLimiter {
    api_key_default: RateLimit,
    user: RateLimit,
    redis: Option<Arc<SharedRedis>>,
    lease_script: redis::Script,
    buckets: Mutex<HashMap<Subject, Bucket>>,
}

impl RateLimiter {
    /// Keys without a limit of their own get `api_key_default`; every user
    /// gets `user`. Shared through `redis` when given.
    pub fn new(
        api_key_default: RateLimit,
        user: RateLimit,
        redis: Option<Arc<SharedRedis>>,
    ) -> RateLimiter {
        RateLimiter {
            api_key_default,
            user,
            redis,
            lease_script: redis::Script::new(LEASE_SCRIPT),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one call of the principal's key and of its user (a module
    /// acting for a user spends both), or refuses it with `RATE_LIMITED`
    /// and when to retry. Anonymous calls have no budget here.
    pub async fn admit(&self, principal: &Principal) -> Result<(), ApiError> {
        if let Some(key) = &principal.api_key {
            let limit = key.rate_limit.unwrap_or(self.api_key_default);
            self.spend(Subject::ApiKey(key.key_id), limit).await?;
        }
        if let Some(user) = &principal.user {
            self.spend(Subject::User(user.user_id), self.user).await?;
        }
        Ok(())
    }

    async fn spend(&self, subject: Subject, limit: RateLimit) -> Result<(), ApiError> {
        let refused = |retry_after| ApiError::RateLimited {
            scope: subject.scope(),
            retry_after,
        };
        let Some(redis) = &self.redis else {
            return self
                .with_bucket(subject, |bucket, now| bucket.take_locally(limit, now))
                .map_err(refused);
        };
        let known = self.with_bucket(subject, |bucket, now| {
            if bucket.refused_until > now {
                Known::Refused(bucket.refused_until - now)
            } else if bucket.leased > 0 && bucket.lease_until > now {
                bucket.leased -= 1;
                Known::Admitted
            } else {
                Known::AskRedis
            }
        });
        match known {
            Known::Admitted => return Ok(()),
            Known::Refused(retry_after) => return Err(refused(retry_after)),
            Known::AskRedis => {}
        }
        let mut lease = self.lease_script.key(redis.key(&subject.redis_name()));
        lease
            .arg(limit.emission_interval().as_micros().max(1) as u64)
            .arg(limit.burst)
            .arg(limit.lease_size());
        let answer: Option<(u32, u64)> = redis.script("lease rate limited calls", &lease).await;
        self.with_bucket(subject, |bucket, now| match answer {
            Some((0, retry_after_micros)) => {
                let retry_after = Duration::from_micros(retry_after_micros.max(1));
                bucket.refused_until = now + retry_after;
                Err(retry_after)
            }
            Some((granted, _)) => {
                if bucket.lease_until <= now {
                    bucket.leased = 0;
                }
                bucket.leased = bucket.leased.saturating_add(granted - 1);
                bucket.lease_until = now + LEASE_LIFETIME;
                Ok(())
            }
            // Redis is down: this replica's own GCRA decides.
            None => bucket.take_locally(limit, now),
        })
        .map_err(refused)
    }

    fn with_bucket<T>(&self, subject: Subject, act: impl FnOnce(&mut Bucket, Instant) -> T) -> T {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| !bucket.is_idle(now));
        }
        act(
            buckets.entry(subject).or_insert_with(|| Bucket::new(now)),
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_A_SECOND: RateLimit = RateLimit {
        calls_per_second: 10,
        burst: 3,
    };

    #[test]
    fn a_burst_is_admitted_and_the_next_call_waits_one_interval() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        for _ in 0..3 {
            assert_eq!(bucket.take_locally(TEN_A_SECOND, start), Ok(()));
        }
        assert_eq!(
            bucket.take_locally(TEN_A_SECOND, start),
            Err(Duration::from_millis(100))
        );
        let later = start + Duration::from_millis(100);
        assert_eq!(bucket.take_locally(TEN_A_SECOND, later), Ok(()));
        assert!(bucket.take_locally(TEN_A_SECOND, later).is_err());
    }

    #[test]
    fn a_quiet_spell_refills_the_burst_but_no_more() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        let later = start + Duration::from_secs(60);
        let admitted = (0..10)
            .filter(|_| bucket.take_locally(TEN_A_SECOND, later).is_ok())
            .count();
        assert_eq!(admitted, 3);
        assert!(!bucket.is_idle(later));
        assert!(bucket.is_idle(later + Duration::from_millis(300)));
    }

    #[test]
    fn leases_follow_the_rate_within_a_quarter_of_the_burst() {
        let lease = |calls_per_second, burst| {
            RateLimit {
                calls_per_second,
                burst,
            }
            .lease_size()
        };
        assert_eq!(lease(10, 3), 1);
        assert_eq!(lease(10_000, 20_000), 200);
        assert_eq!(lease(10_000, 100), 25);
        assert_eq!(lease(MAX_RATE, MAX_RATE), 20_000);
    }
}
