//! Lifecycle callbacks against a real module (a tonic
//! ModuleLifecycleService registered as a serving instance): vetoes, an
//! unavailable module, optional callbacks, and after-change callbacks
//! delivered at least once with one operation id per change.

use plinth_api::{
    registry::v1::LifecycleCallback as Callback,
    tenant::v1::{EnablementReason as Reason, SetCompanyModuleRequest, Switch, TenantModuleState},
};
use plinth_tests::{Backend, Sandbox, assert_refusal, error_metadata, test_module::TestModule};
use tonic::Code;

use super::{
    company, disable, enable, in_catalog, module, reaches, serving, state_of, usable,
    with_callbacks,
};
use crate::rbac::tenant;

crate::on_both_backends!(
    a_module_vetoes_an_enable_and_nothing_is_written,
    without_a_serving_instance_a_required_callback_is_unavailable,
    an_optional_callback_is_skipped_without_an_instance,
    after_callbacks_are_retried_under_one_operation_until_acknowledged,
    each_change_is_its_own_operation_with_its_actor_and_config,
    a_company_switch_asks_the_module_and_tells_it,
);

/// Seconds a few retries take (1 s, 2 s, 4 s) with room to spare.
const RETRIES: u64 = 15;

async fn a_module_vetoes_an_enable_and_nothing_is_written(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[with_callbacks(
            module("crm", &[]),
            &[(Callback::TenantEnabling, false)],
        )],
    )
    .await;
    let crm = TestModule::start().await;
    serving(&sandbox, "crm", &crm).await;
    crm.veto("set crm.api_url first");
    let mut acme = tenant(&sandbox, "acme").await;

    let refused = enable(&mut acme.admin.clients, &acme.id, &["crm"], false)
        .await
        .unwrap_err();

    assert_refusal(
        &refused,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_VETOED",
    );
    assert_eq!(
        error_metadata(&refused, "veto_reason").as_deref(),
        Some("set crm.api_url first")
    );
    assert_eq!(
        state_of(&mut acme.admin.clients, &acme.id, "crm").await,
        None
    );
    let asked = crm.received();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].callback, "OnTenantEnabling");
    assert_eq!(asked[0].target.tenant_id, acme.id);
    assert_eq!(asked[0].target.tenant_code, "acme");
    assert_eq!(asked[0].actor.as_ref().unwrap().user_id, acme.admin.user_id);
}

async fn without_a_serving_instance_a_required_callback_is_unavailable(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[with_callbacks(
            module("crm", &[]),
            &[(Callback::TenantEnabling, false)],
        )],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;

    let refused = enable(&mut acme.admin.clients, &acme.id, &["crm"], false)
        .await
        .unwrap_err();

    assert_refusal(
        &refused,
        Code::Unavailable,
        "ERROR_REASON_MODULE_UNAVAILABLE",
    );
    assert_eq!(
        error_metadata(&refused, "callback").as_deref(),
        Some("LIFECYCLE_CALLBACK_TENANT_ENABLING")
    );
    assert_eq!(
        state_of(&mut acme.admin.clients, &acme.id, "crm").await,
        None
    );
}

async fn an_optional_callback_is_skipped_without_an_instance(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[with_callbacks(
            module("crm", &[]),
            &[
                (Callback::TenantEnabling, true),
                (Callback::TenantEnabled, true),
            ],
        )],
    )
    .await;
    let mut acme = tenant(&sandbox, "acme").await;

    let enabled = enable(&mut acme.admin.clients, &acme.id, &["crm"], false).await;

    assert!(enabled.is_ok(), "{enabled:?}");
    assert!(
        reaches(
            &mut acme.admin.clients,
            &acme.id,
            "crm",
            TenantModuleState::Enabled,
            RETRIES
        )
        .await
    );
}

async fn after_callbacks_are_retried_under_one_operation_until_acknowledged(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[with_callbacks(
            module("crm", &[]),
            &[(Callback::TenantEnabled, false)],
        )],
    )
    .await;
    let crm = TestModule::start().await;
    serving(&sandbox, "crm", &crm).await;
    crm.fail_next(2);
    let mut acme = tenant(&sandbox, "acme").await;

    let enabled = enable(&mut acme.admin.clients, &acme.id, &["crm"], false)
        .await
        .unwrap();
    let while_unacknowledged = usable(&mut acme.admin.clients, &acme.id, "", "crm", "").await;

    assert_eq!(enabled.changed[0].state(), TenantModuleState::Enabling);
    assert_eq!(while_unacknowledged, Reason::NotReady);
    assert!(
        reaches(
            &mut acme.admin.clients,
            &acme.id,
            "crm",
            TenantModuleState::Enabled,
            RETRIES
        )
        .await
    );
    let deliveries: Vec<_> = crm
        .received()
        .into_iter()
        .filter(|received| received.callback == "OnTenantEnabled")
        .map(|received| received.delivery.unwrap())
        .collect();
    assert_eq!(
        deliveries
            .iter()
            .map(|delivery| delivery.attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let operations = crm.operations();
    assert_eq!(operations.len(), 1, "{operations:?}");
    assert_eq!(operations.get(&deliveries[0].operation_id), Some(&3));
    assert_eq!(
        usable(&mut acme.admin.clients, &acme.id, "", "crm", "").await,
        Reason::Enabled
    );
}

async fn each_change_is_its_own_operation_with_its_actor_and_config(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let crm_manifest = plinth_api::registry::v1::ModuleManifest {
        config_schema: Some(struct_of(serde_json::json!({
            "type": "object",
            "properties": {"region": {"type": "string"}}
        }))),
        config_defaults: Some(struct_of(serde_json::json!({"region": "eu"}))),
        ..with_callbacks(
            module("crm", &[]),
            &[
                (Callback::TenantEnabled, false),
                (Callback::TenantDisabled, false),
            ],
        )
    };
    in_catalog(&sandbox, &[crm_manifest]).await;
    let crm = TestModule::start().await;
    serving(&sandbox, "crm", &crm).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;

    enable(clients, &acme.id, &["crm"], false).await.unwrap();
    assert!(
        reaches(
            clients,
            &acme.id,
            "crm",
            TenantModuleState::Enabled,
            RETRIES
        )
        .await
    );
    disable(clients, &acme.id, "crm", false).await.unwrap();
    assert!(
        reaches(
            clients,
            &acme.id,
            "crm",
            TenantModuleState::Disabled,
            RETRIES
        )
        .await
    );
    enable(clients, &acme.id, &["crm"], false).await.unwrap();
    assert!(
        reaches(
            clients,
            &acme.id,
            "crm",
            TenantModuleState::Enabled,
            RETRIES
        )
        .await
    );

    let received = crm.received();
    assert_eq!(
        received
            .iter()
            .map(|received| received.callback)
            .collect::<Vec<_>>(),
        ["OnTenantEnabled", "OnTenantDisabled", "OnTenantEnabled"]
    );
    assert_eq!(crm.operations().len(), 3, "one operation per change");
    let store = sandbox.database.open_store().await;
    let audited: Vec<String> = store
        .audit
        .read_chain(&acme.id, 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action)
        .collect();
    for action in [
        "tenant.module.enabled",
        "tenant.module.disabled",
        "tenant.module.callback_delivered",
    ] {
        assert!(
            audited.iter().any(|audited| audited == action),
            "{action}: {audited:?}"
        );
    }
    for delivered in &received {
        let delivery = delivered.delivery.as_ref().unwrap();
        assert_eq!(delivery.actor.as_ref().unwrap().user_id, acme.admin.user_id);
        assert_eq!(delivered.target.tenant_id, acme.id);
        assert_eq!(delivered.target.module_version, "1.0.0");
        assert_eq!(delivered.target.config, r#"{"region":"eu"}"#);
    }
}

async fn a_company_switch_asks_the_module_and_tells_it(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    in_catalog(
        &sandbox,
        &[with_callbacks(
            module("crm", &[]),
            &[
                (Callback::CompanyEnabling, false),
                (Callback::CompanyEnabled, false),
                (Callback::CompanyDisabled, false),
            ],
        )],
    )
    .await;
    let crm = TestModule::start().await;
    serving(&sandbox, "crm", &crm).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let clients = &mut acme.admin.clients;
    let north = company(clients, &acme.id, "north").await;
    enable(clients, &acme.id, &["crm"], false).await.unwrap();
    let switch = |switch: Switch| SetCompanyModuleRequest {
        company_id: north.clone(),
        module_id: "crm".to_owned(),
        switch: switch.into(),
        features: Default::default(),
    };

    clients
        .tenants
        .set_company_module(switch(Switch::Off))
        .await
        .unwrap();
    crm.veto("north has no crm licence");
    let vetoed = clients
        .tenants
        .set_company_module(switch(Switch::On))
        .await
        .unwrap_err();

    assert_refusal(
        &vetoed,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_VETOED",
    );
    assert_eq!(
        usable(clients, &acme.id, &north, "crm", "").await,
        Reason::SwitchedOff
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(RETRIES);
    while !crm
        .received()
        .iter()
        .any(|received| received.callback == "OnCompanyDisabled")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "OnCompanyDisabled never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let received = crm.received();
    let disabled = received
        .iter()
        .find(|received| received.callback == "OnCompanyDisabled")
        .unwrap();
    assert_eq!(disabled.target.company_id, north);
    let asked = received
        .iter()
        .find(|received| received.callback == "OnCompanyEnabling")
        .unwrap();
    assert_eq!(asked.target.company_id, north);
}

pub fn struct_of(value: serde_json::Value) -> plinth_api::prost_types::Struct {
    let serde_json::Value::Object(object) = value else {
        panic!("an object")
    };
    registry_server::manifest::json::to_struct(object)
}
