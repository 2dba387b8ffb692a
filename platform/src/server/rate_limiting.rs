//! Admission by rate limit: each call spends its API key's and its user's
//! budget ([`RateLimiter`]), or is refused with RESOURCE_EXHAUSTED and a
//! RetryInfo before its handler runs.

use std::sync::Arc;

use http::{Request, Response};
use tonic::body::Body;

use super::stack::{Inner, Middleware, refusal, response_of, take_ready};
use crate::{identity::Principal, rate_limits::RateLimiter};

#[derive(Clone)]
pub struct RateLimiting(pub Arc<RateLimiter>);

impl Middleware for RateLimiting {
    fn around<S: Inner + Clone>(
        &self,
        request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let limiter = self.0.clone();
        let mut inner = take_ready(inner);
        async move {
            // The identity layer runs first; a call it let through without a
            // principal (none does) has nothing to spend.
            if let Some(principal) = request.extensions().get::<Principal>()
                && let Err(refused) = limiter.admit(principal).await
            {
                return refusal(refused);
            }
            response_of(inner.call(request)).await
        }
    }
}
