//! What a server process counts, served as Prometheus text on the admin
//! port: every gRPC call under the usual server metric names
//! (`grpc_server_started_total`, `grpc_server_handled_total` by code,
//! `grpc_server_handling_seconds`), cache hits and misses per cache, and
//! gauges read when scraped (database connections, the callback outbox,
//! leases).
//!
//! Method labels come from the API's descriptor set: a path no service
//! declares is counted as `unknown`, so callers cannot grow the series.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Instant,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use prost::Message;
use tonic::Code;

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: Arc<str>,
    grpc_method: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: Arc<str>,
    grpc_method: Arc<str>,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// One gauge's labels: which part of what it measures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GaugeLabels {
    pub of: &'static str,
}

/// The families every method's series belong to.
#[derive(Clone)]
struct CallFamilies {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<MethodLabels, Histogram>,
}

/// One method's series, made on its first call.
pub struct MethodSeries {
    labels: MethodLabels,
    families: CallFamilies,
    started: OnceLock<Counter>,
    handling: OnceLock<Histogram>,
    handled: [OnceLock<Counter>; 17],
}

impl MethodSeries {
    fn new(labels: MethodLabels, families: CallFamilies) -> MethodSeries {
        MethodSeries {
            labels,
            families,
            started: OnceLock::new(),
            handling: OnceLock::new(),
            handled: Default::default(),
        }
    }

    pub fn start(&self) {
        self.started
            .get_or_init(|| self.families.started.get_or_create(&self.labels).clone())
            .inc();
    }

    /// The call ended with `code`, `started` ago.
    pub fn finish(&self, code: Code, started: Instant) {
        let index = (code as usize).min(self.handled.len() - 1);
        self.handled[index]
            .get_or_init(|| {
                let labels = HandledLabels {
                    grpc_type: self.labels.grpc_type,
                    grpc_service: self.labels.grpc_service.clone(),
                    grpc_method: self.labels.grpc_method.clone(),
                    grpc_code: code_name(code),
                };
                self.families.handled.get_or_create(&labels).clone()
            })
            .inc();
        self.handling
            .get_or_init(|| self.families.handling.get_or_create(&self.labels).clone())
            .observe(started.elapsed().as_secs_f64());
    }
}

/// How a cache answered: a counter pair, cheap to clone.
#[derive(Clone, Default)]
pub struct CacheCounters {
    hits: Counter,
    misses: Counter,
}

impl CacheCounters {
    pub fn hit(&self) {
        self.hits.inc();
    }

    pub fn miss(&self) {
        self.misses.inc();
    }
}

type Reading = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Sets gauges from a source read at scrape time.
pub type GaugeReader = Box<dyn Fn() -> Reading + Send + Sync>;

/// The metrics of one server process.
pub struct Metrics {
    registry: Registry,
    methods: HashMap<Box<str>, Arc<MethodSeries>>,
    unknown: Arc<MethodSeries>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    gauges: HashMap<&'static str, Family<GaugeLabels, Gauge>>,
    readers: Mutex<Vec<Arc<GaugeReader>>>,
}

/// The gauges a server sets when scraped, each with its help text.
const GAUGES: &[(&str, &str)] = &[
    (
        "plinth_database_connections",
        "Database pool connections, by state (idle, in_use) and the pool's maximum",
    ),
    (
        "plinth_callback_backlog",
        "Lifecycle callbacks waiting in the outbox for delivery",
    ),
    (
        "plinth_registry_leases",
        "Module instances holding a live lease, by status",
    ),
];

impl Metrics {
    /// Metrics for the methods of the services in `descriptor_sets`
    /// (encoded `FileDescriptorSet`s).
    pub fn new(descriptor_sets: &[&[u8]]) -> Metrics {
        let mut registry = Registry::default();
        let families = CallFamilies {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        };
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            families.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by code",
            families.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a call's start to its last byte, in seconds",
            families.handling.clone(),
        );
        let cache_hits = Family::default();
        let cache_misses = Family::default();
        registry.register(
            "plinth_cache_hits",
            "Lookups a cache answered",
            cache_hits.clone(),
        );
        registry.register(
            "plinth_cache_misses",
            "Lookups a cache had to read through",
            cache_misses.clone(),
        );
        let gauges = GAUGES
            .iter()
            .map(|&(name, help)| {
                let family = Family::<GaugeLabels, Gauge>::default();
                registry.register(name, help, family.clone());
                (name, family)
            })
            .collect();
        let series = |grpc_type, service: &str, method: &str| {
            Arc::new(MethodSeries::new(
                MethodLabels {
                    grpc_type,
                    grpc_service: Arc::from(service),
                    grpc_method: Arc::from(method),
                },
                families.clone(),
            ))
        };
        let methods = declared_methods(descriptor_sets)
            .map(|method| {
                let path = method.path();
                let series = series(method.grpc_type, &method.service, &method.name);
                (path.into_boxed_str(), series)
            })
            .collect();
        Metrics {
            registry,
            methods,
            unknown: series("unknown", "unknown", "unknown"),
            cache_hits,
            cache_misses,
            gauges,
            readers: Mutex::new(Vec::new()),
        }
    }

    /// The series of the method at `path`.
    pub fn method(&self, path: &str) -> Arc<MethodSeries> {
        self.methods.get(path).unwrap_or(&self.unknown).clone()
    }

    /// The counters of the cache named `cache`.
    pub fn cache(&self, cache: &'static str) -> CacheCounters {
        let labels = CacheLabels { cache };
        CacheCounters {
            hits: self.cache_hits.get_or_create(&labels).clone(),
            misses: self.cache_misses.get_or_create(&labels).clone(),
        }
    }

    /// The gauge `name` (one of [`GAUGES`]) for `of`.
    pub fn gauge(&self, name: &str, of: &'static str) -> Gauge {
        self.gauges
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a declared gauge"))
            .get_or_create(&GaugeLabels { of })
            .clone()
    }

    /// Reads gauges each time the metrics are scraped.
    pub fn read_at_scrape(&self, reader: GaugeReader) {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(reader));
    }

    /// The Prometheus (OpenMetrics) text, gauges read now.
    pub async fn scrape(&self) -> String {
        let readers = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for reader in readers {
            reader().await;
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// A method some service declares.
pub struct DeclaredMethod {
    /// `package.Service`.
    pub service: String,
    pub name: String,
    /// `unary`, `server_stream`, `client_stream` or `bidi_stream`.
    pub grpc_type: &'static str,
}

impl DeclaredMethod {
    /// `/package.Service/Method`, as requests name it.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.name)
    }
}

/// The methods of the services in `descriptor_sets` (encoded
/// `FileDescriptorSet`s).
pub fn declared_methods(descriptor_sets: &[&[u8]]) -> impl Iterator<Item = DeclaredMethod> {
    descriptor_sets
        .iter()
        .filter_map(|encoded| prost_types::FileDescriptorSet::decode(*encoded).ok())
        .flat_map(|set| set.file)
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service.into_iter().flat_map(move |service| {
                let service_name = format!("{package}.{}", service.name());
                service
                    .method
                    .into_iter()
                    .map(move |method| DeclaredMethod {
                        service: service_name.clone(),
                        name: method.name().to_owned(),
                        grpc_type: grpc_type(&method),
                    })
            })
        })
}

/// The descriptor sets of everything a Plinth server serves.
pub const SERVED_DESCRIPTOR_SETS: &[&[u8]] = &[
    plinth_api::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

fn grpc_type(method: &prost_types::MethodDescriptorProto) -> &'static str {
    match (method.client_streaming(), method.server_streaming()) {
        (false, false) => "unary",
        (false, true) => "server_stream",
        (true, false) => "client_stream",
        (true, true) => "bidi_stream",
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_method_gets_its_own_series_and_any_other_path_the_unknown_one() {
        let metrics = Metrics::new(&[plinth_api::FILE_DESCRIPTOR_SET]);
        let check = metrics.method("/plinth.rbac.v1.RbacService/Check");
        check.start();
        check.finish(Code::PermissionDenied, Instant::now());
        metrics
            .method("/plinth.rbac.v1.RbacService/NoSuchMethod")
            .start();
        metrics.method("/../../etc/passwd").start();
        let text = futures_util::FutureExt::now_or_never(metrics.scrape()).unwrap();
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="plinth.rbac.v1.RbacService",grpc_method="Check",grpc_code="PermissionDenied"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"grpc_server_started_total{grpc_type="unknown",grpc_service="unknown",grpc_method="unknown"} 2"#
        ), "{text}");
        assert!(!text.contains("passwd"));
    }
}
