//! Watching instances over gRPC: a snapshot at a revision, live changes,
//! resumption without loss or duplicates, resyncs, checkpoints and bad
//! requests.

use std::time::{Duration, Instant};

use plinth_api::{
    prost_types,
    registry::v1::{
        DeregisterInstanceRequest, InstanceEventKind, InstanceStatus, RegisterInstanceRequest,
        WatchInstancesRequest, WatchInstancesResponse, watch_instances_response::Event,
    },
};
use plinth_tests::{
    Backend, Clients, Credentials, Sandbox, TestRedis, assert_refusal, module_key, violated_fields,
};
use tonic::{Code, codec::Streaming};

use super::{
    instances::{
        discovered, discovery, heartbeat, module_clients, register, registration, with_crm,
    },
    manifest,
};

crate::on_both_backends!(
    a_watch_starts_with_a_snapshot_then_follows_its_modules_changes,
    a_resumed_watch_gets_exactly_the_changes_it_missed,
    a_revision_never_reached_gets_a_resync,
    a_forgotten_revision_gets_a_resync,
    a_large_snapshot_comes_in_parts,
    a_silent_watch_gets_checkpoints_that_advance,
    a_watcher_that_stops_reading_holds_no_writer_and_later_gets_every_change_once,
    bad_watch_requests_are_refused,
);

/// How long a change may take to reach a watcher in these tests.
const WAIT: Duration = Duration::from_secs(5);
/// How long a change may take to reach another replica through Redis:
/// below the feed's one-second poll, so the poll cannot be what carried it.
const ACROSS_REPLICAS: Duration = Duration::from_millis(600);

pub fn watching(module_ids: &[&str], after_revision: Option<u64>) -> WatchInstancesRequest {
    WatchInstancesRequest {
        module_ids: module_ids.iter().map(|id| (*id).to_owned()).collect(),
        after_revision,
        checkpoint_interval: None,
    }
}

pub async fn watch(
    clients: &mut Clients,
    request: WatchInstancesRequest,
) -> Streaming<WatchInstancesResponse> {
    clients
        .registry
        .watch_instances(request)
        .await
        .expect("watch started")
        .into_inner()
}

pub async fn next(stream: &mut Streaming<WatchInstancesResponse>) -> WatchInstancesResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a message within the wait")
        .expect("the stream stays open")
        .expect("the stream has not ended")
}

/// The next change: its revision, kind, instance id and status.
pub async fn next_change(
    stream: &mut Streaming<WatchInstancesResponse>,
) -> (u64, InstanceEventKind, String, InstanceStatus) {
    let message = next(stream).await;
    let Some(Event::Change(change)) = message.event else {
        panic!("expected a change, got {message:?}");
    };
    let kind = change.kind();
    let instance = change.instance.unwrap();
    (
        message.revision,
        kind,
        instance.instance_id.clone(),
        instance.status(),
    )
}

/// Reads a whole snapshot: its revision, whether it resyncs, the instance
/// ids and the number of parts.
async fn snapshot(
    stream: &mut Streaming<WatchInstancesResponse>,
) -> (u64, bool, Vec<String>, usize) {
    let (mut revision, mut resync, mut ids, mut parts) = (0, false, Vec::new(), 0);
    loop {
        let message = next(stream).await;
        let Some(Event::Snapshot(part)) = message.event else {
            panic!("expected a snapshot part, got {message:?}");
        };
        if parts == 0 {
            (revision, resync) = (message.revision, part.resync);
        }
        assert_eq!(
            message.revision, revision,
            "every part carries one revision"
        );
        assert!(parts == 0 || !part.resync, "only the first part resyncs");
        parts += 1;
        ids.extend(
            part.instances
                .into_iter()
                .map(|instance| instance.instance_id),
        );
        if part.complete {
            return (revision, resync, ids, parts);
        }
    }
}

/// The sandbox with `crm` and `hr` registered; clients of both modules.
async fn two_modules(sandbox: &Sandbox) -> (Clients, Clients) {
    let crm = with_crm(sandbox).await;
    super::register(&mut sandbox.operator().await, manifest("hr", "1.0.0", &[]))
        .await
        .unwrap();
    (crm, module_clients(sandbox, "hr").await)
}

fn of_hr(key: &str) -> RegisterInstanceRequest {
    RegisterInstanceRequest {
        module_id: "hr".to_owned(),
        ..registration(key)
    }
}

async fn a_watch_starts_with_a_snapshot_then_follows_its_modules_changes(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let (mut crm, mut hr) = two_modules(&sandbox).await;
    let first = register(&mut crm, registration("host-1")).await;
    register(&mut hr, of_hr("host-1")).await;
    let mut stream = watch(&mut crm, watching(&["crm"], None)).await;
    let (at, resync, held, parts) = snapshot(&mut stream).await;

    let second = register(&mut crm, registration("host-2")).await;
    register(&mut hr, of_hr("host-2")).await;
    heartbeat(&mut crm, &first, InstanceStatus::Serving)
        .await
        .unwrap();
    deregister(&mut crm, &second).await;

    assert_eq!((resync, held, parts), (false, vec![first.clone()], 1));
    assert_eq!(
        next_change(&mut stream).await,
        (
            at + 1,
            InstanceEventKind::Upserted,
            second.clone(),
            InstanceStatus::Starting
        )
    );
    assert_eq!(
        next_change(&mut stream).await,
        (
            at + 3,
            InstanceEventKind::Upserted,
            first,
            InstanceStatus::Serving
        ),
        "the other module's change (revision {}) is not sent",
        at + 2
    );
    assert_eq!(
        next_change(&mut stream).await,
        (
            at + 4,
            InstanceEventKind::Removed,
            second,
            InstanceStatus::Starting
        )
    );
}

async fn a_resumed_watch_gets_exactly_the_changes_it_missed(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let (mut crm, mut hr) = two_modules(&sandbox).await;
    let mut stream = watch(&mut crm, watching(&["crm", "hr"], None)).await;
    let (at, _, _, _) = snapshot(&mut stream).await;
    drop(stream);

    let missed = [
        register(&mut crm, registration("host-1")).await,
        register(&mut hr, of_hr("host-1")).await,
        register(&mut crm, registration("host-2")).await,
    ];
    let mut resumed = watch(&mut crm, watching(&["crm", "hr"], Some(at))).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(next_change(&mut resumed).await);
    }
    let live = register(&mut hr, of_hr("host-2")).await;
    let mut from_middle = watch(&mut crm, watching(&["crm"], Some(at + 1))).await;

    let expected: Vec<(u64, String)> = (at + 1..).zip(missed.iter().cloned()).collect();
    let replayed: Vec<(u64, String)> = replayed
        .into_iter()
        .map(|(revision, _, id, _)| (revision, id))
        .collect();
    assert_eq!(replayed, expected, "each missed change once, in order");
    assert_eq!(
        next_change(&mut resumed).await.2,
        live,
        "then live changes follow"
    );
    assert_eq!(
        next_change(&mut from_middle).await.0,
        at + 3,
        "only the watched module's changes after the revision"
    );
}

async fn a_revision_never_reached_gets_a_resync(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let id = register(&mut crm, registration("host-1")).await;

    for after in [1_000, u64::MAX] {
        let mut stream = watch(&mut crm, watching(&["crm"], Some(after))).await;
        let (revision, resync, held, _) = snapshot(&mut stream).await;
        assert_eq!(
            (revision, resync, held),
            (1, true, vec![id.clone()]),
            "after {after}"
        );
    }
}

async fn a_forgotten_revision_gets_a_resync(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    register(&mut crm, registration("host-1")).await;
    let kept = register(&mut crm, registration("host-2")).await;
    sandbox
        .database
        .run_sql("DELETE FROM instance_changes WHERE revision = 1")
        .await;

    let mut forgotten = watch(&mut crm, watching(&["crm"], Some(0))).await;
    let mut kept_from = watch(&mut crm, watching(&["crm"], Some(1))).await;

    let (revision, resync, held, _) = snapshot(&mut forgotten).await;
    assert_eq!((revision, resync, held.len()), (2, true, 2));
    assert_eq!(next_change(&mut kept_from).await.2, kept);
}

async fn a_large_snapshot_comes_in_parts(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let mut registered = Vec::new();
    for index in 0..150 {
        registered.push(register(&mut crm, registration(&format!("host-{index}"))).await);
    }

    let mut stream = watch(&mut crm, watching(&["crm"], None)).await;

    let (revision, resync, held, parts) = snapshot(&mut stream).await;
    assert_eq!((revision, resync, parts), (150, false, 2));
    assert_eq!(held, registered, "oldest registration first");
}

async fn a_silent_watch_gets_checkpoints_that_advance(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let (mut crm, mut hr) = two_modules(&sandbox).await;
    let mut stream = watch(
        &mut crm,
        WatchInstancesRequest {
            checkpoint_interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..watching(&["crm"], None)
        },
    )
    .await;
    let (at, _, _, _) = snapshot(&mut stream).await;

    register(&mut hr, of_hr("host-1")).await;
    let checkpoint = next(&mut stream).await;

    assert!(
        matches!(checkpoint.event, Some(Event::Checkpoint(_))),
        "{checkpoint:?}"
    );
    assert_eq!(
        checkpoint.revision,
        at + 1,
        "the other module's change moves the checkpoint"
    );
}

async fn a_watcher_that_stops_reading_holds_no_writer_and_later_gets_every_change_once(
    backend: Backend,
) {
    // 2,000 changes of about 7 kB each (the labels) while the stream is not
    // read: more than HTTP/2 flow control, the stream's queue and the
    // feed's broadcast (1,024 changes) hold together, so the watcher falls
    // behind and catches up from the log.
    const FLIPS: u64 = 2_000;
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let labelled = RegisterInstanceRequest {
        labels: (0..32)
            .map(|index| (format!("label-{index}"), "v".repeat(200)))
            .collect(),
        ..registration("host-1")
    };
    let id = register(&mut crm, labelled).await;
    let mut stream = watch(&mut crm, watching(&["crm"], None)).await;
    let (at, _, _, _) = snapshot(&mut stream).await;

    let writes = async {
        for flip in 0..FLIPS {
            let status = match flip % 2 {
                0 => InstanceStatus::Draining,
                _ => InstanceStatus::Serving,
            };
            heartbeat(&mut crm, &id, status).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), writes)
        .await
        .expect("writers never wait for a watcher");
    let mut received = Vec::new();
    for _ in 0..FLIPS {
        let (revision, _, _, status) = next_change(&mut stream).await;
        received.push((revision, status));
    }

    let expected: Vec<(u64, InstanceStatus)> = (1..=FLIPS)
        .map(|flip| {
            let status = match flip % 2 {
                1 => InstanceStatus::Draining,
                _ => InstanceStatus::Serving,
            };
            (at + flip, status)
        })
        .collect();
    assert!(received == expected, "every change once, in order");
}

async fn bad_watch_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let interval = |seconds: i64, nanos: i32| WatchInstancesRequest {
        checkpoint_interval: Some(prost_types::Duration { seconds, nanos }),
        ..watching(&["crm"], None)
    };
    let too_many: Vec<String> = (0..51).map(|index| format!("module_{index}")).collect();
    let refused = [
        (watching(&[], None), "module_ids"),
        (
            WatchInstancesRequest {
                module_ids: too_many,
                ..watching(&[], None)
            },
            "module_ids",
        ),
        (watching(&["crm", "crm"], None), "module_ids[1]"),
        (watching(&["crm", "Not A Module"], None), "module_ids[1]"),
        (
            watching(&["x".repeat(10_000).as_str()], None),
            "module_ids[0]",
        ),
        (interval(0, 0), "checkpoint_interval"),
        (interval(301, 0), "checkpoint_interval"),
        (interval(-5, 0), "checkpoint_interval"),
        (interval(1, -1), "checkpoint_interval"),
        (interval(i64::MAX, 999_999_999), "checkpoint_interval"),
    ];
    for (request, field) in refused {
        let status = crm.registry.watch_instances(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violated_fields(&status), [field]);
    }
    let unknown = crm
        .registry
        .watch_instances(watching(&["crm", "nowhere"], None))
        .await
        .unwrap_err();
    let anonymous = sandbox
        .clients_with(Credentials::anonymous())
        .await
        .registry
        .watch_instances(watching(&["crm"], None))
        .await
        .unwrap_err();
    assert_refusal(&unknown, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

async fn deregister(clients: &mut Clients, instance_id: &str) {
    clients
        .registry
        .deregister_instance(DeregisterInstanceRequest {
            instance_id: instance_id.to_owned(),
        })
        .await
        .unwrap();
}

/// Heartbeats until one is refused (or [`WAIT`] passes): the last answer
/// and how long that took.
async fn until_refused(
    clients: &mut Clients,
    instance_id: &str,
) -> (Result<InstanceStatus, tonic::Status>, Duration) {
    let started = Instant::now();
    let mut answer = heartbeat(clients, instance_id, InstanceStatus::Serving).await;
    while answer.is_ok() && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
        answer = heartbeat(clients, instance_id, InstanceStatus::Serving).await;
    }
    (answer, started.elapsed())
}

/// Two replicas on one PostgreSQL database and one Redis, with `crm`
/// registered; the crm module's clients of each.
async fn two_replicas(redis: &TestRedis) -> (Sandbox, Sandbox, Clients, Clients) {
    let first = Sandbox::start_with(Backend::Postgres, |config| redis.configure(config)).await;
    let second = first.replica().await;
    let on_first = with_crm(&first).await;
    let on_second = module_clients(&second, "crm").await;
    (first, second, on_first, on_second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_a_watcher_on_the_other() {
    let redis = TestRedis::new();
    let (_first, _second, mut on_first, mut on_second) = two_replicas(&redis).await;
    let mut stream = watch(&mut on_second, watching(&["crm"], None)).await;
    let (at, _, _, _) = snapshot(&mut stream).await;

    let registered_at = Instant::now();
    let id = register(&mut on_first, registration("host-1")).await;
    let (revision, kind, seen, _) = next_change(&mut stream).await;
    let delay = registered_at.elapsed();
    let mut resumed_on_first = watch(&mut on_first, watching(&["crm"], Some(at))).await;

    assert_eq!(
        (revision, kind, seen.clone()),
        (at + 1, InstanceEventKind::Upserted, id)
    );
    assert!(
        delay < ACROSS_REPLICAS,
        "reached the other replica after {delay:?}"
    );
    assert_eq!(
        next_change(&mut resumed_on_first).await.2,
        seen,
        "a revision from one replica resumes on another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_deregistered_on_one_replica_is_gone_from_the_other() {
    let redis = TestRedis::new();
    let (_first, _second, mut on_first, mut on_second) = two_replicas(&redis).await;
    let id = register(&mut on_first, registration("host-1")).await;
    heartbeat(&mut on_second, &id, InstanceStatus::Serving)
        .await
        .expect("the other replica renews the lease");
    let listed = discovered(&mut on_second, discovery(&[])).await;

    deregister(&mut on_first, &id).await;
    let (refused, delay) = until_refused(&mut on_second, &id).await;

    assert_eq!(listed, [id]);
    assert!(discovered(&mut on_second, discovery(&[])).await.is_empty());
    assert_eq!(refused.unwrap_err().code(), Code::NotFound);
    assert!(
        delay < ACROSS_REPLICAS,
        "the other replica forgot it after {delay:?}"
    );
}

/// A `registry-server` of its own against `core`'s store and Redis; its
/// address, and what stops it when dropped.
async fn standalone_registry(core: &Sandbox) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(registry_server::run(core.config.clone(), listener, async {
        let _ = stopped.await;
    }));
    (format!("http://{address}"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_standalone_registries_agree_on_leases_and_changes() {
    let redis = TestRedis::new();
    let core = Sandbox::start_with(Backend::Postgres, |config| redis.configure(config)).await;
    with_crm(&core).await;
    let key = module_key(&core, "crm").await;
    let (first, _stop_first) = standalone_registry(&core).await;
    let (second, _stop_second) = standalone_registry(&core).await;
    let mut registries = Vec::new();
    for address in [first, second] {
        let channel = tonic::transport::Endpoint::from_shared(address)
            .unwrap()
            .connect()
            .await
            .unwrap();
        registries.push(Clients::over(channel, Credentials::api_key(&key)));
    }
    let mut on_second = registries.pop().unwrap();
    let mut on_first = registries.pop().unwrap();
    let mut stream = watch(&mut on_second, watching(&["crm"], None)).await;
    snapshot(&mut stream).await;

    let registered_at = Instant::now();
    let id = register(&mut on_first, registration("host-1")).await;
    let (_, _, seen, _) = next_change(&mut stream).await;
    let delay = registered_at.elapsed();
    let renewed = heartbeat(&mut on_second, &id, InstanceStatus::Serving).await;
    let (_, _, _, reported) = next_change(&mut stream).await;
    deregister(&mut on_first, &id).await;
    let (_, removal, _, _) = next_change(&mut stream).await;
    let (after_removal, _) = until_refused(&mut on_second, &id).await;

    assert_eq!(seen, id);
    assert!(
        delay < ACROSS_REPLICAS,
        "reached the other registry after {delay:?}"
    );
    assert_eq!(renewed.unwrap(), InstanceStatus::Serving);
    assert_eq!(reported, InstanceStatus::Serving);
    assert_eq!(removal, InstanceEventKind::Removed);
    assert_eq!(after_removal.unwrap_err().code(), Code::NotFound);
}
