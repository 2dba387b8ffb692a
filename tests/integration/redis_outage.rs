//! Redis is an accelerator: when it stops, logins go on at once on the
//! local fallbacks instead of waiting for reconnection attempts.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use plinth_tests::{Backend, Sandbox, cluster::PrivateRedis};

use crate::tokens::{PASSWORD, login, sign_up};

/// Logins slower than this would hit a default client deadline under load.
const SLOWEST_LOGIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_keep_their_speed_when_redis_stops_under_load() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url.clone();
    let sandbox = Sandbox::start_with(Backend::Sqlite, |config| {
        config.redis_url = Some(url);
        config.login_free_failures_per_account = 1000;
        config.login_free_failures_per_peer = 1000;
    })
    .await;
    sign_up(&sandbox, "acme").await;
    let sandbox = Arc::new(sandbox);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stopped_at = Arc::new(Mutex::new(None::<Instant>));

    // Four clients log in (right and wrong passwords) while Redis stops.
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (sandbox, latencies, stopped_at) =
                (sandbox.clone(), latencies.clone(), stopped_at.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(4);
                while Instant::now() < deadline {
                    let password = if client % 2 == 0 {
                        PASSWORD
                    } else {
                        "wrong guess of a password"
                    };
                    let started = Instant::now();
                    let _ = login(&sandbox, "acme", "admin@acme.example", password).await;
                    let after_stop = stopped_at.lock().unwrap().is_some_and(|at| started > at);
                    if after_stop {
                        latencies.lock().unwrap().push(started.elapsed());
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.kill();
    *stopped_at.lock().unwrap() = Some(Instant::now());
    for client in clients {
        client.await.unwrap();
    }

    let latencies = latencies.lock().unwrap().clone();
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        latencies.len() >= 8,
        "logins went on after the stop: {}",
        latencies.len()
    );
    assert!(
        slowest < SLOWEST_LOGIN,
        "slowest login without Redis: {slowest:?}"
    );
    eprintln!(
        "{} logins after Redis stopped, slowest {slowest:?}",
        latencies.len()
    );
}
