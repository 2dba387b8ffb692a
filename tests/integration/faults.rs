//! Faults of a deployment: three `core-server` replicas and a
//! `registry-server` in processes of their own on one PostgreSQL database
//! and one Redis, under a load of Checks, RecordEvents, heartbeats and
//! grant changes from client-rs (with its retries). A replica killed with SIGKILL, PostgreSQL crashing and coming
//! back, and revocations under load: no wrong answer, no acknowledged event
//! lost, and recovery within the documented bounds.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use plinth_api::{
    audit::v1::{EventInput, Outcome},
    auth::v1::{RevokeApiKeyRequest, WhoAmIRequest},
};
use plinth_client::{Client, testing::Provisioner};
use plinth_tests::{
    Backend, TestDatabase, TestRedis,
    cluster::{Cluster, PrivatePostgres, PrivateRedis},
    load::{MANIFEST, assert_chain_holds, check, grant_churned, ledger, steady_loads, unbind},
};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_acknowledged_event_and_rejoins() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let redis = TestRedis::new();
    let mut cluster = Cluster::start(3, &database.url, &redis).await;
    let ledger = Arc::new(ledger(&cluster).await);
    let operator = cluster.client(0, &cluster.operator_key, Duration::from_secs(10));

    let until = Instant::now() + Duration::from_secs(4);
    let loads = steady_loads(&cluster, &ledger, 3, until);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill(2);
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let restart = cluster.start_replica(2).await;
    let rejoined_after = killed_at.elapsed();
    let tallies = loads.finish().await;

    let acknowledged = tallies.acknowledged();
    let in_chain = assert_chain_holds(&operator, &ledger, &acknowledged).await;
    eprintln!(
        "kill -9: {} events acknowledged, {in_chain} in the verified chain; replica back {restart:?} after its start ({rejoined_after:?} after the kill); {tallies}",
        acknowledged.len(),
    );
    for (index, tally) in tallies.0.iter().enumerate() {
        assert_eq!(tally.wrong_answers, 0, "replica {index}: {tally:?}");
        assert!(tally.checks > 0, "replica {index} served: {tally:?}");
    }
    for survivor in &tallies.0[..2] {
        assert_eq!(survivor.errors, 0, "the survivors never failed a call");
    }
    for tally in &tallies.0 {
        assert!(
            tally.heartbeats > 0 && tally.heartbeat_errors == 0,
            "{tally:?}"
        );
    }
    let rejoined = cluster.client(2, &ledger.module_key, Duration::from_secs(3));
    assert!(
        check(&rejoined, &ledger, &ledger.reader, None)
            .await
            .unwrap()
    );
    assert!(
        !check(&rejoined, &ledger, &ledger.outsider, None)
            .await
            .unwrap()
    );
    assert_eq!(cluster.health(2).await, Some(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_under_load_reaches_every_replica_within_a_hundred_ms() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let redis = TestRedis::new();
    let cluster = Cluster::start(3, &database.url, &redis).await;
    let ledger = Arc::new(ledger(&cluster).await);
    let operator = cluster.client(0, &cluster.operator_key, Duration::from_secs(10));
    let observers: Vec<Client> = (0..3)
        .map(|index| cluster.client(index, &ledger.module_key, Duration::from_secs(3)))
        .collect();

    let loads = steady_loads(
        &cluster,
        &ledger,
        3,
        Instant::now() + Duration::from_secs(60),
    );
    let mut latencies = Vec::new();
    for _ in 0..30 {
        let binding = grant_churned(&operator, &ledger)
            .await
            .unwrap()
            .binding
            .unwrap();
        // Every replica answers "allowed" from its cache before the change.
        for observer in &observers {
            while !check(observer, &ledger, &ledger.churned, None)
                .await
                .unwrap()
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let token = unbind(&operator, &binding.id).await.unwrap();
        // From the revocation's acknowledgement: how long replicas still
        // answered from what they knew before it.
        let revoked = Instant::now();
        let mut slowest = Duration::ZERO;
        for observer in &observers {
            while check(observer, &ledger, &ledger.churned, None)
                .await
                .unwrap()
            {
                assert!(revoked.elapsed() < Duration::from_secs(5), "never refused");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            slowest = slowest.max(revoked.elapsed());
            assert!(
                !check(observer, &ledger, &ledger.churned, Some(&token))
                    .await
                    .unwrap(),
                "refused at the revocation's consistency token"
            );
        }
        latencies.push(slowest);
    }
    loads.abort();

    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "revocation under load, refused by all 3 replicas: p50 {p50:?}, p99 {p99:?}, max {:?} over {} revocations",
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(p99 <= Duration::from_millis(100), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_turns_health_not_serving_and_back_without_losing_writes() {
    let postgres = PrivatePostgres::start().await;
    postgres.create_database("plinth");
    let redis = TestRedis::new();
    let cluster = Cluster::start(3, &postgres.url("plinth"), &redis).await;
    let ledger = Arc::new(ledger(&cluster).await);

    let until = Instant::now() + Duration::from_secs(7);
    let loads = steady_loads(&cluster, &ledger, 3, until);
    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres.crash();
    let crashed = Instant::now();
    let mut noticed = Vec::new();
    for index in 0..3 {
        let limit = Duration::from_secs(5);
        noticed.push(
            cluster
                .health_becomes(index, ServingStatus::NotServing, crashed, limit)
                .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres.start_server();
    let back = Instant::now();
    let mut recovered = Vec::new();
    for index in 0..3 {
        let limit = Duration::from_secs(10);
        recovered.push(
            cluster
                .health_becomes(index, ServingStatus::Serving, back, limit)
                .await,
        );
    }
    let tallies = loads.finish().await;

    let operator = cluster.client(0, &cluster.operator_key, Duration::from_secs(10));
    let acknowledged = tallies.acknowledged();
    let in_chain = assert_chain_holds(&operator, &ledger, &acknowledged).await;
    eprintln!(
        "PostgreSQL crash: NOT_SERVING after {noticed:?}; SERVING {recovered:?} after it was back; {} events acknowledged, {in_chain} in the verified chain; {tallies}",
        acknowledged.len(),
    );
    assert_eq!(tallies.wrong_answers(), 0, "{tallies}");
    let slowest = recovered.iter().max().copied().unwrap_or_default();
    assert!(
        slowest <= Duration::from_secs(5),
        "SERVING again after {slowest:?}"
    );
    // The pools recovered: every replica writes again, without a restart.
    for index in 0..3 {
        let client = cluster.client(index, &ledger.module_key, Duration::from_secs(3));
        client
            .record_events(
                &ledger.tenant.id,
                None,
                vec![EventInput {
                    action: "ledger.entry.posted".to_owned(),
                    resource_type: "entry".to_owned(),
                    resource_id: format!("after-{index}"),
                    outcome: Outcome::Success.into(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
    }
}

/// Polls `refused` until it holds; how long that took (at most `limit`).
async fn time_until<F: Future<Output = bool>>(
    limit: Duration,
    mut refused: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !refused().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// A new module key (of a module named `module_id`), verified once on
/// replicas 1 and 2 so that they hold it in their caches: its id, and
/// those replicas' clients presenting it.
async fn key_elsewhere(
    cluster: &Cluster,
    operator: &Client,
    module_id: &str,
) -> (String, Vec<Client>) {
    let secret = Provisioner::new(operator.clone())
        .publish_module(&MANIFEST.replace("ledger", module_id))
        .await
        .unwrap();
    let elsewhere: Vec<Client> = (1..3)
        .map(|index| cluster.client(index, &secret, Duration::from_secs(3)))
        .collect();
    for client in &elsewhere {
        client.auth().who_am_i(WhoAmIRequest {}).await.unwrap();
    }
    let id = secret
        .strip_prefix("plk_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| uuid::Uuid::parse_str(id).unwrap().to_string())
        .unwrap();
    (id, elsewhere)
}

async fn revoke(operator: &Client, id: String) {
    operator
        .auth()
        .revoke_api_key(RevokeApiKeyRequest { id })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_revocations_last_their_cache_lifetimes_and_caches_clear_on_its_return() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let mut private_redis = PrivateRedis::start().await;
    let redis = TestRedis::at(&private_redis.url);
    let cluster = Cluster::start(3, &database.url, &redis).await;
    let ledger = Arc::new(ledger(&cluster).await);
    let operator = cluster.client(0, &cluster.operator_key, Duration::from_secs(10));
    let observers: Vec<Client> = (1..3)
        .map(|index| cluster.client(index, &ledger.module_key, Duration::from_secs(3)))
        .collect();
    let binding = grant_churned(&operator, &ledger)
        .await
        .unwrap()
        .binding
        .unwrap();
    for observer in &observers {
        time_until(Duration::from_secs(5), || async {
            check(observer, &ledger, &ledger.churned, None)
                .await
                .unwrap()
        })
        .await;
    }
    let (doomed_id, doomed_on_others) = key_elsewhere(&cluster, &operator, "doomed").await;
    let (lapsed_id, lapsed_on_others) = key_elsewhere(&cluster, &operator, "lapsed").await;
    let loads = steady_loads(
        &cluster,
        &ledger,
        3,
        Instant::now() + Duration::from_secs(60),
    );

    private_redis.kill();
    unbind(&operator, &binding.id).await.unwrap();
    let mut grant_staleness = Duration::ZERO;
    for observer in &observers {
        let took = time_until(Duration::from_secs(5), || async {
            !check(observer, &ledger, &ledger.churned, None)
                .await
                .unwrap()
        })
        .await;
        grant_staleness = grant_staleness.max(took);
    }
    revoke(&operator, doomed_id).await;
    for doomed in &doomed_on_others {
        doomed
            .auth()
            .who_am_i(WhoAmIRequest {})
            .await
            .expect("still cached elsewhere: Redis carried no eviction");
    }
    private_redis.restart().await;
    let mut cleared_after = Duration::ZERO;
    for doomed in &doomed_on_others {
        let took = time_until(Duration::from_secs(10), || async {
            doomed.auth().who_am_i(WhoAmIRequest {}).await.is_err()
        })
        .await;
        cleared_after = cleared_after.max(took);
    }
    // Redis gone again: a key revoked now lives on elsewhere until its
    // cache lifetime ends (cached afresh: Redis's return cleared caches).
    for lapsed in &lapsed_on_others {
        lapsed.auth().who_am_i(WhoAmIRequest {}).await.unwrap();
    }
    private_redis.kill();
    revoke(&operator, lapsed_id).await;
    let mut key_staleness = Duration::ZERO;
    for lapsed in &lapsed_on_others {
        let took = time_until(Duration::from_secs(40), || async {
            lapsed.auth().who_am_i(WhoAmIRequest {}).await.is_err()
        })
        .await;
        key_staleness = key_staleness.max(took);
    }
    loads.abort();

    eprintln!(
        "Redis loss: a revoked grant refused by every replica after {grant_staleness:?} (bound: the 2 s grant cache); a key revoked without Redis refused everywhere after {key_staleness:?} (bound: the 30 s key cache), and one revoked while Redis was down refused {cleared_after:?} after Redis returned"
    );
    assert!(
        key_staleness <= Duration::from_secs(31),
        "{key_staleness:?}"
    );
    assert!(
        grant_staleness <= Duration::from_millis(2500),
        "{grant_staleness:?}"
    );
    assert!(
        cleared_after < Duration::from_secs(5),
        "caches cleared on Redis's return: {cleared_after:?}"
    );
}
