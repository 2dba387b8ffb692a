//! The echo baseline: `plinth-bench echo`, a server in a process of its own.

use std::net::SocketAddr;

use plinth_api::{
    registry::v1::module_registry_service_server::ModuleRegistryServiceServer,
    tenant::v1::tenant_service_server::TenantServiceServer,
};
use plinth_platform::config::Config;

/// The bare tonic server the RPCs are compared with: core-server's HTTP/2
/// settings with tonic's own connection writes, no identity, no store.
/// It also answers
/// DiscoverInstances and ResolveModuleConfig with fixed answers of the
/// bench's sizes.
pub fn serve(listen: SocketAddr, module_id: &str) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        let same_answer = super::registry::SameAnswer::new(module_id, &format!("http://{listen}"));
        tonic::transport::Server::builder()
            .max_concurrent_streams(Config::default().max_concurrent_calls_per_connection)
            .add_service(health)
            .add_service(ModuleRegistryServiceServer::new(same_answer))
            .add_service(TenantServiceServer::new(
                super::modules::SameResolution::new(module_id),
            ))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await?;
        Ok(())
    })
}
