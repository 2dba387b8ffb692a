//! Per-tenant version counters (RBAC, modules): the newest version this
//! replica knows of, learned from its own writes, other replicas' messages
//! and its store reads; the consistency tokens that hand a version to
//! callers; and how fresh an answer must be against them.

use std::{collections::HashMap, sync::RwLock, time::Duration};

use foldhash::fast::RandomState;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::ApiError;

/// Which counter a token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A tenant's roles and bindings.
    Rbac,
    /// A tenant's modules and their configuration.
    Modules,
}

impl Counter {
    /// Keeps tokens of one counter from passing for the other's.
    fn prefix(self) -> &'static str {
        match self {
            Counter::Rbac => "",
            Counter::Modules => "m",
        }
    }
}

/// A tenant's version of a counter, as handed to callers: opaque to them,
/// checked against the tenant of the request that passes it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionToken {
    pub counter: Counter,
    pub tenant_id: Uuid,
    pub version: i64,
}

/// Longest token accepted.
pub const MAX_TOKEN: usize = 64;

impl VersionToken {
    pub fn rbac(tenant_id: Uuid, version: i64) -> VersionToken {
        VersionToken {
            counter: Counter::Rbac,
            tenant_id,
            version,
        }
    }

    pub fn modules(tenant_id: Uuid, version: i64) -> VersionToken {
        VersionToken {
            counter: Counter::Modules,
            tenant_id,
            version,
        }
    }

    pub fn encode(self) -> String {
        format!(
            "{}{}.{}",
            self.counter.prefix(),
            self.tenant_id.simple(),
            self.version
        )
    }

    /// `None` for anything [`VersionToken::encode`] did not make for
    /// `counter`.
    pub fn parse(counter: Counter, text: &str) -> Option<VersionToken> {
        let text = (text.len() <= MAX_TOKEN).then_some(text)?;
        let (tenant_id, version) = text.strip_prefix(counter.prefix())?.split_once('.')?;
        let tenant_id = (tenant_id.len() == 32)
            .then(|| Uuid::try_parse(tenant_id).ok())
            .flatten()?;
        let version: i64 = version.parse().ok().filter(|version| *version >= 0)?;
        Some(VersionToken {
            counter,
            tenant_id,
            version,
        })
    }
}

/// How fresh an answer must be, as a request asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// The replica's cached view.
    #[default]
    Cached,
    /// At least what this token reflects.
    AtLeastAsFresh(VersionToken),
    /// The store's latest version.
    Full,
}

impl Consistency {
    /// For a request about `tenant_id`: a token of another tenant is the
    /// caller's mistake (`field` names it).
    pub fn freshness(self, tenant_id: Uuid, field: &str) -> Result<Freshness, ApiError> {
        Ok(match self {
            Consistency::Cached => Freshness::Cached,
            Consistency::Full => Freshness::Latest,
            Consistency::AtLeastAsFresh(token) if token.tenant_id == tenant_id => {
                Freshness::AtLeast(token.version)
            }
            Consistency::AtLeastAsFresh(_) => {
                return Err(ApiError::invalid_field(
                    field,
                    "is a token of another tenant",
                ));
            }
        })
    }
}

/// How fresh an answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Whatever this replica has cached.
    Cached,
    /// At least this version of the tenant's counter.
    AtLeast(i64),
    /// The store's latest version.
    Latest,
}

/// How long a request that names a newer version than this replica knows
/// waits for the news before reading the store.
pub const CATCH_UP_WAIT: Duration = Duration::from_millis(100);

/// Known versions by tenant, never going back.
#[derive(Default)]
pub struct KnownVersions {
    versions: RwLock<HashMap<Uuid, i64, RandomState>>,
    news: Notify,
}

impl KnownVersions {
    /// The newest version of the tenant known here (0 before any).
    pub fn known(&self, tenant_id: Uuid) -> i64 {
        self.versions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&tenant_id)
            .copied()
            .unwrap_or(0)
    }

    /// Records news of a version (never going back).
    pub fn learn(&self, tenant_id: Uuid, version: i64) {
        let mut versions = self
            .versions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = versions.entry(tenant_id).or_insert(version);
        if *entry < version {
            *entry = version;
        }
        drop(versions);
        self.news.notify_waiters();
    }

    /// Waits up to [`CATCH_UP_WAIT`] for news of `version`.
    pub async fn catch_up(&self, tenant_id: Uuid, version: i64) {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let news = self.news.notified();
            if self.known(tenant_id) >= version {
                return;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_anything_else() {
        let tenant_id = Uuid::now_v7();
        for counter in [Counter::Rbac, Counter::Modules] {
            let token = VersionToken {
                counter,
                tenant_id,
                version: 42,
            };
            assert_eq!(VersionToken::parse(counter, &token.encode()), Some(token));
        }
        let simple = tenant_id.simple();
        for (counter, bad) in [
            (Counter::Rbac, String::new()),
            (Counter::Rbac, ".".to_owned()),
            (Counter::Rbac, "42".to_owned()),
            (Counter::Rbac, format!("{simple}.-1")),
            (Counter::Rbac, format!("{simple}.x")),
            (Counter::Rbac, format!("{simple}.99999999999999999999")),
            (Counter::Rbac, format!("{tenant_id}.1")),
            (Counter::Rbac, format!("m{simple}.1")),
            (Counter::Modules, format!("{simple}.1")),
            (Counter::Modules, "m.".to_owned()),
            (Counter::Modules, format!("m{simple}.1{}", "0".repeat(64))),
        ] {
            assert_eq!(VersionToken::parse(counter, &bad), None, "{bad}");
        }
    }
}
