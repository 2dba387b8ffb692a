//! One call of a generated gRPC service served by a handler of its own,
//! every other call by the generated server: for hot calls whose answers
//! are kept encoded, so that a call writes stored bytes instead of building
//! and encoding messages. The handler's response type must have the wire
//! form of the call's response message (a field of embedded messages
//! declared as `bytes` instead), so clients decode it as that message.

use std::{
    convert::Infallible,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{
    body::Body,
    codegen::http,
    server::{Grpc, NamedService, UnaryService},
};

/// `generated`, except `path`, which `handler` answers.
pub struct Rerouted<S, H, Request> {
    generated: S,
    path: &'static str,
    handler: H,
    max_decoding_message_size: usize,
    request: PhantomData<fn() -> Request>,
}

impl<S: Clone, H: Clone, Request> Clone for Rerouted<S, H, Request> {
    fn clone(&self) -> Self {
        Rerouted {
            generated: self.generated.clone(),
            path: self.path,
            handler: self.handler.clone(),
            max_decoding_message_size: self.max_decoding_message_size,
            request: PhantomData,
        }
    }
}

impl<S, H, Request> Rerouted<S, H, Request> {
    /// `path` is the call's full path, e.g. "/pkg.Service/Method";
    /// requests larger than `max_decoding_message_size` are refused as by
    /// the generated server.
    pub fn new(
        generated: S,
        path: &'static str,
        handler: H,
        max_decoding_message_size: usize,
    ) -> Self {
        Rerouted {
            generated,
            path,
            handler,
            max_decoding_message_size,
            request: PhantomData,
        }
    }
}

impl<S: NamedService, H, Request> NamedService for Rerouted<S, H, Request> {
    const NAME: &'static str = S::NAME;
}

impl<S, H, Request> tower::Service<http::Request<Body>> for Rerouted<S, H, Request>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    H: UnaryService<Request> + Clone + Send + 'static,
    H::Response: prost::Message + Send + 'static,
    H::Future: Send,
    Request: prost::Message + Default + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.generated.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != self.path {
            return Box::pin(self.generated.call(request));
        }
        let handler = self.handler.clone();
        let mut grpc = Grpc::new(tonic_prost::ProstCodec::<H::Response, Request>::default())
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.unary(handler, request).await) })
    }
}
