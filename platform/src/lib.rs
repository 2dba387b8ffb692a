//! What both Plinth servers share: storage, the audit chain, caller identity,
//! configuration, errors and the gRPC server stack.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod certs;
pub mod clock;
pub mod config;
pub mod enablement;
pub mod error;
mod files;
pub mod grants;
pub mod identity;
pub mod invalidation;
pub mod metrics;
pub mod node;
pub mod outlet;
pub mod permission;
pub mod rate_limits;
pub mod request_id;
pub mod server;
pub mod shared_redis;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod versions;

pub use files::write_private;
