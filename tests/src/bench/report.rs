//! What `plinth-bench` prints: each round's table, and the targets checked
//! on the median of the per-round ratios.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::{Load, Measurement, watch::Delivery};

pub const ECHO: &str = "echo baseline (health Check)";
pub const WHO_AM_I: &str = "WhoAmI (API key)";
pub const VERIFY_SEEN: &str = "VerifyToken (seen token)";
pub const VERIFY_UNSEEN: &str = "VerifyToken (never-seen tokens)";
pub const VERIFY_IN_STORM: &str = "VerifyToken (seen, login storm)";
pub const CHECK_CACHED: &str = "Check (cached)";
pub const CHECK_BATCH: &str = "CheckBatch (10 items)";
pub const LIST_PERMISSIONS: &str = "ListUserPermissions";
pub const CHECK_COMPILED: &str = "Check (compiled from the store)";
pub const HEARTBEAT: &str = "Heartbeat";
pub const DISCOVER: &str = "DiscoverInstances (8 serving)";
pub const DISCOVER_BARE: &str = "bare tonic, same 8-instance answer";
pub const IS_MODULE_ENABLED: &str = "IsModuleEnabled";
pub const RESOLVE_CONFIG: &str = "ResolveModuleConfig (2 KB)";
pub const RESOLVE_BARE: &str = "bare tonic, same 2 KB resolution";

/// A target an RPC must meet, relative to the baseline.
struct Target {
    rpc: &'static str,
    min_throughput_ratio: f64,
    max_p99_ratio: f64,
    max_cpu_ratio: f64,
}

const TARGETS: &[Target] = &[
    Target {
        rpc: WHO_AM_I,
        min_throughput_ratio: 0.80,
        max_p99_ratio: 1.5,
        max_cpu_ratio: 1.25,
    },
    Target {
        rpc: VERIFY_SEEN,
        min_throughput_ratio: 0.65,
        max_p99_ratio: 2.0,
        max_cpu_ratio: 1.40,
    },
    Target {
        rpc: VERIFY_UNSEEN,
        min_throughput_ratio: 0.25,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: f64::INFINITY,
    },
    Target {
        rpc: CHECK_CACHED,
        min_throughput_ratio: 0.80,
        max_p99_ratio: 1.5,
        max_cpu_ratio: 1.25,
    },
    Target {
        rpc: CHECK_BATCH,
        min_throughput_ratio: 0.50,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: f64::INFINITY,
    },
    Target {
        rpc: LIST_PERMISSIONS,
        min_throughput_ratio: 0.60,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: f64::INFINITY,
    },
    Target {
        rpc: CHECK_COMPILED,
        min_throughput_ratio: 0.25,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: f64::INFINITY,
    },
    Target {
        rpc: HEARTBEAT,
        min_throughput_ratio: 0.50,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: f64::INFINITY,
    },
    Target {
        rpc: DISCOVER,
        min_throughput_ratio: 0.70,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: f64::INFINITY,
    },
    Target {
        rpc: IS_MODULE_ENABLED,
        min_throughput_ratio: 0.80,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: 1.40,
    },
    Target {
        rpc: RESOLVE_CONFIG,
        min_throughput_ratio: 0.70,
        max_p99_ratio: f64::INFINITY,
        max_cpu_ratio: 1.40,
    },
];

const MAX_COLD_START: Duration = Duration::from_secs(1);
const MAX_IDLE_MEBIBYTES: u64 = 32;
const MAX_AFTER_LOGINS_MEBIBYTES: u64 = 128;

/// How the storm's logins ended.
#[derive(Default)]
pub struct StormCounts {
    pub succeeded: AtomicU64,
    pub refused: AtomicU64,
    pub throttled: AtomicU64,
}

/// Start-up and memory, read once.
pub struct Footprint {
    pub cold_start: Duration,
    pub idle: u64,
    pub after_logins: u64,
    pub after_load: u64,
}

/// One round: each RPC with its ratios to the round's baseline (first row).
pub fn print_table(measurements: &[Measurement]) {
    let baseline = &measurements[0];
    println!(
        "  {:<34} {:>9} {:>6} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7}",
        "rpc", "calls/s", "errors", "p50 us", "p99 us", "cpu us", "x echo", "p99 x", "cpu x"
    );
    for measurement in measurements {
        let ratio = Ratios::of(measurement, baseline);
        println!(
            "  {:<34} {:>9.0} {:>6} {:>7} {:>7} {:>8.2} {:>7.3} {:>7.3} {:>7.3}",
            measurement.name,
            measurement.calls_per_second(),
            measurement.errors,
            measurement.latency_micros(0.50),
            measurement.latency_micros(0.99),
            measurement.server_cpu_micros_per_call(),
            ratio.throughput,
            ratio.p99,
            ratio.cpu,
        );
    }
}

/// A measurement relative to its round's baseline.
struct Ratios {
    throughput: f64,
    p99: f64,
    cpu: f64,
}

impl Ratios {
    fn of(measurement: &Measurement, baseline: &Measurement) -> Ratios {
        Ratios {
            throughput: measurement.calls_per_second() / baseline.calls_per_second(),
            p99: measurement.latency_micros(0.99) as f64 / baseline.latency_micros(0.99) as f64,
            cpu: measurement.server_cpu_micros_per_call() / baseline.server_cpu_micros_per_call(),
        }
    }
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

fn mebibytes(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

/// Checks each target on the median round; true when one was missed.
pub fn report_targets(
    load: &Load,
    rounds: &[(Vec<Measurement>, Arc<StormCounts>)],
    footprint: &Footprint,
    deliveries: &[Delivery],
    logins: usize,
) -> bool {
    println!(
        "plinth-bench: {} connections x {} in flight, {} rounds of {} s measured after {} s warm-up; \
         servers in their own processes; medians of per-round ratios",
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
        let per_round: Vec<(Ratios, u64)> = rounds
            .iter()
            .map(|(round, _)| {
                let measurement = find(round, target.rpc);
                (Ratios::of(measurement, &round[0]), measurement.errors)
            })
            .collect();
        let throughput = median(
            per_round
                .iter()
                .map(|(ratio, _)| ratio.throughput)
                .collect(),
        );
        let p99 = median(per_round.iter().map(|(ratio, _)| ratio.p99).collect());
        let cpu = median(per_round.iter().map(|(ratio, _)| ratio.cpu).collect());
        let errors: u64 = per_round.iter().map(|(_, errors)| errors).sum();
        let met = throughput >= target.min_throughput_ratio
            && p99 <= target.max_p99_ratio
            && cpu <= target.max_cpu_ratio
            && errors == 0;
        println!(
            "target {}: throughput {throughput:.3} x echo (>= {:.2}), p99 {p99:.3} x (<= {:.2}), \
             server cpu/call {cpu:.3} x (<= {:.2}), errors {errors}: {}",
            target.rpc,
            target.min_throughput_ratio,
            target.max_p99_ratio,
            target.max_cpu_ratio,
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
    for (rpc, bare) in [(DISCOVER, DISCOVER_BARE), (RESOLVE_CONFIG, RESOLVE_BARE)] {
        let same_answer = |ratio: fn(&Ratios) -> f64| {
            median(
                rounds
                    .iter()
                    .map(|(round, _)| {
                        let bare = Ratios::of(find(round, bare), &round[0]);
                        ratio(&Ratios::of(find(round, rpc), &round[0])) / ratio(&bare)
                    })
                    .collect(),
            )
        };
        println!(
            "for scale: {rpc} against a bare tonic server giving the same answer: \
             throughput {:.3} x, server cpu/call {:.3} x",
            same_answer(|ratio| ratio.throughput),
            same_answer(|ratio| ratio.cpu),
        );
    }
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
    println!(
        "target cold start (spawn to first answered call): {} ms (< {} ms): {}",
        footprint.cold_start.as_millis(),
        MAX_COLD_START.as_millis(),
        verdict(footprint.cold_start < MAX_COLD_START)
    );
    println!(
        "target resident memory idle: {} MiB (< {MAX_IDLE_MEBIBYTES}): {}",
        mebibytes(footprint.idle),
        verdict(mebibytes(footprint.idle) < MAX_IDLE_MEBIBYTES)
    );
    println!(
        "target resident memory after {logins} logins: {} MiB (< {MAX_AFTER_LOGINS_MEBIBYTES}): {}",
        mebibytes(footprint.after_logins),
        verdict(mebibytes(footprint.after_logins) < MAX_AFTER_LOGINS_MEBIBYTES)
    );
    println!(
        "resident memory a second after the load: {} MiB",
        mebibytes(footprint.after_load)
    );
    for delivery in deliveries {
        let p99 = Duration::from_micros(delivery.latency.value_at_quantile(0.99));
        println!(
            "target a change reaches a watcher, {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             over {} changes (p99 <= {} ms): {}",
            delivery.name,
            delivery.latency.value_at_quantile(0.50) as f64 / 1000.0,
            p99.as_secs_f64() * 1000.0,
            delivery.latency.max() as f64 / 1000.0,
            delivery.latency.len(),
            delivery.max_p99.as_millis(),
            verdict(p99 <= delivery.max_p99)
        );
    }
    failed
}
