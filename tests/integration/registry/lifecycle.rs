//! The catalog's lifecycle over gRPC: listing, metadata, activation,
//! deactivation and deletion, and who may manage it.

use plinth_api::registry::v1::{
    ActivateModuleRequest, DeactivateModuleRequest, DeleteModuleRequest, GetModuleRequest,
    ListModulesRequest, ModuleManifest, ModuleStatus, RegisterModuleRequest, UpdateModuleRequest,
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{
    Backend, Clients, Sandbox, assert_refusal, create_key, error_metadata, violated_fields,
};
use tonic::Code;

use crate::rbac::tenant;

crate::on_both_backends!(
    listings_filter_by_status_category_and_text_in_pages,
    activation_needs_active_dependencies_and_deactivation_keeps_them,
    a_deleted_module_leaves_the_catalog_and_keeps_its_id,
    managing_the_catalog_needs_plinth_module_manage,
    metadata_changes_and_their_bad_fields,
    bad_lifecycle_requests_are_refused,
);

/// A module 1.0.0 of `category` requiring each of `requires`.
fn manifest(id: &str, category: &str, requires: &[&str]) -> ModuleManifest {
    ModuleManifest {
        category: category.to_owned(),
        ..super::manifest(id, "1.0.0", requires)
    }
}

async fn registered(clients: &mut Clients, manifests: &[ModuleManifest]) {
    for manifest in manifests {
        super::register(clients, manifest.clone())
            .await
            .expect("module registered");
    }
}

async fn activate(clients: &mut Clients, module_id: &str) -> Result<(), tonic::Status> {
    clients
        .registry
        .activate_module(ActivateModuleRequest {
            module_id: module_id.to_owned(),
            version: String::new(),
        })
        .await
        .map(drop)
}

async fn deactivate(clients: &mut Clients, module_id: &str) -> Result<(), tonic::Status> {
    clients
        .registry
        .deactivate_module(DeactivateModuleRequest {
            module_id: module_id.to_owned(),
        })
        .await
        .map(drop)
}

async fn delete(clients: &mut Clients, module_id: &str) -> Result<(), tonic::Status> {
    clients
        .registry
        .delete_module(DeleteModuleRequest {
            module_id: module_id.to_owned(),
        })
        .await
        .map(drop)
}

async fn listed(clients: &mut Clients, request: ListModulesRequest) -> (Vec<String>, String) {
    let page = clients
        .registry
        .list_modules(request)
        .await
        .expect("modules listed")
        .into_inner();
    let ids = page
        .modules
        .into_iter()
        .map(|module| module.module_id)
        .collect();
    (ids, page.next_page_token)
}

async fn listings_filter_by_status_category_and_text_in_pages(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    registered(
        &mut operator,
        &[
            manifest("crm", "sales", &[]),
            manifest("finance", "accounting", &[]),
            manifest("payroll", "accounting", &[]),
        ],
    )
    .await;
    activate(&mut operator, "finance").await.unwrap();

    let accounting = listed(
        &mut operator,
        ListModulesRequest {
            category: "accounting".to_owned(),
            ..Default::default()
        },
    )
    .await;
    let active = listed(
        &mut operator,
        ListModulesRequest {
            status: ModuleStatus::Active.into(),
            ..Default::default()
        },
    )
    .await;
    let found = listed(
        &mut operator,
        ListModulesRequest {
            query: "ABOUT PAY".to_owned(),
            ..Default::default()
        },
    )
    .await;
    let first = listed(
        &mut operator,
        ListModulesRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    let second = listed(
        &mut operator,
        ListModulesRequest {
            page_size: 2,
            page_token: first.1.clone(),
            ..Default::default()
        },
    )
    .await;

    assert_eq!(accounting.0, ["finance", "payroll"]);
    assert_eq!(active.0, ["finance"]);
    assert_eq!(found.0, ["payroll"]);
    assert_eq!(first.0, ["crm", "finance"]);
    assert_eq!(second, (vec!["payroll".to_owned()], String::new()));
    for (request, field) in [
        (
            ListModulesRequest {
                status: 9,
                ..Default::default()
            },
            "status",
        ),
        (
            ListModulesRequest {
                category: "Sales!".to_owned(),
                ..Default::default()
            },
            "category",
        ),
        (
            ListModulesRequest {
                query: "x".repeat(101),
                ..Default::default()
            },
            "query",
        ),
        (
            ListModulesRequest {
                page_token: "zz".to_owned(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListModulesRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
    ] {
        let refused = operator.registry.list_modules(request).await.unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }
}

async fn activation_needs_active_dependencies_and_deactivation_keeps_them(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    registered(
        &mut operator,
        &[manifest("alpha", "", &[]), manifest("beta", "", &["alpha"])],
    )
    .await;

    let before_alpha = activate(&mut operator, "beta").await.unwrap_err();
    activate(&mut operator, "alpha").await.unwrap();
    activate(&mut operator, "beta").await.unwrap();
    let still_needed = deactivate(&mut operator, "alpha").await.unwrap_err();
    deactivate(&mut operator, "beta").await.unwrap();
    let freed = deactivate(&mut operator, "alpha").await;

    assert_refusal(
        &before_alpha,
        Code::FailedPrecondition,
        "ERROR_REASON_DEPENDENCY_UNSATISFIED",
    );
    assert_refusal(
        &still_needed,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_HAS_DEPENDENTS",
    );
    assert_eq!(
        error_metadata(&still_needed, "dependents").as_deref(),
        Some("beta")
    );
    assert!(freed.is_ok(), "{freed:?}");
    let alpha = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "alpha".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .module
        .unwrap();
    assert_eq!(alpha.status(), ModuleStatus::Inactive);
    assert_eq!(alpha.active_version, "1.0.0");
}

async fn a_deleted_module_leaves_the_catalog_and_keeps_its_id(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    registered(
        &mut operator,
        &[manifest("alpha", "", &[]), manifest("beta", "", &["alpha"])],
    )
    .await;
    activate(&mut operator, "alpha").await.unwrap();

    let active = delete(&mut operator, "alpha").await.unwrap_err();
    deactivate(&mut operator, "alpha").await.unwrap();
    let required = delete(&mut operator, "alpha").await.unwrap_err();
    delete(&mut operator, "beta").await.unwrap();
    let mut again = manifest("beta", "", &[]);
    again.version = "2.0.0".to_owned();
    let reregistered = operator
        .registry
        .register_module(RegisterModuleRequest {
            manifest: Some(again),
        })
        .await
        .unwrap_err();
    let read = operator
        .registry
        .get_module(GetModuleRequest {
            module_id: "beta".to_owned(),
        })
        .await
        .unwrap_err();

    assert_eq!(active.code(), Code::FailedPrecondition);
    assert_refusal(
        &required,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_HAS_DEPENDENTS",
    );
    assert_eq!(reregistered.code(), Code::FailedPrecondition);
    assert_eq!(read.code(), Code::NotFound);
    let (ids, _) = listed(&mut operator, ListModulesRequest::default()).await;
    assert_eq!(ids, ["alpha"]);
    delete(&mut operator, "alpha").await.unwrap();
}

async fn managing_the_catalog_needs_plinth_module_manage(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    registered(&mut operator, &[manifest("crm", "", &[])]).await;
    let module_key = create_key(
        &sandbox,
        NewApiKey {
            name: "crm".to_owned(),
            module_id: Some("crm".to_owned()),
            ..NewApiKey::default()
        },
    )
    .await
    .secret;
    let mut own_module = sandbox.clients(&module_key).await;
    let mut acme = tenant(&sandbox, "acme").await;

    for clients in [&mut own_module, &mut acme.admin.clients] {
        let refusals = [
            activate(clients, "crm").await.unwrap_err(),
            deactivate(clients, "crm").await.unwrap_err(),
            delete(clients, "crm").await.unwrap_err(),
            clients
                .registry
                .update_module(UpdateModuleRequest {
                    module_id: "crm".to_owned(),
                    display_name: Some("Mine now".to_owned()),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        ];
        for refused in refusals {
            assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        }
    }
    let read = own_module
        .registry
        .get_module(GetModuleRequest {
            module_id: "crm".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.module.unwrap().display_name, "crm module");
}

async fn metadata_changes_and_their_bad_fields(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    registered(&mut operator, &[manifest("crm", "sales", &[])]).await;
    let update =
        |display_name: Option<&str>, category: Option<&str>, description: Option<String>| {
            UpdateModuleRequest {
                module_id: "crm".to_owned(),
                display_name: display_name.map(str::to_owned),
                category: category.map(str::to_owned),
                description,
            }
        };

    let changed = operator
        .registry
        .update_module(update(Some(" Customers "), Some(""), None))
        .await
        .unwrap()
        .into_inner()
        .module
        .unwrap();

    assert_eq!(
        (
            changed.display_name.as_str(),
            changed.category.as_str(),
            changed.description.as_str()
        ),
        ("Customers", "", "All about crm")
    );
    for (request, field) in [
        (update(Some(" "), None, None), "display_name"),
        (update(Some(&"x".repeat(201)), None, None), "display_name"),
        (update(None, Some("Sales"), None), "category"),
        (update(None, None, Some("x".repeat(2001))), "description"),
        (
            update(None, None, Some("bell\u{7}".to_owned())),
            "description",
        ),
    ] {
        let refused = operator.registry.update_module(request).await.unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }
    let unknown = operator
        .registry
        .update_module(UpdateModuleRequest {
            module_id: "nothing".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

async fn bad_lifecycle_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    registered(&mut operator, &[manifest("crm", "", &[])]).await;
    let activation = |version: &str| ActivateModuleRequest {
        module_id: "crm".to_owned(),
        version: version.to_owned(),
    };

    let malformed = operator
        .registry
        .activate_module(activation("1.x"))
        .await
        .unwrap_err();
    let oversized = operator
        .registry
        .activate_module(activation(&"1".repeat(101)))
        .await
        .unwrap_err();
    let unregistered = operator
        .registry
        .activate_module(activation("9.9.9"))
        .await
        .unwrap_err();
    let bad_ids = [
        activate(&mut operator, "Crm").await.unwrap_err(),
        deactivate(&mut operator, "crm;").await.unwrap_err(),
        delete(&mut operator, "").await.unwrap_err(),
    ];

    assert_eq!(violated_fields(&malformed), ["version"]);
    assert_eq!(violated_fields(&oversized), ["version"]);
    assert_eq!(unregistered.code(), Code::NotFound);
    for refused in bad_ids {
        assert_eq!(violated_fields(&refused), ["module_id"]);
    }
}
