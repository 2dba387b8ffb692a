//! Running instances over gRPC: registration on a lease, heartbeats,
//! expiry, deregistration and discovery.

use std::time::{Duration, Instant};

use plinth_api::{
    prost_types,
    registry::v1::{
        DeleteModuleRequest, DeregisterInstanceRequest, DiscoverInstancesRequest, HealthCheck,
        HeartbeatRequest, InstanceStatus, ModuleManifest, RegisterInstanceRequest,
        RegisterModuleRequest,
    },
};
use plinth_tests::{Backend, Clients, Sandbox, assert_refusal, module_key, violated_fields};
use tonic::Code;

crate::on_both_backends!(
    an_instance_registers_on_a_lease_and_again_under_its_key,
    heartbeats_report_status_and_discovery_follows,
    a_lapsed_lease_removes_the_instance_and_heartbeats_keep_others,
    deregistering_removes_at_once,
    module_keys_run_only_their_own_instances,
    bad_instance_inputs_are_field_violations,
    a_module_runs_at_most_a_thousand_instances,
);

/// The sandbox with module `crm` 1.0.0 registered, and the crm module key.
pub async fn with_crm(sandbox: &Sandbox) -> Clients {
    let mut operator = sandbox.operator().await;
    operator
        .registry
        .register_module(RegisterModuleRequest {
            manifest: Some(ModuleManifest {
                id: "crm".to_owned(),
                version: "1.0.0".to_owned(),
                display_name: "CRM".to_owned(),
                // Its instances live at made-up addresses: probed at the
                // default (every 10 s, down after 3 failures), they would be
                // marked NOT_SERVING midway through a test running past 20 s.
                health_check: Some(HealthCheck {
                    interval: Some(prost_types::Duration {
                        seconds: 300,
                        nanos: 0,
                    }),
                    ..HealthCheck::default()
                }),
                ..ModuleManifest::default()
            }),
        })
        .await
        .expect("module registered");
    module_clients(sandbox, "crm").await
}

pub async fn module_clients(sandbox: &Sandbox, module_id: &str) -> Clients {
    sandbox.clients(&module_key(sandbox, module_id).await).await
}

pub fn registration(key: &str) -> RegisterInstanceRequest {
    RegisterInstanceRequest {
        module_id: "crm".to_owned(),
        version: "1.0.0".to_owned(),
        endpoint: "https://10.0.0.7:7443".to_owned(),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        lease_ttl: None,
        instance_key: key.to_owned(),
    }
}

pub async fn register(clients: &mut Clients, request: RegisterInstanceRequest) -> String {
    clients
        .registry
        .register_instance(request)
        .await
        .expect("instance registered")
        .into_inner()
        .instance
        .unwrap()
        .instance_id
}

pub async fn heartbeat(
    clients: &mut Clients,
    instance_id: &str,
    status: InstanceStatus,
) -> Result<InstanceStatus, tonic::Status> {
    clients
        .registry
        .heartbeat(HeartbeatRequest {
            instance_id: instance_id.to_owned(),
            status: status.into(),
        })
        .await
        .map(|answer| answer.into_inner().status())
}

pub fn discovery(statuses: &[InstanceStatus]) -> DiscoverInstancesRequest {
    DiscoverInstancesRequest {
        module_id: "crm".to_owned(),
        statuses: statuses.iter().map(|status| (*status).into()).collect(),
        ..DiscoverInstancesRequest::default()
    }
}

pub async fn discovered(clients: &mut Clients, request: DiscoverInstancesRequest) -> Vec<String> {
    clients
        .registry
        .discover_instances(request)
        .await
        .expect("discovery answered")
        .into_inner()
        .instances
        .into_iter()
        .map(|instance| instance.instance_id)
        .collect()
}

const EVERY_STATUS: [InstanceStatus; 4] = [
    InstanceStatus::Starting,
    InstanceStatus::Serving,
    InstanceStatus::NotServing,
    InstanceStatus::Draining,
];

async fn an_instance_registers_on_a_lease_and_again_under_its_key(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;

    let first = crm
        .registry
        .register_instance(registration("host-1"))
        .await
        .unwrap()
        .into_inner();
    let mut moved = registration("host-1");
    moved.endpoint = "https://10.0.0.8:7443".to_owned();
    let again = crm
        .registry
        .register_instance(moved)
        .await
        .unwrap()
        .into_inner();
    let other = register(&mut crm, registration("host-2")).await;

    let first_instance = first.instance.unwrap();
    let again_instance = again.instance.unwrap();
    assert_eq!(first_instance.status(), InstanceStatus::Starting);
    assert_eq!(first.lease_ttl.unwrap().seconds, 30);
    assert_eq!(again_instance.instance_id, first_instance.instance_id);
    assert_eq!(again_instance.endpoint, "https://10.0.0.8:7443");
    assert_ne!(other, first_instance.instance_id);
}

async fn heartbeats_report_status_and_discovery_follows(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let id = register(&mut crm, registration("host-1")).await;

    let starting = discovered(&mut crm, discovery(&[])).await;
    let serving_status = heartbeat(&mut crm, &id, InstanceStatus::Serving)
        .await
        .unwrap();
    let serving = discovered(&mut crm, discovery(&[])).await;
    let kept = heartbeat(&mut crm, &id, InstanceStatus::Unspecified)
        .await
        .unwrap();
    heartbeat(&mut crm, &id, InstanceStatus::Draining)
        .await
        .unwrap();
    let after_draining = discovered(&mut crm, discovery(&[])).await;
    let draining = discovered(&mut crm, discovery(&[InstanceStatus::Draining])).await;
    let other_zone = discovered(
        &mut crm,
        DiscoverInstancesRequest {
            labels: [("zone".to_owned(), "b".to_owned())].into(),
            ..discovery(&EVERY_STATUS)
        },
    )
    .await;
    let newer = discovered(
        &mut crm,
        DiscoverInstancesRequest {
            version_requirement: ">=2".to_owned(),
            ..discovery(&EVERY_STATUS)
        },
    )
    .await;

    assert_eq!(starting, Vec::<String>::new());
    assert_eq!(serving_status, InstanceStatus::Serving);
    assert_eq!(serving, std::slice::from_ref(&id));
    assert_eq!(kept, InstanceStatus::Serving);
    assert_eq!(after_draining, Vec::<String>::new());
    assert_eq!(draining, [id]);
    assert_eq!(other_zone, Vec::<String>::new());
    assert_eq!(newer, Vec::<String>::new());
}

async fn a_lapsed_lease_removes_the_instance_and_heartbeats_keep_others(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let short = |key: &str| RegisterInstanceRequest {
        lease_ttl: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..registration(key)
    };
    let silent = register(&mut crm, short("silent")).await;
    let beating = register(&mut crm, short("beating")).await;
    let registered_at = Instant::now();

    let mut remaining = discovered(&mut crm, discovery(&EVERY_STATUS)).await;
    while remaining.contains(&silent) && registered_at.elapsed() < Duration::from_secs(15) {
        heartbeat(&mut crm, &beating, InstanceStatus::Serving)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        remaining = discovered(&mut crm, discovery(&EVERY_STATUS)).await;
    }
    let lapsed_after = registered_at.elapsed();

    assert_eq!(remaining, std::slice::from_ref(&beating));
    assert!(lapsed_after >= Duration::from_secs(5), "{lapsed_after:?}");
    let gone = heartbeat(&mut crm, &silent, InstanceStatus::Serving)
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let store = sandbox.database.open_store().await;
    let silent_id = silent.parse().unwrap();
    let mut swept = false;
    while !swept && registered_at.elapsed() < Duration::from_secs(15) {
        heartbeat(&mut crm, &beating, InstanceStatus::Serving)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        swept = store.instances.instance(silent_id).await.unwrap().is_none();
    }
    assert!(swept, "the lapsed instance is removed from the store");
    let beating_id = beating.parse().unwrap();
    assert!(
        store
            .instances
            .instance(beating_id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn deregistering_removes_at_once(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let id = register(&mut crm, registration("host-1")).await;
    let mut operator = sandbox.operator().await;
    let delete = || DeleteModuleRequest {
        module_id: "crm".to_owned(),
    };
    let while_served = operator.registry.delete_module(delete()).await.unwrap_err();

    crm.registry
        .deregister_instance(DeregisterInstanceRequest {
            instance_id: id.clone(),
        })
        .await
        .unwrap();

    assert_eq!(while_served.code(), Code::FailedPrecondition);
    assert_eq!(
        discovered(&mut crm, discovery(&EVERY_STATUS)).await,
        Vec::<String>::new()
    );
    let after = heartbeat(&mut crm, &id, InstanceStatus::Serving)
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::NotFound);
    assert!(operator.registry.delete_module(delete()).await.is_ok());
}

async fn module_keys_run_only_their_own_instances(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let id = register(&mut crm, registration("host-1")).await;
    let mut finance = module_clients(&sandbox, "finance").await;

    let foreign = finance
        .registry
        .register_instance(registration("intruder"))
        .await
        .unwrap_err();
    let foreign_heartbeat = heartbeat(&mut finance, &id, InstanceStatus::NotServing)
        .await
        .unwrap_err();
    let foreign_removal = finance
        .registry
        .deregister_instance(DeregisterInstanceRequest {
            instance_id: id.clone(),
        })
        .await
        .unwrap_err();
    let unregistered_version = crm
        .registry
        .register_instance(RegisterInstanceRequest {
            version: "9.9.9".to_owned(),
            ..registration("host-2")
        })
        .await
        .unwrap_err();

    for refused in [&foreign, &foreign_heartbeat, &foreign_removal] {
        assert_refusal(
            refused,
            Code::PermissionDenied,
            "ERROR_REASON_MODULE_NAMESPACE_VIOLATION",
        );
    }
    assert_eq!(unregistered_version.code(), Code::NotFound);
    assert_eq!(
        heartbeat(&mut crm, &id, InstanceStatus::Unspecified)
            .await
            .unwrap(),
        InstanceStatus::Starting
    );
}

async fn bad_instance_inputs_are_field_violations(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut crm = with_crm(&sandbox).await;
    let lease = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    let many_labels = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();

    for (request, field) in [
        (
            RegisterInstanceRequest {
                module_id: "CRM".to_owned(),
                ..registration("a")
            },
            "module_id",
        ),
        (
            RegisterInstanceRequest {
                version: "1".to_owned(),
                ..registration("a")
            },
            "version",
        ),
        (
            RegisterInstanceRequest {
                endpoint: "ftp://x".to_owned(),
                ..registration("a")
            },
            "endpoint",
        ),
        (registration(""), "instance_key"),
        (registration("bad key!"), "instance_key"),
        (registration(&"k".repeat(129)), "instance_key"),
        (
            RegisterInstanceRequest {
                labels: many_labels,
                ..registration("a")
            },
            "labels",
        ),
        (
            RegisterInstanceRequest {
                labels: [("Zone".to_owned(), "a".to_owned())].into(),
                ..registration("a")
            },
            "labels",
        ),
        (
            RegisterInstanceRequest {
                labels: [("zone".to_owned(), "a\u{0}".to_owned())].into(),
                ..registration("a")
            },
            "labels[zone]",
        ),
        (
            RegisterInstanceRequest {
                lease_ttl: lease(4, 999_999_999),
                ..registration("a")
            },
            "lease_ttl",
        ),
        (
            RegisterInstanceRequest {
                lease_ttl: lease(301, 0),
                ..registration("a")
            },
            "lease_ttl",
        ),
        (
            RegisterInstanceRequest {
                lease_ttl: lease(-30, 0),
                ..registration("a")
            },
            "lease_ttl",
        ),
        (
            RegisterInstanceRequest {
                lease_ttl: lease(i64::MAX, 0),
                ..registration("a")
            },
            "lease_ttl",
        ),
    ] {
        let refused = crm.registry.register_instance(request).await.unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }
    let id = register(&mut crm, registration("host-1")).await;
    for (instance_id, status, field) in [
        (id.as_str(), InstanceStatus::Starting as i32, "status"),
        (id.as_str(), 99, "status"),
        ("not-an-id", 0, "instance_id"),
    ] {
        let refused = crm
            .registry
            .heartbeat(HeartbeatRequest {
                instance_id: instance_id.to_owned(),
                status,
            })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }
    for (request, field) in [
        (
            DiscoverInstancesRequest {
                statuses: vec![1, 2, 3, 4, 1],
                ..discovery(&[])
            },
            "statuses",
        ),
        (
            DiscoverInstancesRequest {
                statuses: vec![2, 2],
                ..discovery(&[])
            },
            "statuses[1]",
        ),
        (
            DiscoverInstancesRequest {
                statuses: vec![99],
                ..discovery(&[])
            },
            "statuses[0]",
        ),
        (
            DiscoverInstancesRequest {
                version_requirement: "newest".to_owned(),
                ..discovery(&[])
            },
            "version_requirement",
        ),
        (
            DiscoverInstancesRequest {
                module_id: String::new(),
                ..discovery(&[])
            },
            "module_id",
        ),
    ] {
        let refused = crm.registry.discover_instances(request).await.unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }
}

/// Registrations at once, past the limit: exactly the limit succeed.
async fn a_module_runs_at_most_a_thousand_instances(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let crm = with_crm(&sandbox).await;
    let (registered, refused) = plinth_tests::all_at_once(1_005, |index| {
        let mut crm = crm.clone();
        async move {
            crm.registry
                .register_instance(registration(&format!("host-{index}")))
                .await
        }
    })
    .await;
    let mut crm = crm.clone();

    let again = crm.registry.register_instance(registration("host-7")).await;
    let known = discovered(&mut crm, discovery(&EVERY_STATUS)).await;
    crm.registry
        .deregister_instance(DeregisterInstanceRequest {
            instance_id: known[0].clone(),
        })
        .await
        .unwrap();
    let after_one_left = crm
        .registry
        .register_instance(registration("host-new"))
        .await;

    assert_eq!((registered, refused.len()), (1_000, 5));
    for status in &refused {
        assert_refusal(
            status,
            Code::FailedPrecondition,
            "ERROR_REASON_FAILED_PRECONDITION",
        );
    }
    assert!(
        known.len() == 1_000 && again.is_ok(),
        "a known key registers again: {again:?}"
    );
    assert!(after_one_left.is_ok(), "{after_one_left:?}");
}
