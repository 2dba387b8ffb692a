//! Enablement and configuration across replicas sharing Redis: once a
//! change committed on one, the other answers with it within 100 ms (p99),
//! without any consistency token.

use std::time::{Duration, Instant};

use plinth_api::tenant::v1::{
    IsModuleEnabledRequest, ResolveModuleConfigRequest, SetModuleConfigRequest,
    set_module_config_request::Change,
};
use plinth_tests::{Backend, Clients, Sandbox, TestRedis};

use super::{callbacks::struct_of, disable, enable, in_catalog, module};
use crate::rbac::tenant;

crate::on_both_backends!(changes_reach_the_other_replica_within_a_hundred_ms);

const CHANGES: usize = 50;

async fn enabled_on(clients: &mut Clients, tenant_id: &str) -> bool {
    clients
        .tenants
        .is_module_enabled(IsModuleEnabledRequest {
            tenant_id: tenant_id.to_owned(),
            module_id: "billing".to_owned(),
            ..IsModuleEnabledRequest::default()
        })
        .await
        .expect("IsModuleEnabled answers")
        .into_inner()
        .enabled
}

async fn resolved_on(clients: &mut Clients, tenant_id: &str) -> String {
    clients
        .tenants
        .resolve_module_config(ResolveModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: tenant_id.to_owned(),
            ..ResolveModuleConfigRequest::default()
        })
        .await
        .expect("configuration resolved")
        .into_inner()
        .resolution
        .expect("resolution")
        .document
}

/// Waits until `seen` holds (polling every millisecond); how long it took.
async fn until(since: Instant, mut seen: impl AsyncFnMut() -> bool) -> Duration {
    while !seen().await {
        assert!(since.elapsed() < Duration::from_secs(5), "never seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    since.elapsed()
}

/// Prints the delays from the start of each write and from its answer
/// (the change committed), and holds the latter to 100 ms at p99.
fn report(
    what: &str,
    backend: Backend,
    mut from_start: Vec<Duration>,
    mut committed: Vec<Duration>,
) {
    for latencies in [&mut from_start, &mut committed] {
        latencies.sort();
    }
    let percentile = |latencies: &[Duration], at: usize| latencies[latencies.len() * at / 100];
    eprintln!(
        "{what} reached the other replica ({backend:?}): from the write's start p50 {:?}, \
         p99 {:?}; after it committed p50 {:?}, p99 {:?}, max {:?}",
        percentile(&from_start, 50),
        percentile(&from_start, 99),
        percentile(&committed, 50),
        percentile(&committed, 99),
        committed[committed.len() - 1]
    );
    assert!(
        percentile(&committed, 99) < Duration::from_millis(100),
        "{what}: {committed:?}"
    );
}

/// Run with the machine to itself (see .config/nextest.toml).
async fn changes_reach_the_other_replica_within_a_hundred_ms(backend: Backend) {
    let redis = TestRedis::new();
    let first = Sandbox::start_with(backend, |config| redis.configure(config)).await;
    let second = first.replica().await;
    in_catalog(
        &first,
        &[plinth_api::registry::v1::ModuleManifest {
            config_schema: Some(struct_of(serde_json::json!({"type": "object"}))),
            ..module("billing", &[])
        }],
    )
    .await;
    let mut acme = tenant(&first, "acme").await;
    let admin = &mut acme.admin.clients;
    let mut on_second = second.operator().await;
    enable(admin, &acme.id, &["billing"], false).await.unwrap();

    let (mut flips, mut flips_committed) = (Vec::new(), Vec::new());
    for flip in 0..CHANGES {
        let on = flip % 2 == 1;
        until(Instant::now(), async || {
            enabled_on(&mut on_second, &acme.id).await != on
        })
        .await;
        let started = Instant::now();
        if on {
            enable(admin, &acme.id, &["billing"], false).await.unwrap();
        } else {
            disable(admin, &acme.id, "billing", false).await.unwrap();
        }
        let committed = Instant::now();
        until(committed, async || {
            enabled_on(&mut on_second, &acme.id).await == on
        })
        .await;
        flips.push(started.elapsed());
        flips_committed.push(committed.elapsed());
    }
    enable(admin, &acme.id, &["billing"], false).await.unwrap();
    let (mut writes, mut writes_committed) = (Vec::new(), Vec::new());
    for round in 0..CHANGES {
        let document = format!(r#"{{"round":{round}}}"#);
        let started = Instant::now();
        admin
            .tenants
            .set_module_config(SetModuleConfigRequest {
                module_id: "billing".to_owned(),
                tenant_id: acme.id.clone(),
                company_id: String::new(),
                change: Some(Change::MergePatch(document.clone())),
                etag: String::new(),
            })
            .await
            .unwrap();
        let committed = Instant::now();
        until(committed, async || {
            resolved_on(&mut on_second, &acme.id).await == document
        })
        .await;
        writes.push(started.elapsed());
        writes_committed.push(committed.elapsed());
    }

    report("an enable or disable", backend, flips, flips_committed);
    report("a configuration write", backend, writes, writes_committed);
}
