//! `plinth-bench`: measures Plinth RPCs against an echo baseline built with
//! the same stack (tonic, same transport settings, no identity layer, no
//! store) in the same run, and reports each RPC as a ratio of the baseline.
//!
//! Both servers run in this process on one runtime, the load generator on
//! another, so that baseline and RPCs share the machine the same way. A
//! login storm runs from a third runtime, as another client would.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use clap::Parser;
use plinth_client::{
    auth::v1::{
        CreateApiKeyRequest, LoginRequest, VerifyTokenRequest, WhoAmIRequest,
        auth_service_client::AuthServiceClient,
    },
    tenant::v1::{SignupRequest, tenant_service_client::TenantServiceClient},
};
use plinth_platform::{
    config::{Config, LogFormat},
    identity::tokens::AccessClaims,
    node::Node,
    store::Store,
};
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
    /// Concurrent logins of the storm.
    #[arg(long, default_value_t = 16)]
    storm_logins: usize,
}

const ECHO: &str = "echo baseline (health Check)";
const WHO_AM_I: &str = "WhoAmI (API key)";
const VERIFY_SEEN: &str = "VerifyToken (seen token)";
const VERIFY_UNSEEN: &str = "VerifyToken (never-seen tokens)";
const VERIFY_IN_STORM: &str = "VerifyToken (seen, login storm)";

/// A target an RPC must meet, relative to the baseline.
struct Target {
    rpc: &'static str,
    min_throughput_ratio: f64,
    max_p99_ratio: f64,
}

const TARGETS: &[Target] = &[
    Target {
        rpc: WHO_AM_I,
        min_throughput_ratio: 0.80,
        max_p99_ratio: 1.5,
    },
    Target {
        rpc: VERIFY_SEEN,
        min_throughput_ratio: 0.60,
        max_p99_ratio: 2.0,
    },
    Target {
        rpc: VERIFY_UNSEEN,
        min_throughput_ratio: 0.25,
        max_p99_ratio: f64::INFINITY,
    },
];

const BENCH_PASSWORD: &str = "benchmarks need long passphrases";

/// Servers, credentials and a token mint, prepared before any measurement.
struct Fixture {
    echo: SocketAddr,
    core: SocketAddr,
    module_key: String,
    seen_token: String,
    mint: TokenMint,
}

/// Signs fresh tokens for a live session with the server's own key.
struct TokenMint {
    keys: core_server::SigningKeys,
    claims: AccessClaims,
}

impl TokenMint {
    async fn mint(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut tokens = Vec::with_capacity(count);
        for _ in 0..count {
            let claims = AccessClaims {
                jti: uuid::Uuid::now_v7(),
                ..self.claims.clone()
            };
            tokens.push(self.keys.sign(&claims).await?);
        }
        Ok(tokens)
    }
}

/// How the storm's logins ended.
#[derive(Default)]
struct StormCounts {
    succeeded: AtomicU64,
    refused: AtomicU64,
    throttled: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logging as in production, so that per-call spans are paid for.
    plinth_platform::telemetry::init(LogFormat::Text);
    plinth_tests::install_crypto_provider();
    let runtime = |threads: usize, name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let servers = runtime(args.server_threads, "bench-server")?;
    let load_generator = runtime(2, "bench-load")?;
    let storm = runtime(1, "bench-storm")?;
    let data = tempfile::tempdir()?;
    let fixture = servers.block_on(prepare(data.path()))?;
    let load = Load {
        connections: args.connections,
        in_flight_per_connection: args.in_flight,
        warm_up: Duration::from_secs(args.warm_up_seconds),
        duration: Duration::from_secs(args.seconds),
    };

    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let unseen = servers.block_on(fixture.mint.mint(unseen_tokens_needed(&load)))?;
        let mut measurements = load_generator.block_on(measure_round(load, &fixture, unseen))?;
        let counts = Arc::new(StormCounts::default());
        let storming = storm.spawn(login_storm(
            fixture.core,
            args.storm_logins,
            load.warm_up + load.duration,
            counts.clone(),
        ));
        measurements.push(load_generator.block_on(measure_verify(
            VERIFY_IN_STORM,
            load,
            &fixture,
        ))?);
        storm.block_on(storming)??;
        println!("round {round}");
        print_table(&measurements);
        println!(
            "  login storm: {} succeeded, {} refused, {} throttled (RESOURCE_EXHAUSTED)",
            counts.succeeded.load(Ordering::Relaxed),
            counts.refused.load(Ordering::Relaxed),
            counts.throttled.load(Ordering::Relaxed)
        );
        rounds.push((measurements, counts));
    }
    let failed = report_targets(&load, &rounds);
    drop(servers);
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Enough never-seen tokens for one measurement at up to 40k calls/s.
fn unseen_tokens_needed(load: &Load) -> usize {
    ((load.warm_up + load.duration).as_secs_f64() * 40_000.0) as usize
}

/// Boots the echo baseline and an embedded core-server on port 0, signs up a
/// tenant, logs in, and makes a module key.
async fn prepare(data_dir: &std::path::Path) -> anyhow::Result<Fixture> {
    let echo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo = echo_listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(echo_listener).with_nodelay(Some(true)),
            ),
    );

    let core_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let core = core_listener.local_addr()?;
    let config = Config {
        data_dir: data_dir.to_owned(),
        // The storm comes from one address: let the per-account limit show.
        login_free_failures_per_peer: u32::MAX,
        ..Config::default()
    };
    let server_config = config.clone();
    tokio::spawn(async move {
        if let Err(error) =
            core_server::run(server_config, core_listener, std::future::pending()).await
        {
            eprintln!("core-server failed: {error}");
        }
    });
    let key_file = data_dir.join(core_server::BOOTSTRAP_KEY_FILE);
    let started = Instant::now();
    while !key_file.exists() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "core-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let operator_key = std::fs::read_to_string(&key_file)?;
    let channel = bench::connect(core, 1).await?.remove(0);
    let operator = Credentials::api_key(&operator_key);
    let mut tenants = TenantServiceClient::with_interceptor(channel.clone(), operator.clone());
    let mut auth = AuthServiceClient::with_interceptor(channel.clone(), operator);
    tenants
        .signup(SignupRequest {
            tenant_code: "bench".to_owned(),
            tenant_name: "Bench".to_owned(),
            admin_email: "admin@bench.example".to_owned(),
            admin_display_name: "Bench admin".to_owned(),
            admin_password: BENCH_PASSWORD.to_owned(),
            industry_template_code: String::new(),
        })
        .await?;
    let seen_token = auth
        .login(LoginRequest {
            tenant_code: "bench".to_owned(),
            email: "admin@bench.example".to_owned(),
            password: BENCH_PASSWORD.to_owned(),
        })
        .await?
        .into_inner()
        .tokens
        .ok_or_else(|| anyhow::anyhow!("login gave no tokens"))?
        .access_token;
    let module_key = auth
        .create_api_key(CreateApiKeyRequest {
            name: "bench module".to_owned(),
            module_id: "bench".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;

    let payload = seen_token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("malformed token"))?;
    let claims: AccessClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let store = Store::open(&config.database_url(), 2).await?;
    let encryption = core_server::KeyEncryptionKey::load(&config, &store).await?;
    let node = Node::start(config, store).await?;
    let keys = core_server::SigningKeys::new(node.store, encryption, node.tokens, node.invalidator);
    Ok(Fixture {
        echo,
        core,
        module_key,
        seen_token,
        mint: TokenMint { keys, claims },
    })
}

async fn measure_round(
    load: Load,
    fixture: &Fixture,
    unseen: Vec<String>,
) -> anyhow::Result<Vec<Measurement>> {
    let echo_channels = bench::connect(fixture.echo, load.connections).await?;
    let core_channels = bench::connect(fixture.core, load.connections).await?;

    let echo = bench::measure(ECHO, &echo_channels, load, |channel| {
        let client = HealthClient::new(channel);
        move || {
            let mut client = client.clone();
            async move {
                client.check(HealthCheckRequest::default()).await?;
                Ok(())
            }
        }
    })
    .await;

    let key = Credentials::api_key(&fixture.module_key);
    let who_am_i = bench::measure(WHO_AM_I, &core_channels, load, |channel| {
        let client = AuthServiceClient::with_interceptor(channel, key.clone());
        move || {
            let mut client = client.clone();
            async move {
                client.who_am_i(WhoAmIRequest {}).await?;
                Ok(())
            }
        }
    })
    .await;

    let seen = measure_verify(VERIFY_SEEN, load, fixture).await?;

    let unseen = Arc::new(unseen);
    let next = Arc::new(AtomicUsize::new(0));
    let never_seen = bench::measure(VERIFY_UNSEEN, &core_channels, load, |channel| {
        let client = AuthServiceClient::with_interceptor(channel, key.clone());
        let (unseen, next) = (unseen.clone(), next.clone());
        move || {
            let mut client = client.clone();
            let index = next.fetch_add(1, Ordering::Relaxed);
            let access_token = unseen[index % unseen.len()].clone();
            async move {
                client
                    .verify_token(VerifyTokenRequest { access_token })
                    .await?;
                Ok(())
            }
        }
    })
    .await;
    if next.load(Ordering::Relaxed) > unseen.len() {
        eprintln!("warning: never-seen tokens ran out and were reused; raise the mint size");
    }
    Ok(vec![echo, who_am_i, seen, never_seen])
}

async fn measure_verify(name: &str, load: Load, fixture: &Fixture) -> anyhow::Result<Measurement> {
    let channels = bench::connect(fixture.core, load.connections).await?;
    let key = Credentials::api_key(&fixture.module_key);
    let token = fixture.seen_token.clone();
    Ok(bench::measure(name, &channels, load, |channel| {
        let client = AuthServiceClient::with_interceptor(channel, key.clone());
        let token = token.clone();
        move || {
            let mut client = client.clone();
            let access_token = token.clone();
            async move {
                client
                    .verify_token(VerifyTokenRequest { access_token })
                    .await?;
                Ok(())
            }
        }
    })
    .await)
}

/// Logins at full speed for `length`: half with the right password (each a
/// full argon2id hash), half guessing another account's password (which the
/// per-account throttle must stop).
async fn login_storm(
    core: SocketAddr,
    logins: usize,
    length: Duration,
    counts: Arc<StormCounts>,
) -> anyhow::Result<()> {
    let channel = bench::connect(core, 1).await?.remove(0);
    let until = Instant::now() + length;
    let workers: Vec<_> = (0..logins)
        .map(|index| {
            let mut client = AuthServiceClient::new(channel.clone());
            let counts = counts.clone();
            let guess = index % 2 == 1;
            tokio::spawn(async move {
                while Instant::now() < until {
                    let request = LoginRequest {
                        tenant_code: "bench".to_owned(),
                        email: if guess {
                            "victim@bench.example"
                        } else {
                            "admin@bench.example"
                        }
                        .to_owned(),
                        password: if guess {
                            "a guessed password"
                        } else {
                            BENCH_PASSWORD
                        }
                        .to_owned(),
                    };
                    let counter = match client.login(request).await {
                        Ok(_) => &counts.succeeded,
                        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                            &counts.throttled
                        }
                        Err(_) => &counts.refused,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

/// One round: each RPC with its ratios to the round's baseline (first row).
fn print_table(measurements: &[Measurement]) {
    let baseline = &measurements[0];
    println!(
        "  {:<34} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "rpc", "calls/s", "errors", "p50 us", "p90 us", "p99 us", "max us", "x echo", "p99 x"
    );
    for measurement in measurements {
        let (throughput, p99) = ratios(measurement, baseline);
        println!(
            "  {:<34} {:>10.0} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8.3} {:>8.3}",
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

fn find<'a>(round: &'a [Measurement], name: &str) -> &'a Measurement {
    round
        .iter()
        .find(|measurement| measurement.name == name)
        .expect("every round measures every rpc")
}

/// Checks each target on the median round; true when one was missed.
fn report_targets(load: &Load, rounds: &[(Vec<Measurement>, Arc<StormCounts>)]) -> bool {
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
    let mut verdict = |met: bool| {
        failed |= !met;
        if met { "met" } else { "MISSED" }
    };
    for target in TARGETS {
        let per_round: Vec<(f64, f64, u64)> = rounds
            .iter()
            .map(|(round, _)| {
                let measurement = find(round, target.rpc);
                let (throughput, p99) = ratios(measurement, &round[0]);
                (throughput, p99, measurement.errors)
            })
            .collect();
        let throughput = median(per_round.iter().map(|round| round.0).collect());
        let p99 = median(per_round.iter().map(|round| round.1).collect());
        let errors: u64 = per_round.iter().map(|round| round.2).sum();
        let met =
            throughput >= target.min_throughput_ratio && p99 <= target.max_p99_ratio && errors == 0;
        println!(
            "target {}: throughput {:.3} x echo (>= {:.2}), p99 {:.3} x echo (<= {:.2}), errors {}: {}",
            target.rpc,
            throughput,
            target.min_throughput_ratio,
            p99,
            target.max_p99_ratio,
            errors,
            verdict(met)
        );
    }
    let storm_p99 = median(
        rounds
            .iter()
            .map(|(round, _)| {
                find(round, VERIFY_IN_STORM).latency_micros(0.99) as f64
                    / find(round, VERIFY_SEEN).latency_micros(0.99) as f64
            })
            .collect(),
    );
    println!(
        "target VerifyToken p99 during a login storm: {storm_p99:.3} x idle (<= 2.00): {}",
        verdict(storm_p99 <= 2.0)
    );
    let throttled = rounds
        .iter()
        .all(|(_, counts)| counts.throttled.load(Ordering::Relaxed) > 0);
    println!(
        "target the storm's password guesses are throttled per account: {}",
        verdict(throttled)
    );
    failed
}
