//! Server time: UTC, truncated to microseconds so that values survive a round
//! trip through either database unchanged (audit hashes depend on it).

use chrono::{DateTime, SubsecRound, Utc};

pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

pub fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}
