//! DiscoverInstances, served beside the generated service so that its
//! answer is written from the instances' stored encodings (see
//! [`crate::discovery`]) instead of messages built and encoded per call.
//! [`EncodedInstances`] has the wire form of `DiscoverInstancesResponse`:
//! clients decode it as that message.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use plinth_client::registry::v1::{
    DiscoverInstancesRequest, module_registry_service_server::ModuleRegistryServiceServer,
};
use plinth_platform::identity;
use tonic::{
    body::Body,
    codegen::http,
    server::{Grpc, NamedService, UnaryService},
};

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
#[derive(Clone)]
pub struct RegistryService {
    generated: ModuleRegistryServiceServer<RegistryApi>,
    discovery: Discover,
    max_decoding_message_size: usize,
}

impl RegistryService {
    pub fn new(
        api: RegistryApi,
        directory: Arc<Directory>,
        max_decoding_message_size: usize,
    ) -> Self {
        RegistryService {
            generated: ModuleRegistryServiceServer::new(api)
                .max_decoding_message_size(max_decoding_message_size),
            discovery: Discover(directory),
            max_decoding_message_size,
        }
    }
}

impl NamedService for RegistryService {
    const NAME: &'static str = <ModuleRegistryServiceServer<RegistryApi> as NamedService>::NAME;
}

impl tower::Service<http::Request<Body>> for RegistryService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<http::Request<Body>>::poll_ready(&mut self.generated, context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != PATH {
            return Box::pin(self.generated.call(request));
        }
        let discovery = self.discovery.clone();
        let mut grpc = Grpc::new(tonic_prost::ProstCodec::<EncodedInstances, _>::default())
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.unary(discovery, request).await) })
    }
}

#[derive(Clone)]
struct Discover(Arc<Directory>);

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
