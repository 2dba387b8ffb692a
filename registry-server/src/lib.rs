//! The module registry: manifests and versions, running instances, health
//! probing and discovery. Runs inside `core-server` in the embedded default,
//! or on its own as `registry-server` against the same store.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod connections;
mod discovery;
mod feed;
mod grpc;
pub mod instances;
pub mod manifest;
mod probing;
mod watch;

use std::{future::Future, sync::Arc};

use plinth_platform::{
    access::Access,
    config::Config,
    enablement::Enablement,
    grants::Grants,
    node::Node,
    server::{ServeError, ServiceSet},
    store::{Store, StoreError},
};
use tokio::net::TcpListener;

/// Adds the registry's services to a server, authorizing through `access`
/// (the core's own when the registry is mounted in `core-server`).
pub fn add_services(services: &mut ServiceSet, node: &Node, access: Access) {
    let catalog = Arc::new(catalog::Catalog::new(
        node.store.clone(),
        access,
        node.invalidator.clone(),
    ));
    let feed = feed::Feed::start(node.store.clone());
    node.invalidator.register(feed.clone());
    let instances =
        instances::Instances::start(catalog.clone(), feed.clone(), node.invalidator.clone());
    probing::Prober::start(instances.clone(), &node.config);
    let directory = Arc::new(discovery::Directory::new(
        catalog.clone(),
        feed.clone(),
        grpc::encoded_instance,
    ));
    let api = grpc::RegistryApi {
        watches: watch::Watches::new(feed, catalog.clone(), node.draining()),
        catalog,
        instances,
    };
    services.add(grpc::registry_service(
        api,
        directory,
        node.config.max_message_bytes,
    ));
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
    let grants = Grants::new(node.store.clone(), node.metrics.cache("rbac_grants"));
    node.invalidator.register(grants.clone());
    let enablement = Enablement::new(node.store.clone(), node.metrics.cache("enablement"));
    node.invalidator.register(enablement.clone());
    let access = Access::new(node.store.clone(), grants, enablement);
    let mut services = ServiceSet::default();
    add_services(&mut services, &node, access);
    tracing::info!(address = ?listener.local_addr().ok(), "registry-server serving");
    node.serve(services, &[], listener, shutdown).await?;
    Ok(())
}
