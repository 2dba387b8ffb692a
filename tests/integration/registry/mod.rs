//! The module registry: manifests, the catalog and its lifecycle, instances
//! on leases, their health probes, and watches of them.

mod catalog;
mod instances;
mod lifecycle;
mod manifests;
mod probing;
mod watch;

use plinth_api::registry::v1::{
    ModuleDependency, ModuleManifest, RegisterModuleRequest, RegisterModuleResponse,
};
use plinth_tests::Clients;

/// A manifest of `id` at `version` depending (required) on `depends_on`.
pub fn manifest(id: &str, version: &str, depends_on: &[&str]) -> ModuleManifest {
    ModuleManifest {
        id: id.to_owned(),
        version: version.to_owned(),
        display_name: format!("{id} module"),
        description: format!("All about {id}"),
        dependencies: depends_on
            .iter()
            .map(|target| ModuleDependency {
                module_id: (*target).to_owned(),
                version_requirement: ">=1".to_owned(),
                optional: false,
            })
            .collect(),
        ..ModuleManifest::default()
    }
}

pub async fn register(
    clients: &mut Clients,
    manifest: ModuleManifest,
) -> Result<RegisterModuleResponse, tonic::Status> {
    clients
        .registry
        .register_module(RegisterModuleRequest {
            manifest: Some(manifest),
        })
        .await
        .map(tonic::Response::into_inner)
}
