//! A deployment in miniature for fault tests: `core-server` replicas in
//! processes of their own on one PostgreSQL database and one Redis prefix,
//! which a test kills (SIGKILL) and starts again; and a PostgreSQL server
//! of a test's own, which it can stop and start without touching the
//! machine's.

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use plinth_client::Client;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    TestRedis,
    bench::{ServerProcess, core_server_command, free_address},
    core_server_binary, random_key_encryption_key, workspace_binary,
};

struct Replica {
    binary: PathBuf,
    address: SocketAddr,
    data: tempfile::TempDir,
    process: Option<ServerProcess>,
}

/// `core-server` replicas and one `registry-server` sharing a database and
/// Redis, as behind a load balancer. Indices below [`Cluster::registry`]
/// are core replicas.
pub struct Cluster {
    database_url: String,
    redis_url: String,
    redis_prefix: String,
    key_encryption_key: String,
    replicas: Vec<Replica>,
    pub operator_key: String,
}

impl Cluster {
    /// Starts `count` core replicas on `database_url` and `redis`, one after
    /// the other (the first one migrates and makes the operator key), then a
    /// registry-server.
    pub async fn start(count: usize, database_url: &str, redis: &TestRedis) -> Cluster {
        let mut cluster = Cluster {
            database_url: database_url.to_owned(),
            redis_url: redis.url.clone(),
            redis_prefix: redis.prefix.clone(),
            key_encryption_key: random_key_encryption_key(),
            replicas: Vec::with_capacity(count + 1),
            operator_key: String::new(),
        };
        let binaries = std::iter::repeat_n(core_server_binary(), count)
            .chain([workspace_binary("registry-server")]);
        for (index, binary) in binaries.enumerate() {
            cluster.replicas.push(Replica {
                binary,
                address: free_address().expect("a free port"),
                data: tempfile::tempdir().expect("a data directory"),
                process: None,
            });
            cluster.start_replica(index).await;
        }
        let key_file = cluster.replicas[0]
            .data
            .path()
            .join(core_server::BOOTSTRAP_KEY_FILE);
        cluster.operator_key = std::fs::read_to_string(key_file)
            .expect("the first replica made the operator key")
            .trim()
            .to_owned();
        cluster
    }

    /// The index of the registry-server.
    pub fn registry(&self) -> usize {
        self.replicas.len() - 1
    }

    /// `http://` and replica `index`'s address.
    pub fn endpoint(&self, index: usize) -> String {
        format!("http://{}", self.replicas[index].address)
    }

    /// A client of replica `index` presenting `api_key`, retrying as
    /// client-rs does, each call given at most `timeout`.
    pub fn client(&self, index: usize, api_key: &str, timeout: Duration) -> Client {
        Client::builder(self.endpoint(index))
            .api_key(api_key)
            .timeout(timeout)
            .connect_lazy()
            .expect("a well-formed client")
    }

    /// Kills replica `index` with SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self, index: usize) {
        self.replicas[index].process = None;
    }

    /// Starts replica `index` (again) on its address and data directory;
    /// returns once it answers health checks.
    pub async fn start_replica(&mut self, index: usize) -> Duration {
        let replica = &mut self.replicas[index];
        let mut command =
            core_server_command(&replica.binary, replica.address, replica.data.path());
        command
            .args(["--database-url", &self.database_url])
            .args(["--redis-url", &self.redis_url])
            .args(["--redis-prefix", &self.redis_prefix])
            .env("PLINTH_KEY_ENCRYPTION_KEY", &self.key_encryption_key);
        let (process, took) = ServerProcess::start(command, replica.address)
            .await
            .expect("the replica starts");
        replica.process = Some(process);
        took
    }

    /// Waits until replica `index`'s health is `status`, at most until
    /// `since` plus `limit`; how long after `since` it was.
    pub async fn health_becomes(
        &self,
        index: usize,
        status: ServingStatus,
        since: std::time::Instant,
        limit: Duration,
    ) -> Duration {
        while self.health(index).await != Some(status) {
            assert!(
                since.elapsed() < limit,
                "replica {index} never reported {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        since.elapsed()
    }

    /// What replica `index`'s gRPC health says of the whole server, or
    /// `None` when it does not answer.
    pub async fn health(&self, index: usize) -> Option<ServingStatus> {
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint(index))
            .ok()?
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500))
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .ok()?;
        Some(answer.into_inner().status())
    }
}

/// A redis-server of the test's own, on a free port, that the test can kill
/// and start again on the same port.
pub struct PrivateRedis {
    process: Option<std::process::Child>,
    port: u16,
    arguments: Vec<String>,
    pub url: String,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        PrivateRedis::start_with(free_address().expect("a free port").port(), Vec::new()).await
    }

    /// Starts one on `port` with `arguments` added.
    async fn start_with(port: u16, arguments: Vec<String>) -> PrivateRedis {
        let mut redis = PrivateRedis {
            process: None,
            port,
            arguments,
            url: format!("redis://127.0.0.1:{port}"),
        };
        redis.restart().await;
        redis
    }

    /// Starts the server (again) and waits until it takes connections.
    pub async fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.arguments)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (README's test command installs it)");
        // Owned at once, so that a panic below still kills it.
        self.process = Some(process);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start");
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters of the test's own (no replicas),
/// created with `redis-cli --cluster create`; killed when dropped.
pub struct PrivateRedisCluster {
    _nodes: Vec<PrivateRedis>,
    _directory: tempfile::TempDir,
    /// Every node's URL, separated by commas, as servers take a cluster.
    pub url: String,
}

impl PrivateRedisCluster {
    pub async fn start() -> PrivateRedisCluster {
        let directory = tempfile::tempdir().expect("a directory");
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            let port = free_cluster_port();
            let arguments = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--dir",
                &directory.path().display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec();
            nodes.push(PrivateRedis::start_with(port, arguments).await);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        run(Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"]));
        for node in &nodes {
            wait_for_cluster_state(node.port).await;
        }
        let url = nodes
            .iter()
            .map(|node| node.url.clone())
            .collect::<Vec<_>>()
            .join(",");
        PrivateRedisCluster {
            _nodes: nodes,
            _directory: directory,
            url,
        }
    }
}

/// A free port whose cluster bus port (10000 above it) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_address().expect("a free port").port();
        if port <= 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Waits until the node on `port` reports the cluster's slots all served.
async fn wait_for_cluster_state(port: u16) {
    for _ in 0..250 {
        let info = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", "info"])
            .output()
            .expect("redis-cli runs");
        if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the Redis Cluster never became ready");
}

/// A PostgreSQL server of the test's own on a free port, trusting local
/// connections, stopped (immediately) when dropped.
pub struct PrivatePostgres {
    directory: tempfile::TempDir,
    binaries: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// Creates a cluster with `initdb` and starts it.
    pub async fn start() -> PrivatePostgres {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (README's test command installs it)")
            .flatten()
            .map(|entry| entry.path())
            .collect();
        versions.sort();
        let postgres = PrivatePostgres {
            binaries: versions.pop().expect("a PostgreSQL version").join("bin"),
            directory: tempfile::tempdir().expect("a directory"),
            port: free_address().expect("a free port").port(),
        };
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(postgres.directory.path()));
        }
        run(postgres
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(postgres.data()));
        postgres.start_server();
        postgres
    }

    /// `postgres://…` for database `name` (see [`PrivatePostgres::create_database`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn create_database(&self, name: &str) {
        run(self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(name));
    }

    /// Starts the server and waits until it takes connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.directory.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.directory.path().join("log"))
            .arg("-D")
            .arg(self.data())
            .arg("start"));
    }

    /// Stops the server the way a crash would: `immediate`, no checkpoint,
    /// every connection cut.
    pub fn crash(&self) {
        run(&mut self.stop_command());
    }

    fn stop_command(&self) -> Command {
        let mut stop = self.command("pg_ctl");
        stop.args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop");
        stop
    }

    fn data(&self) -> PathBuf {
        self.directory.path().join("data")
    }

    /// PostgreSQL's `program`, run as the `postgres` user when this process
    /// is root (PostgreSQL refuses to run as root).
    fn command(&self, program: &str) -> Command {
        let program = self.binaries.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop_command().output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// Runs `command` to success.
fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
