//! Enabling and disabling modules for tenants, their dependencies, company
//! switches and features, default roles, provisioning, and the truth table
//! of IsModuleEnabled.

use plinth_api::{
    rbac::v1::{GetRoleRequest, RoleKey, get_role_request},
    registry::v1::{
        DeactivateModuleRequest, DeleteModuleRequest, ManifestPermission, ManifestRole,
        ModuleManifest,
    },
    tenant::v1::{
        Consistency, EnableModulesRequest, EnablementReason as Reason, IsModuleEnabledRequest,
        ListEnabledModulesRequest, ListTenantModulesRequest, ModuleEnablement,
        ReportModuleProvisioningRequest, SetCompanyModuleRequest, Switch, TenantModuleState,
        consistency::Requirement,
    },
};
use plinth_tests::{Backend, Sandbox, assert_refusal, error_metadata, module_key, violated_fields};
use tonic::Code;

use super::{company, disable, enable, ids, in_catalog, module, state_of, usable, with_features};
use crate::rbac::tenant;

crate::on_both_backends!(
    a_required_dependency_must_be_enabled_or_enabled_along,
    disabling_a_required_module_is_refused_unless_it_cascades,
    enabling_again_as_asked_changes_nothing,
    only_active_catalog_modules_and_registered_versions_are_enabled,
    a_pin_must_keep_the_dependents_requirements,
    is_module_enabled_follows_catalog_tenant_company_dependencies_and_features,
    a_company_cannot_have_a_module_its_tenant_lacks,
    enabled_lists_resolve_features_per_company,
    default_roles_are_created_on_the_first_enable_only,
    a_provisioning_module_is_usable_once_it_reports,
    a_module_enabled_by_a_tenant_cannot_be_deleted,
    members_read_modules_and_only_admins_change_them,
    bad_enablement_requests_are_refused,
);

async fn a_required_dependency_must_be_enabled_or_enabled_along(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[module("ledger", &[]), module("billing", &["ledger"])],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;

    let refused = enable(&mut acme.admin.clients, &acme.id, &["billing"], false)
        .await
        .unwrap_err();
    let enabled = enable(&mut acme.admin.clients, &acme.id, &["billing"], true)
        .await
        .unwrap();

    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_DEPENDENCY_UNSATISFIED",
    );
    assert_eq!(
        error_metadata(&refused, "module_id").as_deref(),
        Some("ledger")
    );
    assert_eq!(ids(&enabled.changed), ["ledger", "billing"]);
    assert!(
        enabled
            .changed
            .iter()
            .all(|module| module.state() == TenantModuleState::Enabled)
    );
    assert_eq!(
        usable(&mut acme.admin.clients, &acme.id, "", "billing", "").await,
        Reason::Enabled
    );
}

async fn disabling_a_required_module_is_refused_unless_it_cascades(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[
            module("ledger", &[]),
            module("billing", &["ledger"]),
            module("dunning", &["billing"]),
        ],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;
    enable(&mut acme.admin.clients, &acme.id, &["dunning"], true)
        .await
        .unwrap();

    let refused = disable(&mut acme.admin.clients, &acme.id, "ledger", false)
        .await
        .unwrap_err();
    let cascaded = disable(&mut acme.admin.clients, &acme.id, "ledger", true)
        .await
        .unwrap();

    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_HAS_DEPENDENTS",
    );
    assert_eq!(
        error_metadata(&refused, "dependents").as_deref(),
        Some("dunning,billing")
    );
    assert_eq!(ids(&cascaded.disabled), ["dunning", "billing", "ledger"]);
    for module_id in ["ledger", "billing", "dunning"] {
        assert_eq!(
            state_of(&mut acme.admin.clients, &acme.id, module_id).await,
            Some(TenantModuleState::Disabled)
        );
        assert_eq!(
            usable(&mut acme.admin.clients, &acme.id, "", module_id, "").await,
            Reason::NotEnabled
        );
    }
    let again = disable(&mut acme.admin.clients, &acme.id, "ledger", false)
        .await
        .unwrap();
    assert!(again.disabled.is_empty());
}

async fn enabling_again_as_asked_changes_nothing(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[module("ledger", &[])]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    enable(&mut acme.admin.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap();

    let again = enable(&mut acme.admin.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap();

    assert!(again.changed.is_empty());
    assert_eq!(again.unchanged_module_ids, ["ledger"]);
}

async fn only_active_catalog_modules_and_registered_versions_are_enabled(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[module("ledger", &[])]).await;
    let mut operator = sandbox.operator().await;
    crate::registry::register(&mut operator, module("drafts", &[]))
        .await
        .unwrap();
    let mut acme = tenant(&sandbox, "acme").await;

    let inactive = enable(&mut acme.admin.clients, &acme.id, &["drafts"], false)
        .await
        .unwrap_err();
    let unknown = enable(&mut acme.admin.clients, &acme.id, &["nowhere"], false)
        .await
        .unwrap_err();
    let unregistered_pin = acme
        .admin
        .clients
        .tenants
        .enable_modules(EnableModulesRequest {
            tenant_id: acme.id.clone(),
            modules: vec![ModuleEnablement {
                module_id: "ledger".to_owned(),
                version_pin: "9.9.9".to_owned(),
                ..ModuleEnablement::default()
            }],
            enable_dependencies: false,
        })
        .await
        .unwrap_err();

    assert_refusal(
        &inactive,
        Code::FailedPrecondition,
        "ERROR_REASON_FAILED_PRECONDITION",
    );
    assert_refusal(&unknown, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_refusal(&unregistered_pin, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_eq!(
        state_of(&mut acme.admin.clients, &acme.id, "ledger").await,
        None
    );
}

async fn a_pin_must_keep_the_dependents_requirements(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let old_ledger = ModuleManifest {
        version: "0.9.0".to_owned(),
        ..module("ledger", &[])
    };
    let mut operator = sandbox.operator().await;
    crate::registry::register(&mut operator, old_ledger)
        .await
        .unwrap();
    in_catalog(
        &sandbox,
        &[module("ledger", &[]), module("billing", &["ledger"])],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;
    enable(&mut acme.admin.clients, &acme.id, &["billing"], true)
        .await
        .unwrap();

    let pinned = acme
        .admin
        .clients
        .tenants
        .enable_modules(EnableModulesRequest {
            tenant_id: acme.id.clone(),
            modules: vec![ModuleEnablement {
                module_id: "ledger".to_owned(),
                version_pin: "0.9.0".to_owned(),
                ..ModuleEnablement::default()
            }],
            enable_dependencies: false,
        })
        .await
        .unwrap_err();

    assert_refusal(
        &pinned,
        Code::FailedPrecondition,
        "ERROR_REASON_DEPENDENCY_UNSATISFIED",
    );
    assert_eq!(
        error_metadata(&pinned, "version_requirement").as_deref(),
        Some(">=1")
    );
}

async fn is_module_enabled_follows_catalog_tenant_company_dependencies_and_features(
    backend: Backend,
) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[
            module("ledger", &[]),
            with_features(
                module("billing", &["ledger"]),
                &[("reminders", false), ("pdf", true)],
            ),
            module("spare", &[]),
        ],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let north = company(clients, &acme.id, "north").await;
    let south = company(clients, &acme.id, "south").await;
    enable(clients, &acme.id, &["billing"], true).await.unwrap();
    let switch = |company_id: &str, module_id: &str, switch: Switch, features: &[(&str, bool)]| {
        SetCompanyModuleRequest {
            company_id: company_id.to_owned(),
            module_id: module_id.to_owned(),
            switch: switch.into(),
            features: features
                .iter()
                .map(|(key, on)| ((*key).to_owned(), *on))
                .collect(),
        }
    };
    clients
        .tenants
        .set_company_module(switch(&north, "billing", Switch::Off, &[]))
        .await
        .unwrap();
    clients
        .tenants
        .set_company_module(switch(&south, "ledger", Switch::Off, &[]))
        .await
        .unwrap();
    let mut operator = sandbox.operator().await;

    let table = [
        ("", "billing", "", Reason::Enabled),
        ("", "spare", "", Reason::NotEnabled),
        ("", "unheard_of", "", Reason::ModuleInactive),
        (&north, "billing", "", Reason::SwitchedOff),
        (&north, "ledger", "", Reason::Enabled),
        (&south, "billing", "", Reason::Dependency),
        (&south, "ledger", "", Reason::SwitchedOff),
        ("", "billing", "pdf", Reason::Enabled),
        ("", "billing", "reminders", Reason::FeatureOff),
        ("", "billing", "no-such-feature", Reason::FeatureOff),
    ];
    for (company_id, module_id, feature, expected) in table {
        assert_eq!(
            usable(clients, &acme.id, company_id, module_id, feature).await,
            expected,
            "{company_id} {module_id} {feature}"
        );
    }
    operator
        .registry
        .deactivate_module(DeactivateModuleRequest {
            module_id: "spare".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        usable(clients, &acme.id, "", "spare", "").await,
        Reason::ModuleInactive
    );
    let blocked_by = clients
        .tenants
        .is_module_enabled(IsModuleEnabledRequest {
            tenant_id: acme.id.clone(),
            company_id: south.clone(),
            module_id: "billing".to_owned(),
            ..IsModuleEnabledRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!blocked_by.enabled);
    assert_eq!(blocked_by.blocked_by, "ledger");
}

async fn a_company_cannot_have_a_module_its_tenant_lacks(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[with_features(module("ledger", &[]), &[("audit", false)])],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut globex = tenant(&sandbox, "globex").await;
    let north = company(&mut acme.admin.clients, &acme.id, "north").await;
    let theirs = company(&mut globex.admin.clients, &globex.id, "theirs").await;
    let request = |company_id: &str, features: &[(&str, bool)]| SetCompanyModuleRequest {
        company_id: company_id.to_owned(),
        module_id: "ledger".to_owned(),
        switch: Switch::On.into(),
        features: features
            .iter()
            .map(|(key, on)| ((*key).to_owned(), *on))
            .collect(),
    };

    let lacking = acme
        .admin
        .clients
        .tenants
        .set_company_module(request(&north, &[]))
        .await
        .unwrap_err();
    enable(&mut acme.admin.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap();
    let other_tenants = acme
        .admin
        .clients
        .tenants
        .set_company_module(request(&theirs, &[]))
        .await
        .unwrap_err();
    let undeclared = acme
        .admin
        .clients
        .tenants
        .set_company_module(request(&north, &[("made-up", true)]))
        .await
        .unwrap_err();
    let set = acme
        .admin
        .clients
        .tenants
        .set_company_module(request(&north, &[("audit", true)]))
        .await
        .unwrap()
        .into_inner();

    assert_refusal(
        &lacking,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_NOT_ENABLED",
    );
    assert_refusal(&other_tenants, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_refusal(
        &undeclared,
        Code::InvalidArgument,
        "ERROR_REASON_INVALID_ARGUMENT",
    );
    let company_module = set.company_module.unwrap();
    assert_eq!(company_module.switch(), Switch::On);
    assert_eq!(company_module.features.get("audit"), Some(&true));
    assert_eq!(
        usable(&mut acme.admin.clients, &acme.id, &north, "ledger", "audit").await,
        Reason::Enabled
    );
    assert_eq!(
        usable(&mut acme.admin.clients, &acme.id, "", "ledger", "audit").await,
        Reason::FeatureOff
    );
}

async fn enabled_lists_resolve_features_per_company(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[
            with_features(module("ledger", &[]), &[("audit", false), ("export", true)]),
            module("crm", &[]),
        ],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let north = company(clients, &acme.id, "north").await;
    enable(clients, &acme.id, &["ledger", "crm"], false)
        .await
        .unwrap();
    clients
        .tenants
        .set_company_module(SetCompanyModuleRequest {
            company_id: north.clone(),
            module_id: "crm".to_owned(),
            switch: Switch::Off.into(),
            features: Default::default(),
        })
        .await
        .unwrap();
    clients
        .tenants
        .set_company_module(SetCompanyModuleRequest {
            company_id: north.clone(),
            module_id: "ledger".to_owned(),
            switch: Switch::On.into(),
            features: [("audit".to_owned(), true)].into_iter().collect(),
        })
        .await
        .unwrap();
    let listed = |company_id: &str| ListEnabledModulesRequest {
        tenant_id: acme.id.clone(),
        company_id: company_id.to_owned(),
        consistency: Some(super::fully_consistent()),
    };

    let tenant_wide = clients
        .tenants
        .list_enabled_modules(listed(""))
        .await
        .unwrap()
        .into_inner();
    let in_north = clients
        .tenants
        .list_enabled_modules(listed(&north))
        .await
        .unwrap()
        .into_inner();

    let summary = |modules: &[plinth_api::tenant::v1::EnabledModule]| {
        modules
            .iter()
            .map(|module| {
                (
                    module.module_id.clone(),
                    module.features.clone().into_iter().collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&tenant_wide.modules),
        [
            ("crm".to_owned(), vec![]),
            (
                "ledger".to_owned(),
                vec![("audit".to_owned(), false), ("export".to_owned(), true)]
            ),
        ]
    );
    assert_eq!(
        summary(&in_north.modules),
        [(
            "ledger".to_owned(),
            vec![("audit".to_owned(), true), ("export".to_owned(), true)]
        )]
    );
}

async fn default_roles_are_created_on_the_first_enable_only(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let ledger = ModuleManifest {
        permissions: vec![ManifestPermission {
            name: "ledger:entry:read".to_owned(),
            description: String::new(),
        }],
        default_roles: vec![
            ManifestRole {
                key: "ledger-reader".to_owned(),
                display_name: "Ledger reader".to_owned(),
                description: String::new(),
                grants: vec!["ledger:entry:read".to_owned()],
            },
            ManifestRole {
                key: "ledger-admin".to_owned(),
                display_name: "Ledger admin".to_owned(),
                description: String::new(),
                grants: vec!["ledger:*".to_owned()],
            },
        ],
        ..module("ledger", &[])
    };
    in_catalog(&sandbox, &[ledger]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    clients
        .rbac
        .create_role(crate::rbac::role_request(
            &acme.id,
            "ledger-admin",
            &["ledger:entry:read"],
            &[],
        ))
        .await
        .unwrap();
    let role = |key: &str| GetRoleRequest {
        key: Some(get_role_request::Key::TenantKey(RoleKey {
            tenant_id: acme.id.clone(),
            key: key.to_owned(),
        })),
    };

    enable(clients, &acme.id, &["ledger"], false).await.unwrap();
    let reader = clients
        .rbac
        .get_role(role("ledger-reader"))
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    let admin = clients
        .rbac
        .get_role(role("ledger-admin"))
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    clients
        .rbac
        .delete_role(plinth_api::rbac::v1::DeleteRoleRequest {
            id: reader.id.clone(),
        })
        .await
        .unwrap();
    disable(clients, &acme.id, "ledger", false).await.unwrap();
    enable(clients, &acme.id, &["ledger"], false).await.unwrap();

    assert_eq!(reader.permissions, ["ledger:entry:read"]);
    assert_eq!(
        admin.permissions,
        ["ledger:entry:read"],
        "the tenant's own role is kept"
    );
    let recreated = clients
        .rbac
        .get_role(role("ledger-reader"))
        .await
        .unwrap_err();
    assert_eq!(recreated.code(), Code::NotFound);
}

async fn a_provisioning_module_is_usable_once_it_reports(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[ModuleManifest {
            provisions_tenants: true,
            ..module("warehouse", &[])
        }],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;
    enable(&mut acme.admin.clients, &acme.id, &["warehouse"], false)
        .await
        .unwrap();
    let own = sandbox
        .clients(&module_key(&sandbox, "warehouse").await)
        .await;
    let other = sandbox.clients(&module_key(&sandbox, "crm").await).await;
    let report = |failed: bool| ReportModuleProvisioningRequest {
        tenant_id: acme.id.clone(),
        module_id: "warehouse".to_owned(),
        failed,
        failure: if failed {
            "no disk".to_owned()
        } else {
            String::new()
        },
    };
    let before = usable(&mut acme.admin.clients, &acme.id, "", "warehouse", "").await;

    let foreign = other
        .clone()
        .tenants
        .report_module_provisioning(report(false))
        .await
        .unwrap_err();
    let reported = own
        .clone()
        .tenants
        .report_module_provisioning(report(false))
        .await
        .unwrap()
        .into_inner();
    let again = own
        .clone()
        .tenants
        .report_module_provisioning(report(true))
        .await
        .unwrap_err();

    assert_eq!(before, Reason::NotReady);
    assert_refusal(
        &foreign,
        Code::PermissionDenied,
        "ERROR_REASON_PERMISSION_DENIED",
    );
    assert_eq!(
        reported.tenant_module.unwrap().state(),
        TenantModuleState::Enabled
    );
    assert_refusal(
        &again,
        Code::FailedPrecondition,
        "ERROR_REASON_FAILED_PRECONDITION",
    );
    assert_eq!(
        usable(&mut acme.admin.clients, &acme.id, "", "warehouse", "").await,
        Reason::Enabled
    );
}

async fn a_module_enabled_by_a_tenant_cannot_be_deleted(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[module("ledger", &[])]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    enable(&mut acme.admin.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap();
    let mut operator = sandbox.operator().await;
    operator
        .registry
        .deactivate_module(DeactivateModuleRequest {
            module_id: "ledger".to_owned(),
        })
        .await
        .unwrap();
    let delete = || DeleteModuleRequest {
        module_id: "ledger".to_owned(),
    };

    let refused = operator.registry.delete_module(delete()).await.unwrap_err();
    disable(&mut acme.admin.clients, &acme.id, "ledger", false)
        .await
        .unwrap();
    let deleted = operator.registry.delete_module(delete()).await;

    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_FAILED_PRECONDITION",
    );
    assert!(deleted.is_ok(), "{deleted:?}");
}

async fn members_read_modules_and_only_admins_change_them(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[module("ledger", &[])]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let mut globex = tenant(&sandbox, "globex").await;
    let mut member = acme.member(&sandbox, "mia").await;

    let by_member = enable(&mut member.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap_err();
    let by_other_admin = enable(&mut globex.admin.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap_err();
    enable(&mut acme.admin.clients, &acme.id, &["ledger"], false)
        .await
        .unwrap();
    let read_by_member = usable(&mut member.clients, &acme.id, "", "ledger", "").await;
    let read_by_other = globex
        .admin
        .clients
        .tenants
        .list_tenant_modules(ListTenantModulesRequest {
            tenant_id: acme.id.clone(),
            ..ListTenantModulesRequest::default()
        })
        .await
        .unwrap_err();

    // As for every call on a tenant's resources, a refusal does not tell
    // whether the tenant exists.
    assert_refusal(&by_member, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_refusal(&by_other_admin, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_eq!(read_by_member, Reason::Enabled);
    assert_refusal(&read_by_other, Code::NotFound, "ERROR_REASON_NOT_FOUND");
}

async fn bad_enablement_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(&sandbox, &[module("ledger", &[])]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let one = |module: ModuleEnablement| EnableModulesRequest {
        tenant_id: acme.id.clone(),
        modules: vec![module],
        enable_dependencies: false,
    };
    let ledger = |change: fn(&mut ModuleEnablement)| {
        let mut module = ModuleEnablement {
            module_id: "ledger".to_owned(),
            ..ModuleEnablement::default()
        };
        change(&mut module);
        module
    };
    let many_features: std::collections::BTreeMap<String, bool> =
        (0..101).map(|index| (format!("f{index}"), true)).collect();
    let cases: Vec<(EnableModulesRequest, &str)> = vec![
        (
            EnableModulesRequest {
                tenant_id: acme.id.clone(),
                ..EnableModulesRequest::default()
            },
            "modules",
        ),
        (
            EnableModulesRequest {
                tenant_id: "not-a-uuid".to_owned(),
                modules: vec![ledger(|_| {})],
                enable_dependencies: false,
            },
            "tenant_id",
        ),
        (
            EnableModulesRequest {
                tenant_id: acme.id.clone(),
                modules: (0..51).map(|_| ledger(|_| {})).collect(),
                enable_dependencies: false,
            },
            "modules",
        ),
        (
            EnableModulesRequest {
                tenant_id: acme.id.clone(),
                modules: vec![ledger(|_| {}), ledger(|_| {})],
                enable_dependencies: false,
            },
            "modules[1].module_id",
        ),
        (
            one(ledger(|module| module.module_id = "Ledger!".to_owned())),
            "modules[0].module_id",
        ),
        (
            one(ledger(|module| module.version_pin = "one".to_owned())),
            "modules[0].version_pin",
        ),
        (
            one(ledger(|module| module.version_pin = "1".repeat(200))),
            "modules[0].version_pin",
        ),
        (
            one(ledger(|module| module.tenant_config = "[1]".to_owned())),
            "modules[0].tenant_config",
        ),
        (
            one(ledger(|module| module.tenant_config = "{\"a\":".to_owned())),
            "modules[0].tenant_config",
        ),
        (
            one(ledger(|module| {
                module.tenant_config = "{\"a\":{\"$plinth_sealed\":\"x\"}}".to_owned()
            })),
            "modules[0].tenant_config",
        ),
        (
            one(ledger(|module| {
                module.features = [("Bad Key".to_owned(), true)].into_iter().collect()
            })),
            "modules[0].features",
        ),
        (
            one(ModuleEnablement {
                features: many_features,
                ..ledger(|_| {})
            }),
            "modules[0].features",
        ),
    ];
    for (request, field) in cases {
        let status = clients.tenants.enable_modules(request).await.unwrap_err();
        assert_refusal(
            &status,
            Code::InvalidArgument,
            "ERROR_REASON_INVALID_ARGUMENT",
        );
        assert!(
            violated_fields(&status).contains(&field.to_owned()),
            "{field}: {status:?}"
        );
    }
    let bad_switch = clients
        .tenants
        .set_company_module(SetCompanyModuleRequest {
            company_id: uuid::Uuid::now_v7().to_string(),
            module_id: "ledger".to_owned(),
            switch: 7,
            features: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_switch), ["switch"]);
    let unspecified_switch = clients
        .tenants
        .set_company_module(SetCompanyModuleRequest {
            company_id: uuid::Uuid::now_v7().to_string(),
            module_id: "ledger".to_owned(),
            switch: 0,
            features: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unspecified_switch), ["switch"]);
    let bad_listing = clients
        .tenants
        .list_tenant_modules(ListTenantModulesRequest {
            tenant_id: acme.id.clone(),
            state: 99,
            page_size: 501,
            page_token: "zz".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad_listing),
        ["state", "page_size", "page_token"]
    );
    let bad_token = clients
        .tenants
        .is_module_enabled(IsModuleEnabledRequest {
            tenant_id: acme.id.clone(),
            module_id: "ledger".to_owned(),
            feature: "Not A Slug".to_owned(),
            consistency: Some(Consistency {
                requirement: Some(Requirement::AtLeastAsFresh("m1.1".to_owned())),
            }),
            ..IsModuleEnabledRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad_token),
        ["feature", "consistency.at_least_as_fresh"]
    );
    let bad_report = clients
        .tenants
        .report_module_provisioning(ReportModuleProvisioningRequest {
            tenant_id: acme.id.clone(),
            module_id: "ledger".to_owned(),
            failed: true,
            failure: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_report), ["failure"]);
    let other_tenants_token = clients
        .tenants
        .is_module_enabled(IsModuleEnabledRequest {
            tenant_id: acme.id.clone(),
            module_id: "ledger".to_owned(),
            consistency: Some(Consistency {
                requirement: Some(Requirement::AtLeastAsFresh(format!(
                    "m{}.1",
                    uuid::Uuid::now_v7().simple()
                ))),
            }),
            ..IsModuleEnabledRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&other_tenants_token),
        ["consistency.at_least_as_fresh"]
    );
}
