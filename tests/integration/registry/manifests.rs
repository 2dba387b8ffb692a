//! ValidateManifest over gRPC: the dry run that reports every broken rule
//! of a manifest at once (the rules themselves are tested one by one in
//! `registry-server`'s `manifest::tests`).

use plinth_api::registry::v1::{ValidateManifestRequest, ValidateManifestResponse};
use plinth_tests::{Backend, Credentials, Sandbox, assert_refusal, violated_fields};
use registry_server::manifest::document;
use tonic::Code;

crate::on_both_backends!(
    the_example_manifest_passes_the_dry_run,
    a_broken_manifest_answers_every_violation_with_its_field,
    the_dry_run_needs_credentials,
    a_dry_run_without_a_manifest_is_a_field_violation,
);

fn example() -> plinth_api::registry::v1::ModuleManifest {
    document::parse(include_str!(
        "../../../registry-server/example-manifest.yaml"
    ))
    .expect("the example parses")
}

async fn dry_run(
    sandbox: &Sandbox,
    credentials: Credentials,
    request: ValidateManifestRequest,
) -> Result<ValidateManifestResponse, tonic::Status> {
    let mut clients = sandbox.clients_with(credentials).await;
    clients
        .registry
        .validate_manifest(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn the_example_manifest_passes_the_dry_run(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let request = ValidateManifestRequest {
        manifest: Some(example()),
    };

    let answer = dry_run(
        &sandbox,
        Credentials::api_key(&sandbox.operator_key),
        request,
    )
    .await
    .unwrap();

    assert!(answer.valid);
    assert_eq!(answer.violations, []);
}

async fn a_broken_manifest_answers_every_violation_with_its_field(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut manifest = example();
    manifest.id = "registry".into();
    manifest.permissions.truncate(1);
    manifest.dependencies[0].version_requirement = "two or later".into();
    manifest.callbacks[0].callback = 42;

    let answer = dry_run(
        &sandbox,
        Credentials::api_key(&sandbox.operator_key),
        ValidateManifestRequest {
            manifest: Some(manifest),
        },
    )
    .await
    .unwrap();

    assert!(!answer.valid);
    let fields: Vec<&str> = answer
        .violations
        .iter()
        .map(|violation| violation.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "dependencies[0].version_requirement",
            // Outside the (reserved) id's namespace: declared nothing, so
            // the grants and menu permissions naming it break too.
            "permissions[0].name",
            "default_roles[0].grants[0]",
            "default_roles[1].grants[0]",
            "menu_items[0].required_permission",
            "menu_items[1].required_permission",
            "callbacks[0].callback",
        ]
    );
}

async fn the_dry_run_needs_credentials(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let request = ValidateManifestRequest {
        manifest: Some(example()),
    };

    let status = dry_run(&sandbox, Credentials::anonymous(), request)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn a_dry_run_without_a_manifest_is_a_field_violation(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    let status = dry_run(
        &sandbox,
        Credentials::api_key(&sandbox.operator_key),
        ValidateManifestRequest { manifest: None },
    )
    .await
    .unwrap_err();

    assert_refusal(
        &status,
        Code::InvalidArgument,
        "ERROR_REASON_INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["manifest"]);
}
