//! Load shedding: past a bound of unary calls in progress, a call is
//! refused at once (UNAVAILABLE, `OVERLOADED`, with RetryInfo) instead of
//! queueing, so the calls accepted keep their latency. Streams, which last
//! as long as their callers read, and health checks are not counted.

use std::{collections::HashSet, sync::Arc, time::Duration};

use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::body::Body;

use super::stack::{Inner, Middleware, refusal, response_of};
use crate::{
    error::ApiError,
    metrics::{SERVED_DESCRIPTOR_SETS, declared_methods},
};

/// When a refused caller is told to try again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct LoadShedding {
    permits: Arc<Semaphore>,
    /// Paths of streaming methods and of health checks.
    exempt: Arc<HashSet<String>>,
}

impl LoadShedding {
    pub fn new(max_calls: usize) -> LoadShedding {
        let exempt = declared_methods(SERVED_DESCRIPTOR_SETS)
            .filter(|method| {
                method.grpc_type != "unary" || method.service == "grpc.health.v1.Health"
            })
            .map(|method| method.path())
            .collect();
        LoadShedding {
            permits: Arc::new(Semaphore::new(max_calls)),
            exempt: Arc::new(exempt),
        }
    }
}

impl Middleware for LoadShedding {
    fn around<S: Inner + Clone>(
        &self,
        request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let admitted = if self.exempt.contains(request.uri().path()) {
            Ok(None)
        } else {
            self.permits.clone().try_acquire_owned().map(Some)
        };
        let answer = admitted.map(|permit| (permit, inner.call(request)));
        async move {
            match answer {
                Ok((_permit, answer)) => response_of(answer).await,
                Err(_) => refusal(ApiError::Overloaded {
                    retry_after: RETRY_AFTER,
                }),
            }
        }
    }
}
