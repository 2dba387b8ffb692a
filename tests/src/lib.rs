//! The test and benchmark harness: fresh databases per test and a sandbox
//! that boots the real server on an ephemeral port.
#![forbid(unsafe_code)]

pub mod abuse;
pub mod bench;
mod clients;
pub mod cluster;
pub mod forgeries;
pub mod load;
mod mutual_tls;
pub mod test_module;

pub use clients::{Clients, Credentials, KeyedChannel, create_key, module_key};
pub use mutual_tls::MutualTls;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use plinth_platform::{
    config::{Config, Secret, TlsConfig},
    store::Store,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

/// Where tests find PostgreSQL (trust auth); override with `PLINTH_TEST_POSTGRES_URL`.
fn postgres_admin_url() -> String {
    std::env::var("PLINTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The two storage backends every conformance test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database of its own for one test, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
    directory: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let directory = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", directory.path().join("plinth.db").display()),
                postgres_name: None,
                directory,
            },
            Backend::Postgres => {
                let name = format!("plinth_test_{}", Uuid::now_v7().simple());
                run_admin_statement(format!("CREATE DATABASE {name}")).await;
                let admin_url = postgres_admin_url();
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    postgres_name: Some(name),
                    directory,
                }
            }
        }
    }

    /// A migrated store over this database.
    pub async fn open_store(&self) -> Store {
        Store::open(&self.url, 8).await.expect("open store")
    }

    /// Makes the database disappear under a running server (PostgreSQL only).
    pub async fn drop_now(&self) {
        let name = self
            .postgres_name
            .as_ref()
            .expect("only PostgreSQL databases can be dropped");
        run_admin_statement(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }

    pub fn directory(&self) -> PathBuf {
        self.directory.path().to_owned()
    }

    /// Runs SQL straight on the database, as a corrupting disk or a careless
    /// operator would (tests of what the server does with such data).
    /// Answers how many rows it changed.
    pub async fn run_sql(&self, sql: impl Into<String>) -> u64 {
        let sql = sql.into();
        match self.postgres_name {
            Some(_) => execute_on::<sqlx::PgConnection>(&self.url, sql)
                .await
                .rows_affected(),
            None => execute_on::<sqlx::SqliteConnection>(&self.url, sql)
                .await
                .rows_affected(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            // Drop may run inside or outside a runtime: use a thread of its own.
            let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(run_admin_statement(statement));
            })
            .join();
        }
    }
}

async fn execute_on<C>(url: &str, sql: String) -> <C::Database as sqlx::Database>::QueryResult
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut connection = C::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut connection)
        .await
        .expect("sql")
}

async fn run_admin_statement(statement: String) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL must be running (README's test command starts it)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut connection)
        .await
        .expect("admin statement");
}

/// A running core-server on its own database and port.
pub struct Sandbox {
    pub address: SocketAddr,
    pub operator_key: String,
    pub config: Config,
    pub database: std::sync::Arc<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Sandbox {
    pub async fn start(backend: Backend) -> Sandbox {
        Sandbox::start_with(backend, |_| {}).await
    }

    /// Starts with the test's changes to the default configuration.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Sandbox {
        install_crypto_provider();
        let database = TestDatabase::create(backend).await;
        let mut config = Config {
            data_dir: database.directory().join("data"),
            database_url: Some(database.url.clone()),
            shutdown_grace_seconds: 2,
            key_encryption_key: Some(Secret::new(random_key_encryption_key())),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        configure(&mut config);
        Sandbox::boot(config, std::sync::Arc::new(database)).await
    }

    /// Another server on the same database and configuration, as a second
    /// replica behind a load balancer would be.
    pub async fn replica(&self) -> Sandbox {
        Sandbox::boot(self.config.clone(), self.database.clone()).await
    }

    async fn boot(config: Config, database: std::sync::Arc<TestDatabase>) -> Sandbox {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let config = config.clone();
            async move {
                core_server::run(config, listener, async {
                    let _ = shutdown_signal.await;
                })
                .await
                .expect("core-server runs");
            }
        });
        let key_file = config.data_dir.join(core_server::BOOTSTRAP_KEY_FILE);
        let operator_key = wait_for_file(&key_file).await;
        Sandbox {
            address,
            operator_key,
            config,
            database,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// A plaintext channel to the sandbox.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.address))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    /// Stops the server, then starts it again on the same database and
    /// configuration.
    pub async fn restart(self) -> Sandbox {
        let (config, database) = (self.config.clone(), self.database.clone());
        self.stop().await;
        Sandbox::boot(config, database).await
    }

    /// Stops the server, waiting for in-flight calls to drain.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Base64 of 32 random bytes, as operators generate one.
pub fn random_key_encryption_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("system randomness");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Configures TLS with the given PEM files.
pub fn tls_config(
    certificate: PathBuf,
    private_key: PathBuf,
    client_ca: Option<PathBuf>,
) -> TlsConfig {
    TlsConfig {
        certificate: Some(certificate),
        private_key: Some(private_key),
        client_ca,
    }
}

async fn wait_for_file(path: &std::path::Path) -> String {
    for _ in 0..200 {
        if let Ok(contents) = tokio::fs::read_to_string(path).await
            && !contents.is_empty()
        {
            return contents;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server did not write {}", path.display());
}

/// The `core-server` binary of this build (the test command builds it
/// before the tests), for tests that run it as its own process.
pub fn core_server_binary() -> PathBuf {
    workspace_binary("core-server")
}

/// A binary of this workspace, of the running binary's build profile (a
/// test in `target/<profile>/deps/`, or a tool such as `plinth-chaos`
/// beside the servers; the test command builds those the tests run).
pub fn workspace_binary(name: &str) -> PathBuf {
    let running = std::env::current_exe().expect("the running binary's path");
    let directory = running.parent().expect("target/<profile>/…");
    let profile_dir = if directory.ends_with("deps") {
        directory.parent().expect("target/<profile>/deps")
    } else {
        directory
    };
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p {name}` first (tests/run does)",
        binary.display()
    );
    binary
}

/// One HTTP/1.1 GET (or other `method`) of `path`: the status and body.
/// A server that is not listening yet gets 5 s to start.
pub async fn http_get(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut attempts = 0;
    let mut stream = loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => break stream,
            Err(_) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("connecting to {address}: {error}"),
        }
    };
    let request = format!("{method} {path} HTTP/1.1\r\nHost: plinth\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The repository's root.
pub fn repository() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
}

/// A file of the repository that the test command prepares (installed
/// clients and tools), failing with what to do when it is missing.
pub fn prepared(relative: &str) -> PathBuf {
    let path = repository().join(relative);
    assert!(
        path.exists(),
        "{} is missing: the test command (tests/run) prepares it",
        path.display()
    );
    path
}

/// Runs `command` to its end off the runtime's threads, failing with its
/// output unless it succeeds.
pub async fn run_to_success(mut command: std::process::Command) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread")
        .unwrap_or_else(|error| panic!("{program} does not start: {error}"));
    assert!(
        output.status.success(),
        "{program} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// rustls needs exactly one process-wide provider; tests share a process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `ErrorInfo.reason` of a status, if it carries one.
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// One `ErrorInfo.metadata` entry of a status, if it carries it.
pub fn error_metadata(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

/// Asserts a refusal's code and `ErrorInfo.reason`.
pub fn assert_refusal(status: &tonic::Status, code: tonic::Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some(reason), "{status:?}");
}

/// The field names of a status's `BadRequest` violations.
/// An INVALID_ARGUMENT refusal whose violations name exactly `fields`
/// (`case` says which request, when it fails).
pub fn assert_invalid(status: &tonic::Status, fields: &[&str], case: &dyn std::fmt::Debug) {
    assert_refusal(
        status,
        tonic::Code::InvalidArgument,
        "ERROR_REASON_INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(status), fields, "{case:?}");
}

pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// A Redis key prefix of one test's own, whose keys are deleted afterwards.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        TestRedis::at(
            &std::env::var("PLINTH_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        )
    }

    /// A prefix of its own on the Redis at `url`.
    pub fn at(url: &str) -> TestRedis {
        TestRedis {
            url: url.to_owned(),
            prefix: format!("plinth-test-{}", Uuid::now_v7().simple()),
        }
    }

    /// Points a server's configuration at this Redis prefix.
    pub fn configure(&self, config: &mut Config) {
        config.redis_url = Some(self.url.clone());
        config.redis_prefix = self.prefix.clone();
    }
}

impl Default for TestRedis {
    fn default() -> TestRedis {
        TestRedis::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut connection)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut connection);
        }
    }
}

/// Starts `count` calls at once (each told its index) and returns how many
/// succeeded and the statuses of those that did not.
pub async fn all_at_once<T, Call, CallFuture>(
    count: usize,
    call: Call,
) -> (usize, Vec<tonic::Status>)
where
    Call: Fn(usize) -> CallFuture,
    CallFuture: Future<Output = Result<T, tonic::Status>> + Send + 'static,
    T: Send + 'static,
{
    let running: Vec<_> = (0..count).map(|index| tokio::spawn(call(index))).collect();
    let mut succeeded = 0;
    let mut refused = Vec::new();
    for attempt in running {
        match attempt.await.expect("the call task completes") {
            Ok(_) => succeeded += 1,
            Err(status) => refused.push(status),
        }
    }
    (succeeded, refused)
}
