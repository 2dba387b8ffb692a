//! Sequential Check latency as module developers and operators meet it:
//! client-rs's `require` (its cache off, then warm), the Python client
//! (grpcio, one channel), grpcurl (a process per call, resolving the method
//! through reflection), and tonic for scale. One call at a time: latency,
//! not throughput. The core's CPU during each client's calls shows what
//! reached it: a warm cache sends nothing.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use plinth_api::rbac::v1::{CheckRequest, rbac_service_client::RbacServiceClient};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use plinth_client::{CheckCacheSettings, User};

use crate::{Credentials, bench::ServerProcess};

/// Calls of the tonic and Python clients, after as many again to warm up.
const CLIENT_CALLS: usize = 2_000;

/// grpcurl calls: each starts a process.
const GRPCURL_CALLS: usize = 100;

/// One client's sequential latency, or why it was not measured.
pub enum Sequential {
    Measured {
        client: &'static str,
        calls: usize,
        p50_micros: f64,
        p99_micros: f64,
        /// The core's CPU per call while they ran (warm-up included), where
        /// it was read.
        core_cpu_micros: Option<f64>,
    },
    Skipped {
        client: &'static str,
        why: String,
    },
}

/// A tool the test command installs into `target/python`.
fn installed(name: &str) -> PathBuf {
    crate::repository().join("target/python/bin").join(name)
}

/// `check` asked one call at a time through each client; and, for scale,
/// the echo server's health check through tonic.
pub async fn sequential_checks(
    echo: SocketAddr,
    core: &ServerProcess,
    module_key: &str,
    check: CheckRequest,
) -> anyhow::Result<Vec<Sequential>> {
    let address = core.address;
    let echoed = one_at_a_time("tonic (Rust), echo baseline", None, {
        let client = HealthClient::new(connect(echo).await?);
        move || {
            let mut client = client.clone();
            async move { client.check(HealthCheckRequest::default()).await.map(drop) }
        }
    })
    .await?;
    let sdk_user = User {
        user_id: check.user_id.parse()?,
        tenant_id: check.tenant_id.parse()?,
        session_id: uuid::Uuid::nil(),
        expires_at: std::time::SystemTime::now(),
    };
    let mut sdk_figures = Vec::new();
    for (client, ttl) in [
        ("client-rs require, cache off", Duration::ZERO),
        ("client-rs require, warm cache", Duration::from_secs(600)),
    ] {
        let sdk = plinth_client::Client::builder(format!("http://{address}"))
            .api_key(module_key)
            .check_cache(CheckCacheSettings { ttl, capacity: 10 })
            .connect()
            .await?;
        let (user, company_id, permission) = (&sdk_user, &check.company_id, &check.permission);
        let measured = one_at_a_time(client, Some(core), || {
            let sdk = sdk.clone();
            async move {
                sdk.require_in(user, permission, Some(company_id), None)
                    .await
            }
        })
        .await?;
        sdk_figures.push(measured);
    }
    let checked = one_at_a_time("tonic (Rust)", Some(core), {
        let channel = connect(address).await?;
        let client = RbacServiceClient::with_interceptor(channel, Credentials::api_key(module_key));
        let check = check.clone();
        move || {
            let (mut client, check) = (client.clone(), check.clone());
            async move { client.check(check).await.map(drop) }
        }
    })
    .await?;
    let (python, grpcurl) = tokio::task::spawn_blocking({
        let module_key = module_key.to_owned();
        move || {
            (
                python_checks(address, &module_key, &check),
                grpcurl_checks(address, &module_key, &check),
            )
        }
    })
    .await?;
    let mut figures = vec![echoed, checked];
    figures.extend(sdk_figures);
    figures.extend([python, grpcurl]);
    Ok(figures)
}

async fn connect(address: SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect()
            .await?,
    )
}

/// `call` made [`CLIENT_CALLS`] times, one at a time, after as many to warm
/// up; with `core`'s CPU per call over both.
async fn one_at_a_time<Call, Answer>(
    client: &'static str,
    core: Option<&ServerProcess>,
    mut call: Call,
) -> anyhow::Result<Sequential>
where
    Call: FnMut() -> Answer,
    Answer: Future<Output = Result<(), tonic::Status>>,
{
    let mut latency = Histogram::<u64>::new(3)?;
    let cpu_before = core.map(ServerProcess::cpu_time);
    for round in 0..2 * CLIENT_CALLS {
        let started = Instant::now();
        call().await?;
        if round >= CLIENT_CALLS {
            latency.record(started.elapsed().as_nanos() as u64)?;
        }
    }
    let core_cpu = core
        .zip(cpu_before)
        .map(|(core, before)| core.cpu_time().saturating_sub(before));
    Ok(Sequential::Measured {
        client,
        calls: CLIENT_CALLS,
        p50_micros: latency.value_at_quantile(0.5) as f64 / 1e3,
        p99_micros: latency.value_at_quantile(0.99) as f64 / 1e3,
        core_cpu_micros: core_cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / (2 * CLIENT_CALLS) as f64),
    })
}

fn python_checks(address: SocketAddr, module_key: &str, check: &CheckRequest) -> Sequential {
    const CLIENT: &str = "Python client (grpcio)";
    let python = installed("python");
    if !python.exists() {
        return Sequential::Skipped {
            client: CLIENT,
            why: format!("{} is missing: tests/run installs it", python.display()),
        };
    }
    let output = Command::new(python)
        .arg(crate::repository().join("clients/python/bench/sequential_check.py"))
        .args(["--tenant", &check.tenant_id, "--user", &check.user_id])
        .args(["--company", &check.company_id])
        .args(["--permission", &check.permission])
        .args(["--calls", &CLIENT_CALLS.to_string()])
        .args(["--warm-up", &CLIENT_CALLS.to_string()])
        .env("PLINTH_TARGET", address.to_string())
        .env("PLINTH_API_KEY", module_key)
        .output();
    let figures = output
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| serde_json::from_slice::<serde_json::Value>(&output.stdout).ok());
    match figures {
        Some(figures) => Sequential::Measured {
            client: CLIENT,
            calls: CLIENT_CALLS,
            p50_micros: figures["p50_us"].as_f64().unwrap_or_default(),
            p99_micros: figures["p99_us"].as_f64().unwrap_or_default(),
            core_cpu_micros: None,
        },
        None => Sequential::Skipped {
            client: CLIENT,
            why: "the script failed".to_owned(),
        },
    }
}

fn grpcurl_checks(address: SocketAddr, module_key: &str, check: &CheckRequest) -> Sequential {
    const CLIENT: &str = "grpcurl (a process per call)";
    let grpcurl = installed("grpcurl");
    if !grpcurl.exists() {
        return Sequential::Skipped {
            client: CLIENT,
            why: format!("{} is missing: tests/run installs it", grpcurl.display()),
        };
    }
    let body = serde_json::json!({
        "tenant_id": check.tenant_id,
        "user_id": check.user_id,
        "company_id": check.company_id,
        "permission": check.permission,
    })
    .to_string();
    let mut latency = Histogram::<u64>::new(3).expect("3 significant digits");
    for _ in 0..GRPCURL_CALLS {
        let started = Instant::now();
        let answered = Command::new(&grpcurl)
            .args(["-plaintext", "-max-time", "5"])
            .args(["-H", &format!("x-api-key: {module_key}")])
            .args(["-d", &body])
            .arg(address.to_string())
            .arg("plinth.rbac.v1.RbacService/Check")
            .output()
            .is_ok_and(|output| output.status.success());
        if !answered {
            return Sequential::Skipped {
                client: CLIENT,
                why: "a call failed".to_owned(),
            };
        }
        let elapsed = started.elapsed().min(Duration::from_secs(60));
        let _ = latency.record(elapsed.as_micros() as u64);
    }
    Sequential::Measured {
        client: CLIENT,
        calls: GRPCURL_CALLS,
        p50_micros: latency.value_at_quantile(0.5) as f64,
        p99_micros: latency.value_at_quantile(0.99) as f64,
        core_cpu_micros: None,
    }
}

pub fn report(figures: &[Sequential]) {
    println!("sequential Check, one call at a time on an idle server:");
    for figure in figures {
        match figure {
            Sequential::Measured {
                client,
                calls,
                p50_micros,
                p99_micros,
                core_cpu_micros,
            } => {
                let core_cpu = core_cpu_micros
                    .map(|micros| format!(", core CPU {micros:.1} us per call"))
                    .unwrap_or_default();
                println!(
                    "  {client}: p50 {p50_micros:.1} us, p99 {p99_micros:.1} us over {calls} calls{core_cpu}"
                )
            }
            Sequential::Skipped { client, why } => println!("  {client}: not measured ({why})"),
        }
    }
}
