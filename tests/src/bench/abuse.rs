//! HTTP/2 abuse against a core-server (the release build, in its own
//! process): a well-behaved client checks health one call after another,
//! unloaded and then while each attack runs, and the server's resident
//! memory and CPU are sampled. Target: the client's p99 under attack within
//! 2× its unloaded p99.
//!
//! A real attacker's CPU (and its kernel's work sending) is on other
//! machines; here it shares two cores with the server. So each flood runs
//! in a process of its own (`plinth-bench attack`) at the lowest priority
//! (`nice -n 19`): it still takes whatever the server and the client leave,
//! but cannot take their turn.

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
        let cpu_before = server.cpu_time();
        let attacker = std::process::Command::new("nice")
            .args(["-n", "19"])
            .arg(std::env::current_exe()?)
            .arg("attack")
            .arg(flood.name())
            .args(["--address", &address.to_string()])
            .args(["--millis", &MEASURED.as_millis().to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let during = abuse::well_behaved(address, MEASURED).await;
        let server_cores = (server.cpu_time() - cpu_before).as_secs_f64() / MEASURED.as_secs_f64();
        let output = tokio::task::spawn_blocking(move || attacker.wait_with_output()).await??;
        let attack = Attack::from_line(&String::from_utf8_lossy(&output.stdout))
            .ok_or_else(|| anyhow::anyhow!("the {name} attacker reported nothing"))?;
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
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Flood {
    RapidReset,
    Continuation,
    HeaderLists,
}

impl Flood {
    fn name(self) -> &'static str {
        match self {
            Flood::RapidReset => "rapid-reset",
            Flood::Continuation => "continuation",
            Flood::HeaderLists => "header-lists",
        }
    }

    /// Runs the flood on `address` for `duration`: what `plinth-bench
    /// attack` does, printing [`Attack::to_line`].
    pub fn attack(self, address: SocketAddr, duration: Duration) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let attack = runtime.block_on(self.run(address, Instant::now() + duration));
        println!("{}", attack.to_line());
        Ok(())
    }

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
