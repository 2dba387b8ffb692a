//! WatchModuleConfig: a snapshot of the resolutions in scope, each change
//! as it commits, resuming without loss or repeats, resyncs, and scope.

use std::time::{Duration, Instant};

use plinth_api::tenant::v1::{
    SetModuleConfigRequest, WatchModuleConfigRequest, WatchModuleConfigResponse,
    set_module_config_request::Change, watch_module_config_response::Event,
};
use plinth_tests::{
    Backend, Clients, Credentials, Sandbox, assert_refusal, module_key, violated_fields,
};
use tonic::{Code, Streaming};

use super::{company, disable, enable, in_catalog, module};
use crate::rbac::tenant;

crate::on_both_backends!(
    a_watch_starts_with_a_snapshot_then_follows_each_change,
    a_resumed_watch_gets_exactly_what_it_missed,
    a_revision_never_reached_or_forgotten_gets_a_resync,
    a_module_key_watches_the_tenants_holding_its_module,
    bad_watches_are_refused,
    a_change_reaches_a_watcher_within_fifty_ms,
);

/// A module that takes any configuration object.
fn billing() -> plinth_api::registry::v1::ModuleManifest {
    plinth_api::registry::v1::ModuleManifest {
        config_schema: Some(super::callbacks::struct_of(
            serde_json::json!({"type": "object"}),
        )),
        ..module("billing", &[])
    }
}

async fn watch(
    clients: &mut Clients,
    tenant_id: &str,
    after_revision: Option<u64>,
) -> Streaming<WatchModuleConfigResponse> {
    clients
        .tenants
        .watch_module_config(WatchModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: tenant_id.to_owned(),
            after_revision,
            checkpoint_interval: Some(plinth_api::prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .expect("watch started")
        .into_inner()
}

async fn next(stream: &mut Streaming<WatchModuleConfigResponse>) -> WatchModuleConfigResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message in time")
        .expect("the stream goes on")
        .expect("a message")
}

/// The next message that is not a checkpoint.
async fn next_event(
    stream: &mut Streaming<WatchModuleConfigResponse>,
) -> WatchModuleConfigResponse {
    loop {
        let message = next(stream).await;
        if !matches!(message.event, Some(Event::Checkpoint(_))) {
            return message;
        }
    }
}

async fn write(clients: &mut Clients, tenant_id: &str, company_id: &str, max: i64) {
    clients
        .tenants
        .set_module_config(SetModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: tenant_id.to_owned(),
            company_id: company_id.to_owned(),
            change: Some(Change::MergePatch(format!(r#"{{"max":{max}}}"#))),
            etag: String::new(),
        })
        .await
        .expect("configuration written");
}

/// (tenant id, company id, document) of a change's resolution.
fn changed(message: &WatchModuleConfigResponse) -> (String, String, String) {
    match &message.event {
        Some(Event::Change(change)) => {
            let resolution = change.resolution.clone().unwrap();
            (
                resolution.tenant_id,
                resolution.company_id,
                resolution.document,
            )
        }
        other => panic!("not a change: {other:?}"),
    }
}

async fn a_watch_starts_with_a_snapshot_then_follows_each_change(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let north = company(clients, &acme.id, "north").await;
    enable(clients, &acme.id, &["billing"], false)
        .await
        .unwrap();
    write(clients, &acme.id, &north, 1).await;
    let mut operator = sandbox.operator().await;
    let mut stream = watch(&mut operator, "", None).await;

    let snapshot = next(&mut stream).await;
    write(clients, &acme.id, "", 2).await;
    let tenant_change = next_event(&mut stream).await;
    let company_change = next_event(&mut stream).await;
    disable(clients, &acme.id, "billing", false).await.unwrap();
    let removal = next_event(&mut stream).await;

    let Some(Event::Snapshot(snapshot_part)) = &snapshot.event else {
        panic!("a snapshot first: {snapshot:?}")
    };
    assert!(snapshot_part.complete && !snapshot_part.resync);
    let scopes: Vec<(&str, &str, &str)> = snapshot_part
        .resolutions
        .iter()
        .map(|resolution| {
            (
                resolution.tenant_id.as_str(),
                resolution.company_id.as_str(),
                resolution.document.as_str(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        [
            (acme.id.as_str(), "", "{}"),
            (acme.id.as_str(), north.as_str(), r#"{"max":1}"#)
        ]
    );
    assert_eq!(
        changed(&tenant_change),
        (acme.id.clone(), String::new(), r#"{"max":2}"#.to_owned())
    );
    assert_eq!(
        changed(&company_change),
        (acme.id.clone(), north.clone(), r#"{"max":1}"#.to_owned())
    );
    assert_eq!(tenant_change.revision, company_change.revision);
    assert!(tenant_change.revision > snapshot.revision);
    let Some(Event::Change(removed)) = &removal.event else {
        panic!("a removal: {removal:?}")
    };
    assert!(removed.removed);
    assert_eq!(removed.resolution.as_ref().unwrap().tenant_id, acme.id);
}

async fn a_resumed_watch_gets_exactly_what_it_missed(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    enable(clients, &acme.id, &["billing"], false)
        .await
        .unwrap();
    let mut first = watch(clients, &acme.id, None).await;
    let reached = next(&mut first).await.revision;
    drop(first);

    for max in 1..=3 {
        write(clients, &acme.id, "", max).await;
    }
    let mut resumed = watch(clients, &acme.id, Some(reached)).await;
    let mut documents = Vec::new();
    let mut revisions = Vec::new();
    for _ in 1..=3 {
        let message = next_event(&mut resumed).await;
        revisions.push(message.revision);
        documents.push(changed(&message).2);
    }
    let quiet = next(&mut resumed).await;

    assert_eq!(
        documents, [r#"{"max":3}"#; 3],
        "each change resolves as things are now"
    );
    assert!(
        revisions.windows(2).all(|pair| pair[0] < pair[1]),
        "{revisions:?}"
    );
    assert!(revisions[0] > reached);
    assert!(
        matches!(quiet.event, Some(Event::Checkpoint(_))),
        "nothing repeated: {quiet:?}"
    );
    assert_eq!(quiet.revision, revisions[2]);
}

async fn a_revision_never_reached_or_forgotten_gets_a_resync(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    enable(clients, &acme.id, &["billing"], false)
        .await
        .unwrap();
    write(clients, &acme.id, "", 1).await;
    write(clients, &acme.id, "", 2).await;
    sandbox
        .database
        .run_sql("DELETE FROM config_changes WHERE revision = (SELECT MIN(revision) FROM config_changes)")
        .await;

    for after in [u64::MAX, 0] {
        let mut stream = watch(clients, &acme.id, Some(after)).await;
        let first = next(&mut stream).await;
        let Some(Event::Snapshot(snapshot)) = &first.event else {
            panic!("a resync after {after}: {first:?}")
        };
        assert!(snapshot.resync && snapshot.complete, "{after}");
        assert_eq!(snapshot.resolutions[0].document, r#"{"max":2}"#);
    }
}

async fn a_module_key_watches_the_tenants_holding_its_module(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut globex = tenant(&sandbox, "globex").await;
    enable(&mut acme.admin.clients, &acme.id, &["billing"], false)
        .await
        .unwrap();
    let mut billing = sandbox
        .clients(&module_key(&sandbox, "billing").await)
        .await;
    let mut stream = watch(&mut billing, "", None).await;

    let snapshot = next(&mut stream).await;
    write(&mut acme.admin.clients, &acme.id, "", 7).await;
    enable(&mut globex.admin.clients, &globex.id, &["billing"], false)
        .await
        .unwrap();
    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;

    let Some(Event::Snapshot(snapshot)) = snapshot.event else {
        panic!("a snapshot first")
    };
    assert_eq!(snapshot.resolutions.len(), 1);
    assert_eq!(snapshot.resolutions[0].tenant_id, acme.id);
    assert_eq!(changed(&first).0, acme.id);
    assert_eq!(
        changed(&second),
        (globex.id.clone(), String::new(), "{}".to_owned())
    );
}

async fn bad_watches_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let globex = tenant(&sandbox, "globex").await;
    let ask = |module_id: &str, tenant_id: &str, seconds: i64| WatchModuleConfigRequest {
        module_id: module_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        after_revision: None,
        checkpoint_interval: Some(plinth_api::prost_types::Duration { seconds, nanos: 0 }),
    };
    let clients = &mut acme.admin.clients;

    let malformed = clients
        .tenants
        .watch_module_config(ask("Billing", "x", 0))
        .await
        .unwrap_err();
    let too_long = clients
        .tenants
        .watch_module_config(ask("billing", "", 301))
        .await
        .unwrap_err();
    let negative = clients
        .tenants
        .watch_module_config(ask("billing", "", i64::MIN))
        .await
        .unwrap_err();
    let unknown = clients
        .tenants
        .watch_module_config(ask("nowhere", "", 1))
        .await
        .unwrap_err();
    let foreign = clients
        .tenants
        .watch_module_config(ask("billing", &globex.id, 1))
        .await
        .unwrap_err();
    let mut anonymous = sandbox.clients_with(Credentials::anonymous()).await;
    let anonymous = anonymous
        .tenants
        .watch_module_config(ask("billing", "", 1))
        .await
        .unwrap_err();

    assert_eq!(
        violated_fields(&malformed),
        ["module_id", "tenant_id", "checkpoint_interval"]
    );
    assert_eq!(violated_fields(&too_long), ["checkpoint_interval"]);
    assert_eq!(violated_fields(&negative), ["checkpoint_interval"]);
    assert_refusal(&unknown, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_refusal(&foreign, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

/// Run with the machine to itself (see .config/nextest.toml).
async fn a_change_reaches_a_watcher_within_fifty_ms(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    enable(clients, &acme.id, &["billing"], false)
        .await
        .unwrap();
    let mut watcher = sandbox.operator().await;
    let mut stream = watch(&mut watcher, &acme.id, None).await;
    next(&mut stream).await;

    let (mut from_start, mut committed) = (Vec::new(), Vec::new());
    for max in 0..20 {
        let started = Instant::now();
        write(clients, &acme.id, "", max).await;
        let written = Instant::now();
        loop {
            let message = next_event(&mut stream).await;
            if changed(&message).2 == format!(r#"{{"max":{max}}}"#) {
                break;
            }
        }
        from_start.push(started.elapsed());
        committed.push(written.elapsed());
    }

    from_start.sort();
    committed.sort();
    let slowest = committed[committed.len() - 1];
    println!(
        "delivery: from the write's start median {:?}, slowest {:?}; after it committed \
         median {:?}, slowest {slowest:?}",
        from_start[from_start.len() / 2],
        from_start[from_start.len() - 1],
        committed[committed.len() / 2],
    );
    assert!(slowest < Duration::from_millis(50), "{committed:?}");
}
