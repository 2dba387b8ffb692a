//! DiscoverInstances, served beside the generated service (see
//! [`Rerouted`]) so that its answer is written from the instances' stored
//! encodings (see [`crate::discovery`]) instead of messages built and
//! encoded per call.

use std::{future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;
use plinth_api::registry::v1::{
    DiscoverInstancesRequest, module_registry_service_server::ModuleRegistryServiceServer,
};
use plinth_platform::{identity, server::Rerouted};
use tonic::server::UnaryService;

use super::{RegistryApi, instances};
use crate::discovery::Directory;

const PATH: &str = "/plinth.registry.v1.ModuleRegistryService/DiscoverInstances";

/// `DiscoverInstancesResponse` on the wire: field 1 repeats `Instance`
/// messages, here already encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedInstances {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub instances: Vec<Bytes>,
}

/// The registry's gRPC service: DiscoverInstances here, every other call
/// by the generated server.
pub type RegistryService =
    Rerouted<ModuleRegistryServiceServer<RegistryApi>, Discover, DiscoverInstancesRequest>;

pub fn registry_service(
    api: RegistryApi,
    directory: Arc<Directory>,
    max_decoding_message_size: usize,
) -> RegistryService {
    Rerouted::new(
        ModuleRegistryServiceServer::new(api).max_decoding_message_size(max_decoding_message_size),
        PATH,
        Discover(directory),
        max_decoding_message_size,
    )
}

#[derive(Clone)]
pub struct Discover(Arc<Directory>);

impl UnaryService<DiscoverInstancesRequest> for Discover {
    type Response = EncodedInstances;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<EncodedInstances>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<DiscoverInstancesRequest>) -> Self::Future {
        let directory = self.0.clone();
        Box::pin(async move {
            let principal = identity::principal(&request)?.clone();
            let discovery = instances::discovery(request.into_inner())?;
            let instances = directory.discover(&principal, discovery).await?;
            Ok(tonic::Response::new(EncodedInstances { instances }))
        })
    }
}
