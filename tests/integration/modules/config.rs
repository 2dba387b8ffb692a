//! The configuration resolver: merging the layers, validating every scope
//! a write affects, etags, provenance, secrets, and consistency across
//! replicas.

use plinth_api::{
    registry::v1::ModuleManifest,
    tenant::v1::{
        ConfigSource, Consistency, GetModuleConfigRequest, ResolveModuleConfigRequest,
        ResolveModuleConfigResponse, SetModuleConfigRequest, SetModuleConfigResponse,
        consistency::Requirement, set_module_config_request::Change,
    },
};
use plinth_tests::{Backend, Clients, Sandbox, assert_refusal, error_metadata, violated_fields};
use serde_json::json;
use tonic::Code;

use super::{callbacks::struct_of, company, enable, in_catalog, module};
use crate::rbac::tenant;

crate::on_both_backends!(
    layers_merge_as_json_merge_patch,
    key_order_and_64_bit_integers_survive,
    each_layer_is_validated_against_the_schema_with_pointers,
    a_tenant_write_revalidates_each_companys_result,
    stale_etags_are_refused,
    provenance_names_the_layer_of_each_leaf,
    secrets_are_sealed_at_rest_and_kept_out_of_audit_details,
    configuration_needs_the_module_enabled_and_the_companys_tenant,
    bad_configuration_requests_are_refused,
    a_token_reads_a_write_made_on_another_replica,
);

/// A module whose schema bounds `limits.max` and types `invoice`.
fn billing() -> ModuleManifest {
    ModuleManifest {
        config_schema: Some(struct_of(json!({
            "type": "object",
            "properties": {
                "invoice": {
                    "type": "object",
                    "properties": {
                        "prefix": {"type": "string"},
                        "digits": {"type": "integer", "minimum": 1, "maximum": 12}
                    }
                },
                "limits": {
                    "type": "object",
                    "properties": {"max": {"type": "integer", "maximum": 100}}
                },
                "channels": {"type": "array", "items": {"type": "string"}},
                "smtp": {
                    "type": "object",
                    "properties": {
                        "host": {"type": "string"},
                        "password": {"type": "string", "x-plinth-secret": true}
                    }
                }
            }
        }))),
        config_defaults: Some(struct_of(json!({
            "invoice": {"prefix": "INV", "digits": 6},
            "limits": {"max": 10},
            "channels": ["email", "sms"]
        }))),
        ..module("billing", &[])
    }
}

async fn set(
    clients: &mut Clients,
    tenant_id: &str,
    company_id: &str,
    change: Change,
    etag: &str,
) -> Result<SetModuleConfigResponse, tonic::Status> {
    clients
        .tenants
        .set_module_config(SetModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: tenant_id.to_owned(),
            company_id: company_id.to_owned(),
            change: Some(change),
            etag: etag.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn patch(value: serde_json::Value) -> Change {
    Change::MergePatch(value.to_string())
}

async fn resolved(
    clients: &mut Clients,
    tenant_id: &str,
    company_id: &str,
) -> ResolveModuleConfigResponse {
    clients
        .tenants
        .resolve_module_config(ResolveModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: tenant_id.to_owned(),
            company_id: company_id.to_owned(),
            include_provenance: true,
            consistency: Some(super::fully_consistent()),
        })
        .await
        .expect("configuration resolved")
        .into_inner()
}

fn document(response: &ResolveModuleConfigResponse) -> serde_json::Value {
    serde_json::from_str(&response.resolution.as_ref().unwrap().document).unwrap()
}

/// A tenant with billing enabled and a company; (tenant, company ids).
async fn billing_tenant(sandbox: &Sandbox, code: &str) -> (crate::rbac::Tenant, String) {
    let mut acme = tenant(sandbox, code).await;
    let north = company(&mut acme.admin.clients, &acme.id, "north").await;
    enable(&mut acme.admin.clients, &acme.id, &["billing"], false)
        .await
        .unwrap();
    (acme, north)
}

async fn layers_merge_as_json_merge_patch(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, north) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;

    set(
        clients,
        &acme.id,
        "",
        patch(json!({"invoice": {"prefix": "ACME"}, "channels": ["fax"]})),
        "",
    )
    .await
    .unwrap();
    // A patch's null deletes from the layer; a layer's own null deletes
    // from the layers below.
    set(
        clients,
        &acme.id,
        &north,
        patch(json!({"limits": {"max": 50}, "gone": null})),
        "",
    )
    .await
    .unwrap();
    let north_layer = clients
        .tenants
        .get_module_config(GetModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: acme.id.clone(),
            company_id: north.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    set(
        clients,
        &acme.id,
        &north,
        Change::Document(r#"{"limits":{"max":50},"invoice":{"digits":null}}"#.to_owned()),
        &north_layer.etag,
    )
    .await
    .unwrap();

    assert_eq!(
        document(&resolved(clients, &acme.id, "").await),
        json!({"invoice": {"prefix": "ACME", "digits": 6}, "limits": {"max": 10}, "channels": ["fax"]})
    );
    assert_eq!(
        document(&resolved(clients, &acme.id, &north).await),
        json!({"invoice": {"prefix": "ACME"}, "limits": {"max": 50}, "channels": ["fax"]}),
        "null deletes, objects merge, arrays replace"
    );
    assert_eq!(north_layer.document, r#"{"limits":{"max":50}}"#);
}

async fn key_order_and_64_bit_integers_survive(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[module("billing", &[])]).await;
    let mut operator = sandbox.operator().await;
    crate::registry::register(
        &mut operator,
        ModuleManifest {
            version: "1.1.0".to_owned(),
            config_schema: Some(struct_of(json!({"type": "object"}))),
            ..module("billing", &[])
        },
    )
    .await
    .unwrap();
    let (mut acme, _) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    clients
        .tenants
        .enable_modules(plinth_api::tenant::v1::EnableModulesRequest {
            tenant_id: acme.id.clone(),
            modules: vec![plinth_api::tenant::v1::ModuleEnablement {
                module_id: "billing".to_owned(),
                version_pin: "1.1.0".to_owned(),
                ..Default::default()
            }],
            enable_dependencies: false,
        })
        .await
        .unwrap();
    let text = r#"{"zeta":18446744073709551615,"alpha":{"min":-9223372036854775808,"b":1}}"#;
    let current = clients
        .tenants
        .get_module_config(GetModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: acme.id.clone(),
            company_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    let written = set(
        clients,
        &acme.id,
        "",
        Change::Document(text.to_owned()),
        &current.etag,
    )
    .await
    .unwrap();

    assert_eq!(current.document, "{}");
    assert_eq!(written.document, text);
    let resolution = resolved(clients, &acme.id, "").await.resolution.unwrap();
    assert_eq!(resolution.document, text);
    assert_eq!(resolution.module_version, "1.1.0");
}

async fn each_layer_is_validated_against_the_schema_with_pointers(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, north) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;

    let tenant_layer = set(
        clients,
        &acme.id,
        "",
        patch(json!({"invoice": {"digits": 40}, "limits": {"max": "many"}})),
        "",
    )
    .await
    .unwrap_err();
    let company_layer = set(
        clients,
        &acme.id,
        &north,
        patch(json!({"channels": [7]})),
        "",
    )
    .await
    .unwrap_err();

    assert_refusal(
        &tenant_layer,
        Code::InvalidArgument,
        "ERROR_REASON_CONFIG_SCHEMA_VIOLATION",
    );
    let mut fields = violated_fields(&tenant_layer);
    fields.sort();
    assert_eq!(fields, ["/invoice/digits", "/limits/max"]);
    assert!(
        !format!("{tenant_layer:?}").contains("many"),
        "values are never echoed"
    );
    assert_refusal(
        &company_layer,
        Code::InvalidArgument,
        "ERROR_REASON_CONFIG_SCHEMA_VIOLATION",
    );
    assert_eq!(violated_fields(&company_layer), ["/channels/0"]);
    assert_eq!(
        error_metadata(&company_layer, "module_id").as_deref(),
        Some("billing")
    );
}

async fn a_tenant_write_revalidates_each_companys_result(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let schema_with_dependency = ModuleManifest {
        config_schema: Some(struct_of(json!({
            "type": "object",
            "properties": {"mode": {"enum": ["simple", "strict"]}, "rounding": {"type": "integer"}},
            "if": {"properties": {"mode": {"const": "strict"}}, "required": ["mode"]},
            "then": {"required": ["rounding"]}
        }))),
        ..module("billing", &[])
    };
    in_catalog(&sandbox, &[schema_with_dependency]).await;
    let (mut acme, north) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    set(clients, &acme.id, "", patch(json!({"rounding": 2})), "")
        .await
        .unwrap();
    set(
        clients,
        &acme.id,
        &north,
        patch(json!({"mode": "strict"})),
        "",
    )
    .await
    .unwrap();

    let etag = clients_layer_etag(clients, &acme.id).await;
    let breaks_north = set(
        clients,
        &acme.id,
        "",
        Change::Document("{}".to_owned()),
        &etag,
    )
    .await
    .unwrap_err();

    assert_refusal(
        &breaks_north,
        Code::InvalidArgument,
        "ERROR_REASON_CONFIG_SCHEMA_VIOLATION",
    );
    assert_eq!(
        violated_fields(&breaks_north),
        [format!("companies/{north}")]
    );
    assert_eq!(
        document(&resolved(clients, &acme.id, &north).await),
        json!({"rounding": 2, "mode": "strict"})
    );
}

async fn clients_layer_etag(clients: &mut Clients, tenant_id: &str) -> String {
    clients
        .tenants
        .get_module_config(GetModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: tenant_id.to_owned(),
            company_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .etag
}

async fn stale_etags_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, _) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let first = clients_layer_etag(clients, &acme.id).await;
    let written = set(
        clients,
        &acme.id,
        "",
        Change::Document(r#"{"limits":{"max":20}}"#.to_owned()),
        &first,
    )
    .await
    .unwrap();

    let stale_replace = set(
        clients,
        &acme.id,
        "",
        Change::Document("{}".to_owned()),
        &first,
    )
    .await
    .unwrap_err();
    let stale_patch = set(
        clients,
        &acme.id,
        "",
        patch(json!({"limits": {"max": 1}})),
        &first,
    )
    .await
    .unwrap_err();
    let current_patch = set(
        clients,
        &acme.id,
        "",
        patch(json!({"limits": {"max": 30}})),
        &written.etag,
    )
    .await;

    for stale in [&stale_replace, &stale_patch] {
        assert_refusal(stale, Code::Aborted, "ERROR_REASON_ETAG_MISMATCH");
        assert_eq!(
            error_metadata(stale, "current_etag").as_deref(),
            Some(written.etag.as_str())
        );
    }
    assert!(current_patch.is_ok(), "{current_patch:?}");
    assert_eq!(
        document(&resolved(clients, &acme.id, "").await)["limits"],
        json!({"max": 30})
    );
}

async fn provenance_names_the_layer_of_each_leaf(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, north) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    set(
        clients,
        &acme.id,
        "",
        patch(json!({"invoice": {"prefix": "ACME"}})),
        "",
    )
    .await
    .unwrap();
    set(
        clients,
        &acme.id,
        &north,
        patch(json!({"limits": {"max": 99}})),
        "",
    )
    .await
    .unwrap();

    let resolution = resolved(clients, &acme.id, &north)
        .await
        .resolution
        .unwrap();

    let provenance: Vec<(String, ConfigSource)> = resolution
        .provenance
        .iter()
        .map(|leaf| (leaf.path.clone(), leaf.source()))
        .collect();
    assert_eq!(
        provenance,
        // Manifest defaults (a protobuf Struct) come in key order.
        [
            ("/channels".to_owned(), ConfigSource::ModuleDefault),
            ("/invoice/digits".to_owned(), ConfigSource::ModuleDefault),
            ("/invoice/prefix".to_owned(), ConfigSource::Tenant),
            ("/limits/max".to_owned(), ConfigSource::Company),
        ]
    );
}

async fn secrets_are_sealed_at_rest_and_kept_out_of_audit_details(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, _) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let secret = "correct-horse-battery-staple";

    set(
        clients,
        &acme.id,
        "",
        patch(json!({"smtp": {"host": "mail.acme", "password": secret}})),
        "",
    )
    .await
    .unwrap();

    let resolution = document(&resolved(clients, &acme.id, "").await);
    assert_eq!(resolution["smtp"]["password"], json!(secret));
    let store = sandbox.database.open_store().await;
    let stored = store
        .module_configs
        .layer(acme.id.parse().unwrap(), "billing", None)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.document.contains(secret), "{}", stored.document);
    assert!(stored.document.contains("mail.acme"));
    let events = store.audit.read_chain(&acme.id, 1, 1000).await.unwrap();
    let written = events
        .iter()
        .find(|event| event.action == "tenant.module_config.updated")
        .expect("the write is audited");
    assert!(!written.details.contains(secret), "{}", written.details);
    assert!(
        written.details.contains("[redacted]"),
        "{}",
        written.details
    );
}

async fn configuration_needs_the_module_enabled_and_the_companys_tenant(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, _) = billing_tenant(&sandbox, "acme").await;
    let mut globex = tenant(&sandbox, "globex").await;
    let theirs = company(&mut globex.admin.clients, &globex.id, "theirs").await;

    let not_enabled = set(
        &mut globex.admin.clients,
        &globex.id,
        "",
        patch(json!({})),
        "",
    )
    .await
    .unwrap_err();
    let not_resolvable = globex
        .admin
        .clients
        .tenants
        .resolve_module_config(ResolveModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: globex.id.clone(),
            ..ResolveModuleConfigRequest::default()
        })
        .await
        .unwrap_err();
    let foreign_company = set(
        &mut acme.admin.clients,
        &acme.id,
        &theirs,
        patch(json!({})),
        "",
    )
    .await
    .unwrap_err();
    let foreign_tenant = set(
        &mut acme.admin.clients,
        &globex.id,
        "",
        patch(json!({})),
        "",
    )
    .await
    .unwrap_err();

    assert_refusal(
        &not_enabled,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_NOT_ENABLED",
    );
    assert_refusal(
        &not_resolvable,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_NOT_ENABLED",
    );
    assert_refusal(&foreign_company, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_refusal(&foreign_tenant, Code::NotFound, "ERROR_REASON_NOT_FOUND");
}

async fn bad_configuration_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[billing()]).await;
    let (mut acme, _) = billing_tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
    let huge = format!("{{\"a\":\"{}\"}}", "x".repeat(300 * 1024));
    let cases: Vec<(Option<Change>, &str, &str)> = vec![
        (None, "", "change"),
        (Some(Change::Document("{}".to_owned())), "", "etag"),
        (
            Some(Change::Document("{}".to_owned())),
            "not an etag!",
            "etag",
        ),
        (Some(patch(json!([1]))), "", "merge_patch"),
        (
            Some(Change::MergePatch("not json".to_owned())),
            "",
            "merge_patch",
        ),
        (Some(Change::MergePatch(deep)), "", "merge_patch"),
        (Some(Change::MergePatch(huge)), "", "merge_patch"),
        (
            Some(patch(json!({"x": {"$plinth_sealed": "AAAA"}}))),
            "",
            "merge_patch",
        ),
    ];
    for (change, etag, field) in cases {
        let status = clients
            .tenants
            .set_module_config(SetModuleConfigRequest {
                module_id: "billing".to_owned(),
                tenant_id: acme.id.clone(),
                company_id: String::new(),
                change,
                etag: etag.to_owned(),
            })
            .await
            .unwrap_err();
        assert_refusal(
            &status,
            Code::InvalidArgument,
            "ERROR_REASON_INVALID_ARGUMENT",
        );
        assert!(
            violated_fields(&status).contains(&field.to_owned()),
            "{field}: {status:?}"
        );
        assert!(status.message().len() < 1000);
    }
    let bad_ids = clients
        .tenants
        .resolve_module_config(ResolveModuleConfigRequest {
            module_id: "Billing".to_owned(),
            tenant_id: "x".to_owned(),
            company_id: "y".to_owned(),
            include_provenance: false,
            consistency: Some(Consistency {
                requirement: Some(Requirement::AtLeastAsFresh("nope".to_owned())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad_ids),
        [
            "module_id",
            "tenant_id",
            "company_id",
            "consistency.at_least_as_fresh"
        ]
    );
}

async fn a_token_reads_a_write_made_on_another_replica(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let replica = sandbox.replica().await;
    in_catalog(&sandbox, &[billing()]).await;
    let (acme, _) = billing_tenant(&sandbox, "acme").await;
    let mut on_replica = replica
        .clients_with(plinth_tests::Credentials::bearer(&acme.admin.access_token))
        .await;
    let mut on_first = sandbox
        .clients_with(plinth_tests::Credentials::bearer(&acme.admin.access_token))
        .await;
    for round in 0..5 {
        let ask = |consistency: Option<Consistency>| ResolveModuleConfigRequest {
            module_id: "billing".to_owned(),
            tenant_id: acme.id.clone(),
            company_id: String::new(),
            include_provenance: false,
            consistency,
        };
        // The replica caches the resolution before the write.
        on_replica
            .tenants
            .resolve_module_config(ask(None))
            .await
            .unwrap();
        let written = set(
            &mut on_first,
            &acme.id,
            "",
            patch(json!({"limits": {"max": round}})),
            "",
        )
        .await
        .unwrap();

        let seen = on_replica
            .tenants
            .resolve_module_config(ask(Some(Consistency {
                requirement: Some(Requirement::AtLeastAsFresh(written.consistency_token)),
            })))
            .await
            .unwrap()
            .into_inner();

        let seen: serde_json::Value =
            serde_json::from_str(&seen.resolution.unwrap().document).unwrap();
        assert_eq!(seen["limits"]["max"], json!(round));
    }
}
