//! HTTP/2 abuse against a core-server (the release build, in its own
//! process): a well-behaved client checks health one call after another,
//! unloaded and then while each attack runs from a thread of its own, and
//! the server's resident memory is sampled. Target: the client's p99 under
//! attack within 2× its unloaded p99.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{ServerProcess, core_server_command, free_address};
use crate::abuse::{self, Attack, Served};

const MIB: u64 = 1024 * 1024;

/// How long the client is measured, unloaded and under each attack.
const MEASURED: Duration = Duration::from_secs(4);

/// What one attack did to the well-behaved client and to memory.
pub struct Figure {
    pub name: &'static str,
    pub before: Served,
    pub during: Served,
    pub attack: Option<Attack>,
    pub resident_before: u64,
    pub resident_peak: u64,
    /// The server's CPU while the client was measured under attack, in
    /// cores (1.0: one core busy the whole time).
    pub server_cores: f64,
}

impl Figure {
    fn p99_ratio(&self) -> f64 {
        self.during.p99.as_secs_f64() / self.before.p99.as_secs_f64().max(1e-9)
    }
}

/// Every attack, one after another, against one server.
pub async fn measure(core_server: &Path) -> anyhow::Result<Vec<Figure>> {
    let directory = tempfile::tempdir()?;
    let address = free_address()?;
    let command = core_server_command(core_server, address, directory.path());
    let (server, _) = ServerProcess::start(command, address).await?;
    let server = Arc::new(server);
    let mut figures = Vec::new();
    for (name, flood) in [
        ("rapid reset", Flood::RapidReset),
        ("CONTINUATION flood", Flood::Continuation),
        ("64 KiB header lists", Flood::HeaderLists),
    ] {
        let before = abuse::well_behaved(address, MEASURED).await;
        let resident_before = server.resident_bytes();
        let sampling = sample_peak(server.clone());
        let until = Instant::now() + MEASURED;
        let cpu_before = server.cpu_time();
        let attacking = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(flood.run(address, until)))
        });
        let during = abuse::well_behaved(address, MEASURED).await;
        let server_cores = (server.cpu_time() - cpu_before).as_secs_f64() / MEASURED.as_secs_f64();
        let attack = tokio::task::spawn_blocking(move || attacking.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the attack panicked"))??;
        figures.push(Figure {
            name,
            before,
            during,
            attack: Some(attack),
            resident_before,
            resident_peak: sampling.finish(),
            server_cores,
        });
    }
    for (name, held) in [
        (
            "20 connections never reading, 100 calls each",
            Held::NeverReading,
        ),
        ("10,000 idle connections from 100 peers", Held::Idle),
    ] {
        let before = abuse::well_behaved(address, MEASURED).await;
        let resident_before = server.resident_bytes();
        let sampling = sample_peak(server.clone());
        let connections = match held {
            Held::NeverReading => abuse::never_reading(address, 20, 100).await?,
            Held::Idle => abuse::idle(address, 10_000, 100).await?,
        };
        let cpu_before = server.cpu_time();
        let during = abuse::well_behaved(address, MEASURED).await;
        let server_cores = (server.cpu_time() - cpu_before).as_secs_f64() / MEASURED.as_secs_f64();
        drop(connections);
        figures.push(Figure {
            name,
            before,
            during,
            attack: None,
            resident_before,
            resident_peak: sampling.finish(),
            server_cores,
        });
    }
    Ok(figures)
}

/// The attacks that run until a deadline.
enum Flood {
    RapidReset,
    Continuation,
    HeaderLists,
}

impl Flood {
    async fn run(self, address: SocketAddr, until: Instant) -> Attack {
        match self {
            Flood::RapidReset => abuse::rapid_reset(address, until).await,
            Flood::Continuation => abuse::continuation_flood(address, until).await,
            Flood::HeaderLists => abuse::header_flood(address, until).await,
        }
    }
}

/// The attacks that hold connections open.
enum Held {
    NeverReading,
    Idle,
}

/// The highest resident memory seen, sampled every 50 ms until finished.
struct PeakSampling {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampling {
    fn finish(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

fn sample_peak(server: Arc<ServerProcess>) -> PeakSampling {
    let peak = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(server.resident_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    PeakSampling { peak, task }
}

/// Prints the figures; whether a target was missed.
pub fn report(figures: &[Figure]) -> bool {
    println!(
        "HTTP/2 abuse: a well-behaved client's health checks, unloaded then under each attack:"
    );
    let mut missed = false;
    for figure in figures {
        let ratio = figure.p99_ratio();
        let met = ratio <= 2.0 && figure.during.errors == 0;
        missed |= !met;
        let attack = figure.attack.map_or(String::new(), |attack| {
            format!(
                "; attacker: {} connections ({} closed by the server), {} streams, {} MiB",
                attack.connections,
                attack.closed_by_server,
                attack.streams,
                attack.bytes / MIB
            )
        });
        println!(
            "target {}: p99 {:?} -> {:?} ({ratio:.2} x, <= 2.00), p50 {:?} -> {:?}, errors {}; server CPU {:.2} cores; RSS {} -> peak {} MiB{attack}: {}",
            figure.name,
            figure.before.p99,
            figure.during.p99,
            figure.before.p50,
            figure.during.p50,
            figure.during.errors,
            figure.server_cores,
            figure.resident_before / MIB,
            figure.resident_peak / MIB,
            if met { "met" } else { "missed" }
        );
    }
    missed
}
