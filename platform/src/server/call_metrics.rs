//! Counts every call, outermost in the stack so that refusals count too:
//! started when it arrives, handled with its code and duration when its
//! last frame leaves (a stream's duration is the stream's).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{Code, Status, body::Body};

use super::stack::{Inner, Middleware, response_of};
use crate::metrics::{MethodSeries, Metrics};

#[derive(Clone)]
pub struct CallMetrics(pub Arc<Metrics>);

impl Middleware for CallMetrics {
    fn around<S: Inner + Clone>(
        &self,
        request: Request<Body>,
        inner: &mut S,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let series = self.0.method(request.uri().path());
        series.start();
        let started = Instant::now();
        let answer = inner.call(request);
        async move {
            let response = response_of(answer).await;
            // A call refused before its first message has its code here.
            if let Some(status) = Status::from_header_map(response.headers()) {
                series.finish(status.code(), started);
                return response;
            }
            response.map(|body| {
                Body::new(Observed {
                    body,
                    call: Some((series, started)),
                })
            })
        }
    }
}

/// A response body that records its call's code from its trailers; one
/// dropped before them was cancelled.
struct Observed {
    body: Body,
    call: Option<(Arc<MethodSeries>, Instant)>,
}

impl Observed {
    fn finish(&mut self, code: Code) {
        if let Some((series, started)) = self.call.take() {
            series.finish(code, started);
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code =
                        Status::from_header_map(trailers).map_or(Code::Ok, |status| status.code());
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                self.finish(code);
            }
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}
