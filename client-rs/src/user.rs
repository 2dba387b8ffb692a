//! Users of a module's own API: a tower layer that authenticates the bearer
//! token of each request and puts the [`User`] in the request's extensions.
//!
//! Tokens are verified locally with `plinth_api::token` (the code the core
//! verifies with) against the core's published keys, fetched with `GetJwks`
//! and fetched again, at most once a second, when a token names an unknown
//! `kid`. A local check cannot see a session that ended early (logout,
//! revocation, a disabled user); [`Authenticator::confirm_with_core`] also
//! asks the core (`VerifyToken`) for each request.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderValue, Request, Response, StatusCode, header};
use plinth_api::{
    auth::v1::GetJwksRequest,
    token::{AccessClaims, KeySet, TokenError, TokenRules, key_set},
};
use tower::{Layer, Service};
use uuid::Uuid;

use crate::Client;

/// How often a token naming an unknown `kid` may fetch the key set.
const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a fetched key set is used before it is fetched again, so that
/// keys the core stopped publishing stop verifying.
const KEY_SET_TTL: Duration = Duration::from_secs(60);

/// The signed-in user a request is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub session_id: Uuid,
    /// When the token stops being valid.
    pub expires_at: SystemTime,
}

impl User {
    fn from_claims(claims: &AccessClaims) -> User {
        User {
            user_id: claims.sub,
            tenant_id: claims.tid,
            session_id: claims.sid,
            expires_at: SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(claims.exp).unwrap_or_default()),
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(#[from] TokenError),
    #[error("the core refused the token")]
    Revoked,
    #[error("the core could not be asked: {0}")]
    Unavailable(tonic::Status),
}

#[derive(Default)]
struct Keys {
    by_kid: KeySet,
    fetched: Option<Instant>,
}

/// Verifies access tokens for a module. Build one per process and share it.
pub struct Authenticator {
    client: Client,
    rules: TokenRules,
    confirm: bool,
    keys: RwLock<Keys>,
    fetching: tokio::sync::Mutex<()>,
}

impl Authenticator {
    /// Verifies tokens of the core's default issuer and audience (`plinth`),
    /// with 60 s of clock leeway.
    pub fn new(client: Client) -> Authenticator {
        Authenticator::with_rules(
            client,
            TokenRules::new("plinth", "plinth", Duration::from_secs(60)),
        )
    }

    /// For a core configured with another issuer, audience or leeway.
    pub fn with_rules(client: Client, rules: TokenRules) -> Authenticator {
        Authenticator {
            client,
            rules,
            confirm: false,
            keys: RwLock::new(Keys::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Also asks the core about every token that verifies locally, so that
    /// ended sessions are refused at once (one call per request).
    pub fn confirm_with_core(mut self, confirm: bool) -> Authenticator {
        self.confirm = confirm;
        self
    }

    /// A tower layer authenticating every request with this authenticator.
    pub fn layer(self: &Arc<Self>) -> AuthenticateLayer {
        AuthenticateLayer {
            authenticator: self.clone(),
        }
    }

    /// `inner` with every request authenticated: the layer's service.
    pub fn wrap<S>(self: &Arc<Self>, inner: S) -> Authenticate<S> {
        self.layer().layer(inner)
    }

    /// The user of a request with these headers.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<User, Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or(Refusal::Missing)?;
        self.verify(token).await
    }

    /// The user of an access token.
    pub async fn verify(&self, token: &str) -> Result<User, Refusal> {
        let kid = self.rules.key_id(token)?;
        let key = self.key(&kid).await?;
        let claims = self.rules.verify(token, &key, unix_now())?;
        if self.confirm {
            match self.client.verify_token(token).await {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    return Err(Refusal::Revoked);
                }
                Err(status) => return Err(Refusal::Unavailable(status)),
            }
        }
        Ok(User::from_claims(&claims))
    }

    async fn key(&self, kid: &str) -> Result<plinth_api::token::VerifyingKey, Refusal> {
        let fresh_enough = |keys: &Keys, within: Duration| {
            keys.fetched
                .is_some_and(|fetched| fetched.elapsed() < within)
        };
        {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            if fresh_enough(&keys, KEY_SET_TTL)
                && let Some(key) = keys.by_kid.get(kid)
            {
                return Ok(key.clone());
            }
        }
        // One fetch at a time; whoever waited looks again first.
        let _fetching = self.fetching.lock().await;
        {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            if fresh_enough(&keys, KEY_REFETCH_INTERVAL)
                || (fresh_enough(&keys, KEY_SET_TTL) && keys.by_kid.contains_key(kid))
            {
                return keys
                    .by_kid
                    .get(kid)
                    .cloned()
                    .ok_or(TokenError::UnknownKey.into());
            }
        }
        let jwks = self
            .client
            .auth()
            .get_jwks(GetJwksRequest {})
            .await
            .map_err(Refusal::Unavailable)?
            .into_inner();
        let by_kid = key_set(&jwks.keys);
        let found = by_kid.get(kid).cloned();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Keys {
            by_kid,
            fetched: Some(Instant::now()),
        };
        found.ok_or(TokenError::UnknownKey.into())
    }
}

/// The token of `Bearer <token>` (the scheme in any case, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Authenticates each request before the inner service sees it; see
/// [`Authenticator::layer`].
#[derive(Clone)]
pub struct AuthenticateLayer {
    authenticator: Arc<Authenticator>,
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// A service whose requests carry a [`User`] in their extensions. Refused
/// requests get UNAUTHENTICATED (gRPC) or 401 (HTTP), or UNAVAILABLE / 503
/// when the core could not be asked.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for Authenticate<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send,
    RequestBody: Send + 'static,
    ResponseBody: Default,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            match authenticator.authenticate(request.headers()).await {
                Ok(user) => {
                    request.extensions_mut().insert(user);
                    inner.call(request).await
                }
                Err(refusal) => {
                    tracing::debug!(%refusal, path = request.uri().path(), "request refused");
                    Ok(refused(&request, &refusal))
                }
            }
        })
    }
}

fn refused<B, ResponseBody: Default>(
    request: &Request<B>,
    refusal: &Refusal,
) -> Response<ResponseBody> {
    let unavailable = matches!(refusal, Refusal::Unavailable(_));
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    let mut response = Response::new(ResponseBody::default());
    if !grpc {
        *response.status_mut() = if unavailable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::UNAUTHORIZED
        };
    }
    let headers = response.headers_mut();
    if grpc {
        let (code, message) = if unavailable {
            ("14", "the core could not verify the token")
        } else {
            ("16", "a valid bearer token is required")
        };
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert("grpc-message", HeaderValue::from_static(message));
    } else if !unavailable {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_nothing_else_is() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
