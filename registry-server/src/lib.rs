//! The module registry: manifests and versions, running instances, health
//! probing and discovery. Runs inside `core-server` in the embedded default,
//! or on its own as `registry-server` against the same store.
#![forbid(unsafe_code)]

pub mod manifest;

use std::future::Future;

use plinth_client::registry::v1::{
    ManifestViolation, ValidateManifestRequest, ValidateManifestResponse,
    module_registry_service_server::{ModuleRegistryService, ModuleRegistryServiceServer},
};
use plinth_platform::{
    config::Config,
    error::ApiError,
    identity::{self, PrincipalKind},
    node::Node,
    server::{ServeError, ServiceSet},
    store::{Store, StoreError},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The gRPC face of the registry. Calls not built yet answer UNIMPLEMENTED.
pub struct RegistryApi;

#[tonic::async_trait]
impl ModuleRegistryService for RegistryApi {
    async fn validate_manifest(
        &self,
        request: Request<ValidateManifestRequest>,
    ) -> Result<Response<ValidateManifestResponse>, Status> {
        if identity::principal(&request)?.kind() == PrincipalKind::Anonymous {
            return Err(ApiError::Unauthenticated.into());
        }
        let Some(manifest) = &request.get_ref().manifest else {
            return Err(ApiError::invalid_field("manifest", "is required").into());
        };
        let violations: Vec<ManifestViolation> = manifest::violations(manifest)
            .into_iter()
            .map(|violation| ManifestViolation {
                field: violation.field,
                description: violation.description,
            })
            .collect();
        Ok(Response::new(ValidateManifestResponse {
            valid: violations.is_empty(),
            violations,
        }))
    }
}

/// Adds the registry's services to a server.
pub fn add_services(services: &mut ServiceSet, config: &Config) {
    services.add(
        ModuleRegistryServiceServer::new(RegistryApi)
            .max_decoding_message_size(config.max_message_bytes),
    );
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the registry alone on `listener` until `shutdown`, against the
/// store `core-server` migrated.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let store = Store::connect(&config.database_url(), config.database_max_connections).await?;
    let node = Node::start(config, store).await?;
    let mut services = ServiceSet::default();
    add_services(&mut services, &node.config);
    tracing::info!(address = ?listener.local_addr().ok(), "registry-server serving");
    node.serve(services, &[], listener, shutdown).await?;
    Ok(())
}
