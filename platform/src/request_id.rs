//! The request id of the call being served: taken from `x-request-id` when the
//! caller sends a sane one, generated otherwise; returned in the response
//! headers, present in logs and in INTERNAL errors.

use std::sync::Arc;

use uuid::Uuid;

pub const HEADER: &str = "x-request-id";

/// Longest request id accepted from a caller.
const MAX_LENGTH: usize = 128;

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The caller's id if it is 1–128 visible ASCII characters, else a new one.
pub fn from_header(value: Option<&http::HeaderValue>) -> Arc<str> {
    value
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_LENGTH && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| Uuid::now_v7().to_string().into(), Arc::from)
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: Arc<str>, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// The request id of the call this task serves, if any.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}
