//! TailEvents: live events in commit order, resumed from a cursor across a
//! restart without loss or repeats, checkpoints while idle, a clear resync
//! for a consumer that does not keep up, and each caller's scope.

use std::time::Duration;

use plinth_api::{
    audit::v1::{
        AuditEvent, TailEventsRequest, TailEventsResponse,
        audit_service_client::AuditServiceClient, tail_events_response::Kind,
    },
    prost_types,
    tenant::v1::CreateCompanyRequest,
};
use plinth_tests::{
    Backend, Clients, Credentials, Sandbox, TestRedis, assert_invalid, assert_refusal,
};
use tonic::{Code, Streaming, transport::Endpoint};

use super::{input, record, setup};

crate::on_both_backends!(
    a_tail_receives_events_in_commit_order,
    a_tail_resumes_after_a_restart_without_loss_or_repeats,
    an_idle_tail_gets_checkpoints_it_can_resume_from,
    a_consumer_that_does_not_read_is_told_to_resync_and_loses_nothing,
    each_caller_tails_only_its_scope,
    a_tail_on_another_replica_hears_of_events_through_redis,
    bad_tail_requests_are_refused,
);

const WAIT: Duration = Duration::from_secs(10);

async fn tail(
    clients: &mut Clients,
    action_prefix: &str,
    cursor: &str,
) -> Result<Streaming<TailEventsResponse>, tonic::Status> {
    clients
        .audit
        .tail_events(TailEventsRequest {
            action_prefix: action_prefix.to_owned(),
            cursor: cursor.to_owned(),
            checkpoint_interval: None,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The next message, within [`WAIT`]; `None` when the stream ended.
async fn next(stream: &mut Streaming<TailEventsResponse>) -> Option<Kind> {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a message in time")
        .expect("the stream stays healthy")
        .map(|message| message.kind.expect("a message kind"))
}

/// The next `count` events (checkpoints skipped), with their cursors.
async fn events(
    stream: &mut Streaming<TailEventsResponse>,
    count: usize,
) -> Vec<(AuditEvent, String)> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        match next(stream).await {
            Some(Kind::Event(tailed)) => received.push((tailed.event.unwrap(), tailed.cursor)),
            Some(Kind::Checkpoint(_)) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
    received
}

fn names(events: &[(AuditEvent, String)]) -> Vec<String> {
    events
        .iter()
        .map(|(event, _)| format!("{}#{}", event.action, event.resource_id))
        .collect()
}

fn numbered(action: &str, number: usize) -> plinth_api::audit::v1::EventInput {
    plinth_api::audit::v1::EventInput {
        resource_id: number.to_string(),
        ..input(action)
    }
}

async fn a_tail_receives_events_in_commit_order(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let mut operator = setup.sandbox.operator().await;
    let mut stream = tail(&mut operator, "finance.", "").await.unwrap();

    for number in 0..3 {
        record(
            &mut setup.finance,
            &setup.acme.id,
            vec![numbered("finance.invoice.created", number)],
        )
        .await
        .unwrap();
    }

    let received = events(&mut stream, 3).await;
    assert_eq!(
        names(&received),
        [
            "finance.invoice.created#0",
            "finance.invoice.created#1",
            "finance.invoice.created#2"
        ]
    );
    assert!(
        received
            .iter()
            .all(|(event, _)| event.tenant_id == setup.acme.id)
    );
}

async fn a_tail_resumes_after_a_restart_without_loss_or_repeats(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let mut operator = setup.sandbox.operator().await;
    let mut stream = tail(&mut operator, "finance.", "").await.unwrap();
    record(
        &mut setup.finance,
        &setup.acme.id,
        (0..5)
            .map(|number| numbered("finance.invoice.created", number))
            .collect(),
    )
    .await
    .unwrap();
    let first = events(&mut stream, 2).await;
    let cursor = first[1].1.clone();
    drop(stream);

    let sandbox = setup.sandbox.restart().await;
    let mut finance = sandbox.clients(&setup.finance_key).await;
    record(
        &mut finance,
        &setup.acme.id,
        (5..8)
            .map(|number| numbered("finance.invoice.created", number))
            .collect(),
    )
    .await
    .unwrap();
    let mut operator = sandbox.operator().await;
    let mut resumed = tail(&mut operator, "finance.", &cursor).await.unwrap();

    let rest = events(&mut resumed, 6).await;
    assert_eq!(
        names(&rest),
        (2..8)
            .map(|number| format!("finance.invoice.created#{number}"))
            .collect::<Vec<_>>()
    );
    record(
        &mut finance,
        &setup.acme.id,
        vec![numbered("finance.invoice.paid", 8)],
    )
    .await
    .unwrap();
    assert_eq!(
        names(&events(&mut resumed, 1).await),
        ["finance.invoice.paid#8"],
        "then live events follow"
    );
}

async fn an_idle_tail_gets_checkpoints_it_can_resume_from(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    let mut operator = setup.sandbox.operator().await;
    let mut stream = operator
        .audit
        .tail_events(TailEventsRequest {
            action_prefix: "finance.payment.".to_owned(),
            cursor: String::new(),
            checkpoint_interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.created")],
    )
    .await
    .unwrap();

    let checkpoint = match next(&mut stream).await {
        Some(Kind::Checkpoint(checkpoint)) => checkpoint.cursor,
        other => panic!("expected only a checkpoint, got {other:?}"),
    };
    drop(stream);
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.payment.received")],
    )
    .await
    .unwrap();

    let mut resumed = tail(&mut operator, "finance.", &checkpoint).await.unwrap();
    let after = events(&mut resumed, 1).await;
    assert_eq!(names(&after), ["finance.payment.received#42"]);
}

async fn a_consumer_that_does_not_read_is_told_to_resync_and_loses_nothing(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    // Small HTTP/2 windows, so the server cannot park the backlog in them.
    let channel = Endpoint::from_shared(format!("http://{}", setup.sandbox.address))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let mut client = AuditServiceClient::with_interceptor(
        channel,
        Credentials::api_key(&setup.sandbox.operator_key),
    );
    let mut stream = client
        .tail_events(TailEventsRequest {
            action_prefix: "finance.".to_owned(),
            ..TailEventsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    const EVENTS: usize = 5_000;
    for batch in 0..EVENTS / 100 {
        record(
            &mut setup.finance,
            &setup.acme.id,
            (0..100)
                .map(|index| numbered("finance.invoice.created", batch * 100 + index))
                .collect(),
        )
        .await
        .unwrap();
    }

    let mut received = Vec::new();
    let resync = loop {
        match next(&mut stream).await {
            Some(Kind::Event(tailed)) => received.push(tailed.event.unwrap().resource_id),
            Some(Kind::Checkpoint(_)) => {}
            Some(Kind::Resync(resync)) => break resync.cursor,
            None => panic!("the stream ended without a resync"),
        }
    };
    assert!(received.len() < EVENTS, "the consumer fell behind");
    assert!(
        next(&mut stream).await.is_none(),
        "the stream ends after a resync"
    );
    let mut resumed = tail(&mut setup.sandbox.operator().await, "finance.", &resync)
        .await
        .unwrap();
    let rest = events(&mut resumed, EVENTS - received.len()).await;
    received.extend(rest.into_iter().map(|(event, _)| event.resource_id));

    let expected: Vec<String> = (0..EVENTS).map(|number| number.to_string()).collect();
    assert_eq!(received, expected, "every event once, in order");
}

async fn each_caller_tails_only_its_scope(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    crate::modules::enabled_for(&setup.sandbox, &setup.acme.id, "crm").await;
    crate::modules::enabled_for(&setup.sandbox, &setup.globex.id, "finance").await;
    let mut crm = setup
        .sandbox
        .clients(&plinth_tests::module_key(&setup.sandbox, "crm").await)
        .await;
    let mut admin_tail = tail(&mut setup.acme.admin.clients, "", "").await.unwrap();
    let mut finance_tail = tail(&mut setup.finance, "", "").await.unwrap();

    record(&mut crm, &setup.acme.id, vec![input("crm.lead.created")])
        .await
        .unwrap();
    record(
        &mut setup.finance,
        &setup.globex.id,
        vec![input("finance.invoice.created")],
    )
    .await
    .unwrap();
    setup
        .globex
        .admin
        .clients
        .tenants
        .create_company(CreateCompanyRequest {
            tenant_id: setup.globex.id.clone(),
            code: "globex-west".to_owned(),
            name: "Globex West".to_owned(),
        })
        .await
        .unwrap();
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.paid")],
    )
    .await
    .unwrap();

    let admin_saw = events(&mut admin_tail, 2).await;
    assert_eq!(
        names(&admin_saw),
        ["crm.lead.created#42", "finance.invoice.paid#42"],
        "the acme admin sees acme's chain only"
    );
    let finance_saw = events(&mut finance_tail, 2).await;
    assert_eq!(
        names(&finance_saw),
        ["finance.invoice.created#42", "finance.invoice.paid#42"],
        "finance sees its own events in both tenants, not crm's nor the core's"
    );
    let mut member = setup.acme.member(&setup.sandbox, "clerk").await;
    let refused = tail(&mut member.clients, "", "").await.unwrap_err();
    assert_refusal(
        &refused,
        Code::PermissionDenied,
        "ERROR_REASON_PERMISSION_DENIED",
    );
}

async fn a_tail_on_another_replica_hears_of_events_through_redis(backend: Backend) {
    let redis = TestRedis::new();
    let sandbox = Sandbox::start_with(backend, |config| redis.configure(config)).await;
    let other = sandbox.replica().await;
    let mut setup = setup(sandbox).await;
    let mut operator = other.operator().await;
    let mut stream = tail(&mut operator, "finance.", "").await.unwrap();

    let started = std::time::Instant::now();
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![input("finance.invoice.created")],
    )
    .await
    .unwrap();

    let received = events(&mut stream, 1).await;
    assert_eq!(names(&received), ["finance.invoice.created#42"]);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "heard through Redis, before the once-a-second poll: {:?}",
        started.elapsed()
    );
}

async fn bad_tail_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let duration = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let cases = [
        (
            "cursor",
            TailEventsRequest {
                cursor: "zz".to_owned(),
                ..Default::default()
            },
        ),
        (
            "cursor",
            TailEventsRequest {
                cursor: "31".repeat(100),
                ..Default::default()
            },
        ),
        (
            "cursor",
            TailEventsRequest {
                cursor: hex("-1.0"),
                ..Default::default()
            },
        ),
        (
            "cursor",
            TailEventsRequest {
                cursor: hex("1"),
                ..Default::default()
            },
        ),
        (
            "action_prefix",
            TailEventsRequest {
                action_prefix: "A".to_owned(),
                ..Default::default()
            },
        ),
        (
            "action_prefix",
            TailEventsRequest {
                action_prefix: "a".repeat(129),
                ..Default::default()
            },
        ),
        (
            "checkpoint_interval",
            TailEventsRequest {
                checkpoint_interval: duration(0),
                ..Default::default()
            },
        ),
        (
            "checkpoint_interval",
            TailEventsRequest {
                checkpoint_interval: duration(301),
                ..Default::default()
            },
        ),
        (
            "checkpoint_interval",
            TailEventsRequest {
                checkpoint_interval: duration(-5),
                ..Default::default()
            },
        ),
    ];
    for (field, request) in cases {
        let refused = operator
            .audit
            .tail_events(request.clone())
            .await
            .unwrap_err();
        assert_invalid(&refused, &[field], &request);
    }
    let anonymous = sandbox.clients_with(Credentials::anonymous()).await;
    let refused = anonymous
        .audit
        .clone()
        .tail_events(TailEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}
