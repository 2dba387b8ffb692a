//! Module instances in the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use plinth_platform::{
    clock,
    store::{
        Store, StoreError,
        instances::{self, InstanceRecord, InstanceStatus, Renewal},
        modules::{self, ModuleRecord, ModuleStatus, ModuleVersionRecord},
    },
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, event, fresh_store, platform_events};

crate::on_both_backends!(
    the_same_key_again_is_the_same_instance,
    renewals_extend_leases_and_never_shorten_them,
    live_and_lapsed_instances_follow_their_lease,
    status_changes_are_written,
    every_change_takes_the_next_revision_and_logs_the_instance_it_left,
    a_rolled_back_change_takes_no_revision,
    concurrent_changes_take_contiguous_revisions,
    forgotten_changes_leave_the_revision_and_the_newest,
    registrations_beyond_the_modules_limit_are_refused,
);

async fn with_module(store: &Store) {
    let now = clock::now();
    let module = ModuleRecord {
        module_id: "crm".to_owned(),
        display_name: "CRM".to_owned(),
        description: String::new(),
        category: String::new(),
        status: ModuleStatus::Active,
        active_version: Some("1.0.0".to_owned()),
        latest_version: "1.0.0".to_owned(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let version = ModuleVersionRecord {
        module_id: "crm".to_owned(),
        version: "1.0.0".to_owned(),
        manifest: Vec::new(),
        digest: "d".to_owned(),
        registered_at: now,
    };
    committed(store, async |tx| {
        let event = event("registry.module.registered", None);
        modules::register_version(tx, &module, true, &version, &[], event).await
    })
    .await
    .unwrap();
}

fn instance(key: &str, lease_until: DateTime<Utc>) -> InstanceRecord {
    let now = clock::now();
    InstanceRecord {
        instance_id: Uuid::now_v7(),
        module_id: "crm".to_owned(),
        instance_key: key.to_owned(),
        version: "1.0.0".to_owned(),
        endpoint: "https://10.0.0.7:7443".to_owned(),
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        status: InstanceStatus::Starting,
        registered_at: now,
        last_heartbeat_at: now,
        lease_expires_at: lease_until,
    }
}

async fn registered(store: &Store, record: &InstanceRecord) -> InstanceRecord {
    committed(store, async |tx| {
        instances::register(tx, record, 100, event("registry.instance.registered", None)).await
    })
    .await
    .unwrap()
    .expect("under the limit")
    .0
}

/// The revisions of the changes the log keeps, oldest first.
async fn logged_revisions(store: &Store) -> Vec<i64> {
    store
        .instances
        .changes_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|change| change.revision)
        .collect()
}

async fn the_same_key_again_is_the_same_instance(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let first = registered(
        &store,
        &instance("host-1", clock::now() + Duration::seconds(30)),
    )
    .await;
    let mut again = instance("host-1", clock::now() + Duration::seconds(60));
    again.endpoint = "https://10.0.0.8:7443".to_owned();

    let second = registered(&store, &again).await;

    assert_eq!(second.instance_id, first.instance_id);
    assert_eq!(second.registered_at, first.registered_at);
    assert_eq!(second.endpoint, "https://10.0.0.8:7443");
    assert_eq!(second.lease_expires_at, again.lease_expires_at);
    assert_eq!(platform_events(&store).await.len(), 3);
}

async fn renewals_extend_leases_and_never_shorten_them(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let now = clock::now();
    let stored = registered(&store, &instance("host-1", now + Duration::seconds(10))).await;
    let renewal = |seconds: i64| Renewal {
        instance_id: stored.instance_id,
        last_heartbeat_at: now,
        lease_expires_at: now + Duration::seconds(seconds),
    };
    let lease = |store: Store| async move {
        store
            .instances
            .instance(stored.instance_id)
            .await
            .unwrap()
            .unwrap()
            .lease_expires_at
    };

    committed(&store, async |tx| {
        instances::renew(tx, &[renewal(20)]).await
    })
    .await
    .unwrap();
    let extended = lease(store.clone()).await;
    let unknown = Renewal {
        instance_id: Uuid::now_v7(),
        ..renewal(30)
    };
    committed(&store, async |tx| {
        instances::renew(tx, &[renewal(5), unknown]).await
    })
    .await
    .unwrap();

    assert_eq!(extended, now + Duration::seconds(20));
    assert_eq!(lease(store.clone()).await, now + Duration::seconds(20));
}

async fn live_and_lapsed_instances_follow_their_lease(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let now = clock::now();
    let lapsed = registered(&store, &instance("gone", now - Duration::seconds(1))).await;
    let live = registered(&store, &instance("here", now + Duration::seconds(30))).await;
    let removal = |instance_id: Uuid, lapsed_before: Option<DateTime<Utc>>| {
        let store = store.clone();
        async move {
            committed(&store, async |tx| {
                let event = event("registry.instance.expired", None);
                instances::remove(tx, instance_id, lapsed_before, event).await
            })
            .await
        }
    };

    let found: Vec<Uuid> = store
        .instances
        .live_instances_of("crm", now)
        .await
        .unwrap()
        .into_iter()
        .map(|instance| instance.instance_id)
        .collect();
    let swept = store.instances.lapsed(now, 10).await.unwrap();
    let kept_live = removal(live.instance_id, Some(now)).await.unwrap();
    let removed = removal(lapsed.instance_id, Some(now)).await.unwrap();
    let again = removal(lapsed.instance_id, None).await.unwrap();
    let deregistered = removal(live.instance_id, None).await.unwrap();

    assert_eq!(found, [live.instance_id]);
    assert_eq!(swept, [lapsed.instance_id]);
    assert_eq!(
        (kept_live, removed, again, deregistered),
        (None, Some(3), None, Some(4)),
        "removals take the revisions after both registrations"
    );
    assert!(
        store
            .instances
            .live_instances_of("crm", now)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn status_changes_are_written(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let stored = registered(
        &store,
        &instance("host-1", clock::now() + Duration::seconds(30)),
    )
    .await;
    let change = |instance_id: Uuid, status: InstanceStatus| {
        let store = store.clone();
        async move {
            committed(&store, async |tx| {
                let event = event("registry.instance.status_changed", None);
                instances::set_status(tx, instance_id, status, event).await
            })
            .await
        }
    };

    change(stored.instance_id, InstanceStatus::Draining)
        .await
        .unwrap();
    let unknown = change(Uuid::now_v7(), InstanceStatus::Serving).await;

    let read = store
        .instances
        .instance(stored.instance_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.status, InstanceStatus::Draining);
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

async fn every_change_takes_the_next_revision_and_logs_the_instance_it_left(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let now = clock::now();
    let stored = registered(&store, &instance("host-1", now + Duration::seconds(30))).await;
    let drained = committed(&store, async |tx| {
        let event = event("registry.instance.status_changed", None);
        instances::set_status(tx, stored.instance_id, InstanceStatus::Draining, event).await
    })
    .await
    .unwrap();
    committed(&store, async |tx| {
        let renewal = Renewal {
            instance_id: stored.instance_id,
            last_heartbeat_at: now,
            lease_expires_at: now + Duration::seconds(60),
        };
        instances::renew(tx, &[renewal]).await
    })
    .await
    .unwrap();
    let removed = committed(&store, async |tx| {
        let event = event("registry.instance.deregistered", None);
        instances::remove(tx, stored.instance_id, None, event).await
    })
    .await
    .unwrap();

    let changes = store.instances.changes_after(0, 10).await.unwrap();
    let summary: Vec<(i64, bool, InstanceStatus)> = changes
        .iter()
        .map(|change| (change.revision, change.removed, change.instance.status))
        .collect();
    assert_eq!((drained, removed), (2, Some(3)), "a renewal is no change");
    assert_eq!(
        summary,
        [
            (1, false, InstanceStatus::Starting),
            (2, false, InstanceStatus::Draining),
            (3, true, InstanceStatus::Draining),
        ]
    );
    assert_eq!(changes[0].instance, stored);
    assert_eq!(store.instances.revision().await.unwrap(), 3);
    assert_eq!(
        store.instances.all_instances().await.unwrap(),
        (3, Vec::new())
    );
    let page = store.instances.changes_after(1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].revision, 2);
}

async fn a_rolled_back_change_takes_no_revision(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let abandoned = instance("host-1", clock::now() + Duration::seconds(30));
    let mut tx = store.begin().await.unwrap();
    let (_, taken) = instances::register(
        &mut tx,
        &abandoned,
        100,
        event("registry.instance.registered", None),
    )
    .await
    .unwrap()
    .unwrap();
    drop(tx);

    registered(
        &store,
        &instance("host-2", clock::now() + Duration::seconds(30)),
    )
    .await;

    let revisions = logged_revisions(&store).await;
    assert_eq!((taken, revisions), (1, vec![1]));
}

async fn concurrent_changes_take_contiguous_revisions(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let registrations = (0..12).map(|index| {
        let store = store.clone();
        tokio::spawn(async move {
            let record = instance(
                &format!("host-{index}"),
                clock::now() + Duration::seconds(30),
            );
            registered(&store, &record).await
        })
    });
    for registration in registrations.collect::<Vec<_>>() {
        registration.await.unwrap();
    }

    let revisions = logged_revisions(&store).await;
    assert_eq!(revisions, (1..=12).collect::<Vec<i64>>());
}

async fn forgotten_changes_leave_the_revision_and_the_newest(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    registered(
        &store,
        &instance("host-1", clock::now() + Duration::seconds(30)),
    )
    .await;
    let cutoff = clock::now() + Duration::milliseconds(1);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    registered(
        &store,
        &instance("host-2", clock::now() + Duration::seconds(30)),
    )
    .await;

    let forgotten = store.instances.forget_changes(cutoff).await.unwrap();

    let kept = logged_revisions(&store).await;
    assert_eq!((forgotten, kept), (1, vec![2]));
    assert_eq!(store.instances.revision().await.unwrap(), 2);
}

async fn registrations_beyond_the_modules_limit_are_refused(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    with_module(&store).await;
    let attempt = |key: &'static str| {
        let store = store.clone();
        async move {
            committed(&store, async |tx| {
                let record = instance(key, clock::now() + Duration::seconds(30));
                let event = event("registry.instance.registered", None);
                instances::register(tx, &record, 2, event).await
            })
            .await
            .unwrap()
            .is_some()
        }
    };

    let outcomes = [
        attempt("host-1").await,
        attempt("host-2").await,
        attempt("host-3").await,
        attempt("host-1").await,
    ];

    assert_eq!(
        outcomes,
        [true, true, false, true],
        "a third key is refused, a known one registers again"
    );
    assert_eq!(store.instances.revision().await.unwrap(), 3);
}
