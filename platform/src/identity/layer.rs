//! The middleware that resolves every call's caller into a [`Principal`]
//! before any handler runs.

use std::{net::SocketAddr, sync::Arc};

use http::{HeaderMap, Request, Response};
use tonic::{
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use super::{
    Principal, api_keys::ApiKeys, certificate::CertificateIdentity, tokens::TokenVerifier,
};
use crate::{
    error::ApiError,
    server::stack::{Inner, Middleware, refusal, request_id_of, response_of, take_ready},
};

const API_KEY_HEADER: &str = "x-api-key";
const AUTHORIZATION_HEADER: &str = "authorization";

/// Paths anyone may call without credentials (liveness probes).
const OPEN_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Reflection describes the public API, so tools may use it before they
/// hold credentials (to call Login, say); wrong credentials are refused.
const REFLECTION_PATH_PREFIX: &str = "/grpc.reflection.";

/// Resolves callers for the services it wraps (one shared part, as every
/// call takes a clone).
#[derive(Clone)]
pub struct Authentication(Arc<Verifiers>);

struct Verifiers {
    api_keys: Arc<ApiKeys>,
    tokens: Arc<TokenVerifier>,
    /// Full method paths (`/pkg.Service/Method`) that also accept callers
    /// without credentials; wrong credentials are refused everywhere.
    anonymous_methods: Vec<&'static str>,
}

impl Authentication {
    pub fn new(
        api_keys: Arc<ApiKeys>,
        tokens: Arc<TokenVerifier>,
        anonymous_methods: &[&'static str],
    ) -> Authentication {
        Authentication(Arc::new(Verifiers {
            api_keys,
            tokens,
            anonymous_methods: anonymous_methods.to_vec(),
        }))
    }

    async fn resolve(&self, presented: Presented<'_>) -> Result<Principal, ApiError> {
        let Presented {
            request_id,
            peer_address,
            certificate,
            open,
            anonymous_allowed,
            api_key,
            bearer,
        } = presented;
        if open {
            return Ok(Principal::anonymous(request_id, peer_address));
        }
        let (api_key, bearer) = (api_key?, bearer?);
        if api_key.is_none() && bearer.is_none() && !anonymous_allowed {
            return Err(ApiError::Unauthenticated);
        }
        let key = match api_key {
            Some(presented_key) => Some(self.0.api_keys.authenticate(presented_key).await?),
            None => None,
        };
        let user = match bearer {
            Some(token) => Some(self.0.tokens.verify(token).await?.user()),
            None => None,
        };
        Principal::combine(request_id, peer_address, key, certificate, user)
    }
}

/// What a call presented.
struct Presented<'a> {
    request_id: Arc<str>,
    peer_address: Option<SocketAddr>,
    certificate: Option<CertificateIdentity>,
    /// A path anyone may call (health).
    open: bool,
    /// A method that also serves callers without credentials.
    anonymous_allowed: bool,
    api_key: Result<Option<&'a str>, ApiError>,
    /// The token of `authorization: Bearer <token>`.
    bearer: Result<Option<&'a str>, ApiError>,
}

impl<'a> Presented<'a> {
    fn read(identity: &Authentication, request: &'a Request<Body>) -> Presented<'a> {
        let (peer_address, certificate) = connection_identity(request);
        let path = request.uri().path();
        let headers = request.headers();
        Presented {
            request_id: request_id_of(request),
            peer_address,
            certificate,
            open: path.starts_with(OPEN_PATH_PREFIX),
            anonymous_allowed: path.starts_with(REFLECTION_PATH_PREFIX)
                || identity.0.anonymous_methods.contains(&path),
            api_key: single_header(headers, API_KEY_HEADER),
            bearer: single_header(headers, AUTHORIZATION_HEADER)
                .and_then(|value| value.map(bearer_token).transpose()),
        }
    }
}

/// The one value of a credential header. A header sent twice is refused:
/// taking either value would let a proxy and a client disagree on who calls.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::Unauthenticated);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| ApiError::Unauthenticated)
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer_token(value: &str) -> Result<&str, ApiError> {
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated);
    }
    Ok(token.trim())
}

impl Middleware for Authentication {
    fn around<S: Inner + Clone>(
        &self,
        mut request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let authentication = self.clone();
        let mut inner = take_ready(inner);
        async move {
            let resolved = authentication
                .resolve(Presented::read(&authentication, &request))
                .await;
            match resolved {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    response_of(inner.call(request)).await
                }
                Err(error) => refusal(error),
            }
        }
    }
}

/// The peer address and, under mTLS, what the client certificate names
/// (already verified against the client CA by rustls).
fn connection_identity(
    request: &Request<Body>,
) -> (Option<SocketAddr>, Option<CertificateIdentity>) {
    let extensions = request.extensions();
    if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let certificate = tls.peer_certs().and_then(|chain| {
            chain
                .first()
                .and_then(|leaf| CertificateIdentity::of_certificate(leaf))
        });
        return (tls.get_ref().remote_addr(), certificate);
    }
    let peer = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr);
    (peer, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_header_sent_twice_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append(API_KEY_HEADER, "plk_one".parse().unwrap());
        assert_eq!(
            single_header(&headers, API_KEY_HEADER).unwrap(),
            Some("plk_one")
        );
        headers.append(API_KEY_HEADER, "plk_two".parse().unwrap());
        assert!(single_header(&headers, API_KEY_HEADER).is_err());
    }

    #[test]
    fn only_the_bearer_scheme_is_taken() {
        assert_eq!(bearer_token("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer_token("bearer  abc ").unwrap(), "abc");
        assert!(bearer_token("Basic abc").is_err());
        assert!(bearer_token("Bearer").is_err());
    }
}
