//! The request id of the call being served: taken from `x-request-id` when the
//! caller sends a sane one, generated otherwise; returned in the response
//! headers, present in logs and in INTERNAL errors.

use std::sync::Arc;

use rand::RngCore;
use uuid::Uuid;

pub const HEADER: &str = "x-request-id";

/// Longest request id accepted from a caller.
const MAX_LENGTH: usize = 128;

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The request id of one call, in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The caller's id if it is 1–128 visible ASCII characters, else a new one.
pub fn from_header(value: Option<&http::HeaderValue>) -> Arc<str> {
    value
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_LENGTH && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(generate, Arc::from)
}

/// A UUIDv7 from the thread's generator: one per call, so no system call
/// per id (unlike `Uuid::now_v7`).
fn generate() -> Arc<str> {
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let millis = crate::clock::now().timestamp_millis().max(0) as u64;
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut text = Uuid::encode_buffer();
    Arc::from(&*id.hyphenated().encode_lower(&mut text))
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: Arc<str>, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// The request id of the call this task serves, if any.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_version_7_uuids() {
        let first = from_header(None);
        let second = from_header(None);
        assert_ne!(first, second);
        assert_eq!(Uuid::parse_str(&first).unwrap().get_version_num(), 7);
    }

    #[test]
    fn unusable_caller_ids_are_replaced() {
        for unusable in ["", "has space", &"x".repeat(129)] {
            let value = http::HeaderValue::from_str(unusable).unwrap();
            assert_ne!(&*from_header(Some(&value)), unusable);
        }
    }
}
