//! Registering module versions and reading the catalog over gRPC.

use plinth_api::{
    rbac::v1::ListPermissionsRequest,
    registry::v1::{
        GetModuleRequest, ListModuleVersionsRequest, ModuleManifest, ModuleStatus,
        RegisterModuleRequest, ValidateManifestRequest,
    },
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{
    Backend, Credentials, Sandbox, assert_refusal, create_key, error_metadata, violated_fields,
};
use registry_server::manifest::document;
use tonic::Code;

use super::{manifest, register};
use crate::rbac::tenant;

crate::on_both_backends!(
    a_registered_version_reads_back_and_declares_its_permissions,
    the_same_version_again_is_a_retry_and_other_content_is_refused,
    a_dependency_cycle_is_refused_naming_its_path,
    unsatisfiable_requirements_are_refused,
    module_keys_publish_only_their_own_module,
    versions_list_newest_first_in_pages,
    bad_catalog_requests_are_field_violations,
);

fn example() -> ModuleManifest {
    document::parse(include_str!(
        "../../../registry-server/example-manifest.yaml"
    ))
    .expect("the example parses")
}

async fn a_registered_version_reads_back_and_declares_its_permissions(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    let registered = register(&mut operator, example()).await.unwrap();
    let read = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "inventory".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let declared = operator
        .rbac
        .list_permissions(ListPermissionsRequest {
            module_id: "inventory".to_owned(),
            ..ListPermissionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();

    let module = registered.module.unwrap();
    assert_eq!(module.status(), ModuleStatus::Inactive);
    assert_eq!(
        (
            module.latest_version.as_str(),
            module.active_version.as_str()
        ),
        ("1.4.0", "")
    );
    assert_eq!(read.manifest.unwrap(), example());
    let names: Vec<&str> = declared
        .permissions
        .iter()
        .map(|permission| permission.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "inventory:item:read",
            "inventory:item:write",
            "inventory:stock:count"
        ]
    );
}

async fn the_same_version_again_is_a_retry_and_other_content_is_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let first = register(&mut operator, example()).await.unwrap();

    let again = register(&mut operator, example()).await.unwrap();
    let mut changed = example();
    changed.description = "Something else".to_owned();
    let refused = register(&mut operator, changed).await.unwrap_err();

    assert_eq!(
        again.version.unwrap().registered_at,
        first.version.unwrap().registered_at
    );
    assert_refusal(
        &refused,
        Code::AlreadyExists,
        "ERROR_REASON_MODULE_VERSION_IMMUTABLE",
    );
    let read = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "inventory".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.manifest.unwrap(), example());
}

async fn a_dependency_cycle_is_refused_naming_its_path(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    register(&mut operator, manifest("alpha", "1.0.0", &[]))
        .await
        .unwrap();
    register(&mut operator, manifest("beta", "1.0.0", &["alpha"]))
        .await
        .unwrap();
    register(&mut operator, manifest("gamma", "1.0.0", &["beta"]))
        .await
        .unwrap();
    let closing = manifest("alpha", "2.0.0", &["gamma"]);

    let dry_run = operator
        .registry
        .validate_manifest(ValidateManifestRequest {
            manifest: Some(closing.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let refused = register(&mut operator, closing).await.unwrap_err();

    assert!(!dry_run.valid);
    assert_eq!(dry_run.violations[0].field, "dependencies[0].module_id");
    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_DEPENDENCY_CYCLE",
    );
    assert_eq!(
        error_metadata(&refused, "path").as_deref(),
        Some("alpha -> gamma -> beta -> alpha")
    );
}

async fn unsatisfiable_requirements_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let mut needs_finance_two = manifest("crm", "1.0.0", &["finance"]);
    needs_finance_two.dependencies[0].version_requirement = ">=2".to_owned();

    let missing = register(&mut operator, needs_finance_two.clone())
        .await
        .unwrap_err();
    register(&mut operator, manifest("finance", "1.5.0", &[]))
        .await
        .unwrap();
    let too_old = register(&mut operator, needs_finance_two.clone())
        .await
        .unwrap_err();
    register(&mut operator, manifest("finance", "2.0.0", &[]))
        .await
        .unwrap();
    let met = register(&mut operator, needs_finance_two).await;
    let mut future_platform = manifest("billing", "1.0.0", &[]);
    future_platform.platform_requirement = ">=99".to_owned();
    let platform = register(&mut operator, future_platform).await.unwrap_err();

    for refused in [&missing, &too_old] {
        assert_refusal(
            refused,
            Code::FailedPrecondition,
            "ERROR_REASON_DEPENDENCY_UNSATISFIED",
        );
        assert_eq!(
            error_metadata(refused, "module_id").as_deref(),
            Some("finance")
        );
    }
    assert!(met.is_ok(), "{met:?}");
    assert_refusal(
        &platform,
        Code::InvalidArgument,
        "ERROR_REASON_INVALID_MANIFEST",
    );
    assert_eq!(violated_fields(&platform), ["platform_requirement"]);
}

async fn module_keys_publish_only_their_own_module(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let key_of = |module_id: &str| NewApiKey {
        name: module_id.to_owned(),
        module_id: Some(module_id.to_owned()),
        ..NewApiKey::default()
    };
    let inventory_key = create_key(&sandbox, key_of("inventory")).await.secret;
    let finance_key = create_key(&sandbox, key_of("finance")).await.secret;
    let mut acme = tenant(&sandbox, "acme").await;

    let own = register(&mut sandbox.clients(&inventory_key).await, example()).await;
    let mut next = example();
    next.version = "1.5.0".to_owned();
    let other = register(&mut sandbox.clients(&finance_key).await, next.clone()).await;
    let tenant_admin = register(&mut acme.admin.clients, next.clone()).await;
    let anonymous = register(
        &mut sandbox.clients_with(Credentials::anonymous()).await,
        next,
    )
    .await;

    assert!(own.is_ok(), "{own:?}");
    assert_refusal(
        &other.unwrap_err(),
        Code::PermissionDenied,
        "ERROR_REASON_MODULE_NAMESPACE_VIOLATION",
    );
    assert_eq!(tenant_admin.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
}

async fn versions_list_newest_first_in_pages(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        register(&mut operator, manifest("crm", version, &[]))
            .await
            .unwrap();
    }
    let page = |page_token: String| ListModuleVersionsRequest {
        module_id: "crm".to_owned(),
        page_size: 2,
        page_token,
    };

    let first = operator
        .registry
        .list_module_versions(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let second = operator
        .registry
        .list_module_versions(page(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    let module = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "crm".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();

    let versions: Vec<&str> = first
        .versions
        .iter()
        .chain(&second.versions)
        .map(|version| version.version.as_str())
        .collect();
    assert_eq!(versions, ["1.2.0", "1.1.0", "1.0.0"]);
    assert_eq!(second.next_page_token, "");
    assert_eq!(module.module.unwrap().latest_version, "1.2.0");
    assert_eq!(module.manifest.unwrap().version, "1.2.0");
}

async fn bad_catalog_requests_are_field_violations(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    register(&mut operator, manifest("crm", "1.0.0", &[]))
        .await
        .unwrap();
    let listing = |page_size: i32, page_token: &str| ListModuleVersionsRequest {
        module_id: "crm".to_owned(),
        page_size,
        page_token: page_token.to_owned(),
    };

    for (request, field) in [
        (listing(501, ""), "page_size"),
        (listing(-1, ""), "page_size"),
        (listing(0, "not hex"), "page_token"),
        (listing(0, &hex_of("12/1.0.0/".repeat(40))), "page_token"),
        (
            listing(0, &hex_of("999999999999999999999/1.0.0".to_owned())),
            "page_token",
        ),
    ] {
        let refused = operator
            .registry
            .list_module_versions(request)
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }
    let bad_id = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "CRM; DROP TABLE".to_owned(),
        })
        .await
        .unwrap_err();
    let unknown = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "nothing".to_owned(),
        })
        .await
        .unwrap_err();
    let no_manifest = operator
        .registry
        .register_module(RegisterModuleRequest { manifest: None })
        .await
        .unwrap_err();

    assert_eq!(violated_fields(&bad_id), ["module_id"]);
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(violated_fields(&no_manifest), ["manifest"]);
}

fn hex_of(text: String) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}
