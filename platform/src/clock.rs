//! Server time: UTC, truncated to microseconds so that values survive a round
//! trip through either database unchanged (audit hashes depend on it).

use chrono::{DateTime, SubsecRound, Utc};

pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

pub fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// A protobuf Timestamp, valid for every time the server stores (whose
/// years all lie within 1–9999: inputs that could leave it are refused).
pub fn timestamp(time: DateTime<Utc>) -> plinth_api::prost_types::Timestamp {
    debug_assert!((1..=9999).contains(&chrono::Datelike::year(&time)));
    plinth_api::prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}
