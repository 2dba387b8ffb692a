//! OpenTelemetry traces, exported over OTLP/HTTP in its JSON encoding (a
//! `POST` of `ExportTraceServiceRequest` to `<endpoint>/v1/traces`), built
//! from the `tracing` spans the server already has instead of an SDK:
//!
//! - every call's span (the stack's `call`) is a SERVER span that
//!   continues the caller's W3C `traceparent` (and honours its sampled
//!   flag), or starts a trace;
//! - spans at info level or above inside a call are its INTERNAL children;
//!   a `module_callback` span is a CLIENT span, in its call's trace or, when
//!   the outbox delivers it, in a trace of its own;
//! - each SQL statement (sqlx's `sqlx::query` event) is a CLIENT span of
//!   the store, named by its summary, timed by sqlx.
//!
//! Export never slows a call: finished spans go through a bounded queue
//! (dropped and counted when it is full) to a task that posts them in
//! batches at least once a second. Plain `http://` endpoints only: run the
//! collector beside the server.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tracing::{
    Level, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    layer::{Context, Filter, Layer},
    registry::LookupSpan,
};

/// The name of the span the call stack opens for every call.
pub const CALL_SPAN: &str = "call";
/// The name of the span around a call to a module's lifecycle service.
pub const CALLBACK_SPAN: &str = "module_callback";

/// Finished spans waiting for export, beyond which new ones are dropped.
const QUEUE: usize = 8192;
/// Spans sent in one request, at most.
const BATCH: usize = 512;
/// How long a finished span waits for its batch, at most.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest an export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// SQL kept in a statement span's `db.statement`, in bytes.
const MAX_STATEMENT: usize = 2048;

const KIND_INTERNAL: u8 = 1;
const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;

/// Where a span stands in its trace.
#[derive(Debug, Clone, Copy)]
struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

/// A span being recorded, kept in its `tracing` span's extensions.
struct OpenSpan {
    context: TraceContext,
    parent: Option<[u8; 8]>,
    name: String,
    kind: u8,
    start: SystemTime,
    attributes: Vec<(String, String)>,
}

/// A span ready for export.
struct FinishedSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: u8,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(String, String)>,
}

/// What the layer looks at: call spans, spans at info or above, and
/// sqlx's statements. Anything else costs it nothing.
pub fn interest<S>() -> impl Filter<S> {
    tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.target() == "sqlx::query"
            || (metadata.is_span()
                && (metadata.name() == CALL_SPAN || *metadata.level() <= Level::INFO))
    })
}

/// The `tracing` layer that turns spans into OTLP spans.
pub struct TraceLayer {
    finished: mpsc::Sender<FinishedSpan>,
    dropped: Arc<AtomicU64>,
}

/// Posts what the layer finished, in batches.
pub struct Exporter {
    finished: mpsc::Receiver<FinishedSpan>,
    dropped: Arc<AtomicU64>,
    endpoint: String,
    service: String,
}

impl TraceLayer {
    /// A layer exporting to `endpoint` (`http://host:port`, optionally
    /// with a path before `/v1/traces`) as `service`, and its exporter.
    pub fn new(endpoint: &str, service: &str) -> (TraceLayer, Exporter) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            TraceLayer {
                finished: sender,
                dropped: dropped.clone(),
            },
            Exporter {
                finished: receiver,
                dropped,
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                service: service.to_owned(),
            },
        )
    }

    /// Queues a span of a sampled trace for export.
    fn finish(&self, span: FinishedSpan) {
        if self.finished.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let metadata = attributes.metadata();
        let inherited = span.parent().and_then(|parent| {
            parent
                .extensions()
                .get::<OpenSpan>()
                .map(|open| open.context)
        });
        let kind = match metadata.name() {
            CALL_SPAN => KIND_SERVER,
            CALLBACK_SPAN => KIND_CLIENT,
            _ => KIND_INTERNAL,
        };
        let (context, parent) = match (kind, inherited) {
            (KIND_SERVER, _) => match fields.take("traceparent").as_deref().and_then(traceparent) {
                Some((trace_id, parent, sampled)) => (
                    TraceContext {
                        trace_id,
                        span_id: random_id(),
                        sampled,
                    },
                    Some(parent),
                ),
                None => (new_trace(), None),
            },
            (_, Some(inherited)) => (
                TraceContext {
                    span_id: random_id(),
                    ..inherited
                },
                Some(inherited.span_id),
            ),
            (KIND_CLIENT, None) => (new_trace(), None),
            _ => return,
        };
        let name = match kind {
            KIND_SERVER => fields
                .take("method")
                .map(|path| path.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| CALL_SPAN.to_owned()),
            _ => metadata.name().to_owned(),
        };
        let mut attributes = fields.0;
        if kind == KIND_SERVER {
            attributes.push(("rpc.system".to_owned(), "grpc".to_owned()));
        }
        span.extensions_mut().insert(OpenSpan {
            context,
            parent,
            name,
            kind,
            start: SystemTime::now(),
            attributes,
        });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<OpenSpan>()
        {
            let mut fields = Fields::default();
            values.record(&mut fields);
            open.attributes.extend(fields.0);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let Some(context) = ctx.event_scope(event).and_then(|mut scope| {
            scope.find_map(|span| span.extensions().get::<OpenSpan>().map(|open| open.context))
        }) else {
            return;
        };
        if !context.sampled {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let elapsed = fields
            .take("elapsed_secs")
            .and_then(|seconds| seconds.parse::<f64>().ok())
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .unwrap_or_default();
        let name = fields
            .take("summary")
            .unwrap_or_else(|| "statement".to_owned());
        fields.take("elapsed");
        fields.take("message");
        let mut attributes = fields.0;
        for (key, value) in &mut attributes {
            if key == "db.statement" && value.len() > MAX_STATEMENT {
                let mut end = MAX_STATEMENT;
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                value.truncate(end);
            }
        }
        let end = SystemTime::now();
        self.finish(FinishedSpan {
            trace_id: context.trace_id,
            span_id: random_id(),
            parent: Some(context.span_id),
            name,
            kind: KIND_CLIENT,
            start: end.checked_sub(elapsed).unwrap_or(end),
            end,
            attributes,
        });
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        if !open.context.sampled {
            return;
        }
        self.finish(FinishedSpan {
            trace_id: open.context.trace_id,
            span_id: open.context.span_id,
            parent: open.parent,
            name: open.name,
            kind: open.kind,
            start: open.start,
            end: SystemTime::now(),
            attributes: open.attributes,
        });
    }
}

impl Exporter {
    /// Posts batches until the layer is gone.
    pub async fn run(mut self) {
        let mut failing = false;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            let Some(first) = self.finished.recv().await else {
                return;
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(deadline, self.finished.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) | Err(_) => break,
                }
            }
            let body = self.request(&batch).to_string();
            match tokio::time::timeout(EXPORT_TIMEOUT, post(&self.endpoint, &body)).await {
                Ok(Ok(())) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("trace export works again");
                    }
                }
                Ok(Err(problem)) => failing = report(failing, &problem),
                Err(_) => failing = report(failing, "timed out"),
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(dropped, "trace export fell behind; spans dropped");
            }
        }
    }

    /// An `ExportTraceServiceRequest` in OTLP's JSON encoding.
    fn request(&self, spans: &[FinishedSpan]) -> serde_json::Value {
        let spans: Vec<_> = spans
            .iter()
            .map(|span| {
                serde_json::json!({
                    "traceId": hex::encode(span.trace_id),
                    "spanId": hex::encode(span.span_id),
                    "parentSpanId": span.parent.map(hex::encode).unwrap_or_default(),
                    "name": span.name,
                    "kind": span.kind,
                    "startTimeUnixNano": unix_nanos(span.start),
                    "endTimeUnixNano": unix_nanos(span.end),
                    "attributes": span
                        .attributes
                        .iter()
                        .map(|(key, value)| attribute(key, value))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "resourceSpans": [{
                "resource": {"attributes": [attribute("service.name", &self.service)]},
                "scopeSpans": [{"scope": {"name": "plinth"}, "spans": spans}],
            }],
        })
    }
}

/// Logs the first failure of a streak; whether export is failing.
fn report(failing: bool, problem: &str) -> bool {
    if !failing {
        tracing::warn!(problem, "trace export failed; spans dropped until it works");
    }
    true
}

fn attribute(key: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"key": key, "value": {"stringValue": value}})
}

/// Nanoseconds since the epoch, as OTLP's JSON writes 64-bit integers.
fn unix_nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

/// One HTTP/1.1 POST of `body` as JSON to `<endpoint>/v1/traces`, which
/// must answer 2xx.
async fn post(endpoint: &str, body: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or("only http:// endpoints are supported")?;
    let (authority, base) = rest.split_once('/').unwrap_or((rest, ""));
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|error| error.to_string())?;
    let path = format!("/{}", [base, "v1/traces"].join("/").trim_start_matches('/'));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|error| error.to_string())?;
    match &head[9..10] {
        b"2" => Ok(()),
        _ => Err(format!(
            "the collector answered {}",
            String::from_utf8_lossy(&head)
        )),
    }
}

/// A W3C `traceparent` (version 00): trace id, parent span id, sampled.
fn traceparent(value: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || flags.len() != 2 {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(parent, &mut span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let lowercase = |text: &str| !text.bytes().any(|byte| byte.is_ascii_uppercase());
    if trace_id == [0; 16] || span_id == [0; 8] || !lowercase(trace) || !lowercase(parent) {
        return None;
    }
    Some((trace_id, span_id, flags & 1 == 1))
}

fn new_trace() -> TraceContext {
    TraceContext {
        trace_id: random_id(),
        span_id: random_id(),
        sampled: true,
    }
}

/// A random id that is not all zeros (which OTLP reads as "none").
fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id != [0; N] {
            return id;
        }
    }
}

/// A span's or event's fields, as text.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn take(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(key, _)| key == name)?;
        Some(self.0.remove(at).1)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_traceparent_is_read() {
        let (trace, parent, sampled) =
            traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(parent), "00f067aa0ba902b7");
        assert!(sampled);
        assert!(
            !traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .2
        );
    }

    #[test]
    fn malformed_traceparents_start_a_trace_instead() {
        for value in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(traceparent(value).is_none(), "{value:?}");
        }
    }
}
