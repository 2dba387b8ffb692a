//! The configuration resolver: each module's defaults (from the manifest of
//! the version a tenant runs), the tenant's layer, then a company's, merged
//! with JSON Merge Patch. Writes validate every scope they affect and seal
//! secret values; reads are served from a cache keyed by the tenant's
//! module version.

pub mod document;
mod layers;
mod resolve;
pub mod schema;
pub mod secrets;
mod watch;

use std::sync::Arc;

use plinth_platform::{
    access::Access, enablement::Enablement, invalidation::Invalidator, metrics::CacheCounters,
    store::Store,
};
use sha2::{Digest, Sha256};

pub use layers::{LayerAddress, LayerChange, LayerWrite, write_layer};
pub use resolve::{Resolution, Resolutions, ResolveRequest, Source, resolve_now};
pub use watch::{ConfigWatches, WatchEvent, WatchRequest};

use crate::{
    auth::signing::KeyEncryptionKey,
    enablement::{ModuleParts, catalog::Catalog},
};

/// The configuration domain.
#[derive(Clone)]
pub struct ModuleConfigs {
    store: Store,
    access: Access,
    catalog: Arc<Catalog>,
    enablement: Arc<Enablement>,
    encryption: Arc<KeyEncryptionKey>,
    invalidator: Arc<Invalidator>,
    resolutions: Arc<Resolutions>,
}

impl ModuleConfigs {
    /// Its cache of resolutions hears of catalog changes.
    pub fn new(parts: &ModuleParts, counters: CacheCounters) -> ModuleConfigs {
        let parts = parts.clone();
        let resolutions = Resolutions::new(counters);
        parts.invalidator.register(resolutions.clone());
        ModuleConfigs {
            resolutions,
            store: parts.store,
            access: parts.access,
            catalog: parts.catalog,
            enablement: parts.cache,
            encryption: parts.encryption,
            invalidator: parts.invalidator,
        }
    }
}

/// The etag of a document's text: the same text, the same etag.
pub fn etag_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}
