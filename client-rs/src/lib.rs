//! The Rust SDK for Plinth modules.
//!
//! - [`Client`]: one connection to the core with the module's API key and
//!   mTLS identity, per-call deadlines, retries with backoff for idempotent
//!   calls the core answered UNAVAILABLE, request ids, the raw stubs of
//!   every service, and typed helpers ([`Client::require`],
//!   [`Client::resolve_config`], [`Client::record_events`]).
//! - [`Module`]: serves the module's gRPC services with gRPC health and the
//!   [`Lifecycle`] callbacks, registers the instance, heartbeats, and
//!   drains on shutdown.
//! - [`Authenticator`]: a tower layer that authenticates bearer tokens
//!   locally against the core's published keys and puts the [`User`] in
//!   the request.
//! - `testing` (feature `testing`): a real embedded core, in-process, for
//!   a module's own tests.
//!
//! The generated API (`plinth_client::rbac::v1`, …) is re-exported from
//! `plinth-api`, with the `tonic` and `prost` it was generated with.
#![forbid(unsafe_code)]

mod channel;
mod checks;
mod client;
mod lifecycle;
mod runtime;
#[cfg(feature = "testing")]
pub mod testing;
mod user;

pub use channel::{Idempotent, PlinthChannel, RetryPolicy};
pub use checks::CheckCacheSettings;
pub use client::{Client, ClientBuilder, ClientError, Tls};
pub use lifecycle::{Lifecycle, Veto};
pub use plinth_api::*;
pub use runtime::{Module, ModuleError, shutdown_signal};
pub use user::{Authenticate, AuthenticateLayer, Authenticator, Refusal, User};
