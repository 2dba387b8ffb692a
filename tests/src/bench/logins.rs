//! Logins the bench makes: as the bench tenant's admin, repeatedly (to
//! read memory after them), or as a storm of right and guessed passwords.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use plinth_api::auth::v1::{LoginRequest, auth_service_client::AuthServiceClient};

use super::report::StormCounts;

/// The bench admin's password.
pub const BENCH_PASSWORD: &str = "benchmarks need long passphrases";

pub fn bench_login() -> LoginRequest {
    LoginRequest {
        tenant_code: "bench".to_owned(),
        email: "admin@bench.example".to_owned(),
        password: BENCH_PASSWORD.to_owned(),
    }
}

/// `count` successful logins from four clients at once.
pub async fn log_in_repeatedly(core: SocketAddr, count: usize) -> anyhow::Result<()> {
    let channel = super::connect(core, 1).await?.remove(0);
    let remaining = Arc::new(AtomicUsize::new(count));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut auth = AuthServiceClient::new(channel.clone());
            let remaining = remaining.clone();
            tokio::spawn(async move {
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok()
                {
                    auth.login(bench_login()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(())
}

/// Logins at full speed for `length`: half with the right password (each a
/// full argon2id hash), half guessing another account's password (which the
/// per-account throttle must stop).
pub async fn login_storm(
    core: SocketAddr,
    logins: usize,
    length: Duration,
    counts: Arc<StormCounts>,
) -> anyhow::Result<()> {
    let channel = super::connect(core, 1).await?.remove(0);
    let until = Instant::now() + length;
    let workers: Vec<_> = (0..logins)
        .map(|index| {
            let mut client = AuthServiceClient::new(channel.clone());
            let counts = counts.clone();
            let guess = index % 2 == 1;
            tokio::spawn(async move {
                while Instant::now() < until {
                    let request = if guess {
                        LoginRequest {
                            email: "victim@bench.example".to_owned(),
                            password: "a guessed password".to_owned(),
                            ..bench_login()
                        }
                    } else {
                        bench_login()
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
