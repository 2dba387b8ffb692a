//! The Plinth API for Rust: prost messages and tonic clients for every service
//! (servers too, behind the `server` feature), and the descriptor set that
//! the servers publish through reflection.
//!
//! `tonic` and `prost` are re-exported so that callers build against the very
//! versions the stubs were generated with.
#![forbid(unsafe_code)]

pub use prost;
pub use prost_types;
pub use tonic;

/// Encoded `google.protobuf.FileDescriptorSet` of every Plinth proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plinth_descriptor.bin"));

/// Generated code, one module per proto package.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub mod auth {
        pub mod v1 {
            tonic::include_proto!("plinth.auth.v1");
        }
    }
    pub mod rbac {
        pub mod v1 {
            tonic::include_proto!("plinth.rbac.v1");
        }
    }
    pub mod tenant {
        pub mod v1 {
            tonic::include_proto!("plinth.tenant.v1");
        }
    }
    pub mod registry {
        pub mod v1 {
            tonic::include_proto!("plinth.registry.v1");
        }
    }
    pub mod audit {
        pub mod v1 {
            tonic::include_proto!("plinth.audit.v1");
        }
    }
    pub mod module {
        pub mod v1 {
            tonic::include_proto!("plinth.module.v1");
        }
    }
    pub mod errors {
        pub mod v1 {
            tonic::include_proto!("plinth.errors.v1");
        }
    }
}

pub use proto::*;
