//! The tower layer that resolves every call's caller into a [`Principal`]
//! before any handler runs, runs the call in a span named by its method and
//! request id, and stamps the request id on the response.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use tonic::{
    Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower::{Layer, Service};

use super::{Principal, api_keys::ApiKeys, certificate, tokens::TokenVerifier};
use crate::{error::ApiError, request_id};

const API_KEY_HEADER: &str = "x-api-key";
const AUTHORIZATION_HEADER: &str = "authorization";

/// Paths anyone may call without credentials (liveness probes).
const OPEN_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Reflection describes the public API, so tools may use it before they
/// hold credentials (to call Login, say); wrong credentials are refused.
const REFLECTION_PATH_PREFIX: &str = "/grpc.reflection.";

/// Resolves callers for the services it wraps.
#[derive(Clone)]
pub struct IdentityLayer {
    api_keys: Arc<ApiKeys>,
    tokens: Arc<TokenVerifier>,
    /// Full method paths (`/pkg.Service/Method`) that also accept callers
    /// without credentials; wrong credentials are refused everywhere.
    anonymous_methods: Arc<[&'static str]>,
}

impl IdentityLayer {
    pub fn new(
        api_keys: Arc<ApiKeys>,
        tokens: Arc<TokenVerifier>,
        anonymous_methods: &[&'static str],
    ) -> IdentityLayer {
        IdentityLayer {
            api_keys,
            tokens,
            anonymous_methods: anonymous_methods.into(),
        }
    }

    /// Reads what the caller presented; synchronous so the request body need
    /// not be held across an await.
    fn presented<B>(&self, request: &Request<B>) -> Presented {
        let (peer_address, certificate_module) = connection_identity(request);
        let path = request.uri().path();
        let headers = request.headers();
        Presented {
            peer_address,
            certificate_module,
            open: path.starts_with(OPEN_PATH_PREFIX),
            anonymous_allowed: path.starts_with(REFLECTION_PATH_PREFIX)
                || self.anonymous_methods.contains(&path),
            api_key: headers.get(API_KEY_HEADER).cloned(),
            authorization: headers.get(AUTHORIZATION_HEADER).cloned(),
        }
    }

    async fn resolve(
        &self,
        presented: Presented,
        request_id: Arc<str>,
    ) -> Result<Principal, ApiError> {
        let mut principal = Principal {
            request_id,
            peer_address: presented.peer_address,
            api_key: None,
            certificate_module: presented.certificate_module,
            user: None,
        };
        if presented.open {
            return Ok(principal);
        }
        if presented.api_key.is_none() && presented.authorization.is_none() {
            return if presented.anonymous_allowed {
                Ok(principal)
            } else {
                Err(ApiError::Unauthenticated)
            };
        }
        if let Some(value) = presented.api_key {
            let presented_key = value.to_str().map_err(|_| ApiError::Unauthenticated)?;
            let key = self.api_keys.authenticate(presented_key).await?;
            if let Some(certificate_module) = &principal.certificate_module
                && key.module_id.as_ref() != Some(certificate_module)
            {
                return Err(ApiError::CertificateModuleMismatch);
            }
            principal.api_key = Some(key);
        }
        if let Some(value) = presented.authorization {
            let token = bearer_token(&value).ok_or(ApiError::Unauthenticated)?;
            principal.user = Some(self.tokens.verify(token).await?.user());
        }
        Ok(principal)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// What a call presented, read before any await.
struct Presented {
    peer_address: Option<std::net::SocketAddr>,
    certificate_module: Option<String>,
    /// A path anyone may call (health).
    open: bool,
    /// A method that also serves callers without credentials.
    anonymous_allowed: bool,
    api_key: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
}

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Identity<S> {
        Identity {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`IdentityLayer`] wraps around the routes.
#[derive(Clone)]
pub struct Identity<S> {
    inner: S,
    layer: IdentityLayer,
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for Identity<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        // The clone is not ready; the instance that was polled ready serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let request_id = request_id::from_header(request.headers().get(request_id::HEADER));
        let presented = layer.presented(&request);
        // Every log line written while serving the call names it.
        let span = tracing::info_span!(
            "call",
            method = request.uri().path(),
            request_id = &*request_id
        );
        let call = async move {
            let mut response = match layer.resolve(presented, request_id.clone()).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    request_id::scope(request_id.clone(), inner.call(request)).await?
                }
                Err(error) => Status::from(error).into_http(),
            };
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(request_id::HEADER, value);
            }
            Ok(response)
        };
        Box::pin(tracing::Instrument::instrument(call, span))
    }
}

/// The peer address and, under mTLS, the module named by the client
/// certificate (already verified against the client CA by rustls).
fn connection_identity<B>(request: &Request<B>) -> (Option<std::net::SocketAddr>, Option<String>) {
    let extensions = request.extensions();
    if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let module = tls
            .peer_certs()
            .and_then(|chain| chain.first().and_then(|leaf| certificate::module_of(leaf)));
        return (tls.get_ref().remote_addr(), module);
    }
    let peer = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr);
    (peer, None)
}
