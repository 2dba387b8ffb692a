//! QueryEvents: every filter, both orders, cursors across pages while
//! events are added, who reads what, and the indexes serving each filter.

use std::time::{Duration, Instant};

use plinth_api::{
    audit::v1::{
        AuditEvent, EventInput, Order, Outcome, QueryEventsRequest, RecordEventsRequest,
        query_events_request,
    },
    prost_types::Timestamp,
    tenant::v1::CreateCompanyRequest,
};
use plinth_platform::{
    audit::{self as domain, Actor, AuditDraft},
    store::audit_log::{self, EventQuery},
};
use plinth_tests::{Backend, Credentials, Sandbox, TestDatabase, assert_invalid, assert_refusal};
use sqlx::Connection;
use tonic::Code;
use uuid::Uuid;

use super::{Setup, actions, in_tenant, input, query_all, record, setup};

crate::on_both_backends!(
    every_filter_finds_exactly_its_events_in_both_orders,
    pages_read_each_event_once_while_events_are_added,
    a_module_reads_only_its_own_events_where_it_is_enabled,
    other_tenants_and_plain_members_find_no_chain,
    a_user_granted_audit_read_reads_its_tenant_chain,
    the_platform_chain_is_named_and_read_by_operators,
    bad_queries_are_refused_field_by_field,
);

/// A varied chain in acme: module events alone, for the admin, claimed,
/// in a company, refused and failed, across two batches.
async fn populated(setup: &mut Setup) -> String {
    let company = setup
        .acme
        .admin
        .clients
        .tenants
        .create_company(CreateCompanyRequest {
            tenant_id: setup.acme.id.clone(),
            code: "acme-east".to_owned(),
            name: "Acme East".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .company
        .unwrap()
        .id;
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![
            input("finance.invoice.created"),
            EventInput {
                resource_id: "43".to_owned(),
                ..input("finance.invoice.created")
            },
            EventInput {
                outcome: Outcome::Denied.into(),
                ..input("finance.invoice.approved")
            },
            EventInput {
                company_id: company.clone(),
                ..input("finance.payment.received")
            },
        ],
    )
    .await
    .unwrap();
    let mut for_admin = setup
        .sandbox
        .clients_with(Credentials::module_for_user(
            &setup.finance_key,
            &setup.acme.admin.access_token,
        ))
        .await;
    record(
        &mut for_admin,
        &setup.acme.id,
        vec![
            EventInput {
                outcome: Outcome::Failure.into(),
                resource_type: "payment".to_owned(),
                ..input("finance.payment.refunded")
            },
            input("finance.invoice.sent"),
        ],
    )
    .await
    .unwrap();
    setup
        .finance
        .audit
        .record_events(RecordEventsRequest {
            tenant_id: setup.acme.id.clone(),
            events: vec![input("finance.invoice.viewed")],
            claimed_user_id: setup.acme.admin.user_id.clone(),
        })
        .await
        .unwrap();
    company
}

fn time_of(event: &AuditEvent) -> (i64, i32) {
    let time = event.recorded_at.as_ref().unwrap();
    (time.seconds, time.nanos)
}

async fn every_filter_finds_exactly_its_events_in_both_orders(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let company = populated(&mut setup).await;
    let all = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap();
    let middle = all[all.len() / 2].clone();
    let middle_time = middle.recorded_at.unwrap();
    let admin_id = setup.acme.admin.user_id.clone();
    let finance_key_id = setup.finance_key_id.clone();
    let request_id = all
        .iter()
        .find(|event| event.action == "finance.payment.refunded")
        .unwrap()
        .request_id
        .clone();
    type Matches = Box<dyn Fn(&AuditEvent) -> bool>;
    let actor = |event: &AuditEvent| event.actor.clone().unwrap_or_default();
    let cases: Vec<(&str, QueryEventsRequest, Matches)> = vec![
        (
            "actor user",
            QueryEventsRequest {
                actor_user_id: admin_id.clone(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(move |event| actor(event).user_id == admin_id),
        ),
        (
            "actor module",
            QueryEventsRequest {
                actor_module_id: "finance".to_owned(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(move |event| actor(event).module_id == "finance"),
        ),
        (
            "actor key",
            QueryEventsRequest {
                actor_api_key_id: finance_key_id.clone(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(move |event| actor(event).api_key_id == finance_key_id),
        ),
        (
            "actions",
            QueryEventsRequest {
                actions: vec![
                    "finance.invoice.created".to_owned(),
                    "finance.invoice.sent".to_owned(),
                ],
                ..in_tenant(&setup.acme.id)
            },
            Box::new(|event| {
                ["finance.invoice.created", "finance.invoice.sent"].contains(&event.action.as_str())
            }),
        ),
        (
            "action prefix",
            QueryEventsRequest {
                action_prefix: "finance.payment".to_owned(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(|event| event.action.starts_with("finance.payment")),
        ),
        (
            "resource",
            QueryEventsRequest {
                resource_type: "invoice".to_owned(),
                resource_id: "43".to_owned(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(|event| event.resource_type == "invoice" && event.resource_id == "43"),
        ),
        (
            "resource type",
            QueryEventsRequest {
                resource_type: "payment".to_owned(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(|event| event.resource_type == "payment"),
        ),
        (
            "outcome",
            QueryEventsRequest {
                outcome: Outcome::Denied.into(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(|event| event.outcome() == Outcome::Denied),
        ),
        (
            "request id",
            QueryEventsRequest {
                request_id: request_id.clone(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(move |event| event.request_id == request_id),
        ),
        (
            "company",
            QueryEventsRequest {
                company_id: company.clone(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(move |event| event.company_id == company),
        ),
        (
            "since",
            QueryEventsRequest {
                since: Some(middle_time),
                ..in_tenant(&setup.acme.id)
            },
            Box::new({
                let at = time_of(&middle);
                move |event| time_of(event) >= at
            }),
        ),
        (
            "until",
            QueryEventsRequest {
                until: Some(middle_time),
                ..in_tenant(&setup.acme.id)
            },
            Box::new({
                let at = time_of(&middle);
                move |event| time_of(event) < at
            }),
        ),
        (
            "after sequence",
            QueryEventsRequest {
                after_sequence: middle.sequence,
                ..in_tenant(&setup.acme.id)
            },
            Box::new({
                let after = middle.sequence;
                move |event| event.sequence > after
            }),
        ),
        (
            "module and prefix together",
            QueryEventsRequest {
                actor_module_id: "finance".to_owned(),
                action_prefix: "finance.invoice.".to_owned(),
                outcome: Outcome::Success.into(),
                ..in_tenant(&setup.acme.id)
            },
            Box::new(move |event| {
                actor(event).module_id == "finance"
                    && event.action.starts_with("finance.invoice.")
                    && event.outcome() == Outcome::Success
            }),
        ),
    ];
    for (name, request, matches) in cases {
        let expected: Vec<&str> = all
            .iter()
            .filter(|event| matches(event))
            .map(|event| event.id.as_str())
            .collect();
        assert!(
            !expected.is_empty(),
            "{name}: the chain has matching events"
        );
        assert!(expected.len() < all.len(), "{name}: and others");
        for order in [Order::Unspecified, Order::Ascending, Order::Descending] {
            let found = query_all(
                &mut setup.acme.admin.clients,
                QueryEventsRequest {
                    order: order.into(),
                    page_size: 2,
                    ..request.clone()
                },
            )
            .await
            .unwrap();
            let mut ids: Vec<&str> = found.iter().map(|event| event.id.as_str()).collect();
            if order == Order::Descending {
                ids.reverse();
            }
            assert_eq!(ids, expected, "{name}, {order:?}");
        }
    }
}

async fn pages_read_each_event_once_while_events_are_added(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.created"); 10],
    )
    .await
    .unwrap();
    let before = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap();

    for order in [Order::Ascending, Order::Descending] {
        let mut request = QueryEventsRequest {
            order: order.into(),
            page_size: 3,
            ..in_tenant(&setup.acme.id)
        };
        let mut read = Vec::new();
        loop {
            let page = setup
                .acme
                .admin
                .clients
                .audit
                .query_events(request.clone())
                .await
                .unwrap()
                .into_inner();
            read.extend(page.events);
            record(
                &mut setup.finance,
                &setup.acme.id,
                vec![input("finance.invoice.sent")],
            )
            .await
            .unwrap();
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        let sequences: Vec<i64> = read.iter().map(|event| event.sequence).collect();
        let mut sorted = sequences.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), sequences.len(), "{order:?}: no event twice");
        if order == Order::Ascending {
            assert_eq!(sequences, sorted, "ascending");
            assert!(
                read.iter()
                    .any(|event| event.action == "finance.invoice.sent"),
                "ascending pages go on into events added meanwhile"
            );
        } else {
            let mut descending = sorted.clone();
            descending.reverse();
            assert_eq!(sequences, descending, "descending");
        }
        for event in &before {
            assert!(
                read.iter().any(|read| read.id == event.id),
                "{order:?}: event {} missed",
                event.sequence
            );
        }
    }
}

async fn a_module_reads_only_its_own_events_where_it_is_enabled(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    populated(&mut setup).await;
    crate::modules::enabled_for(&setup.sandbox, &setup.acme.id, "crm").await;
    let mut crm = setup
        .sandbox
        .clients(&plinth_tests::module_key(&setup.sandbox, "crm").await)
        .await;
    record(&mut crm, &setup.acme.id, vec![input("crm.lead.created")])
        .await
        .unwrap();

    let seen = query_all(&mut setup.finance, in_tenant(&setup.acme.id))
        .await
        .unwrap();

    assert!(actions(&seen).contains(&"finance.invoice.created"));
    assert!(
        actions(&seen).contains(&"tenant.module.enabled"),
        "the core's record of enabling finance"
    );
    for event in &seen {
        let recorded_by_finance = event.actor.as_ref().unwrap().module_id == "finance";
        let about_finance = event.resource_id == "finance";
        assert!(recorded_by_finance || about_finance, "{event:?}");
    }
    let refused = setup
        .finance
        .audit
        .query_events(in_tenant(&setup.globex.id))
        .await
        .unwrap_err();
    assert_refusal(&refused, Code::NotFound, "ERROR_REASON_NOT_FOUND");
}

async fn other_tenants_and_plain_members_find_no_chain(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let mut member = setup.acme.member(&setup.sandbox, "clerk").await;

    for clients in [&mut setup.globex.admin.clients, &mut member.clients] {
        let refused = clients
            .audit
            .query_events(in_tenant(&setup.acme.id))
            .await
            .unwrap_err();
        assert_refusal(&refused, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    }
    let own = query_all(&mut setup.globex.admin.clients, in_tenant(&setup.globex.id))
        .await
        .unwrap();
    assert!(own.iter().all(|event| event.tenant_id == setup.globex.id));
}

async fn a_user_granted_audit_read_reads_its_tenant_chain(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.created")],
    )
    .await
    .unwrap();
    let mut auditor = setup.acme.member(&setup.sandbox, "auditor").await;
    let role = crate::rbac::create_role(
        &mut setup.acme.admin.clients,
        &setup.acme.id,
        "auditor",
        &["plinth:audit:read"],
        &[],
    )
    .await;
    setup
        .acme
        .admin
        .clients
        .rbac
        .assign_role(crate::rbac::assignment(
            &setup.acme.id,
            &auditor.user_id,
            &role,
            "",
        ))
        .await
        .unwrap();

    let seen = query_all(&mut auditor.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap();

    assert!(actions(&seen).contains(&"finance.invoice.created"));
    assert!(
        actions(&seen).contains(&"rbac.role.bound"),
        "core events too"
    );
    let refused = auditor
        .clients
        .audit
        .query_events(in_tenant(&setup.globex.id))
        .await
        .unwrap_err();
    assert_refusal(&refused, Code::NotFound, "ERROR_REASON_NOT_FOUND");
}

async fn the_platform_chain_is_named_and_read_by_operators(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let platform = QueryEventsRequest {
        chain: Some(query_events_request::Chain::Platform(true)),
        ..QueryEventsRequest::default()
    };

    let events = query_all(&mut setup.sandbox.operator().await, platform.clone())
        .await
        .unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|event| event.tenant_id.is_empty()));

    for clients in [&mut setup.acme.admin.clients, &mut setup.finance] {
        let refused = clients
            .audit
            .query_events(platform.clone())
            .await
            .unwrap_err();
        assert_refusal(
            &refused,
            Code::PermissionDenied,
            "ERROR_REASON_PERMISSION_DENIED",
        );
    }
}

async fn bad_queries_are_refused_field_by_field(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let acme = in_tenant(&setup.acme.id);
    let first_page = setup
        .acme
        .admin
        .clients
        .audit
        .query_events(QueryEventsRequest {
            page_size: 1,
            ..acme.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
    let cases: Vec<(&str, QueryEventsRequest)> = vec![
        ("chain", QueryEventsRequest::default()),
        (
            "platform",
            QueryEventsRequest {
                chain: Some(query_events_request::Chain::Platform(false)),
                ..QueryEventsRequest::default()
            },
        ),
        ("tenant_id", in_tenant("acme")),
        (
            "page_size",
            QueryEventsRequest {
                page_size: -1,
                ..acme.clone()
            },
        ),
        (
            "page_size",
            QueryEventsRequest {
                page_size: 1001,
                ..acme.clone()
            },
        ),
        (
            "page_token",
            QueryEventsRequest {
                page_token: "zz".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "page_token",
            QueryEventsRequest {
                page_token: "61".repeat(200),
                ..acme.clone()
            },
        ),
        (
            "page_token",
            QueryEventsRequest {
                page_token: first_page.next_page_token.clone(),
                order: Order::Descending.into(),
                ..acme.clone()
            },
        ),
        (
            "order",
            QueryEventsRequest {
                order: 7,
                ..acme.clone()
            },
        ),
        (
            "outcome",
            QueryEventsRequest {
                outcome: -1,
                ..acme.clone()
            },
        ),
        (
            "actions",
            QueryEventsRequest {
                actions: vec!["a.b".to_owned(); 21],
                ..acme.clone()
            },
        ),
        (
            "actions[0]",
            QueryEventsRequest {
                actions: vec!["A.b".to_owned()],
                ..acme.clone()
            },
        ),
        (
            "action_prefix",
            QueryEventsRequest {
                actions: vec!["a.b".to_owned()],
                action_prefix: "a.".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "action_prefix",
            QueryEventsRequest {
                action_prefix: "A%".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "resource_id",
            QueryEventsRequest {
                resource_id: "42".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "until",
            QueryEventsRequest {
                since: at(100),
                until: at(100),
                ..acme.clone()
            },
        ),
        (
            "since",
            QueryEventsRequest {
                since: at(i64::MAX),
                ..acme.clone()
            },
        ),
        (
            "after_sequence",
            QueryEventsRequest {
                after_sequence: -1,
                ..acme.clone()
            },
        ),
        (
            "actor_user_id",
            QueryEventsRequest {
                actor_user_id: "x".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "actor_module_id",
            QueryEventsRequest {
                actor_module_id: "Finance!".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "actor_api_key_id",
            QueryEventsRequest {
                actor_api_key_id: "x".repeat(50),
                ..acme.clone()
            },
        ),
        (
            "request_id",
            QueryEventsRequest {
                request_id: "a b".to_owned(),
                ..acme.clone()
            },
        ),
        (
            "company_id",
            QueryEventsRequest {
                company_id: "nope".to_owned(),
                ..acme.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let refused = setup
            .acme
            .admin
            .clients
            .audit
            .query_events(request.clone())
            .await
            .unwrap_err();
        assert_invalid(&refused, &[field], &request);
    }
}

/// How often PostgreSQL scanned `index` so far, as its statistics say.
async fn index_scans(url: &str, index: &str) -> i64 {
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT COALESCE(idx_scan, 0) FROM pg_stat_user_indexes WHERE indexrelname = $1",
    )
    .bind(index)
    .fetch_one(&mut connection)
    .await
    .unwrap()
}

/// The scans of `index` once its statistics pass `above`, or after ten
/// seconds.
async fn scans_above(url: &str, index: &str, above: i64) -> i64 {
    let started = Instant::now();
    loop {
        let scans = index_scans(url, index).await;
        if scans > above || started.elapsed() > Duration::from_secs(10) {
            return scans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// On PostgreSQL, each filter's query (as the store runs it) scans the
/// index made for it, over a chain large enough for the planner to care.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_each_filter_from_its_index() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = database.open_store().await;
    let chains: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let user = Uuid::now_v7().to_string();
    for batch in 0..50 {
        for chain in &chains {
            let drafts = (0..100)
                .map(|index| {
                    let number = batch * 100 + index;
                    let actor = Actor {
                        module_id: format!("module{}", batch % 20),
                        api_key_id: format!("key{}", number % 50),
                        user_id: if number % 100 == 0 {
                            user.clone()
                        } else {
                            String::new()
                        },
                        ..Actor::default()
                    };
                    let mut draft = AuditDraft::new(
                        actor,
                        &format!("module{}.thing{}.done", batch % 20, number % 7),
                        &format!("type{}", number % 30),
                        &number.to_string(),
                    )
                    .in_tenant(Some(*chain))
                    .with_request_id(&format!("request{number}"));
                    draft.company_id = (number % 250 == 0).then_some(*chain);
                    if number % 500 == 0 {
                        draft.outcome = domain::Outcome::Denied;
                    }
                    draft
                })
                .collect();
            let mut tx = store.begin().await.unwrap();
            audit_log::append_batch(&mut tx, drafts).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
    database.run_sql("ANALYZE audit_events").await;
    let chain_id = chains[1].to_string();
    let in_chain = || EventQuery {
        chain_id: chain_id.clone(),
        limit: 101,
        ..EventQuery::default()
    };
    let now = plinth_platform::clock::now();
    let cases = [
        (
            "audit_events_by_user",
            EventQuery {
                actor_user_id: Some(user.clone()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_module",
            EventQuery {
                actor_module_id: Some("module3".to_owned()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_api_key",
            EventQuery {
                actor_api_key_id: Some("key7".to_owned()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_action",
            EventQuery {
                actions: vec!["module3.thing3.done".to_owned()],
                ..in_chain()
            },
        ),
        (
            "audit_events_by_action",
            EventQuery {
                action_prefix: Some("module3.thing3".to_owned()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_resource",
            EventQuery {
                resource_type: Some("type4".to_owned()),
                resource_id: Some("1234".to_owned()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_request",
            EventQuery {
                request_id: Some("request99".to_owned()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_company",
            EventQuery {
                company_id: Some(chain_id.clone()),
                ..in_chain()
            },
        ),
        (
            "audit_events_by_outcome",
            EventQuery {
                outcome: Some(domain::Outcome::Denied),
                ..in_chain()
            },
        ),
        (
            "audit_events_recorded",
            EventQuery {
                since: Some(now - chrono::Duration::days(2)),
                until: Some(now - chrono::Duration::days(1)),
                ..in_chain()
            },
        ),
    ];
    drop(store);
    for (index, query) in cases {
        let before = index_scans(&database.url, index).await;
        // A store of its own: closing its connections flushes their
        // statistics at once.
        let store = database.open_store().await;
        for descending in [false, true] {
            store
                .audit
                .query(&EventQuery {
                    descending,
                    ..query.clone()
                })
                .await
                .unwrap();
        }
        drop(store);
        let after = scans_above(&database.url, index, before).await;
        assert!(after > before, "{index} served {query:?}");
    }
}
