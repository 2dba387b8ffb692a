//! The gRPC server both binaries run: one tower stack, health per service
//! (NOT_SERVING while the database is unreachable), reflection v1 and
//! v1alpha, TLS or mTLS, limits, and a shutdown that drains in-flight calls.

mod admin;
mod batched_writes;
mod call_metrics;
mod connection_throttle;
mod rate_limiting;
mod rerouted;
mod shedding;
pub mod stack;

pub use rerouted::Rerouted;

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use futures_util::TryStreamExt;
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::RoutesBuilder,
    transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{config::Config, metrics::Metrics, store::Store};

/// How often the database is pinged for health.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("a TLS crypto provider is already installed")]
    CryptoProvider,
    #[error("cannot read TLS material {path}: {source}")]
    TlsFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The application services a server exposes, with their names for health.
#[derive(Default)]
pub struct ServiceSet {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
}

impl ServiceSet {
    pub fn add<S>(&mut self, service: S) -> &mut ServiceSet
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }
}

/// Serves `services` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    config: &Config,
    store: Store,
    callers: stack::Callers,
    metrics: Arc<Metrics>,
    mut services: ServiceSet,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.admin_listen,
            source,
        })?;
    if let Ok(address) = admin_listener.local_addr() {
        tracing::info!(%address, "admin port: /metrics, /livez, /readyz");
    }
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let names = services.names.clone();
    set_status(&reporter, &names, ServingStatus::Serving).await;
    let (ready, readiness) = tokio::sync::watch::channel(true);
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        metrics.clone(),
        readiness,
        admin_stopped,
    ));
    let health_probe = tokio::spawn(probe_database(
        store,
        reporter.clone(),
        names.clone(),
        ready.clone(),
    ));

    // Reflection lists what this server serves, not every service in the API.
    let reflection = || {
        let infrastructure = [
            tonic_health::pb::health_server::SERVICE_NAME,
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        names.iter().chain(&infrastructure).fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(plinth_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Error details (ErrorInfo, BadRequest, ...), so that grpcurl
                // shows them decoded.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false),
            |builder, name| builder.with_service_name(*name),
        )
    };
    services
        .routes
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let mut builder = Server::builder();
    if let Some(tls) = tls_config(&config.tls)? {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        // HTTP/2 caps in-flight calls per connection; clients queue beyond it.
        .max_concurrent_streams(config.max_concurrent_calls_per_connection)
        // Pings find peers that are gone or never read; their connections
        // close instead of holding answers forever.
        .http2_keepalive_interval(Some(Duration::from_secs(config.http2_keepalive_seconds)))
        .http2_keepalive_timeout(Some(Duration::from_secs(
            config.http2_keepalive_timeout_seconds,
        )))
        .layer(stack::call_stack(
            metrics,
            config.max_concurrent_calls as usize,
            config.max_call_duration(),
            config.max_message_bytes,
            callers,
        ))
        .add_routes(services.routes.routes());

    let throttle = connection_throttle::ConnectionThrottle::new(
        config.new_connections_per_peer_per_second,
        config.new_connections_per_peer_burst,
    );
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .try_filter(move |stream| {
            let admitted = stream
                .peer_addr()
                .is_ok_and(|peer| throttle.admits(peer.ip()));
            std::future::ready(admitted)
        })
        .map_ok(batched_writes::BatchedWrites::new);
    let (draining_sender, draining) = tokio::sync::oneshot::channel();
    let signal = async {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        set_status(&reporter, &names, ServingStatus::NotServing).await;
        ready.send_replace(false);
        let _ = draining_sender.send(());
    };
    let grace = config.shutdown_grace();
    let result = tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => served.map_err(ServeError::from),
        _ = async { if draining.await.is_ok() { tokio::time::sleep(grace).await } else { std::future::pending().await } } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "calls still running after the grace period; closing");
            Ok(())
        }
    };
    health_probe.abort();
    admin_stop.send_replace(true);
    let _ = admin.await;
    result
}

/// The server's TLS, when a certificate is configured (and its key, which
/// configuration validation guarantees).
fn tls_config(tls: &crate::config::TlsConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(certificate), Some(private_key)) = (&tls.certificate, &tls.private_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServeError::TlsFile {
            path: path.to_owned(),
            source,
        })
    };
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(certificate)?, read(private_key)?));
    if let Some(client_ca) = &tls.client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read(client_ca)?))
            .client_auth_optional(false);
    }
    Ok(Some(config))
}

async fn set_status(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Flips every service to NOT_SERVING (and the admin port's readiness off)
/// while the database does not answer.
async fn probe_database(
    store: Store,
    reporter: HealthReporter,
    names: Vec<&'static str>,
    ready: tokio::sync::watch::Sender<bool>,
) {
    let mut serving = true;
    let mut interval = tokio::time::interval(HEALTH_PROBE_INTERVAL);
    loop {
        interval.tick().await;
        let reachable = matches!(
            tokio::time::timeout(HEALTH_PROBE_INTERVAL, store.ping()).await,
            Ok(Ok(()))
        );
        if reachable != serving {
            serving = reachable;
            let status = if serving {
                tracing::info!("database reachable again");
                ServingStatus::Serving
            } else {
                tracing::warn!("database unreachable: reporting NOT_SERVING");
                ServingStatus::NotServing
            };
            set_status(&reporter, &names, status).await;
            ready.send_replace(serving);
        }
    }
}

/// Readies a server process: its logs and its one TLS crypto provider.
pub fn init_process(config: &Config) -> Result<(), ServeError> {
    crate::telemetry::init(config.log_format, config.otlp_endpoint.as_deref());
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| ServeError::CryptoProvider)
}

/// The listener on the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on unix");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
