//! Server configuration, layered: built-in defaults, then an optional TOML
//! file, then `PLINTH_*` environment variables, then flags (clap merges the
//! last two, flags winning). Each key merges on its own, the `[tls]` keys
//! included, and every value is bounded.

use std::{
    net::SocketAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::rate_limits::{MAX_RATE, RateLimit};

mod flags;

pub use flags::ConfigArgs;

/// Everything a server needs to start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where gRPC is served.
    pub listen: SocketAddr,
    /// Where the admin HTTP port serves `/metrics`, `/livez` and `/readyz`.
    pub admin_listen: SocketAddr,
    /// Holds the SQLite database (embedded default) and the bootstrap key.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; defaults to SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub tls: TlsConfig,
    /// Serve plaintext on a non-loopback address (only behind a trusted proxy).
    pub allow_insecure_plaintext: bool,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Longest a unary call may run, whatever deadline the caller sets.
    pub max_call_seconds: u64,
    /// In-flight calls per connection beyond which new ones wait.
    pub max_concurrent_calls_per_connection: u32,
    /// Unary calls in progress in the whole process beyond which new ones
    /// are refused at once (UNAVAILABLE, OVERLOADED).
    pub max_concurrent_calls: u32,
    /// New connections a peer address may open per second (GCRA, past the
    /// burst); the excess is closed right after accept. Clients keep their
    /// connections; floods of reconnecting attackers do not get far.
    pub new_connections_per_peer_per_second: u32,
    pub new_connections_per_peer_burst: u32,
    /// Every connection is pinged this often; one that does not answer
    /// within `http2_keepalive_timeout_seconds` (a peer gone, or one that
    /// never reads) is closed, and what it held is freed.
    pub http2_keepalive_seconds: u64,
    pub http2_keepalive_timeout_seconds: u64,
    /// The rate limit (GCRA) of API keys without one of their own.
    pub api_key_calls_per_second: u32,
    pub api_key_burst: u32,
    /// The rate limit of each user's calls (a module acting for a user
    /// spends the user's budget and its key's).
    pub user_calls_per_second: u32,
    pub user_burst: u32,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace_seconds: u64,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// `http://host:port` of an OpenTelemetry collector's OTLP/HTTP
    /// receiver: traces of calls, SQL statements and module callbacks go
    /// there. Unset exports nothing.
    pub otlp_endpoint: Option<String>,
    /// `redis://…`: cross-replica cache invalidation, shared login counters
    /// and rate limits; several URLs separated by commas are a Redis
    /// Cluster's seed nodes. Unset keeps all of it in process.
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
    /// Base64 of 32 bytes that encrypt signing keys at rest. Required with
    /// PostgreSQL (every replica needs the same one); with the embedded
    /// default, unset reads (or first creates) `key-encryption-key` in the
    /// data directory.
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

/// The server certificate and, for mTLS, the CA that client certificates
/// must chain to. With both, the server also calls module instances (health
/// probes) over mTLS: it trusts that CA for their certificates and presents
/// its own, which must therefore allow client authentication too. Each key
/// merges across layers on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    /// Client certificates are required when set (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.certificate.is_some()
    }
}

/// A configured secret: never shown by `Debug` or when printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 16,
            tls: TlsConfig::default(),
            allow_insecure_plaintext: false,
            max_message_bytes: 4 * 1024 * 1024,
            max_call_seconds: 30,
            max_concurrent_calls_per_connection: 256,
            max_concurrent_calls: 1024,
            new_connections_per_peer_per_second: 100,
            new_connections_per_peer_burst: 200,
            http2_keepalive_seconds: 60,
            http2_keepalive_timeout_seconds: 20,
            api_key_calls_per_second: 10_000,
            api_key_burst: 20_000,
            user_calls_per_second: 100,
            user_burst: 200,
            shutdown_grace_seconds: 10,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
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
    #[error("{name} must be between {} and {}", .range.start(), .range.end())]
    OutOfRange {
        name: &'static str,
        range: RangeInclusive<u64>,
    },
    #[error("tls.certificate and tls.private_key must be set together")]
    IncompleteTls,
    #[error("otlp_endpoint must be http://host:port (at most 200 characters)")]
    OtlpEndpoint,
    #[error("tls.client_ca needs tls.certificate and tls.private_key")]
    ClientCaWithoutTls,
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

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let well_formed = endpoint.len() <= 200
                && endpoint.strip_prefix("http://").is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|byte| byte.is_ascii_graphic())
                });
            if !well_formed {
                return Err(ConfigError::OtlpEndpoint);
            }
        }
        if self.tls.certificate.is_some() != self.tls.private_key.is_some() {
            return Err(ConfigError::IncompleteTls);
        }
        if self.tls.client_ca.is_some() && !self.tls.enabled() {
            return Err(ConfigError::ClientCaWithoutTls);
        }
        if !self.tls.enabled() && !self.listen.ip().is_loopback() && !self.allow_insecure_plaintext
        {
            return Err(ConfigError::PlaintextOffLoopback(self.listen));
        }
        for (name, value, range) in [
            (
                "database_max_connections",
                u64::from(self.database_max_connections),
                1..=1000,
            ),
            (
                "max_message_bytes",
                self.max_message_bytes as u64,
                1024..=64 * 1024 * 1024,
            ),
            ("max_call_seconds", self.max_call_seconds, 1..=3600),
            (
                "max_concurrent_calls_per_connection",
                u64::from(self.max_concurrent_calls_per_connection),
                1..=10_000,
            ),
            (
                "max_concurrent_calls",
                u64::from(self.max_concurrent_calls),
                1..=100_000,
            ),
            (
                "new_connections_per_peer_per_second",
                u64::from(self.new_connections_per_peer_per_second),
                1..=1_000_000,
            ),
            (
                "new_connections_per_peer_burst",
                u64::from(self.new_connections_per_peer_burst),
                1..=1_000_000,
            ),
            (
                "http2_keepalive_seconds",
                self.http2_keepalive_seconds,
                1..=3600,
            ),
            (
                "http2_keepalive_timeout_seconds",
                self.http2_keepalive_timeout_seconds,
                1..=600,
            ),
            (
                "api_key_calls_per_second",
                u64::from(self.api_key_calls_per_second),
                1..=u64::from(MAX_RATE),
            ),
            (
                "api_key_burst",
                u64::from(self.api_key_burst),
                1..=u64::from(MAX_RATE),
            ),
            (
                "user_calls_per_second",
                u64::from(self.user_calls_per_second),
                1..=u64::from(MAX_RATE),
            ),
            (
                "user_burst",
                u64::from(self.user_burst),
                1..=u64::from(MAX_RATE),
            ),
            (
                "shutdown_grace_seconds",
                self.shutdown_grace_seconds,
                0..=3600,
            ),
            (
                "access_token_seconds",
                self.access_token_seconds,
                60..=86_400,
            ),
            ("refresh_token_days", self.refresh_token_days, 1..=365),
            (
                "login_free_failures_per_account",
                u64::from(self.login_free_failures_per_account),
                1..=1000,
            ),
            (
                "login_free_failures_per_peer",
                u64::from(self.login_free_failures_per_peer),
                1..=1000,
            ),
            (
                "password_hashing_concurrency",
                self.password_hashing_concurrency as u64,
                1..=64,
            ),
        ] {
            if !range.contains(&value) {
                return Err(ConfigError::OutOfRange { name, range });
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serialises")
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

    pub fn refresh_token_ttl(&self) -> chrono::Duration {
        chrono::Duration::days(self.refresh_token_days as i64)
    }

    pub fn max_call_duration(&self) -> Duration {
        Duration::from_secs(self.max_call_seconds)
    }

    /// The limits of keys without their own, and of users.
    pub fn rate_limits(&self) -> (RateLimit, RateLimit) {
        (
            RateLimit {
                calls_per_second: self.api_key_calls_per_second,
                burst: self.api_key_burst,
            },
            RateLimit {
                calls_per_second: self.user_calls_per_second,
                burst: self.user_burst,
            },
        )
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("plinth.toml");
        std::fs::write(&file, contents).unwrap();
        (directory, file)
    }

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
        let (_directory, file) = file_with("listen = \"127.0.0.1:7000\"\nmax_call_seconds = 5\n");
        let args = ConfigArgs {
            config: Some(file),
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..ConfigArgs::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.listen.port(), 7001);
        assert_eq!(config.max_call_seconds, 5);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let (_directory, file) = file_with("lisen = \"127.0.0.1:7000\"\n");
        let result = Config::load(&ConfigArgs {
            config: Some(file),
            ..ConfigArgs::default()
        });
        assert!(matches!(result, Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn each_tls_key_merges_on_its_own_across_every_layer_combination() {
        // Each of the three keys comes from the file, the flags, both (the
        // flag wins) or neither; every combination keeps every key given.
        let sources = ["none", "file", "flag", "both"];
        for certificate_from in sources {
            for private_key_from in sources {
                for client_ca_from in sources {
                    let mut file = String::from("[tls]\n");
                    let mut args = ConfigArgs::default();
                    let mut expected = TlsConfig::default();
                    for (key, from, flag, wanted) in [
                        (
                            "certificate",
                            certificate_from,
                            &mut args.tls_certificate,
                            &mut expected.certificate,
                        ),
                        (
                            "private_key",
                            private_key_from,
                            &mut args.tls_private_key,
                            &mut expected.private_key,
                        ),
                        (
                            "client_ca",
                            client_ca_from,
                            &mut args.tls_client_ca,
                            &mut expected.client_ca,
                        ),
                    ] {
                        if matches!(from, "file" | "both") {
                            file.push_str(&format!("{key} = \"/file/{key}\"\n"));
                            *wanted = Some(PathBuf::from(format!("/file/{key}")));
                        }
                        if matches!(from, "flag" | "both") {
                            *flag = Some(PathBuf::from(format!("/flag/{key}")));
                            *wanted = flag.clone();
                        }
                    }
                    let (_directory, path) = file_with(&file);
                    args.config = Some(path);
                    let case = format!("{certificate_from}/{private_key_from}/{client_ca_from}");
                    match Config::load(&args) {
                        Ok(config) => assert_eq!(config.tls, expected, "{case}"),
                        Err(ConfigError::IncompleteTls) => assert_ne!(
                            expected.certificate.is_some(),
                            expected.private_key.is_some(),
                            "{case}"
                        ),
                        Err(ConfigError::ClientCaWithoutTls) => {
                            assert!(
                                expected.client_ca.is_some() && expected.certificate.is_none(),
                                "{case}"
                            )
                        }
                        Err(other) => panic!("{case}: {other}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_client_ca_from_the_file_survives_certificates_from_flags() {
        let (_directory, file) = file_with("[tls]\nclient_ca = \"/etc/plinth/ca.pem\"\n");
        let config = Config::load(&ConfigArgs {
            config: Some(file),
            tls_certificate: Some("/env/server.pem".into()),
            tls_private_key: Some("/env/server.key".into()),
            ..ConfigArgs::default()
        })
        .unwrap();
        assert_eq!(
            config.tls.client_ca,
            Some(PathBuf::from("/etc/plinth/ca.pem"))
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for args in [
            ConfigArgs {
                access_token_seconds: Some(10_000_000_000_000),
                ..ConfigArgs::default()
            },
            ConfigArgs {
                refresh_token_days: Some(u64::MAX),
                ..ConfigArgs::default()
            },
            ConfigArgs {
                max_call_seconds: Some(0),
                ..ConfigArgs::default()
            },
            ConfigArgs {
                password_hashing_concurrency: Some(0),
                ..ConfigArgs::default()
            },
            ConfigArgs {
                user_burst: Some(0),
                ..ConfigArgs::default()
            },
            ConfigArgs {
                api_key_calls_per_second: Some(1_000_001),
                ..ConfigArgs::default()
            },
            ConfigArgs {
                http2_keepalive_timeout_seconds: Some(0),
                ..ConfigArgs::default()
            },
        ] {
            assert!(matches!(
                Config::load(&args),
                Err(ConfigError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn an_otlp_endpoint_must_be_plain_http_host_and_port() {
        for endpoint in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http://collector :4318",
            &format!("http://{}", "c".repeat(200)),
        ] {
            let args = ConfigArgs {
                otlp_endpoint: Some(endpoint.to_owned()),
                ..ConfigArgs::default()
            };
            assert!(
                matches!(Config::load(&args), Err(ConfigError::OtlpEndpoint)),
                "{endpoint}"
            );
        }
        let args = ConfigArgs {
            otlp_endpoint: Some("http://127.0.0.1:4318".to_owned()),
            ..ConfigArgs::default()
        };
        assert!(Config::load(&args).is_ok());
    }

    #[test]
    fn printed_configuration_hides_the_key_encryption_key() {
        let config = Config::load(&ConfigArgs {
            key_encryption_key: Some("c2VjcmV0".to_owned()),
            ..ConfigArgs::default()
        })
        .unwrap();
        let printed = config.to_toml();
        assert!(printed.contains("[redacted]"));
        assert!(!printed.contains("c2VjcmV0"));
    }
}
