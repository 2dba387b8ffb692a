//! The module registry: manifests and versions, running instances, health
//! probing and discovery. Runs inside `core-server` in the embedded default,
//! or on its own as `registry-server` against the same store.
#![forbid(unsafe_code)]

use plinth_client::registry::v1::module_registry_service_server::{
    ModuleRegistryService, ModuleRegistryServiceServer,
};
use plinth_platform::{config::Config, server::ServiceSet};

/// The gRPC face of the registry. Its calls are built by the registry issue;
/// until then each answers UNIMPLEMENTED.
pub struct RegistryApi;

impl ModuleRegistryService for RegistryApi {}

/// Adds the registry's services to a server.
pub fn add_services(services: &mut ServiceSet, config: &Config) {
    services.add(
        ModuleRegistryServiceServer::new(RegistryApi)
            .max_decoding_message_size(config.max_message_bytes),
    );
}
