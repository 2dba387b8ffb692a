//! Industry templates: the seed file of seed 001's industries, signup with
//! a template, applying one to an existing tenant, and keeping them.

use std::path::Path;

use plinth_api::{
    registry::v1::LifecycleCallback,
    tenant::v1::{
        ApplyIndustryTemplateRequest, CreateIndustryTemplateRequest, DeleteIndustryTemplateRequest,
        EnablementReason as Reason, GetIndustryTemplateRequest, IndustryTemplate,
        ListIndustryTemplatesRequest, ResolveModuleConfigRequest, SignupRequest, TemplateModule,
        UpdateIndustryTemplateRequest,
    },
};
use plinth_tests::{
    Backend, Clients, Sandbox, assert_refusal, test_module::TestModule, violated_fields,
};
use tonic::Code;

use super::{enable, in_catalog, module, serving, usable, with_callbacks};
use crate::rbac::{logged_in, tenant};

crate::on_both_backends!(
    the_seed_file_loads_twice_without_change,
    signup_with_a_template_starts_with_its_modules,
    a_vetoed_template_module_refuses_the_signup_and_writes_nothing,
    applying_a_template_again_changes_nothing,
    templates_are_kept_by_operators_with_their_rules,
    bad_template_requests_are_refused,
);

fn seed_file() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core-server/seed/industries.yaml"
    ))
}

async fn seeded(sandbox: &Sandbox) -> core_server::seed::Loaded {
    core_server::seed::load(seed_file(), sandbox.channel().await, &sandbox.operator_key)
        .await
        .expect("the seed file loads")
}

fn signup(code: &str, template: &str, optional: &[&str]) -> SignupRequest {
    SignupRequest {
        tenant_code: code.to_owned(),
        tenant_name: code.to_owned(),
        admin_email: format!("admin@{code}.example"),
        admin_display_name: "Admin".to_owned(),
        admin_password: crate::tokens::PASSWORD.to_owned(),
        industry_template_code: template.to_owned(),
        optional_module_ids: optional.iter().map(|id| (*id).to_owned()).collect(),
    }
}

fn template(code: &str, modules: &[(&str, bool, &str)]) -> IndustryTemplate {
    IndustryTemplate {
        code: code.to_owned(),
        name: code.to_owned(),
        description: String::new(),
        modules: modules
            .iter()
            .map(|(module_id, required, tenant_config)| TemplateModule {
                module_id: (*module_id).to_owned(),
                required: *required,
                tenant_config: (*tenant_config).to_owned(),
            })
            .collect(),
        active: true,
        ..IndustryTemplate::default()
    }
}

async fn create(
    clients: &mut Clients,
    template: IndustryTemplate,
) -> Result<IndustryTemplate, tonic::Status> {
    clients
        .tenants
        .create_industry_template(CreateIndustryTemplateRequest {
            template: Some(template),
        })
        .await
        .map(|created| created.into_inner().template.unwrap())
}

async fn the_seed_file_loads_twice_without_change(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    let first = seeded(&sandbox).await;
    let second = seeded(&sandbox).await;

    assert_eq!(
        first,
        core_server::seed::Loaded {
            versions_registered: 8,
            modules_activated: 8,
            templates_created: 8,
            templates_updated: 0,
            unchanged: 0,
        }
    );
    assert_eq!(
        second,
        core_server::seed::Loaded {
            unchanged: 16,
            ..core_server::seed::Loaded::default()
        }
    );
    let mut operator = sandbox.operator().await;
    let listed = operator
        .tenants
        .list_industry_templates(ListIndustryTemplatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<&str> = listed
        .templates
        .iter()
        .map(|template| template.code.as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "construction",
            "education",
            "finance",
            "healthcare",
            "manufacturing",
            "professional-services",
            "retail",
            "technology"
        ]
    );
}

async fn signup_with_a_template_starts_with_its_modules(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    seeded(&sandbox).await;
    let mut operator = sandbox.operator().await;

    let signed_up = operator
        .tenants
        .signup(signup("shop", "retail", &["contact"]))
        .await
        .unwrap()
        .into_inner();

    let tenant = signed_up.tenant.unwrap();
    assert_eq!(tenant.industry, "retail");
    let mut enabled: Vec<&str> = signed_up
        .modules
        .iter()
        .map(|module| module.module_id.as_str())
        .collect();
    enabled.sort_unstable();
    assert_eq!(
        enabled,
        ["contact", "crm", "finance", "inventory", "products"]
    );
    let mut admin = logged_in(&sandbox, "shop", "admin@shop.example").await;
    for module_id in ["inventory", "contact"] {
        assert_eq!(
            usable(&mut admin.clients, &tenant.id, "", module_id, "").await,
            Reason::Enabled
        );
    }
    assert_eq!(
        usable(&mut admin.clients, &tenant.id, "", "hr", "").await,
        Reason::NotEnabled
    );
    let inventory = admin
        .clients
        .tenants
        .resolve_module_config(ResolveModuleConfigRequest {
            module_id: "inventory".to_owned(),
            tenant_id: tenant.id.clone(),
            ..ResolveModuleConfigRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .resolution
        .unwrap();
    assert_eq!(
        inventory.document,
        r#"{"low_stock_threshold":25,"units":"metric"}"#
    );
}

async fn a_vetoed_template_module_refuses_the_signup_and_writes_nothing(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[
            module("ledger", &[]),
            with_callbacks(
                module("crm", &[]),
                &[(LifecycleCallback::TenantEnabling, false)],
            ),
        ],
    )
    .await;
    let crm = TestModule::start().await;
    serving(&sandbox, "crm", &crm).await;
    crm.veto("crm is closed to new tenants");
    let mut operator = sandbox.operator().await;
    create(
        &mut operator,
        template("sales", &[("ledger", true, ""), ("crm", true, "")]),
    )
    .await
    .unwrap();

    let vetoed = operator
        .tenants
        .signup(signup("acme", "sales", &[]))
        .await
        .unwrap_err();
    let plain = operator
        .tenants
        .signup(SignupRequest {
            industry_template_code: String::new(),
            ..signup("acme", "", &[])
        })
        .await;

    assert_refusal(
        &vetoed,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_VETOED",
    );
    assert!(plain.is_ok(), "the code was not taken: {plain:?}");
    assert!(plain.unwrap().into_inner().modules.is_empty());
}

async fn applying_a_template_again_changes_nothing(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    seeded(&sandbox).await;
    let mut acme = tenant(&sandbox, "acme").await;
    enable(&mut acme.admin.clients, &acme.id, &["inventory"], false)
        .await
        .unwrap();
    acme.admin
        .clients
        .tenants
        .set_module_config(plinth_api::tenant::v1::SetModuleConfigRequest {
            module_id: "inventory".to_owned(),
            tenant_id: acme.id.clone(),
            company_id: String::new(),
            change: Some(
                plinth_api::tenant::v1::set_module_config_request::Change::MergePatch(
                    r#"{"low_stock_threshold":3}"#.to_owned(),
                ),
            ),
            etag: String::new(),
        })
        .await
        .unwrap();
    let apply = || ApplyIndustryTemplateRequest {
        tenant_id: acme.id.clone(),
        template_code: "manufacturing".to_owned(),
        optional_module_ids: vec!["crm".to_owned()],
    };

    let first = acme
        .admin
        .clients
        .tenants
        .apply_industry_template(apply())
        .await
        .unwrap()
        .into_inner();
    let again = acme
        .admin
        .clients
        .tenants
        .apply_industry_template(apply())
        .await
        .unwrap()
        .into_inner();

    let mut enabled: Vec<&str> = first
        .enabled
        .iter()
        .map(|module| module.module_id.as_str())
        .collect();
    enabled.sort_unstable();
    assert_eq!(enabled, ["crm", "finance", "hr"]);
    assert_eq!(first.tenant.unwrap().industry, "manufacturing");
    assert!(again.enabled.is_empty());
    let mut unchanged = again.unchanged_module_ids.clone();
    unchanged.sort_unstable();
    assert_eq!(unchanged, ["crm", "finance", "hr", "inventory"]);
    let inventory = acme
        .admin
        .clients
        .tenants
        .resolve_module_config(ResolveModuleConfigRequest {
            module_id: "inventory".to_owned(),
            tenant_id: acme.id.clone(),
            ..ResolveModuleConfigRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .resolution
        .unwrap();
    assert_eq!(
        inventory.document, r#"{"low_stock_threshold":3,"units":"metric"}"#,
        "the tenant's own layer is kept"
    );
}

async fn templates_are_kept_by_operators_with_their_rules(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    seeded(&sandbox).await;
    let mut operator = sandbox.operator().await;
    let mut acme = tenant(&sandbox, "acme").await;

    let created = create(
        &mut operator,
        template(
            "bakery",
            &[
                ("inventory", true, r#"{"units":"imperial"}"#),
                ("crm", false, ""),
            ],
        ),
    )
    .await
    .unwrap();
    let duplicate = create(&mut operator, template("bakery", &[("crm", true, "")]))
        .await
        .unwrap_err();
    let unknown_module = create(&mut operator, template("florist", &[("flowers", true, "")]))
        .await
        .unwrap_err();
    let bad_config = create(
        &mut operator,
        template("florist", &[("inventory", true, r#"{"units":"cubits"}"#)]),
    )
    .await
    .unwrap_err();
    let by_tenant_admin = create(
        &mut acme.admin.clients,
        template("florist", &[("crm", true, "")]),
    )
    .await
    .unwrap_err();
    let updated = operator
        .tenants
        .update_industry_template(UpdateIndustryTemplateRequest {
            template: Some(IndustryTemplate {
                etag: created.etag.clone(),
                active: false,
                ..template("bakery", &[("crm", true, "")])
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let stale = operator
        .tenants
        .update_industry_template(UpdateIndustryTemplateRequest {
            template: Some(IndustryTemplate {
                etag: created.etag.clone(),
                ..template("bakery", &[("crm", true, "")])
            }),
        })
        .await
        .unwrap_err();
    let apply_inactive = acme
        .admin
        .clients
        .tenants
        .apply_industry_template(ApplyIndustryTemplateRequest {
            tenant_id: acme.id.clone(),
            template_code: "bakery".to_owned(),
            optional_module_ids: Vec::new(),
        })
        .await
        .unwrap_err();
    let not_optional = acme
        .admin
        .clients
        .tenants
        .apply_industry_template(ApplyIndustryTemplateRequest {
            tenant_id: acme.id.clone(),
            template_code: "retail".to_owned(),
            optional_module_ids: vec!["crm".to_owned()],
        })
        .await
        .unwrap_err();
    operator
        .tenants
        .delete_industry_template(DeleteIndustryTemplateRequest {
            code: "bakery".to_owned(),
        })
        .await
        .unwrap();
    let gone = operator
        .tenants
        .get_industry_template(GetIndustryTemplateRequest {
            code: "bakery".to_owned(),
        })
        .await
        .unwrap_err();

    assert_eq!(created.modules[0].tenant_config, r#"{"units":"imperial"}"#);
    assert_refusal(
        &duplicate,
        Code::AlreadyExists,
        "ERROR_REASON_ALREADY_EXISTS",
    );
    assert_refusal(&unknown_module, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    assert_refusal(
        &bad_config,
        Code::InvalidArgument,
        "ERROR_REASON_INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&bad_config),
        ["template.modules[0].tenant_config/units"]
    );
    assert_refusal(
        &by_tenant_admin,
        Code::PermissionDenied,
        "ERROR_REASON_PERMISSION_DENIED",
    );
    assert!(!updated.active);
    assert_ne!(updated.etag, created.etag);
    assert_refusal(&stale, Code::Aborted, "ERROR_REASON_ETAG_MISMATCH");
    assert_refusal(
        &apply_inactive,
        Code::FailedPrecondition,
        "ERROR_REASON_FAILED_PRECONDITION",
    );
    assert_eq!(violated_fields(&not_optional), ["optional_module_ids[0]"]);
    assert_eq!(gone.code(), Code::NotFound);
}

async fn bad_template_requests_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    seeded(&sandbox).await;
    let mut operator = sandbox.operator().await;
    let many: Vec<(String, bool, &str)> = (0..51)
        .map(|index| (format!("m{index:02}"), true, ""))
        .collect();
    let many: Vec<(&str, bool, &str)> = many
        .iter()
        .map(|(id, required, config)| (id.as_str(), *required, *config))
        .collect();
    let cases: Vec<(Option<IndustryTemplate>, &str)> = vec![
        (None, "template"),
        (Some(template("bakery", &[])), "template.modules"),
        (
            Some(template("Bakery!", &[("crm", true, "")])),
            "template.code",
        ),
        (
            Some(IndustryTemplate {
                name: String::new(),
                ..template("bakery", &[("crm", true, "")])
            }),
            "template.name",
        ),
        (Some(template("bakery", &many)), "template.modules"),
        (
            Some(template("bakery", &[("crm", true, ""), ("crm", false, "")])),
            "template.modules[1].module_id",
        ),
        (
            Some(template("bakery", &[("crm", true, "[1]")])),
            "template.modules[0].tenant_config",
        ),
        (
            Some(template("bakery", &[("crm", true, "{")])),
            "template.modules[0].tenant_config",
        ),
        (
            Some(template("bakery", &[("Not_A_Module", true, "")])),
            "template.modules[0].module_id",
        ),
    ];
    for (template, field) in cases {
        let status = operator
            .tenants
            .create_industry_template(CreateIndustryTemplateRequest { template })
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
    }
    let no_etag = operator
        .tenants
        .update_industry_template(UpdateIndustryTemplateRequest {
            template: Some(template("retail", &[("crm", true, "")])),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_etag), ["template.etag"]);
    let bad_page = operator
        .tenants
        .list_industry_templates(ListIndustryTemplatesRequest {
            include_inactive: false,
            page_size: -1,
            page_token: "not hex".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_page), ["page_size", "page_token"]);
    let optional_without_template = operator
        .tenants
        .signup(SignupRequest {
            optional_module_ids: vec!["crm".to_owned()],
            ..signup("acme", "", &[])
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&optional_without_template),
        ["optional_module_ids"]
    );
    let unknown_template = operator
        .tenants
        .signup(signup("acme", "bakery", &[]))
        .await
        .unwrap_err();
    assert_refusal(&unknown_template, Code::NotFound, "ERROR_REASON_NOT_FOUND");
    let paged = operator
        .tenants
        .list_industry_templates(ListIndustryTemplatesRequest {
            include_inactive: false,
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let next = operator
        .tenants
        .list_industry_templates(ListIndustryTemplatesRequest {
            include_inactive: false,
            page_size: 3,
            page_token: paged.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paged.templates.len(), 3);
    assert_eq!(next.templates[0].code, "healthcare");
}
