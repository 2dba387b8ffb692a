//! The Plinth API contract for Rust: prost messages and tonic clients and
//! servers for every service, the descriptor set that the servers publish
//! through reflection, and the access-token format ([`token`]) that servers
//! and modules verify with the same code.
//!
//! `tonic` and `prost` are re-exported so that callers build against the very
//! versions the stubs were generated with.
#![forbid(unsafe_code)]

pub use prost;
pub use prost_types;
pub use tonic;

pub mod token;

/// Encoded `google.protobuf.FileDescriptorSet` of every Plinth proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plinth_descriptor.bin"));

/// `pub mod <package> { pub mod v1 { … } }` for each `plinth.<package>.v1`.
macro_rules! packages {
    ($($package:ident),+) => {
        $(pub mod $package {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/plinth.", stringify!($package), ".v1.rs"));
            }
        })+
    };
}

/// Generated code, one module per proto package.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    packages!(auth, rbac, tenant, registry, audit, module, errors);
}

pub use proto::*;
