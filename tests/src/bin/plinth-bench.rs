//! `plinth-bench`: measures Plinth RPCs against an echo baseline built with
//! the same stack (tonic, same transport settings, no identity layer, no
//! store) in the same run, and reports each RPC as a ratio of the baseline.
//!
//! Both servers run in this process on one runtime, the load generator on
//! another, so that baseline and RPCs share the machine the same way.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use plinth_client::auth::v1::{WhoAmIRequest, auth_service_client::AuthServiceClient};
use plinth_platform::config::Config;
use plinth_tests::{
    Credentials,
    bench::{self, Load, Measurement},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Plinth benchmark: calls/s and latency per RPC, as ratios to an echo baseline.
#[derive(Parser)]
struct Args {
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Measured seconds per RPC and round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Unmeasured warm-up seconds before each measurement.
    #[arg(long, default_value_t = 1)]
    warm_up_seconds: u64,
    /// Rounds of baseline-then-RPCs; ratios are taken within a round and the
    /// median round is reported, so drift of a shared machine hits both sides.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker threads of the servers' runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
}

/// A target an RPC must meet, relative to the baseline.
struct Target {
    rpc: &'static str,
    min_throughput_ratio: f64,
    max_p99_ratio: f64,
}

const TARGETS: &[Target] = &[Target {
    rpc: "AuthService/WhoAmI (API key)",
    min_throughput_ratio: 0.80,
    max_p99_ratio: 1.5,
}];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logging as in production, so that per-call spans are paid for.
    plinth_platform::telemetry::init(plinth_platform::config::LogFormat::Text);
    plinth_tests::install_crypto_provider();
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let data = tempfile::tempdir()?;
    let (echo_address, core_address) = servers.block_on(start_servers(data.path()))?;
    let operator_key = std::fs::read_to_string(data.path().join(core_server::BOOTSTRAP_KEY_FILE))?;

    let load_generator = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-load")
        .enable_all()
        .build()?;
    let load = Load {
        connections: args.connections,
        in_flight_per_connection: args.in_flight,
        warm_up: Duration::from_secs(args.warm_up_seconds),
        duration: Duration::from_secs(args.seconds),
    };
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let measurements =
            load_generator.block_on(run(load, echo_address, core_address, &operator_key))?;
        println!("round {round}");
        print_table(&measurements);
        rounds.push(measurements);
    }
    let failed = report_targets(&load, &rounds);
    drop(servers);
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// The echo baseline and an embedded core-server, each on port 0.
async fn start_servers(data_dir: &std::path::Path) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let echo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_address = echo_listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(echo_listener).with_nodelay(Some(true)),
            ),
    );

    let core_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let core_address = core_listener.local_addr()?;
    let config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    tokio::spawn(async move {
        if let Err(error) = core_server::run(config, core_listener, std::future::pending()).await {
            eprintln!("core-server failed: {error}");
        }
    });
    let key_file = data_dir.join(core_server::BOOTSTRAP_KEY_FILE);
    for _ in 0..200 {
        if key_file.exists() {
            return Ok((echo_address, core_address));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("core-server did not start")
}

async fn run(
    load: Load,
    echo_address: SocketAddr,
    core_address: SocketAddr,
    operator_key: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let echo_channels = bench::connect(echo_address, load.connections).await?;
    let core_channels = bench::connect(core_address, load.connections).await?;

    let echo = bench::measure(
        "echo baseline (health Check)",
        &echo_channels,
        load,
        |channel| {
            let client = HealthClient::new(channel);
            move || {
                let mut client = client.clone();
                async move {
                    client.check(HealthCheckRequest::default()).await?;
                    Ok(())
                }
            }
        },
    )
    .await;

    let api_key = Credentials::api_key(operator_key);
    let who_am_i = bench::measure(TARGETS[0].rpc, &core_channels, load, |channel| {
        let client = AuthServiceClient::with_interceptor(channel, api_key.clone());
        move || {
            let mut client = client.clone();
            async move {
                client.who_am_i(WhoAmIRequest {}).await?;
                Ok(())
            }
        }
    })
    .await;
    Ok(vec![echo, who_am_i])
}

/// One round: each RPC with its ratios to the round's baseline (first row).
fn print_table(measurements: &[Measurement]) {
    let baseline = &measurements[0];
    println!(
        "  {:<32} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "rpc", "calls/s", "errors", "p50 us", "p90 us", "p99 us", "max us", "x echo", "p99 x"
    );
    for measurement in measurements {
        let (throughput, p99) = ratios(measurement, baseline);
        println!(
            "  {:<32} {:>10.0} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9.3} {:>9.3}",
            measurement.name,
            measurement.calls_per_second(),
            measurement.errors,
            measurement.latency_micros(0.50),
            measurement.latency_micros(0.90),
            measurement.latency_micros(0.99),
            measurement.latency.max(),
            throughput,
            p99,
        );
    }
}

/// Throughput and p99 of `measurement` as ratios to `baseline`.
fn ratios(measurement: &Measurement, baseline: &Measurement) -> (f64, f64) {
    (
        measurement.calls_per_second() / baseline.calls_per_second(),
        measurement.latency_micros(0.99) as f64 / baseline.latency_micros(0.99) as f64,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Checks each target on the median round; true when one was missed.
fn report_targets(load: &Load, rounds: &[Vec<Measurement>]) -> bool {
    println!(
        "plinth-bench: {} connections x {} in flight, {} rounds of {} s measured after {} s warm-up; \
         medians of per-round ratios",
        load.connections,
        load.in_flight_per_connection,
        rounds.len(),
        load.duration.as_secs(),
        load.warm_up.as_secs()
    );
    let mut failed = false;
    for target in TARGETS {
        let per_round: Vec<(f64, f64, u64)> = rounds
            .iter()
            .filter_map(|round| {
                let measurement = round.iter().find(|m| m.name == target.rpc)?;
                let (throughput, p99) = ratios(measurement, &round[0]);
                Some((throughput, p99, measurement.errors))
            })
            .collect();
        if per_round.is_empty() {
            continue;
        }
        let throughput = median(per_round.iter().map(|round| round.0).collect());
        let p99 = median(per_round.iter().map(|round| round.1).collect());
        let errors: u64 = per_round.iter().map(|round| round.2).sum();
        let met =
            throughput >= target.min_throughput_ratio && p99 <= target.max_p99_ratio && errors == 0;
        failed |= !met;
        println!(
            "target {}: throughput {:.3} x echo (>= {:.2}), p99 {:.3} x echo (<= {:.2}), errors {}: {}",
            target.rpc,
            throughput,
            target.min_throughput_ratio,
            p99,
            target.max_p99_ratio,
            errors,
            if met { "met" } else { "MISSED" }
        );
    }
    failed
}
