//! The load generator behind `plinth-bench`: servers in processes of their
//! own (so the generator's CPU cannot hide theirs), N connections × M calls
//! in flight for a fixed time after a warm-up, latency in an HDR histogram
//! and the server process's CPU time over the measured window.

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

pub mod abuse;
pub mod audit;
pub mod echo;
pub mod logins;
pub mod modules;
pub mod polyglot;
pub mod rbac;
pub mod registry;
pub mod report;
pub mod shedding;
pub mod tokens;
pub mod watch;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub in_flight_per_connection: usize,
    pub warm_up: Duration,
    pub duration: Duration,
}

/// What one RPC achieved.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// CPU the server process spent over the measured window.
    pub server_cpu: Duration,
}

impl Measurement {
    pub fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at `quantile` (0..=1), in microseconds.
    pub fn latency_micros(&self, quantile: f64) -> u64 {
        self.latency.value_at_quantile(quantile)
    }

    /// Server CPU per successful call, in microseconds.
    pub fn server_cpu_micros_per_call(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

/// A server in a process of its own, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
    clock_ticks_per_second: u64,
}

impl ServerProcess {
    /// Spawns `command` (which must serve gRPC health on `address`) and
    /// returns once it answers, with the time from spawn to that answer.
    /// Its admin port, unless the command names one, takes any free port,
    /// so that servers started side by side do not compete for the default.
    pub async fn start(
        mut command: Command,
        address: SocketAddr,
    ) -> anyhow::Result<(ServerProcess, Duration)> {
        let spawned = Instant::now();
        if !command
            .get_envs()
            .any(|(name, _)| name == "PLINTH_ADMIN_LISTEN")
        {
            command.env("PLINTH_ADMIN_LISTEN", "127.0.0.1:0");
        }
        let child = command.stdout(Stdio::null()).spawn()?;
        let server = ServerProcess {
            child,
            address,
            clock_ticks_per_second: clock_ticks_per_second()?,
        };
        loop {
            anyhow::ensure!(
                spawned.elapsed() < Duration::from_secs(30),
                "the server on {address} did not answer"
            );
            if let Ok(channel) = Endpoint::from_shared(format!("http://{address}"))?
                .connect()
                .await
                && HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok()
            {
                return Ok((server, spawned.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU of every thread the process ever ran.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime is
        // the 12th, stime the 13th.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / self.clock_ticks_per_second as f64)
    }

    /// Resident memory, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kibibytes| kibibytes * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> anyhow::Result<u64> {
    let output = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// A free loopback address for a server to take.
pub fn free_address() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `core-server` serving on `address` from `data_dir`, logging warnings.
pub fn core_server_command(binary: &Path, address: SocketAddr, data_dir: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--listen", &address.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        // The loads measure calls, not refusals: budgets past any load here.
        .args(["--api-key-calls-per-second", "1000000"])
        .args(["--api-key-burst", "1000000"])
        .args(["--user-calls-per-second", "1000000"])
        .args(["--user-burst", "1000000"])
        .env("RUST_LOG", "warn");
    command
}

/// Opens `count` separate HTTP/2 connections to `address`.
pub async fn connect(address: SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?.tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(endpoint.connect().await?);
    }
    Ok(channels)
}

/// Runs `call` (made per worker from its connection) under `load` against
/// `server`, whose CPU is read at the start and end of the measured window.
pub async fn measure<MakeCall, Call, CallFuture>(
    name: &str,
    server: &ServerProcess,
    channels: &[Channel],
    load: Load,
    make_call: MakeCall,
) -> Measurement
where
    MakeCall: Fn(Channel) -> Call,
    Call: FnMut() -> CallFuture + Send + 'static,
    CallFuture: Future<Output = Result<(), tonic::Status>> + Send,
{
    let start = Instant::now();
    let measuring_from = start + load.warm_up;
    let until = measuring_from + load.duration;
    let mut workers = Vec::new();
    for channel in channels {
        for _ in 0..load.in_flight_per_connection {
            let mut call = make_call(channel.clone());
            workers.push(tokio::spawn(async move {
                let mut latency = new_histogram();
                let (mut calls, mut errors) = (0_u64, 0_u64);
                let mut first_error = None;
                loop {
                    let began = Instant::now();
                    if began >= until {
                        break;
                    }
                    let result = call().await;
                    if began < measuring_from {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            calls += 1;
                            let micros =
                                began.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                            latency.saturating_record(micros.max(1));
                        }
                        Err(status) => {
                            errors += 1;
                            first_error.get_or_insert(status);
                        }
                    }
                }
                (calls, errors, latency, first_error)
            }));
        }
    }
    tokio::time::sleep_until(measuring_from.into()).await;
    let cpu_before = server.cpu_time();
    tokio::time::sleep_until(until.into()).await;
    let server_cpu = server.cpu_time().saturating_sub(cpu_before);
    let mut measurement = Measurement {
        name: name.to_owned(),
        calls: 0,
        errors: 0,
        elapsed: load.duration,
        latency: new_histogram(),
        server_cpu,
    };
    let mut first_error = None;
    for worker in workers {
        let (calls, errors, latency, error) = worker.await.expect("bench worker");
        first_error = first_error.or(error);
        measurement.calls += calls;
        measurement.errors += errors;
        measurement
            .latency
            .add(&latency)
            .expect("histograms share bounds");
    }
    if let Some(status) = first_error {
        eprintln!(
            "{name}: {} errors, the first: {:?} {}",
            measurement.errors,
            status.code(),
            status.message()
        );
    }
    measurement
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A key of the bench module, made by the operator.
pub async fn module_key(channel: Channel, operator_key: &str) -> anyhow::Result<String> {
    let mut auth = plinth_api::auth::v1::auth_service_client::AuthServiceClient::with_interceptor(
        channel,
        crate::Credentials::api_key(operator_key),
    );
    Ok(auth
        .create_api_key(plinth_api::auth::v1::CreateApiKeyRequest {
            name: "bench module".to_owned(),
            module_id: rbac::MODULE.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret)
}
