//! VerifyChain, and the same verdict reached without Plinth: a chain
//! exported by `core-server audit export` and recomputed by a Python script
//! from the proto's specification, before and after a row is changed in the
//! database behind the server's back.

use std::{path::Path, process::Command};

use plinth_api::{
    audit::v1::{EventInput, VerifyChainRequest, VerifyChainResponse, verify_chain_request},
    prost_types::{Struct, Value, value::Kind},
};
use plinth_tests::{Backend, Clients, Sandbox, assert_invalid, assert_refusal, core_server_binary};
use tonic::Code;

use super::{Setup, input, record, setup};

crate::on_both_backends!(
    an_untouched_chain_verifies,
    a_changed_row_is_found_by_verify_chain_and_by_an_independent_script,
    a_removed_last_event_is_found,
    runs_of_a_chain_verify_on_their_own,
    only_readers_of_the_whole_chain_verify_it,
    bad_verify_requests_are_refused,
);

fn verify_request(tenant_id: &str, from: i64, to: i64) -> VerifyChainRequest {
    VerifyChainRequest {
        chain: Some(verify_chain_request::Chain::TenantId(tenant_id.to_owned())),
        from_sequence: from,
        to_sequence: to,
    }
}

async fn verify(clients: &mut Clients, tenant_id: &str) -> VerifyChainResponse {
    clients
        .audit
        .verify_chain(verify_request(tenant_id, 0, 0))
        .await
        .unwrap()
        .into_inner()
}

/// Details with numbers and text that canonicalization must get right.
fn rich_details() -> Struct {
    let value = |kind| Value { kind: Some(kind) };
    Struct {
        fields: [
            ("amount".to_owned(), value(Kind::NumberValue(1234.5))),
            ("tiny".to_owned(), value(Kind::NumberValue(1.5e-9))),
            ("huge".to_owned(), value(Kind::NumberValue(2.5e25))),
            ("whole".to_owned(), value(Kind::NumberValue(1e20))),
            (
                "note".to_owned(),
                value(Kind::StringValue("Zoë \"quoted\"\n😀".to_owned())),
            ),
            ("flag".to_owned(), value(Kind::BoolValue(true))),
            ("none".to_owned(), value(Kind::NullValue(0))),
        ]
        .into(),
    }
}

async fn recorded_chain(setup: &mut Setup) {
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![
            EventInput {
                details: Some(rich_details()),
                ..input("finance.invoice.created")
            },
            input("finance.invoice.sent"),
            input("finance.invoice.paid"),
        ],
    )
    .await
    .unwrap();
}

async fn an_untouched_chain_verifies(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    recorded_chain(&mut setup).await;

    let verified = verify(&mut setup.acme.admin.clients, &setup.acme.id).await;

    assert!(verified.valid);
    assert_eq!(verified.first_broken_sequence, 0);
    assert_eq!(verified.events_checked, verified.last_sequence);
    assert_eq!(verified.head_hash.len(), 32);
}

/// Runs `core-server audit export` for the tenant into `path`.
fn export(setup: &Setup, tenant_id: &str, path: &Path) {
    let output = Command::new(core_server_binary())
        .arg("--data-dir")
        .arg(setup.sandbox.database.directory().join("export"))
        .args(["--database-url", &setup.sandbox.database.url])
        .args(["audit", "export", "--tenant", tenant_id])
        .env("RUST_LOG", "warn")
        .output()
        .expect("core-server runs");
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(path, output.stdout).unwrap();
}

/// The script's exit code and what it printed.
fn python_verdict(path: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_audit_chain.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn tamper(setup: &Setup, sql: String) {
    let changed = setup.sandbox.database.run_sql(sql.clone()).await;
    assert_eq!(changed, 1, "{sql}");
}

async fn a_changed_row_is_found_by_verify_chain_and_by_an_independent_script(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    recorded_chain(&mut setup).await;
    let directory = tempfile::tempdir().unwrap();
    let exported = directory.path().join("acme.jsonl");
    export(&setup, &setup.acme.id, &exported);
    let lines = std::fs::read_to_string(&exported).unwrap().lines().count() as i64;
    let verified = verify(&mut setup.acme.admin.clients, &setup.acme.id).await;
    assert_eq!(lines, verified.last_sequence, "the whole chain exported");
    let (code, said) = python_verdict(&exported);
    assert_eq!(
        (code, said.trim()),
        (0, format!("ok: {lines} events verified").as_str())
    );

    let changed = lines - 1;
    tamper(
        &setup,
        format!(
            "UPDATE audit_events SET resource_id = '43' \
             WHERE chain_id = '{}' AND sequence = {changed}",
            setup.acme.id
        ),
    )
    .await;

    let verified = verify(&mut setup.acme.admin.clients, &setup.acme.id).await;
    assert!(!verified.valid);
    assert_eq!(verified.first_broken_sequence, changed);
    export(&setup, &setup.acme.id, &exported);
    let (code, said) = python_verdict(&exported);
    assert_eq!(code, 1);
    assert!(
        said.starts_with(&format!("broken at sequence {changed} ")),
        "{said}"
    );
}

async fn a_removed_last_event_is_found(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    recorded_chain(&mut setup).await;
    let last = verify(&mut setup.acme.admin.clients, &setup.acme.id)
        .await
        .last_sequence;

    tamper(
        &setup,
        format!(
            "DELETE FROM audit_events WHERE chain_id = '{}' AND sequence = {last}",
            setup.acme.id
        ),
    )
    .await;

    let verified = verify(&mut setup.acme.admin.clients, &setup.acme.id).await;
    assert!(!verified.valid);
    assert_eq!(verified.first_broken_sequence, last);
    assert_eq!(verified.events_checked, last - 1);
}

async fn runs_of_a_chain_verify_on_their_own(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;
    recorded_chain(&mut setup).await;
    let whole = verify(&mut setup.acme.admin.clients, &setup.acme.id).await;

    let run = setup
        .acme
        .admin
        .clients
        .audit
        .verify_chain(verify_request(&setup.acme.id, 2, whole.last_sequence - 1))
        .await
        .unwrap()
        .into_inner();
    assert!(run.valid);
    assert_eq!(run.events_checked, whole.last_sequence - 2);
    let beyond = setup
        .acme
        .admin
        .clients
        .audit
        .verify_chain(verify_request(&setup.acme.id, whole.last_sequence + 5, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(beyond.valid);
    assert_eq!(beyond.events_checked, 0);
}

async fn only_readers_of_the_whole_chain_verify_it(backend: Backend) {
    let mut setup = setup(Sandbox::start(backend).await).await;

    let module = setup
        .finance
        .audit
        .verify_chain(verify_request(&setup.acme.id, 0, 0))
        .await
        .unwrap_err();
    assert_refusal(
        &module,
        Code::PermissionDenied,
        "ERROR_REASON_PERMISSION_DENIED",
    );
    let other_tenant = setup
        .globex
        .admin
        .clients
        .audit
        .verify_chain(verify_request(&setup.acme.id, 0, 0))
        .await
        .unwrap_err();
    assert_refusal(&other_tenant, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    let platform = setup
        .sandbox
        .operator()
        .await
        .audit
        .verify_chain(VerifyChainRequest {
            chain: Some(verify_chain_request::Chain::Platform(true)),
            ..VerifyChainRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(platform.valid && platform.events_checked > 0);
}

async fn bad_verify_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = uuid::Uuid::now_v7().to_string();
    let cases = [
        ("chain", VerifyChainRequest::default()),
        ("tenant_id", verify_request("acme", 0, 0)),
        ("from_sequence", verify_request(&tenant, -1, 0)),
        ("to_sequence", verify_request(&tenant, 0, -1)),
        ("to_sequence", verify_request(&tenant, 5, 4)),
        (
            "platform",
            VerifyChainRequest {
                chain: Some(verify_chain_request::Chain::Platform(false)),
                ..VerifyChainRequest::default()
            },
        ),
    ];
    for (field, request) in cases {
        let refused = operator
            .audit
            .verify_chain(request.clone())
            .await
            .unwrap_err();
        assert_invalid(&refused, &[field], &request);
    }
}
