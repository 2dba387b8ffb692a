//! The module runtime: serves a module's gRPC services next to gRPC health
//! and the lifecycle callbacks, registers the instance with the registry,
//! heartbeats its lease, and on shutdown reports DRAINING, waits for
//! discovery to move callers away, deregisters and finishes its calls.

use std::{
    collections::BTreeMap, convert::Infallible, future::Future, net::SocketAddr, sync::Arc,
    time::Duration,
};

use plinth_api::{
    module::v1::module_lifecycle_service_server::ModuleLifecycleServiceServer,
    registry::v1::{
        DeregisterInstanceRequest, HeartbeatRequest, InstanceStatus, RegisterInstanceRequest,
    },
};
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::Routes,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    Client,
    lifecycle::{Lifecycle, LifecycleService},
};

/// Why a module stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{0}")]
    Invalid(String),
    #[error("the listener: {0}")]
    Listener(std::io::Error),
    #[error("registering the instance: {0}")]
    Register(tonic::Status),
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// One running instance of a module. Build it, add its services, and
/// [`serve`](Module::serve) it.
pub struct Module {
    client: Client,
    module_id: String,
    version: String,
    instance_key: String,
    labels: BTreeMap<String, String>,
    advertise: Option<String>,
    tls: Option<ServerTlsConfig>,
    routes: Routes,
    service_names: Vec<&'static str>,
    lease: Duration,
    drain: Duration,
}

impl Module {
    /// Module `module_id` at `version` (registered with the registry).
    pub fn new(client: &Client, module_id: &str, version: &str) -> Module {
        Module {
            client: client.clone(),
            module_id: module_id.to_owned(),
            version: version.to_owned(),
            instance_key: uuid::Uuid::now_v7().to_string(),
            labels: BTreeMap::new(),
            advertise: None,
            tls: None,
            routes: Routes::default(),
            service_names: Vec::new(),
            lease: Duration::from_secs(30),
            drain: Duration::from_secs(2),
        }
    }

    /// Answers the lifecycle callbacks with `lifecycle`.
    pub fn lifecycle(self, lifecycle: impl Lifecycle) -> Module {
        self.service(ModuleLifecycleServiceServer::new(LifecycleService(
            Arc::new(lifecycle),
        )))
    }

    /// Serves one of the module's gRPC services (wrap it in an
    /// [`Authenticator`](crate::Authenticator) layer to know its users).
    pub fn service<S>(mut self, service: S) -> Module
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self.service_names.push(S::NAME);
        self
    }

    /// The URL the registry publishes and the core calls back on; by
    /// default `http(s)://` and the listener's address.
    pub fn advertise(mut self, endpoint: impl Into<String>) -> Module {
        self.advertise = Some(endpoint.into());
        self
    }

    /// Serves TLS (and, with a client CA, requires the core's certificate).
    pub fn tls(mut self, tls: ServerTlsConfig) -> Module {
        self.tls = Some(tls);
        self
    }

    /// TLS from the environment, when `MODULE_SERVER_CERTIFICATE` and
    /// `MODULE_SERVER_PRIVATE_KEY` name PEM files: served with that
    /// certificate and, when `PLINTH_CA` is set too, requiring client
    /// certificates it signed (the core calls back with its own). Neither
    /// set: plaintext.
    pub fn tls_from_env(self) -> Result<Module, ModuleError> {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let read = |path: String| {
            std::fs::read(&path)
                .map_err(|error| ModuleError::Invalid(format!("reading {path}: {error}")))
        };
        let (certificate, key) = match (
            variable("MODULE_SERVER_CERTIFICATE"),
            variable("MODULE_SERVER_PRIVATE_KEY"),
        ) {
            (Some(certificate), Some(key)) => (read(certificate)?, read(key)?),
            (None, None) => return Ok(self),
            _ => {
                return Err(ModuleError::Invalid(
                    "set both MODULE_SERVER_CERTIFICATE and MODULE_SERVER_PRIVATE_KEY, or neither"
                        .into(),
                ));
            }
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(certificate, key));
        if let Some(ca) = variable("PLINTH_CA") {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(self.tls(tls))
    }

    /// Names the instance across restarts (default: a fresh UUID).
    pub fn instance_key(mut self, key: impl Into<String>) -> Module {
        self.instance_key = key.into();
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Module {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The lease asked for (5 s to 5 min; default 30 s).
    pub fn lease(mut self, lease: Duration) -> Module {
        self.lease = lease;
        self
    }

    /// How long the instance stays DRAINING before it deregisters and
    /// stops (default 2 s).
    pub fn drain(mut self, drain: Duration) -> Module {
        self.drain = drain;
        self
    }

    /// Serves on `listener` until `shutdown` completes, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ModuleError> {
        let address = listener.local_addr().map_err(ModuleError::Listener)?;
        let endpoint = match &self.advertise {
            Some(endpoint) => endpoint.clone(),
            None => default_endpoint(address, self.tls.is_some())?,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut server = Server::builder();
        if let Some(tls) = self.tls.clone() {
            server = server.tls_config(tls)?;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let serving = tokio::spawn(
            server
                .add_routes(self.routes.clone().add_service(health_service))
                .serve_with_incoming_shutdown(incoming, async {
                    stopped.await.ok();
                }),
        );
        let registration = Registration {
            client: self.client.clone(),
            request: RegisterInstanceRequest {
                module_id: self.module_id.clone(),
                version: self.version.clone(),
                endpoint,
                labels: self.labels.clone().into_iter().collect(),
                lease_ttl: prost_types::Duration::try_from(self.lease).ok(),
                instance_key: self.instance_key.clone(),
            },
        };
        let mut instance = registration
            .register()
            .await
            .map_err(ModuleError::Register)?;
        self.report(&health, ServingStatus::Serving).await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(instance.heartbeat_every) => {
                    instance = registration.heartbeat(instance).await;
                }
            }
        }
        self.report(&health, ServingStatus::NotServing).await;
        registration.drain(&instance.id).await;
        tokio::time::sleep(self.drain).await;
        registration.deregister(&instance.id).await;
        stop.send(()).ok();
        match serving.await {
            Ok(served) => Ok(served?),
            Err(panicked) => Err(ModuleError::Invalid(format!(
                "the server task failed: {panicked}"
            ))),
        }
    }

    async fn report(&self, health: &HealthReporter, status: ServingStatus) {
        health.set_service_status("", status).await;
        for name in &self.service_names {
            health.set_service_status(*name, status).await;
        }
    }
}

/// Completes on SIGTERM (as orchestrators stop processes) or Ctrl-C: the
/// usual `shutdown` of [`Module::serve`].
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; Ctrl-C only");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn default_endpoint(address: SocketAddr, tls: bool) -> Result<String, ModuleError> {
    if address.ip().is_unspecified() {
        return Err(ModuleError::Invalid(format!(
            "listening on {address}: set the address callers reach with Module::advertise"
        )));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{address}"))
}

struct Registration {
    client: Client,
    request: RegisterInstanceRequest,
}

struct Registered {
    id: String,
    heartbeat_every: Duration,
}

impl Registration {
    async fn register(&self) -> Result<Registered, tonic::Status> {
        let response = self
            .client
            .registry()
            .register_instance(self.request.clone())
            .await?
            .into_inner();
        let lease = response
            .lease_ttl
            .and_then(|lease| Duration::try_from(lease).ok())
            .unwrap_or(Duration::from_secs(30));
        let id = response
            .instance
            .map(|instance| instance.instance_id)
            .unwrap_or_default();
        tracing::info!(instance = %id, module = %self.request.module_id, "instance registered");
        // Serving from the first beat: the registration itself says STARTING.
        self.beat(&id, InstanceStatus::Serving).await?;
        Ok(Registered {
            id,
            heartbeat_every: lease / 3,
        })
    }

    async fn beat(&self, id: &str, status: InstanceStatus) -> Result<(), tonic::Status> {
        let request = HeartbeatRequest {
            instance_id: id.to_owned(),
            status: status.into(),
        };
        self.client.registry().heartbeat(request).await.map(drop)
    }

    /// Renews the lease; a lapsed lease registers the instance again.
    async fn heartbeat(&self, instance: Registered) -> Registered {
        match self.beat(&instance.id, InstanceStatus::Serving).await {
            Ok(()) => instance,
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::warn!(instance = %instance.id, "lease lapsed: registering again");
                self.register().await.unwrap_or(instance)
            }
            Err(status) => {
                tracing::warn!(instance = %instance.id, %status, "heartbeat failed");
                instance
            }
        }
    }

    async fn drain(&self, id: &str) {
        if let Err(status) = self.beat(id, InstanceStatus::Draining).await {
            tracing::warn!(instance = %id, %status, "could not report draining");
        }
    }

    async fn deregister(&self, id: &str) {
        let request = DeregisterInstanceRequest {
            instance_id: id.to_owned(),
        };
        if let Err(status) = self.client.registry().deregister_instance(request).await {
            tracing::warn!(instance = %id, %status, "could not deregister");
        }
    }
}
