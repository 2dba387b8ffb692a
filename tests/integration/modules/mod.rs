//! Modules in tenants over real gRPC: enablement with dependencies and
//! company switches, the lifecycle callbacks against a real module, module
//! isolation, and the configuration resolver.

mod callbacks;
mod config;
mod enablement;
mod isolation;
mod replicas;
mod templates;
mod watch;

use plinth_api::{
    registry::v1::{
        ActivateModuleRequest, HeartbeatRequest, InstanceStatus, LifecycleCallback,
        ManifestCallback, ManifestFeature, ModuleManifest, RegisterInstanceRequest,
    },
    tenant::v1::{
        CreateCompanyRequest, DisableModuleRequest, DisableModuleResponse, EnableModulesRequest,
        EnableModulesResponse, EnablementReason, IsModuleEnabledRequest, ListTenantModulesRequest,
        ModuleEnablement, TenantModule, TenantModuleState,
    },
};
use plinth_tests::{Clients, Sandbox, test_module::TestModule};

/// Registers each manifest and activates it, as the operator.
pub async fn in_catalog(sandbox: &Sandbox, manifests: &[ModuleManifest]) {
    let mut operator = sandbox.operator().await;
    for manifest in manifests {
        crate::registry::register(&mut operator, manifest.clone())
            .await
            .expect("module registered");
        operator
            .registry
            .activate_module(ActivateModuleRequest {
                module_id: manifest.id.clone(),
                version: manifest.version.clone(),
            })
            .await
            .expect("module activated");
    }
}

/// A module 1.0.0 requiring each of `requires` (">=1").
pub fn module(id: &str, requires: &[&str]) -> ModuleManifest {
    crate::registry::manifest(id, "1.0.0", requires)
}

/// `manifest` with features (key, on by default).
pub fn with_features(manifest: ModuleManifest, features: &[(&str, bool)]) -> ModuleManifest {
    ModuleManifest {
        features: features
            .iter()
            .map(|(key, default_enabled)| ManifestFeature {
                key: (*key).to_owned(),
                description: String::new(),
                default_enabled: *default_enabled,
            })
            .collect(),
        ..manifest
    }
}

/// `manifest` implementing `callbacks` (each required or optional).
pub fn with_callbacks(
    manifest: ModuleManifest,
    callbacks: &[(LifecycleCallback, bool)],
) -> ModuleManifest {
    ModuleManifest {
        callbacks: callbacks
            .iter()
            .map(|(callback, optional)| ManifestCallback {
                callback: (*callback).into(),
                optional: *optional,
            })
            .collect(),
        ..manifest
    }
}

/// Enables `module_ids` for the tenant (nothing else asked).
pub async fn enable(
    clients: &mut Clients,
    tenant_id: &str,
    module_ids: &[&str],
    enable_dependencies: bool,
) -> Result<EnableModulesResponse, tonic::Status> {
    clients
        .tenants
        .enable_modules(EnableModulesRequest {
            tenant_id: tenant_id.to_owned(),
            modules: module_ids
                .iter()
                .map(|module_id| ModuleEnablement {
                    module_id: (*module_id).to_owned(),
                    ..ModuleEnablement::default()
                })
                .collect(),
            enable_dependencies,
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn disable(
    clients: &mut Clients,
    tenant_id: &str,
    module_id: &str,
    cascade: bool,
) -> Result<DisableModuleResponse, tonic::Status> {
    clients
        .tenants
        .disable_module(DisableModuleRequest {
            tenant_id: tenant_id.to_owned(),
            module_id: module_id.to_owned(),
            cascade,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The module ids of tenant modules, in order.
pub fn ids(modules: &[TenantModule]) -> Vec<&str> {
    modules
        .iter()
        .map(|module| module.module_id.as_str())
        .collect()
}

/// IsModuleEnabled's answer, fully consistent.
pub async fn usable(
    clients: &mut Clients,
    tenant_id: &str,
    company_id: &str,
    module_id: &str,
    feature: &str,
) -> EnablementReason {
    clients
        .tenants
        .is_module_enabled(IsModuleEnabledRequest {
            tenant_id: tenant_id.to_owned(),
            company_id: company_id.to_owned(),
            module_id: module_id.to_owned(),
            feature: feature.to_owned(),
            consistency: Some(fully_consistent()),
        })
        .await
        .expect("IsModuleEnabled answers")
        .into_inner()
        .reason()
}

pub fn fully_consistent() -> plinth_api::tenant::v1::Consistency {
    plinth_api::tenant::v1::Consistency {
        requirement: Some(plinth_api::tenant::v1::consistency::Requirement::FullyConsistent(true)),
    }
}

/// The tenant's module's state, if it has a row.
pub async fn state_of(
    clients: &mut Clients,
    tenant_id: &str,
    module_id: &str,
) -> Option<TenantModuleState> {
    clients
        .tenants
        .list_tenant_modules(ListTenantModulesRequest {
            tenant_id: tenant_id.to_owned(),
            ..ListTenantModulesRequest::default()
        })
        .await
        .expect("tenant modules listed")
        .into_inner()
        .tenant_modules
        .into_iter()
        .find(|module| module.module_id == module_id)
        .map(|module| module.state())
}

/// Waits up to `seconds` for the tenant module to reach `state`.
pub async fn reaches(
    clients: &mut Clients,
    tenant_id: &str,
    module_id: &str,
    state: TenantModuleState,
    seconds: u64,
) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if state_of(clients, tenant_id, module_id).await == Some(state) {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A company of the tenant; its id.
pub async fn company(clients: &mut Clients, tenant_id: &str, code: &str) -> String {
    clients
        .tenants
        .create_company(CreateCompanyRequest {
            tenant_id: tenant_id.to_owned(),
            code: code.to_owned(),
            name: code.to_owned(),
        })
        .await
        .expect("company created")
        .into_inner()
        .company
        .expect("company")
        .id
}

/// Registers `module` as a serving instance of `module_id` 1.0.0.
pub async fn serving(sandbox: &Sandbox, module_id: &str, module: &TestModule) {
    let mut operator = sandbox.operator().await;
    let instance = operator
        .registry
        .register_instance(RegisterInstanceRequest {
            module_id: module_id.to_owned(),
            version: "1.0.0".to_owned(),
            endpoint: module.endpoint(),
            instance_key: format!("{module_id}-test"),
            ..RegisterInstanceRequest::default()
        })
        .await
        .expect("instance registered")
        .into_inner()
        .instance
        .expect("instance");
    operator
        .registry
        .heartbeat(HeartbeatRequest {
            instance_id: instance.instance_id,
            status: InstanceStatus::Serving.into(),
        })
        .await
        .expect("heartbeat");
}

/// Registers, activates and enables a bare module for the tenant, as the
/// operator: what a module key needs to act in the tenant.
pub async fn enabled_for(sandbox: &Sandbox, tenant_id: &str, module_id: &str) {
    let mut operator = sandbox.operator().await;
    let registered = crate::registry::register(&mut operator, module(module_id, &[])).await;
    if registered.is_ok() {
        operator
            .registry
            .activate_module(ActivateModuleRequest {
                module_id: module_id.to_owned(),
                version: String::new(),
            })
            .await
            .expect("module activated");
    }
    enable(&mut operator, tenant_id, &[module_id], false)
        .await
        .expect("module enabled");
}
