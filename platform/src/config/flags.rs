//! The flags every server accepts (each also a `PLINTH_*` variable, which
//! clap reads), and how they overlay the configuration, key by key.

use std::{net::SocketAddr, path::PathBuf};

use super::{Config, LogFormat, Secret};

/// The flags (and their `PLINTH_*` variables) every server accepts, before
/// or after a subcommand.
#[derive(Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML file with any of the settings below
    #[arg(long, global = true, env = "PLINTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address gRPC is served on [default: 127.0.0.1:50051]
    #[arg(long, global = true, env = "PLINTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the admin HTTP port: /metrics, /livez, /readyz [default: 127.0.0.1:9464]
    #[arg(long, global = true, env = "PLINTH_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory for the embedded database and generated keys [default: data]
    #[arg(long, global = true, env = "PLINTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// postgres://… or sqlite://… [default: SQLite in the data directory]
    #[arg(long, global = true, env = "PLINTH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Database connections per server, 1 to 1000 [default: 16]
    #[arg(long, global = true, env = "PLINTH_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// PEM server certificate; enables TLS together with --tls-private-key
    #[arg(long, global = true, env = "PLINTH_TLS_CERTIFICATE")]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of the server certificate
    #[arg(long, global = true, env = "PLINTH_TLS_PRIVATE_KEY")]
    pub tls_private_key: Option<PathBuf>,
    /// PEM CA that client certificates must chain to (requires mTLS)
    #[arg(long, global = true, env = "PLINTH_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (only behind a trusted proxy)
    #[arg(long, global = true, env = "PLINTH_ALLOW_INSECURE_PLAINTEXT")]
    pub allow_insecure_plaintext: bool,
    /// Largest request message in bytes, 1 KiB to 64 MiB [default: 4194304]
    #[arg(long, global = true, env = "PLINTH_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Longest a call may run in seconds, 1 to 3600 [default: 30]
    #[arg(long, global = true, env = "PLINTH_MAX_CALL_SECONDS")]
    pub max_call_seconds: Option<u64>,
    /// In-flight calls per connection, 1 to 10000 [default: 256]
    #[arg(
        long,
        global = true,
        env = "PLINTH_MAX_CONCURRENT_CALLS_PER_CONNECTION"
    )]
    pub max_concurrent_calls_per_connection: Option<u32>,
    /// Unary calls in progress beyond which new ones are refused, 1 to 100000 [default: 1024]
    #[arg(long, global = true, env = "PLINTH_MAX_CONCURRENT_CALLS")]
    pub max_concurrent_calls: Option<u32>,
    /// New connections per second a peer address may open, 1 to 1000000 [default: 200]
    #[arg(
        long,
        global = true,
        env = "PLINTH_NEW_CONNECTIONS_PER_PEER_PER_SECOND"
    )]
    pub new_connections_per_peer_per_second: Option<u32>,
    /// New connections a peer address may open at once, 1 to 1000000 [default: 1000]
    #[arg(long, global = true, env = "PLINTH_NEW_CONNECTIONS_PER_PEER_BURST")]
    pub new_connections_per_peer_burst: Option<u32>,
    /// Seconds between HTTP/2 pings on a connection, 1 to 3600 [default: 60]
    #[arg(long, global = true, env = "PLINTH_HTTP2_KEEPALIVE_SECONDS")]
    pub http2_keepalive_seconds: Option<u64>,
    /// Seconds a ping may go unanswered before the connection closes, 1 to 600 [default: 20]
    #[arg(long, global = true, env = "PLINTH_HTTP2_KEEPALIVE_TIMEOUT_SECONDS")]
    pub http2_keepalive_timeout_seconds: Option<u64>,
    /// Calls per second of an API key without its own limit, 1 to 1000000 [default: 10000]
    #[arg(long, global = true, env = "PLINTH_API_KEY_CALLS_PER_SECOND")]
    pub api_key_calls_per_second: Option<u32>,
    /// Burst of an API key without its own limit, 1 to 1000000 [default: 20000]
    #[arg(long, global = true, env = "PLINTH_API_KEY_BURST")]
    pub api_key_burst: Option<u32>,
    /// Calls per second of each user, 1 to 1000000 [default: 100]
    #[arg(long, global = true, env = "PLINTH_USER_CALLS_PER_SECOND")]
    pub user_calls_per_second: Option<u32>,
    /// Burst of each user, 1 to 1000000 [default: 200]
    #[arg(long, global = true, env = "PLINTH_USER_BURST")]
    pub user_burst: Option<u32>,
    /// Seconds shutdown waits for in-flight calls, 0 to 3600 [default: 10]
    #[arg(long, global = true, env = "PLINTH_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Log format [default: text]
    #[arg(long, global = true, env = "PLINTH_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// http://host:port of an OTLP/HTTP trace collector [default: none]
    #[arg(long, global = true, env = "PLINTH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// redis://… (or a cluster's seed URLs, comma-separated) for cross-replica invalidation, counters and rate limits [default: none]
    #[arg(long, global = true, env = "PLINTH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of this deployment's Redis keys and channels [default: plinth]
    #[arg(long, global = true, env = "PLINTH_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Let callers without credentials sign up tenants [default: embedded only]
    #[arg(long, global = true, env = "PLINTH_OPEN_SIGNUP")]
    pub open_signup: Option<bool>,
    /// `iss` of access tokens [default: plinth]
    #[arg(long, global = true, env = "PLINTH_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// `aud` of access tokens [default: plinth]
    #[arg(long, global = true, env = "PLINTH_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Access token lifetime in seconds, 60 to 86400 [default: 900]
    #[arg(long, global = true, env = "PLINTH_ACCESS_TOKEN_SECONDS")]
    pub access_token_seconds: Option<u64>,
    /// Refresh token (session) lifetime in days, 1 to 365 [default: 30]
    #[arg(long, global = true, env = "PLINTH_REFRESH_TOKEN_DAYS")]
    pub refresh_token_days: Option<u64>,
    /// Base64 of 32 bytes sealing signing keys (prefer the environment)
    #[arg(
        long,
        global = true,
        env = "PLINTH_KEY_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub key_encryption_key: Option<String>,
    /// Failed logins per account before delays, 1 to 1000 [default: 5]
    #[arg(long, global = true, env = "PLINTH_LOGIN_FREE_FAILURES_PER_ACCOUNT")]
    pub login_free_failures_per_account: Option<u32>,
    /// Failed logins per peer address before delays, 1 to 1000 [default: 30]
    #[arg(long, global = true, env = "PLINTH_LOGIN_FREE_FAILURES_PER_PEER")]
    pub login_free_failures_per_peer: Option<u32>,
    /// Password hashes computed at once, 1 to 64 [default: half the cores]
    #[arg(long, global = true, env = "PLINTH_PASSWORD_HASHING_CONCURRENCY")]
    pub password_hashing_concurrency: Option<usize>,
}

/// Overlays each flag (or variable) that was given onto `config`.
macro_rules! overlay {
    ($config:ident, $args:ident; $($field:ident),+ $(,)?) => {
        $(if let Some(value) = &$args.$field {
            $config.$field = value.clone().into();
        })+
    };
}

impl Config {
    pub(super) fn apply(&mut self, args: &ConfigArgs) {
        let config = self;
        overlay!(config, args;
            listen,
            admin_listen,
            data_dir,
            database_max_connections,
            max_message_bytes,
            max_call_seconds,
            max_concurrent_calls_per_connection,
            max_concurrent_calls,
            new_connections_per_peer_per_second,
            new_connections_per_peer_burst,
            http2_keepalive_seconds,
            http2_keepalive_timeout_seconds,
            api_key_calls_per_second,
            api_key_burst,
            user_calls_per_second,
            user_burst,
            shutdown_grace_seconds,
            log_format,
            redis_prefix,
            token_issuer,
            token_audience,
            access_token_seconds,
            refresh_token_days,
            login_free_failures_per_account,
            login_free_failures_per_peer,
            password_hashing_concurrency,
            database_url,
            redis_url,
            otlp_endpoint,
            open_signup,
        );
        let tls = &mut config.tls;
        for (setting, flag) in [
            (&mut tls.certificate, &args.tls_certificate),
            (&mut tls.private_key, &args.tls_private_key),
            (&mut tls.client_ca, &args.tls_client_ca),
        ] {
            if flag.is_some() {
                setting.clone_from(flag);
            }
        }
        config.allow_insecure_plaintext |= args.allow_insecure_plaintext;
        if let Some(key) = &args.key_encryption_key {
            config.key_encryption_key = Some(Secret(key.clone()));
        }
    }
}
