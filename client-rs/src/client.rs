//! The client a module builds once and clones freely: one connection to the
//! core, the raw stubs of every service over it, and typed helpers for what
//! modules do most.

use std::{path::Path, sync::Arc, time::Duration};

use http::HeaderValue;
use plinth_api::{
    audit::v1::{
        EventInput, RecordEventsRequest, RecordEventsResponse,
        audit_service_client::AuditServiceClient,
    },
    auth::v1::{VerifyTokenRequest, VerifyTokenResponse, auth_service_client::AuthServiceClient},
    rbac::v1::rbac_service_client::RbacServiceClient,
    registry::v1::module_registry_service_client::ModuleRegistryServiceClient,
    tenant::v1::{
        ModuleConfigResolution, ResolveModuleConfigRequest,
        tenant_service_client::TenantServiceClient,
    },
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{
    channel::{Idempotent, PlinthChannel, RetryPolicy, Settings},
    checks::{CheckCache, CheckCacheSettings},
    user::User,
};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error("reading {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("connecting to the core: {0}")]
    Connect(#[from] tonic::transport::Error),
}

/// The certificates of a TLS connection to the core: the CA that signed
/// the core's certificate, and the module's own certificate and key (PEM).
#[derive(Clone)]
pub struct Tls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Server authentication only.
    pub fn ca(ca_pem: impl Into<Vec<u8>>) -> Tls {
        Tls {
            ca: ca_pem.into(),
            identity: None,
        }
    }

    /// With the module's client certificate, for a core that requires mTLS.
    pub fn identity(self, certificate_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Tls {
        Tls {
            identity: Some((certificate_pem.into(), key_pem.into())),
            ..self
        }
    }

    /// Reads the CA and, when both are given, the client certificate and key.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Tls, ClientError> {
        let tls = Tls::ca(read(ca)?);
        Ok(match identity {
            Some((certificate, key)) => tls.identity(read(certificate)?, read(key)?),
            None => tls,
        })
    }

    fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((certificate, key)) => config.identity(Identity::from_pem(certificate, key)),
            None => config,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::File {
        path: path.to_owned(),
        source,
    })
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    endpoint: String,
    api_key: Option<String>,
    tls: Option<Tls>,
    timeout: Duration,
    connect_timeout: Duration,
    retries: RetryPolicy,
    checks: CheckCacheSettings,
}

impl ClientBuilder {
    /// The module's API key, sent as `x-api-key` on every call.
    pub fn api_key(mut self, api_key: impl Into<String>) -> ClientBuilder {
        self.api_key = Some(api_key.into());
        self
    }

    pub fn tls(mut self, tls: Tls) -> ClientBuilder {
        self.tls = Some(tls);
        self
    }

    /// The deadline of calls that set none (default 10 s); a call sets its
    /// own with `tonic::Request::set_timeout`.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    pub fn retries(mut self, retries: RetryPolicy) -> ClientBuilder {
        self.retries = retries;
        self
    }

    /// How long and how many permission answers [`Client::require`] keeps.
    pub fn check_cache(mut self, settings: CheckCacheSettings) -> ClientBuilder {
        self.checks = settings;
        self
    }

    /// Connects now, failing if the core cannot be reached.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let settings = self.settings()?;
        let channel = self.endpoint()?.connect().await?;
        Ok(self.client(channel, settings))
    }

    /// Connects at the first call (and again after the core went away).
    pub fn connect_lazy(self) -> Result<Client, ClientError> {
        let settings = self.settings()?;
        let channel = self.endpoint()?.connect_lazy();
        Ok(self.client(channel, settings))
    }

    fn settings(&self) -> Result<Settings, ClientError> {
        let api_key = self
            .api_key
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| ClientError::Invalid("the API key is not a valid header value".into()))?;
        Ok(Settings {
            api_key,
            default_timeout: self.timeout,
            retries: self.retries,
        })
    }

    fn endpoint(&self) -> Result<Endpoint, ClientError> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|_| ClientError::Invalid(format!("{:?} is not a URL", self.endpoint)))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        match &self.tls {
            Some(tls) => Ok(endpoint.tls_config(tls.config())?),
            None => Ok(endpoint),
        }
    }

    fn client(self, channel: tonic::transport::Channel, settings: Settings) -> Client {
        Client {
            channel: PlinthChannel::new(channel, settings),
            checks: Arc::new(CheckCache::new(self.checks)),
        }
    }
}

/// A connection to the core. Cheap to clone: clones share the connection
/// and the permission cache.
#[derive(Clone)]
pub struct Client {
    channel: PlinthChannel,
    checks: Arc<CheckCache>,
}

impl Client {
    /// A client of the core at `endpoint` (`https://core:50051`).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            api_key: None,
            tls: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retries: RetryPolicy::default(),
            checks: CheckCacheSettings::default(),
        }
    }

    /// A builder from the environment the example modules share:
    /// `PLINTH_TARGET` (a URL, or `host:port`: `https://` with a CA, else
    /// `http://`), `PLINTH_API_KEY`, and for TLS
    /// `PLINTH_CA` with, for mTLS, `PLINTH_CERTIFICATE` and
    /// `PLINTH_PRIVATE_KEY` (file paths).
    pub fn from_env() -> Result<ClientBuilder, ClientError> {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let target = variable("PLINTH_TARGET")
            .ok_or_else(|| ClientError::Invalid("PLINTH_TARGET is not set".into()))?;
        let ca = variable("PLINTH_CA");
        let endpoint = match (target.contains("://"), &ca) {
            (true, _) => target,
            (false, Some(_)) => format!("https://{target}"),
            (false, None) => format!("http://{target}"),
        };
        let mut builder = Client::builder(endpoint);
        if let Some(api_key) = variable("PLINTH_API_KEY") {
            builder = builder.api_key(api_key);
        }
        if let Some(ca) = ca {
            let certificate = variable("PLINTH_CERTIFICATE");
            let key = variable("PLINTH_PRIVATE_KEY");
            let identity = match (&certificate, &key) {
                (Some(certificate), Some(key)) => Some((Path::new(certificate), Path::new(key))),
                (None, None) => None,
                _ => {
                    return Err(ClientError::Invalid(
                        "set both PLINTH_CERTIFICATE and PLINTH_PRIVATE_KEY, or neither".into(),
                    ));
                }
            };
            builder = builder.tls(Tls::from_files(Path::new(&ca), identity)?);
        }
        Ok(builder)
    }

    /// The channel every stub below calls through, for other stubs.
    pub fn channel(&self) -> PlinthChannel {
        self.channel.clone()
    }

    pub fn auth(&self) -> AuthServiceClient<PlinthChannel> {
        AuthServiceClient::new(self.channel())
    }

    pub fn rbac(&self) -> RbacServiceClient<PlinthChannel> {
        RbacServiceClient::new(self.channel())
    }

    pub fn tenants(&self) -> TenantServiceClient<PlinthChannel> {
        TenantServiceClient::new(self.channel())
    }

    pub fn registry(&self) -> ModuleRegistryServiceClient<PlinthChannel> {
        ModuleRegistryServiceClient::new(self.channel())
    }

    pub fn audit(&self) -> AuditServiceClient<PlinthChannel> {
        AuditServiceClient::new(self.channel())
    }

    /// Asks the core whether an access token is valid now, its session
    /// included (local verification cannot see a revoked session).
    pub async fn verify_token(
        &self,
        access_token: &str,
    ) -> Result<VerifyTokenResponse, tonic::Status> {
        let request = VerifyTokenRequest {
            access_token: access_token.to_owned(),
        };
        Ok(self.auth().verify_token(request).await?.into_inner())
    }

    /// Succeeds when `user` holds `permission` in their tenant; otherwise
    /// PERMISSION_DENIED. Answers come from a short-lived cache (see
    /// [`CheckCacheSettings`]).
    pub async fn require(&self, user: &User, permission: &str) -> Result<(), tonic::Status> {
        self.require_in(user, permission, None, None).await
    }

    /// As [`Client::require`], for one company of the user's tenant and, when
    /// `consistency_token` is given (from an earlier RBAC answer), reflecting
    /// at least that change: a cached answer serves only if it was read at
    /// that token or later.
    pub async fn require_in(
        &self,
        user: &User,
        permission: &str,
        company_id: Option<&str>,
        consistency_token: Option<&str>,
    ) -> Result<(), tonic::Status> {
        let allowed = self
            .checks
            .allowed(
                &self.rbac(),
                user,
                permission,
                company_id,
                consistency_token,
            )
            .await?;
        if allowed {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "the permission {permission} is required"
            )))
        }
    }

    /// The module's configuration for a tenant (or one of its companies):
    /// module defaults, tenant and company settings merged.
    pub async fn resolve_config(
        &self,
        module_id: &str,
        tenant_id: &str,
        company_id: Option<&str>,
    ) -> Result<ModuleConfigResolution, tonic::Status> {
        let request = ResolveModuleConfigRequest {
            module_id: module_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            company_id: company_id.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        self.tenants()
            .resolve_module_config(request)
            .await?
            .into_inner()
            .resolution
            .ok_or_else(|| tonic::Status::internal("the core answered without a resolution"))
    }

    /// Records events in a tenant's audit chain, as `claimed_user_id` when
    /// the module acts for a user. Events without an idempotency key get
    /// one, and without a time the time now, so that a retry after the core
    /// was unavailable cannot record them twice.
    pub async fn record_events(
        &self,
        tenant_id: &str,
        claimed_user_id: Option<&str>,
        mut events: Vec<EventInput>,
    ) -> Result<RecordEventsResponse, tonic::Status> {
        let now = prost_types::Timestamp::from(std::time::SystemTime::now());
        // Microseconds, as the core keeps them, so a retry is the same event.
        let now = prost_types::Timestamp {
            nanos: now.nanos - now.nanos % 1_000,
            ..now
        };
        for event in &mut events {
            if event.idempotency_key.is_empty() {
                event.idempotency_key = uuid::Uuid::now_v7().to_string();
            }
            event.occurred_at.get_or_insert(now);
        }
        let mut request = tonic::Request::new(RecordEventsRequest {
            tenant_id: tenant_id.to_owned(),
            events,
            claimed_user_id: claimed_user_id.unwrap_or_default().to_owned(),
        });
        request.extensions_mut().insert(Idempotent);
        Ok(self.audit().record_events(request).await?.into_inner())
    }
}
