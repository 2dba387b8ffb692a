//! `plinth-bench`: measures Plinth RPCs against an echo baseline in the
//! same run, each server in a process of its own: a bare tonic server
//! answering `grpc.health.v1.Health/Check` (this binary, run as `echo`), and
//! the release `core-server` on its embedded default. The load generator
//! runs here; it reads each server's CPU time around every measured window,
//! so the generator's own CPU cannot flatter a server.
//!
//! Per RPC and round: calls/s, p50/p99 and server CPU µs per call, each as a
//! ratio to the echo's in that round; targets hold on the median round. It
//! also reports cold start (spawn to first answered call) and resident
//! memory idle, after 1,000 logins and after the load. Last, how fast an
//! instance change reaches WatchInstances streams: on the embedded server,
//! and on two core-server replicas it starts on PostgreSQL and Redis (a
//! database and key prefix of their own), on the replica written to and on
//! the other. Then the audit log on core-servers of its own (see
//! `bench::audit`), load shedding, and HTTP/2 abuse (`bench::abuse`). Exit
//! status 1 when a target is missed.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use plinth_api::{
    auth::v1::{VerifyTokenRequest, WhoAmIRequest, auth_service_client::AuthServiceClient},
    rbac::v1::CheckRequest,
    tenant::v1::{SignupRequest, tenant_service_client::TenantServiceClient},
};
use plinth_tests::{
    Credentials,
    bench::{
        self, Load, Measurement, ServerProcess,
        logins::{BENCH_PASSWORD, bench_login, log_in_repeatedly, login_storm},
        rbac::Population,
        report::{
            ECHO, Footprint, StormCounts, VERIFY_IN_STORM, VERIFY_SEEN, VERIFY_UNSEEN, WHO_AM_I,
            print_table, report_targets,
        },
        tokens::{TokenMint, token_mint},
    },
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Plinth benchmark: calls/s, latency and server CPU per RPC, as ratios to
/// an echo baseline, each server in its own process.
#[derive(Parser)]
struct Args {
    /// HTTP/2 connections
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Calls in flight per connection
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Measured seconds per RPC and round
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Unmeasured warm-up seconds before each measurement
    #[arg(long, default_value_t = 1)]
    warm_up_seconds: u64,
    /// Rounds of baseline-then-RPCs; ratios are taken within a round and the
    /// median round is reported, so drift of a shared machine hits both sides
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent logins of the storm
    #[arg(long, default_value_t = 16)]
    storm_logins: usize,
    /// Logins made before memory is read again
    #[arg(long, default_value_t = 1000)]
    logins: usize,
    /// Users of the RBAC tenant
    #[arg(long, default_value_t = 10_000)]
    rbac_users: usize,
    /// Role bindings of each of those users (at most 20)
    #[arg(long, default_value_t = 20)]
    rbac_bindings: usize,
    /// Measured seconds of RecordEvents per backend
    #[arg(long, default_value_t = 10)]
    audit_seconds: u64,
    /// Events the PostgreSQL audit log is filled to before QueryEvents and
    /// the tail are measured
    #[arg(long, default_value_t = 1_000_000)]
    audit_events: u64,
    /// Measure the audit part only
    #[arg(long)]
    audit_only: bool,
    /// Measure load shedding only
    #[arg(long)]
    shedding_only: bool,
    /// Measure the HTTP/2 abuse section only
    #[arg(long)]
    abuse_only: bool,
    /// The core-server binary [default: beside this one]
    #[arg(long)]
    core_server: Option<PathBuf>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve the echo baseline (the bench runs itself this way)
    Echo {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Run one HTTP/2 flood and print its figures (the abuse section runs
    /// itself this way, at the lowest priority)
    Attack {
        flood: bench::abuse::Flood,
        #[arg(long)]
        address: SocketAddr,
        #[arg(long)]
        millis: u64,
    },
}

/// Servers, credentials and a token mint, prepared before any measurement.
struct Fixture {
    echo: ServerProcess,
    core: ServerProcess,
    module_key: String,
    seen_token: String,
    mint: TokenMint,
    rbac_tenant_id: String,
    population: Population,
    /// Serving instances of the bench module.
    instance_ids: Vec<String>,
}

/// The module of the bench's module key (its permissions, its instances).
const BENCH_MODULE: &str = bench::rbac::MODULE;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode {
        Some(Mode::Echo { listen }) => return bench::echo::serve(listen, BENCH_MODULE),
        Some(Mode::Attack {
            flood,
            address,
            millis,
        }) => return flood.attack(address, Duration::from_millis(millis)),
        None => {}
    }
    plinth_tests::install_crypto_provider();
    let runtime = |threads: usize, name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let load_generator = runtime(2, "bench-load")?;
    let storm = runtime(1, "bench-storm")?;
    let data = tempfile::tempdir()?;
    let core_server = match &args.core_server {
        Some(path) => path.clone(),
        None => beside_this_binary("core-server")?,
    };
    let audit = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<bool> {
        let figures = runtime.block_on(bench::audit::measure(
            &core_server,
            args.audit_seconds,
            args.audit_events,
        ))?;
        Ok(bench::audit::report(&figures))
    };
    let load = Load {
        connections: args.connections,
        in_flight_per_connection: args.in_flight,
        warm_up: Duration::from_secs(args.warm_up_seconds),
        duration: Duration::from_secs(args.seconds),
    };
    let shedding = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<()> {
        let figures = runtime.block_on(bench::shedding::measure_both(&core_server, load))?;
        bench::shedding::report(&figures);
        Ok(())
    };
    let abuse = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<bool> {
        let figures = runtime.block_on(bench::abuse::measure(&core_server))?;
        Ok(bench::abuse::report(&figures))
    };
    if args.shedding_only {
        return shedding(&load_generator);
    }
    if args.abuse_only {
        if abuse(&load_generator)? {
            std::process::exit(1);
        }
        return Ok(());
    }
    if args.audit_only {
        if audit(&load_generator)? {
            std::process::exit(1);
        }
        return Ok(());
    }
    let (fixture, cold_start, idle) = load_generator.block_on(prepare(
        &core_server,
        data.path(),
        args.rbac_users,
        args.rbac_bindings,
    ))?;
    load_generator.block_on(log_in_repeatedly(fixture.core.address, args.logins))?;
    let after_logins = fixture.core.resident_bytes();

    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let unseen = load_generator.block_on(fixture.mint.mint(unseen_tokens_needed(&load)))?;
        let mut measurements = load_generator.block_on(measure_round(load, &fixture, unseen))?;
        let counts = Arc::new(StormCounts::default());
        let storming = storm.spawn(login_storm(
            fixture.core.address,
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
    let footprint = Footprint {
        cold_start,
        idle,
        after_logins,
        after_load: load_generator.block_on(settled_resident_bytes(&fixture.core)),
    };
    let deliveries = load_generator.block_on(bench::watch::deliveries(
        &core_server,
        fixture.core.address,
        fixture.echo.address,
        &fixture.module_key,
    ))?;
    let sequential = load_generator.block_on(bench::polyglot::sequential_checks(
        fixture.echo.address,
        &fixture.core,
        &fixture.module_key,
        CheckRequest {
            tenant_id: fixture.rbac_tenant_id.clone(),
            user_id: fixture.population.user_ids[0].clone(),
            company_id: fixture.population.company_ids[0].clone(),
            permission: bench::rbac::permission(3, "read"),
            ..CheckRequest::default()
        },
    ))?;
    let mut failed = report_targets(&load, &rounds, &footprint, &deliveries, args.logins);
    bench::polyglot::report(&sequential);
    // The servers stop here: exiting skips destructors.
    drop(fixture);
    failed |= audit(&load_generator)?;
    shedding(&load_generator)?;
    failed |= abuse(&load_generator)?;
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn beside_this_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p core-server -p plinth-tests)",
        path.display()
    );
    Ok(path)
}

/// Enough never-seen tokens for one measurement at up to 40k calls/s.
fn unseen_tokens_needed(load: &Load) -> usize {
    ((load.warm_up + load.duration).as_secs_f64() * 40_000.0) as usize
}

/// Starts the echo and core-server processes (timing core-server's cold
/// start and reading its idle memory before any call), signs up a tenant,
/// logs in, and makes a module key.
async fn prepare(
    core_server: &Path,
    data_dir: &Path,
    rbac_users: usize,
    rbac_bindings: usize,
) -> anyhow::Result<(Fixture, Duration, u64)> {
    let echo_address = bench::free_address()?;
    let mut echo_command = Command::new(std::env::current_exe()?);
    echo_command.args(["echo", "--listen", &echo_address.to_string()]);
    let (echo, _) = ServerProcess::start(echo_command, echo_address).await?;

    let core_address = bench::free_address()?;
    let mut core_command = bench::core_server_command(core_server, core_address, data_dir);
    // The storm comes from one address: let the per-account limit show.
    core_command.args(["--login-free-failures-per-peer", "1000"]);
    let (core, cold_start) = ServerProcess::start(core_command, core_address).await?;
    let idle = settled_resident_bytes(&core).await;

    let operator_key = std::fs::read_to_string(data_dir.join(core_server::BOOTSTRAP_KEY_FILE))?;
    let channel = bench::connect(core_address, 1).await?.remove(0);
    let operator = Credentials::api_key(&operator_key);
    let mut tenants = TenantServiceClient::with_interceptor(channel.clone(), operator.clone());
    let mut auth = AuthServiceClient::with_interceptor(channel.clone(), operator);
    let signed_up = tenants
        .signup(SignupRequest {
            tenant_code: "bench".to_owned(),
            tenant_name: "Bench".to_owned(),
            admin_email: "admin@bench.example".to_owned(),
            admin_display_name: "Bench admin".to_owned(),
            admin_password: BENCH_PASSWORD.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let rbac_tenant_id = signed_up
        .tenant
        .ok_or_else(|| anyhow::anyhow!("signup returned no tenant"))?
        .id;
    let seen_token = auth
        .login(bench_login())
        .await?
        .into_inner()
        .tokens
        .ok_or_else(|| anyhow::anyhow!("login returned no tokens"))?
        .access_token;
    let module_key = bench::module_key(channel.clone(), &operator_key).await?;
    let instance_ids = bench::registry::populate(
        bench::connect(core.address, 1).await?.remove(0),
        BENCH_MODULE,
        &module_key,
        &format!("http://{}", echo.address),
    )
    .await?;
    bench::modules::populate(
        channel.clone(),
        &operator_key,
        BENCH_MODULE,
        &rbac_tenant_id,
    )
    .await?;
    let (mint, store) = token_mint(data_dir, &seen_token).await?;
    let imported = Instant::now();
    let population = bench::rbac::populate(
        &store,
        uuid::Uuid::parse_str(&rbac_tenant_id)?,
        rbac_users,
        rbac_bindings,
    )
    .await?;
    println!(
        "imported {rbac_users} users x {rbac_bindings} role bindings in {:.1} s",
        imported.elapsed().as_secs_f64()
    );
    Ok((
        Fixture {
            echo,
            core,
            module_key,
            seen_token,
            mint,
            rbac_tenant_id,
            population,
            instance_ids,
        },
        cold_start,
        idle,
    ))
}

/// Resident memory once the process has had a second to settle.
async fn settled_resident_bytes(server: &ServerProcess) -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.resident_bytes()
}

async fn measure_round(
    load: Load,
    fixture: &Fixture,
    unseen: Vec<String>,
) -> anyhow::Result<Vec<Measurement>> {
    let echo_channels = bench::connect(fixture.echo.address, load.connections).await?;
    let core_channels = bench::connect(fixture.core.address, load.connections).await?;

    let echo = bench::measure(ECHO, &fixture.echo, &echo_channels, load, |channel| {
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
    let who_am_i = bench::measure(WHO_AM_I, &fixture.core, &core_channels, load, |channel| {
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
    let never_seen = bench::measure(
        VERIFY_UNSEEN,
        &fixture.core,
        &core_channels,
        load,
        |channel| {
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
        },
    )
    .await;
    if next.load(Ordering::Relaxed) > unseen.len() {
        eprintln!("warning: never-seen tokens ran out and were reused; raise the mint size");
    }
    let mut measurements = vec![echo, who_am_i, seen, never_seen];
    measurements.extend(
        bench::rbac::measure(
            load,
            &fixture.core,
            &core_channels,
            &fixture.module_key,
            &fixture.rbac_tenant_id,
            &fixture.population,
        )
        .await,
    );
    measurements.extend(
        bench::modules::measure(
            load,
            (&fixture.echo, &echo_channels),
            &fixture.core,
            &core_channels,
            BENCH_MODULE,
            &fixture.module_key,
            &fixture.rbac_tenant_id,
        )
        .await,
    );
    measurements.extend(
        bench::registry::measure(
            load,
            (&fixture.echo, &echo_channels),
            &fixture.core,
            &core_channels,
            BENCH_MODULE,
            &fixture.module_key,
            &fixture.instance_ids,
        )
        .await,
    );
    Ok(measurements)
}

async fn measure_verify(name: &str, load: Load, fixture: &Fixture) -> anyhow::Result<Measurement> {
    let channels = bench::connect(fixture.core.address, load.connections).await?;
    let key = Credentials::api_key(&fixture.module_key);
    let token = fixture.seen_token.clone();
    Ok(
        bench::measure(name, &fixture.core, &channels, load, |channel| {
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
        .await,
    )
}
