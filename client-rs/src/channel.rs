//! The channel every stub of a [`Client`](crate::Client) calls through: it
//! adds the API key and a request id, gives unary calls without a deadline
//! the default one, and retries idempotent calls the core answered UNAVAILABLE
//! (or could not be reached for), with jittered exponential backoff inside
//! the call's deadline.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use tonic::{body::Body, transport::Channel};
use tower::Service;

/// Marks a call as safe to repeat, for calls whose method name does not say
/// so (insert it into the request's extensions).
#[derive(Debug, Clone, Copy)]
pub struct Idempotent;

/// How failed idempotent calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 turns retries off.
    pub max_attempts: u32,
    /// The wait before the second attempt, doubled for each next one.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Method names that only read, or that the core documents as safe to
/// repeat (a registration keyed by its instance key, a heartbeat).
const IDEMPOTENT_PREFIXES: &[&str] = &[
    "Get",
    "List",
    "Check",
    "Lookup",
    "Resolve",
    "Discover",
    "Verify",
    "Query",
    "WhoAmI",
    "IsModuleEnabled",
    "ValidateManifest",
    "RegisterInstance",
    "Heartbeat",
];

const SERVER_STREAMING_PREFIXES: &[&str] = &["Watch", "Tail"];

fn method<B>(request: &Request<B>) -> &str {
    request.uri().path().rsplit('/').next().unwrap_or_default()
}

/// Streams answer for as long as the caller reads: no default deadline, and
/// no retry of a stream that may have delivered part of its answer.
fn is_stream<B>(request: &Request<B>) -> bool {
    let method = method(request);
    SERVER_STREAMING_PREFIXES
        .iter()
        .any(|prefix| method.starts_with(prefix))
}

fn is_idempotent<B>(request: &Request<B>) -> bool {
    let method = method(request);
    request.extensions().get::<Idempotent>().is_some()
        || (IDEMPOTENT_PREFIXES
            .iter()
            .any(|prefix| method.starts_with(prefix))
            && !is_stream(request))
}

pub(crate) struct Settings {
    pub api_key: Option<HeaderValue>,
    pub default_timeout: Duration,
    pub retries: RetryPolicy,
}

/// A tonic channel with Plinth's call conventions. Cheap to clone.
#[derive(Clone)]
pub struct PlinthChannel {
    inner: Channel,
    settings: Arc<Settings>,
}

impl PlinthChannel {
    pub(crate) fn new(inner: Channel, settings: Settings) -> PlinthChannel {
        PlinthChannel {
            inner,
            settings: Arc::new(settings),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Request<Body>> for PlinthChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The ready clone serves this call; the next one gets a fresh clone.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let settings = self.settings.clone();
        Box::pin(async move {
            let headers = request.headers_mut();
            if let Some(api_key) = &settings.api_key {
                headers
                    .entry("x-api-key")
                    .or_insert_with(|| api_key.clone());
            }
            headers
                .entry("x-request-id")
                .or_insert_with(|| header_value(&uuid::Uuid::now_v7().to_string()));
            let asked = headers.get("grpc-timeout").and_then(parse_grpc_timeout);
            let stream = is_stream(&request);
            let timeout = match asked {
                Some(timeout) => timeout,
                None if stream => return inner.call(request).await.map_err(Into::into),
                None => {
                    let timeout = settings.default_timeout;
                    request
                        .headers_mut()
                        .insert("grpc-timeout", grpc_timeout(timeout));
                    timeout
                }
            };
            let deadline = Instant::now() + timeout;
            if !is_idempotent(&request) || settings.retries.max_attempts <= 1 {
                return tokio::time::timeout(timeout, inner.call(request))
                    .await
                    .map_err(|_| deadline_exceeded())?
                    .map_err(Into::into);
            }
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            retry(&mut inner, &settings.retries, deadline, parts, body).await
        })
    }
}

async fn retry(
    inner: &mut Channel,
    policy: &RetryPolicy,
    deadline: Instant,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<Response<Body>, BoxError> {
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        let mut request = Request::from_parts(parts.clone(), Body::new(Full::new(body.clone())));
        let remaining = deadline.saturating_duration_since(Instant::now());
        request
            .headers_mut()
            .insert("grpc-timeout", grpc_timeout(remaining));
        let outcome = match tokio::time::timeout(remaining, async {
            std::future::poll_fn(|context| inner.poll_ready(context)).await?;
            inner.call(request).await
        })
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => return Err(deadline_exceeded()),
        };
        let unavailable = match &outcome {
            Ok(response) => {
                response
                    .headers()
                    .get("grpc-status")
                    .map(HeaderValue::as_bytes)
                    == Some(b"14".as_slice())
            }
            Err(_) => true,
        };
        let wait = jittered(backoff);
        if !unavailable || attempt >= policy.max_attempts || Instant::now() + wait >= deadline {
            return outcome.map_err(Into::into);
        }
        tracing::debug!(
            attempt,
            ?wait,
            path = parts.uri.path(),
            "retrying an unavailable call"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

/// Between half and all of `backoff`, so that clients that failed together
/// do not retry together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::random_range(0.5..=1.0))
}

fn deadline_exceeded() -> BoxError {
    Box::new(tonic::Status::deadline_exceeded(
        "the call's deadline passed",
    ))
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("a uuid is a valid header value")
}

/// `grpc-timeout` in milliseconds (at most 8 digits, as the spec allows).
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    header_value(&format!("{millis}m"))
}

fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (amount, unit) = text.split_at(text.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    #[test]
    fn reads_and_documented_repeats_are_idempotent_and_writes_are_not() {
        assert!(is_idempotent(&request("/plinth.rbac.v1.RbacService/Check")));
        assert!(is_idempotent(&request(
            "/plinth.registry.v1.ModuleRegistryService/Heartbeat"
        )));
        assert!(!is_idempotent(&request(
            "/plinth.rbac.v1.RbacService/AssignRole"
        )));
        assert!(!is_idempotent(&request(
            "/plinth.tenant.v1.TenantService/WatchModuleConfig"
        )));
        let mut marked = request("/plinth.audit.v1.AuditService/RecordEvents");
        marked.extensions_mut().insert(Idempotent);
        assert!(is_idempotent(&marked));
    }

    #[test]
    fn grpc_timeouts_round_trip_and_bad_ones_are_ignored() {
        let value = grpc_timeout(Duration::from_millis(1500));
        assert_eq!(value, "1500m");
        assert_eq!(
            parse_grpc_timeout(&value),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_grpc_timeout(&HeaderValue::from_static("2S")),
            Some(Duration::from_secs(2))
        );
        for bad in ["", "m", "12x", "-1m", "99999999999999999999999S"] {
            assert_eq!(
                parse_grpc_timeout(&HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
        assert_eq!(grpc_timeout(Duration::from_secs(10_000_000)), "99999999m");
    }
}
