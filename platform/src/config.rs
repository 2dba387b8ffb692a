//! Server configuration, layered: built-in defaults, then an optional TOML
//! file, then `PLINTH_*` environment variables, then flags (clap merges the
//! last two, flags winning).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Everything a server needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where gRPC is served.
    pub listen: SocketAddr,
    /// Holds the SQLite database (embedded default) and the bootstrap key.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; defaults to SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub tls: Option<TlsConfig>,
    /// Serve plaintext on a non-loopback address (only behind a trusted proxy).
    pub allow_insecure_plaintext: bool,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Longest a unary call may run, whatever deadline the caller sets.
    pub max_call_seconds: u64,
    /// In-flight calls per connection beyond which new ones wait.
    pub max_concurrent_calls_per_connection: u32,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace_seconds: u64,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// `redis://…`: cross-replica cache invalidation and shared login
    /// counters. Unset keeps both in process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel this deployment uses.
    pub redis_prefix: String,
    /// Whether callers without credentials may sign up a tenant; unset means
    /// yes for the embedded default (no `database_url`), no otherwise.
    pub open_signup: Option<bool>,
    /// `iss` of access tokens.
    pub token_issuer: String,
    /// `aud` of access tokens.
    pub token_audience: String,
    pub access_token_seconds: u64,
    pub refresh_token_days: u64,
    /// Base64 of 32 bytes that encrypt signing keys at rest; unset reads (or
    /// first creates) `key-encryption-key` in the data directory.
    pub key_encryption_key: Option<Secret>,
    /// Failed logins an account gets before each further try must wait
    /// (doubling from 1 s).
    pub login_free_failures_per_account: u32,
    /// Failed logins a peer address gets before it must wait likewise.
    pub login_free_failures_per_peer: u32,
    /// Password hashes computed at once (each takes 19 MiB and a core for
    /// tens of milliseconds); further logins wait.
    pub password_hashing_concurrency: usize,
}

/// Server certificate and, for mTLS, the CA that client certificates must
/// chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// Client certificates are required when set (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// A configured secret: never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 16,
            tls: None,
            allow_insecure_plaintext: false,
            max_message_bytes: 4 * 1024 * 1024,
            max_call_seconds: 30,
            max_concurrent_calls_per_connection: 256,
            shutdown_grace_seconds: 10,
            log_format: LogFormat::Text,
            redis_url: None,
            redis_prefix: "plinth".to_owned(),
            open_signup: None,
            token_issuer: "plinth".to_owned(),
            token_audience: "plinth".to_owned(),
            access_token_seconds: 15 * 60,
            refresh_token_days: 30,
            key_encryption_key: None,
            login_free_failures_per_account: 5,
            login_free_failures_per_peer: 30,
            password_hashing_concurrency: std::thread::available_parallelism()
                .map_or(1, |cores| (cores.get() / 2).max(1)),
        }
    }
}

/// The flags (and their `PLINTH_*` variables) every server accepts.
#[derive(Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML file with any of the settings below.
    #[arg(long, env = "PLINTH_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "PLINTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "PLINTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "PLINTH_DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, env = "PLINTH_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    #[arg(long, env = "PLINTH_TLS_CERTIFICATE", requires = "tls_private_key")]
    pub tls_certificate: Option<PathBuf>,
    #[arg(long, env = "PLINTH_TLS_PRIVATE_KEY", requires = "tls_certificate")]
    pub tls_private_key: Option<PathBuf>,
    #[arg(long, env = "PLINTH_TLS_CLIENT_CA", requires = "tls_certificate")]
    pub tls_client_ca: Option<PathBuf>,
    #[arg(long, env = "PLINTH_ALLOW_INSECURE_PLAINTEXT")]
    pub allow_insecure_plaintext: bool,
    #[arg(long, env = "PLINTH_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    #[arg(long, env = "PLINTH_MAX_CALL_SECONDS")]
    pub max_call_seconds: Option<u64>,
    #[arg(long, env = "PLINTH_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "PLINTH_REDIS_URL")]
    pub redis_url: Option<String>,
    #[arg(long, env = "PLINTH_OPEN_SIGNUP")]
    pub open_signup: Option<bool>,
    #[arg(long, env = "PLINTH_ACCESS_TOKEN_SECONDS")]
    pub access_token_seconds: Option<u64>,
    /// Prefer the environment: flags show in process listings.
    #[arg(long, env = "PLINTH_KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "refusing to serve plaintext on {0}: configure TLS, listen on loopback, \
         or pass --allow-insecure-plaintext"
    )]
    PlaintextOffLoopback(SocketAddr),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl Config {
    /// Defaults, then the file named by `args.config`, then `args`.
    pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    fn apply(&mut self, args: &ConfigArgs) {
        if let Some(listen) = args.listen {
            self.listen = listen;
        }
        if let Some(data_dir) = &args.data_dir {
            self.data_dir.clone_from(data_dir);
        }
        if let Some(database_url) = &args.database_url {
            self.database_url = Some(database_url.clone());
        }
        if let Some(max) = args.database_max_connections {
            self.database_max_connections = max;
        }
        if let (Some(certificate), Some(private_key)) =
            (&args.tls_certificate, &args.tls_private_key)
        {
            self.tls = Some(TlsConfig {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
                client_ca: args.tls_client_ca.clone(),
            });
        }
        self.allow_insecure_plaintext |= args.allow_insecure_plaintext;
        if let Some(max) = args.max_message_bytes {
            self.max_message_bytes = max;
        }
        if let Some(seconds) = args.max_call_seconds {
            self.max_call_seconds = seconds;
        }
        if let Some(format) = args.log_format {
            self.log_format = format;
        }
        if let Some(redis_url) = &args.redis_url {
            self.redis_url = Some(redis_url.clone());
        }
        if let Some(open_signup) = args.open_signup {
            self.open_signup = Some(open_signup);
        }
        if let Some(seconds) = args.access_token_seconds {
            self.access_token_seconds = seconds;
        }
        if let Some(key) = &args.key_encryption_key {
            self.key_encryption_key = Some(Secret(key.clone()));
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_insecure_plaintext {
            return Err(ConfigError::PlaintextOffLoopback(self.listen));
        }
        for (name, value) in [
            ("max_message_bytes", self.max_message_bytes as u64),
            ("max_call_seconds", self.max_call_seconds),
            (
                "database_max_connections",
                u64::from(self.database_max_connections),
            ),
            (
                "max_concurrent_calls_per_connection",
                self.max_concurrent_calls_per_connection as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// The configured database, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("plinth.db").display()))
    }

    pub fn open_signup(&self) -> bool {
        self.open_signup.unwrap_or(self.database_url.is_none())
    }

    pub fn token_settings(&self) -> crate::identity::tokens::TokenSettings {
        crate::identity::tokens::TokenSettings {
            issuer: self.token_issuer.clone(),
            audience: self.token_audience.clone(),
            access_token_ttl: Duration::from_secs(self.access_token_seconds),
            leeway: Duration::from_secs(30),
        }
    }

    pub fn max_call_duration(&self) -> Duration {
        Duration::from_secs(self.max_call_seconds)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_serves_plaintext_on_loopback_only() {
        assert!(Config::load(&ConfigArgs::default()).is_ok());
        let public = ConfigArgs {
            listen: Some("0.0.0.0:50051".parse().unwrap()),
            ..ConfigArgs::default()
        };
        assert!(matches!(
            Config::load(&public),
            Err(ConfigError::PlaintextOffLoopback(_))
        ));
        let allowed = ConfigArgs {
            allow_insecure_plaintext: true,
            ..public
        };
        assert!(Config::load(&allowed).is_ok());
    }

    #[test]
    fn flags_override_the_file() {
        let directory =
            std::env::temp_dir().join(format!("plinth-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("plinth.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:7000\"\nmax_call_seconds = 5\n").unwrap();
        let args = ConfigArgs {
            config: Some(file),
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..ConfigArgs::default()
        };
        let config = Config::load(&args).unwrap();
        std::fs::remove_dir_all(directory).unwrap();
        assert_eq!(config.listen.port(), 7001);
        assert_eq!(config.max_call_seconds, 5);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let directory =
            std::env::temp_dir().join(format!("plinth-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("plinth.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:7000\"\n").unwrap();
        let result = Config::load(&ConfigArgs {
            config: Some(file),
            ..ConfigArgs::default()
        });
        std::fs::remove_dir_all(directory).unwrap();
        assert!(matches!(result, Err(ConfigError::Parse { .. })));
    }
}
