//! The tower stack every call passes, built in one function, and the
//! middlewares in it. Each middleware is an [`Around`]: it gets the request
//! and the (ready) inner service, and answers. Middlewares that act before
//! the call call the inner service at once, so their futures stay small;
//! one that must wait first takes the ready service with it
//! ([`take_ready`]).

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service, ServiceBuilder, layer::util::Stack};

use super::{call_metrics::CallMetrics, rate_limiting::RateLimiting, shedding::LoadShedding};
use crate::{
    error::ApiError,
    identity::layer::Authentication,
    metrics::Metrics,
    rate_limits::RateLimiter,
    request_id::{self, RequestId},
};

/// The layers of every call (their order is [`call_stack`]'s).
pub type CallStack = Stack<
    Around<RateLimiting>,
    Stack<
        Around<Authentication>,
        Stack<
            Around<Deadline>,
            Stack<
                Around<LoadShedding>,
                Stack<
                    Around<ErrorContract>,
                    Stack<
                        Around<RequestSpan>,
                        Stack<Around<CallMetrics>, tower::layer::util::Identity>,
                    >,
                >,
            >,
        >,
    >,
>;

/// Who may call: identity, and the limits of the principals it resolves.
pub struct Callers {
    pub authentication: Authentication,
    pub rate_limiter: Arc<RateLimiter>,
}

/// The stack, one layer per line, in the order calls pass it.
pub fn call_stack(
    metrics: Arc<Metrics>,
    max_calls: usize,
    max_call: Duration,
    max_message_bytes: usize,
    callers: Callers,
) -> CallStack {
    ServiceBuilder::new()
        // Metrics: every call counted, refusals included.
        .layer(Around(CallMetrics(metrics)))
        // Trace: a request id for every call, in its span, logs and answer.
        .layer(Around(RequestSpan))
        // Errors the framework raised (size, decoding, unknown methods) get
        // the same codes and details as the services' own.
        .layer(Around(ErrorContract { max_message_bytes }))
        // Shedding: past the bound of calls in progress, refused at once.
        .layer(Around(LoadShedding::new(max_calls)))
        // Timeout: the caller's deadline, capped.
        .layer(Around(Deadline { max_call }))
        // Auth: the caller resolved once into a principal, or refused.
        .layer(Around(callers.authentication))
        // Limits: the principal's key and user spend their budgets.
        .layer(Around(RateLimiting(callers.rate_limiter)))
        .into_inner()
}

/// The rest of the stack, as a middleware sees it.
pub trait Inner:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Send
    + 'static
{
}

impl<S> Inner for S where
    S: Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// One middleware: answers a request, usually by calling `inner` (which
/// was polled ready) once.
pub trait Middleware: Clone + Send + Sync + 'static {
    fn around<S: Inner + Clone>(
        &self,
        request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

/// The layer of a [`Middleware`].
#[derive(Clone)]
pub struct Around<M>(pub M);

impl<S, M: Middleware> Layer<S> for Around<M> {
    type Service = AroundService<S, M>;

    fn layer(&self, inner: S) -> AroundService<S, M> {
        AroundService {
            inner,
            middleware: self.0.clone(),
        }
    }
}

/// The service of a [`Middleware`] around the rest of the stack.
#[derive(Clone)]
pub struct AroundService<S, M> {
    inner: S,
    middleware: M,
}

impl<S: Inner + Clone, M: Middleware> Service<Request<Body>> for AroundService<S, M> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let answer = self.middleware.around(request, &mut self.inner);
        Box::pin(async move { Ok(answer.await) })
    }
}

/// The ready inner service, for a middleware that calls it after an await;
/// the clone left behind is not ready, and is polled before its own use.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// The response of a call made on the inner service.
pub(crate) async fn response_of(
    call: impl Future<Output = Result<Response<Body>, Infallible>>,
) -> Response<Body> {
    match call.await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The answer to a call refused before (or instead of) its handler.
pub fn refusal(error: ApiError) -> Response<Body> {
    Status::from(error).into_http()
}

/// Gives every call a request id (the caller's, if sane) and a span, makes
/// the id current for everything the call runs, and returns it in the
/// `x-request-id` header. The span is at debug level: formatting it for
/// every call would cost more than serving many calls; logs leave it out
/// unless `RUST_LOG` asks, trace export (when on) takes it.
#[derive(Clone)]
pub struct RequestSpan;

impl Middleware for RequestSpan {
    fn around<S: Inner + Clone>(
        &self,
        mut request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let id = request_id::from_header(request.headers().get(request_id::HEADER));
        // A caller's W3C trace context, for trace export (the span's name
        // is `otlp::CALL_SPAN`); anything longer than one is not one.
        let traceparent = request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .filter(|value| value.len() <= 64)
            .unwrap_or_default();
        let span = tracing::debug_span!(
            "call",
            method = request.uri().path(),
            request_id = &*id,
            traceparent
        );
        request.extensions_mut().insert(RequestId(id.clone()));
        let answer = inner.call(request);
        let call = async move {
            let mut response = request_id::scope(id.clone(), response_of(answer)).await;
            if let Ok(mut value) = HeaderValue::from_str(&id) {
                // Unique per call: never worth a place in the HPACK table,
                // where it would only evict headers that repeat.
                value.set_sensitive(true);
                response.headers_mut().insert(request_id::HEADER, value);
            }
            response
        };
        tracing::Instrument::instrument(call, span)
    }
}

/// Rewrites statuses that tonic itself produced (they carry no details) into
/// the API's error contract: an oversized message is RESOURCE_EXHAUSTED, an
/// undecodable one INVALID_ARGUMENT, an unserved method UNIMPLEMENTED, each
/// with its `ErrorInfo`.
#[derive(Clone)]
pub struct ErrorContract {
    pub max_message_bytes: usize,
}

impl ErrorContract {
    fn contract_error(&self, headers: &HeaderMap) -> Option<ApiError> {
        // Answers carry their status in the headers only when they failed
        // before a message; the services' own failures carry details.
        let status = Status::from_header_map(headers)?;
        if headers.contains_key("grpc-status-details-bin") {
            return None;
        }
        Some(match status.code() {
            Code::Ok => return None,
            Code::OutOfRange => ApiError::MessageTooLarge {
                limit_bytes: self.max_message_bytes,
            },
            Code::Internal | Code::Unknown => ApiError::MalformedMessage,
            Code::Unimplemented => ApiError::Unimplemented,
            Code::Cancelled | Code::DeadlineExceeded => ApiError::DeadlineExceeded,
            _ => return None,
        })
    }
}

impl Middleware for ErrorContract {
    fn around<S: Inner + Clone>(
        &self,
        request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let contract = self.clone();
        let answer = inner.call(request);
        async move {
            let response = response_of(answer).await;
            match contract.contract_error(response.headers()) {
                Some(error) => refusal(error),
                None => response,
            }
        }
    }
}

/// Ends a call at its deadline: the caller's `grpc-timeout`, at most
/// `max_call`.
#[derive(Clone)]
pub struct Deadline {
    pub max_call: Duration,
}

impl Middleware for Deadline {
    fn around<S: Inner + Clone>(
        &self,
        request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let deadline =
            grpc_timeout(request.headers()).map_or(self.max_call, |asked| asked.min(self.max_call));
        let answer = inner.call(request);
        async move {
            match tokio::time::timeout(deadline, response_of(answer)).await {
                Ok(response) => response,
                Err(_) => refusal(ApiError::DeadlineExceeded),
            }
        }
    }
}

/// The `grpc-timeout` header: at most 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The request id the [`RequestSpan`] gave a request.
pub fn request_id_of(request: &Request<Body>) -> Arc<str> {
    request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| request_id::from_header(None), |id| id.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_timeout(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        for (value, expected) in [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("4S", Duration::from_secs(4)),
            ("500m", Duration::from_millis(500)),
            ("99999999u", Duration::from_micros(99_999_999)),
            ("7n", Duration::from_nanos(7)),
        ] {
            assert_eq!(
                grpc_timeout(&headers_with_timeout(value)),
                Some(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for value in ["", "S", "123456789S", "5s", "-5S", "5 S", "é"] {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert("grpc-timeout", value);
            }
            assert_eq!(grpc_timeout(&headers), None, "{value:?}");
        }
    }
}
