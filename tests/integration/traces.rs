//! Trace export: a core-server process with `--otlp-endpoint` posts OTLP
//! (JSON) to a collector the test runs. A call continues its caller's
//! `traceparent`; its SQL statements and its module callbacks are child
//! spans; an unsampled caller's trace is not exported.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use plinth_api::{
    auth::v1::{ListApiKeysRequest, auth_service_client::AuthServiceClient},
    registry::v1::DiscoverInstancesRequest,
};
use plinth_client::{Client, testing::Provisioner};
use plinth_tests::{
    bench::{ServerProcess, core_server_command, free_address},
    core_server_binary,
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const STOCK_MANIFEST: &str = include_str!("../../examples/stock-rust/manifest.yaml");

/// A collector's OTLP/HTTP receiver, keeping every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start(self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let spans = self.spans.clone();
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 8192];
                    let body = loop {
                        let Ok(read) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        received.extend_from_slice(&buffer[..read]);
                        if let Some(body) = complete_body(&received) {
                            break body;
                        }
                    };
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let head = String::from_utf8_lossy(&received);
                    assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
                    for resource in request["resourceSpans"].as_array().unwrap() {
                        for scope in resource["scopeSpans"].as_array().unwrap() {
                            spans
                                .lock()
                                .unwrap()
                                .extend(scope["spans"].as_array().unwrap().iter().cloned());
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        address
    }

    /// Waits for a span matching `wanted`.
    async fn span(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|span| wanted(span)) {
                return span.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no such span among {:#?}",
                self.spans.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spans_of(&self, trace_id: &str) -> Vec<Value> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|span| span["traceId"] == trace_id)
            .cloned()
            .collect()
    }
}

/// The body of a complete request in `received`, once all of it came.
fn complete_body(received: &[u8]) -> Option<Vec<u8>> {
    let end = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")?
        + 4;
    let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    (received.len() >= end + length).then(|| received[end..end + length].to_vec())
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|attribute| attribute["key"] == key)?["value"]["stringValue"]
        .as_str()
}

/// A core-server exporting to `collector`, with its operator key.
async fn exporting_core(collector: SocketAddr) -> (ServerProcess, tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    let address = free_address().unwrap();
    let mut command = core_server_command(&core_server_binary(), address, data.path());
    command.args(["--otlp-endpoint", &format!("http://{collector}")]);
    let (server, _) = ServerProcess::start(command, address).await.unwrap();
    let key = std::fs::read_to_string(data.path().join(core_server::BOOTSTRAP_KEY_FILE)).unwrap();
    (server, data, key.trim().to_owned())
}

async fn list_keys_traced(address: SocketAddr, key: &str, traceparent: &str) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(ListApiKeysRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    AuthServiceClient::new(channel)
        .list_api_keys(request)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_continues_its_callers_trace_with_its_sql_as_child_spans() {
    let collector = Collector::default();
    let (server, _data, key) = exporting_core(collector.clone().start().await).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    list_keys_traced(
        server.address,
        &key,
        &format!("00-{trace_id}-{caller_span}-01"),
    )
    .await;

    let call = collector
        .span(|span| span["traceId"] == trace_id && span["kind"] == 2)
        .await;
    assert_eq!(call["parentSpanId"], caller_span);
    assert_eq!(call["name"], "plinth.auth.v1.AuthService/ListApiKeys");
    assert_eq!(attribute(&call, "rpc.system"), Some("grpc"));
    let statement = collector
        .span(|span| span["traceId"] == trace_id && span["parentSpanId"] == call["spanId"])
        .await;
    assert_eq!(statement["kind"], 3, "a CLIENT span of the store");
    assert!(
        attribute(&statement, "db.statement").is_some_and(|sql| sql.contains("api_keys")),
        "{statement:#}"
    );
    let (start, end) = (
        statement["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap(),
        statement["endTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap(),
    );
    assert!(start <= end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_callers_trace_is_not_exported_and_bad_traceparents_start_traces() {
    let collector = Collector::default();
    let (server, _data, key) = exporting_core(collector.clone().start().await).await;
    let unsampled = "11111111111111111111111111111111";
    let sampled_later = "22222222222222222222222222222222";

    list_keys_traced(
        server.address,
        &key,
        &format!("00-{unsampled}-00f067aa0ba902b7-00"),
    )
    .await;
    list_keys_traced(server.address, &key, "00-not-a-trace-01").await;
    list_keys_traced(
        server.address,
        &key,
        &format!("00-{sampled_later}-00f067aa0ba902b7-01"),
    )
    .await;

    collector
        .span(|span| span["traceId"] == sampled_later && span["kind"] == 2)
        .await;
    let listings: Vec<Value> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|span| span["name"] == "plinth.auth.v1.AuthService/ListApiKeys")
        .cloned()
        .collect();
    assert_eq!(
        listings.len(),
        2,
        "the unsampled call is left out: {listings:#?}"
    );
    let fresh = listings
        .iter()
        .find(|span| span["traceId"] != sampled_later)
        .unwrap();
    assert_eq!(fresh["parentSpanId"], "", "a trace of its own");
    assert!(collector.spans_of(unsampled).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_callback_is_a_client_span_of_the_call_that_made_it() {
    let collector = Collector::default();
    let (server, _data, key) = exporting_core(collector.clone().start().await).await;
    let operator = Client::builder(format!("http://{}", server.address))
        .api_key(key)
        .connect_lazy()
        .unwrap();
    let provisioner = Provisioner::new(operator.clone());
    let module_key = provisioner.publish_module(STOCK_MANIFEST).await.unwrap();
    let module = Client::builder(format!("http://{}", server.address))
        .api_key(module_key)
        .connect_lazy()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(stock_module::serve(module, listener, async {
        stopped.await.ok();
    }));
    let started = Instant::now();
    while operator
        .registry()
        .discover_instances(DiscoverInstancesRequest {
            module_id: "stock".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instances
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the module never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Enabling asks the module first (TENANT_ENABLING).
    provisioner
        .tenant("acme", "stock", r#"{"warehouse": "north"}"#)
        .await
        .unwrap();

    let callback = collector
        .span(|span| {
            span["name"] == "module_callback"
                && attribute(span, "callback") == Some("LIFECYCLE_CALLBACK_TENANT_ENABLING")
                && !span["parentSpanId"].as_str().unwrap_or_default().is_empty()
        })
        .await;
    assert_eq!(callback["kind"], 3);
    assert_eq!(attribute(&callback, "module_id"), Some("stock"));
    let call = collector
        .span(|span| span["spanId"] == callback["parentSpanId"])
        .await;
    assert_eq!(call["name"], "plinth.tenant.v1.TenantService/EnableModules");
    assert_eq!(call["traceId"], callback["traceId"]);
    let delivered = collector
        .span(|span| {
            span["name"] == "module_callback"
                && attribute(span, "callback") == Some("LIFECYCLE_CALLBACK_TENANT_ENABLED")
        })
        .await;
    assert_eq!(
        delivered["kind"], 3,
        "the outbox's delivery, in a trace of its own"
    );
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
