//! RecordEvents: the actor comes from the credentials, idempotency keys
//! repeat or conflict, and a module records only its own actions in tenants
//! that hold it.

use plinth_api::{
    audit::v1::{EventInput, RecordEventsRequest},
    prost_types::{self, Struct, Value, value::Kind},
};
use plinth_tests::{Backend, Credentials, Sandbox, assert_invalid, assert_refusal, error_metadata};
use tonic::Code;

use super::{Setup, in_tenant, input, query_all, record, setup};

crate::on_both_backends!(
    a_module_key_is_stamped_as_the_actor,
    a_module_acting_for_a_user_records_the_verified_user,
    a_user_named_by_a_module_is_recorded_as_claimed,
    a_claimed_user_beside_a_bearer_token_is_refused,
    a_batch_is_recorded_atomically_in_order,
    the_same_idempotency_key_and_content_return_the_first_event,
    an_idempotency_key_reused_with_other_content_refuses_the_whole_batch,
    actions_outside_the_module_namespace_are_refused,
    a_tenant_without_the_module_is_not_found,
    a_suspended_tenant_takes_no_records,
    only_module_keys_record,
    a_company_of_another_tenant_is_not_found,
    bad_events_are_refused_field_by_field,
);

async fn a_module_key_is_stamped_as_the_actor(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;

    let recorded = record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.approved")],
    )
    .await
    .unwrap();

    let events = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap();
    let event = events
        .iter()
        .find(|event| event.id == recorded[0].id)
        .unwrap();
    let actor = event.actor.as_ref().unwrap();
    assert_eq!(actor.module_id, "finance");
    assert_eq!(actor.api_key_id, setup.finance_key_id);
    assert_eq!(actor.user_id, "");
    assert!(!actor.user_claimed);
    assert!(actor.peer_address.starts_with("127.0.0.1:"));
    assert!(!event.request_id.is_empty());
    assert_eq!(event.sequence, recorded[0].sequence);
    assert_eq!(event.hash, recorded[0].hash);
}

async fn a_module_acting_for_a_user_records_the_verified_user(backend: Backend) {
    let setup = setup(Sandbox::start(backend).await).await;
    let mut for_admin = setup
        .sandbox
        .clients_with(Credentials::module_for_user(
            &setup.finance_key,
            &setup.acme.admin.access_token,
        ))
        .await;

    let recorded = record(
        &mut for_admin,
        &setup.acme.id,
        vec![input("finance.invoice.approved")],
    )
    .await
    .unwrap();

    let event = only_event(&setup, &recorded[0].id).await;
    let actor = event.actor.unwrap();
    assert_eq!(actor.user_id, setup.acme.admin.user_id);
    assert_eq!(actor.module_id, "finance");
    assert!(!actor.user_claimed);
}

async fn a_user_named_by_a_module_is_recorded_as_claimed(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;

    let recorded = setup
        .finance
        .audit
        .record_events(RecordEventsRequest {
            tenant_id: setup.acme.id.clone(),
            events: vec![input("finance.invoice.approved")],
            claimed_user_id: setup.acme.admin.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;

    let actor = only_event(&setup, &recorded[0].id).await.actor.unwrap();
    assert_eq!(actor.user_id, setup.acme.admin.user_id);
    assert!(actor.user_claimed);
}

async fn a_claimed_user_beside_a_bearer_token_is_refused(backend: Backend) {
    let setup = setup(Sandbox::start(backend).await).await;
    let mut for_admin = setup
        .sandbox
        .clients_with(Credentials::module_for_user(
            &setup.finance_key,
            &setup.acme.admin.access_token,
        ))
        .await;

    let refused = for_admin
        .audit
        .record_events(RecordEventsRequest {
            tenant_id: setup.acme.id.clone(),
            events: vec![input("finance.invoice.approved")],
            claimed_user_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();

    assert_invalid(
        &refused,
        &["claimed_user_id"],
        &"a claimed user beside a token",
    );
}

async fn a_batch_is_recorded_atomically_in_order(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;

    let recorded = record(
        &mut setup.finance,
        &setup.acme.id,
        vec![
            input("finance.invoice.created"),
            input("finance.invoice.sent"),
            input("finance.invoice.paid"),
        ],
    )
    .await
    .unwrap();

    let sequences: Vec<i64> = recorded.iter().map(|event| event.sequence).collect();
    assert_eq!(
        sequences,
        [sequences[0], sequences[0] + 1, sequences[0] + 2],
        "consecutive"
    );
    assert!(recorded.iter().all(|event| !event.duplicate));
}

async fn the_same_idempotency_key_and_content_return_the_first_event(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let keyed = EventInput {
        idempotency_key: "invoice-42-approved".to_owned(),
        ..input("finance.invoice.approved")
    };

    let first = record(&mut setup.finance, &setup.acme.id, vec![keyed.clone()])
        .await
        .unwrap();
    let again = record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.viewed"), keyed],
    )
    .await
    .unwrap();

    assert!(!first[0].duplicate);
    assert!(again[1].duplicate);
    assert_eq!(
        (&again[1].id, again[1].sequence, &again[1].hash),
        (&first[0].id, first[0].sequence, &first[0].hash)
    );
    assert_eq!(again[0].sequence, first[0].sequence + 1);
    let approved = query_all(
        &mut setup.acme.admin.clients,
        plinth_api::audit::v1::QueryEventsRequest {
            actions: vec!["finance.invoice.approved".to_owned()],
            ..in_tenant(&setup.acme.id)
        },
    )
    .await
    .unwrap();
    assert_eq!(approved.len(), 1);
}

async fn an_idempotency_key_reused_with_other_content_refuses_the_whole_batch(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let keyed = |resource_id: &str| EventInput {
        idempotency_key: "invoice-approval".to_owned(),
        resource_id: resource_id.to_owned(),
        ..input("finance.invoice.approved")
    };
    record(&mut setup.finance, &setup.acme.id, vec![keyed("42")])
        .await
        .unwrap();
    let before = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap()
        .len();

    let refused = record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.viewed"), keyed("43")],
    )
    .await
    .unwrap_err();

    assert_refusal(
        &refused,
        Code::AlreadyExists,
        "ERROR_REASON_IDEMPOTENCY_KEY_CONFLICT",
    );
    assert_eq!(error_metadata(&refused, "index").as_deref(), Some("1"));
    let after = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap()
        .len();
    assert_eq!(after, before, "nothing of the batch was recorded");
}

async fn actions_outside_the_module_namespace_are_refused(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let before = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap()
        .len();

    for action in ["crm.lead.created", "tenant.module.enabled", "financex.a.b"] {
        let refused = record(
            &mut setup.finance,
            &setup.acme.id,
            vec![input("finance.invoice.created"), input(action)],
        )
        .await
        .unwrap_err();
        assert_refusal(
            &refused,
            Code::PermissionDenied,
            "ERROR_REASON_MODULE_NAMESPACE_VIOLATION",
        );
    }

    let after = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap()
        .len();
    assert_eq!(after, before);
}

async fn a_tenant_without_the_module_is_not_found(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;

    for tenant_id in [setup.globex.id.clone(), uuid::Uuid::now_v7().to_string()] {
        let refused = record(
            &mut setup.finance,
            &tenant_id,
            vec![input("finance.invoice.created")],
        )
        .await
        .unwrap_err();
        assert_refusal(&refused, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    }
}

async fn a_suspended_tenant_takes_no_records(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    setup
        .sandbox
        .operator()
        .await
        .tenants
        .set_tenant_status(plinth_api::tenant::v1::SetTenantStatusRequest {
            id: setup.acme.id.clone(),
            status: plinth_api::tenant::v1::TenantStatus::Suspended.into(),
            reason: "unpaid".to_owned(),
        })
        .await
        .unwrap();

    let refused = record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.created")],
    )
    .await
    .unwrap_err();

    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_TENANT_NOT_ACTIVE",
    );
}

async fn only_module_keys_record(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let mut operator = setup.sandbox.operator().await;

    for clients in [&mut operator, &mut setup.acme.admin.clients] {
        let refused = record(
            clients,
            &setup.acme.id,
            vec![input("finance.invoice.created")],
        )
        .await
        .unwrap_err();
        assert_refusal(
            &refused,
            Code::PermissionDenied,
            "ERROR_REASON_PERMISSION_DENIED",
        );
    }
}

async fn a_company_of_another_tenant_is_not_found(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let globex_company = setup
        .globex
        .admin
        .clients
        .tenants
        .create_company(plinth_api::tenant::v1::CreateCompanyRequest {
            tenant_id: setup.globex.id.clone(),
            code: "globex-east".to_owned(),
            name: "Globex East".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .company
        .unwrap();

    let refused = record(
        &mut setup.finance,
        &setup.acme.id,
        vec![EventInput {
            company_id: globex_company.id,
            ..input("finance.invoice.created")
        }],
    )
    .await
    .unwrap_err();

    assert_refusal(&refused, Code::NotFound, "ERROR_REASON_NOT_FOUND");
}

fn number(value: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(value)),
    }
}

/// A Struct nested `depth` levels deep.
fn nested(depth: usize) -> Struct {
    let mut document = Struct::default();
    for _ in 1..depth {
        document = Struct {
            fields: [(
                "inner".to_owned(),
                Value {
                    kind: Some(Kind::StructValue(document)),
                },
            )]
            .into(),
        };
    }
    document
}

async fn bad_events_are_refused_field_by_field(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |seconds: i64, nanos: i32| prost_types::Timestamp { seconds, nanos };
    let large = Struct {
        fields: [(
            "text".to_owned(),
            Value {
                kind: Some(Kind::StringValue("x".repeat(17 * 1024))),
            },
        )]
        .into(),
    };
    let event = |change: fn(&mut EventInput)| {
        let mut event = input("finance.invoice.created");
        change(&mut event);
        event
    };
    let cases: Vec<(&str, EventInput)> = vec![
        (
            "events[0].action",
            event(|e| e.action = "finance".to_owned()),
        ),
        (
            "events[0].action",
            event(|e| e.action = "Finance.x".to_owned()),
        ),
        (
            "events[0].action",
            event(|e| e.action = "finance..x".to_owned()),
        ),
        (
            "events[0].action",
            event(|e| e.action = format!("finance.{}", "a".repeat(130))),
        ),
        ("events[0].outcome", event(|e| e.outcome = 0)),
        ("events[0].outcome", event(|e| e.outcome = 9)),
        (
            "events[0].resource_type",
            event(|e| e.resource_type = "t".repeat(65)),
        ),
        (
            "events[0].resource_id",
            event(|e| e.resource_id = "line\nbreak".to_owned()),
        ),
        (
            "events[0].idempotency_key",
            event(|e| e.idempotency_key = "has space".to_owned()),
        ),
        (
            "events[0].idempotency_key",
            event(|e| e.idempotency_key = "k".repeat(129)),
        ),
        (
            "events[0].company_id",
            event(|e| e.company_id = "not-a-uuid".to_owned()),
        ),
        (
            "events[0].details",
            EventInput {
                details: Some(large),
                ..input("finance.a.b")
            },
        ),
        (
            "events[0].details",
            EventInput {
                details: Some(nested(33)),
                ..input("finance.a.b")
            },
        ),
        (
            "events[0].details",
            EventInput {
                details: Some(Struct {
                    fields: [("n".to_owned(), number(f64::NAN))].into(),
                }),
                ..input("finance.a.b")
            },
        ),
        (
            "events[0].occurred_at",
            EventInput {
                occurred_at: Some(at(now + 120, 0)),
                ..input("finance.a.b")
            },
        ),
        (
            "events[0].occurred_at",
            EventInput {
                occurred_at: Some(at(now - 31 * 86_400, 0)),
                ..input("finance.a.b")
            },
        ),
        (
            "events[0].occurred_at",
            EventInput {
                occurred_at: Some(at(now, -1)),
                ..input("finance.a.b")
            },
        ),
        (
            "events[0].occurred_at",
            EventInput {
                occurred_at: Some(at(i64::MAX, 0)),
                ..input("finance.a.b")
            },
        ),
    ];
    for (field, event) in cases {
        let refused = record(&mut setup.finance, &setup.acme.id, vec![event.clone()])
            .await
            .unwrap_err();
        assert_invalid(&refused, &[field], &event);
    }

    let batches = [
        ("events", Vec::new()),
        ("events", vec![input("finance.invoice.created"); 101]),
    ];
    for (field, events) in batches {
        let refused = record(&mut setup.finance, &setup.acme.id, events)
            .await
            .unwrap_err();
        assert_invalid(&refused, &[field], &field);
    }
    for tenant_id in ["", "acme", &"f".repeat(100)] {
        let refused = record(
            &mut setup.finance,
            tenant_id,
            vec![input("finance.invoice.created")],
        )
        .await
        .unwrap_err();
        assert_invalid(&refused, &["tenant_id"], &tenant_id);
    }
    let claimed = setup
        .finance
        .audit
        .record_events(RecordEventsRequest {
            tenant_id: setup.acme.id.clone(),
            events: vec![input("finance.invoice.created")],
            claimed_user_id: "someone".to_owned(),
        })
        .await
        .unwrap_err();
    assert_invalid(&claimed, &["claimed_user_id"], &"not a user id");
}

/// The one event with `id` in acme's chain, as its admin reads it.
async fn only_event(setup: &Setup, id: &str) -> plinth_api::audit::v1::AuditEvent {
    let mut admin = setup.acme.admin.clients.clone();
    query_all(&mut admin, in_tenant(&setup.acme.id))
        .await
        .unwrap()
        .into_iter()
        .find(|event| event.id == id)
        .expect("the event is in the chain")
}
