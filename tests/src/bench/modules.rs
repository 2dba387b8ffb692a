//! The hot questions modules ask about tenants: is my module enabled here,
//! and what is my configuration (a document of about 2 KB), both by the
//! module's own key.

use plinth_api::{
    registry::v1::ActivateModuleRequest,
    registry::v1::module_registry_service_client::ModuleRegistryServiceClient,
    tenant::v1::{
        EnableModulesRequest, IsModuleEnabledRequest, ModuleConfigResolution, ModuleEnablement,
        ResolveModuleConfigRequest, ResolveModuleConfigResponse,
        tenant_service_client::TenantServiceClient, tenant_service_server::TenantService,
    },
};
use tonic::transport::Channel;

use super::{
    Load, Measurement, ServerProcess,
    report::{IS_MODULE_ENABLED, RESOLVE_BARE, RESOLVE_CONFIG},
};
use crate::Credentials;

/// Bytes of the tenant's configuration document, about.
const DOCUMENT_BYTES: usize = 2048;

/// A configuration object of about [`DOCUMENT_BYTES`] as JSON: settings
/// of a few kinds, as modules keep them.
pub fn document() -> String {
    let mut settings = serde_json::Map::new();
    let mut index = 0;
    while serde_json::Value::Object(settings.clone())
        .to_string()
        .len()
        < DOCUMENT_BYTES
    {
        settings.insert(
            format!("setting_{index:03}"),
            serde_json::json!({"enabled": index % 2 == 0, "limit": index * 1000, "label": format!("Setting {index}")}),
        );
        index += 1;
    }
    serde_json::Value::Object(settings).to_string()
}

/// Activates the bench module (registered by the registry's fixture, with
/// a schema taking any object) and enables it for the tenant with a
/// document of about 2 KB, as the operator.
pub async fn populate(
    channel: Channel,
    operator_key: &str,
    module_id: &str,
    tenant_id: &str,
) -> anyhow::Result<()> {
    let operator = Credentials::api_key(operator_key);
    ModuleRegistryServiceClient::with_interceptor(channel.clone(), operator.clone())
        .activate_module(ActivateModuleRequest {
            module_id: module_id.to_owned(),
            version: String::new(),
        })
        .await?;
    TenantServiceClient::with_interceptor(channel, operator)
        .enable_modules(EnableModulesRequest {
            tenant_id: tenant_id.to_owned(),
            modules: vec![ModuleEnablement {
                module_id: module_id.to_owned(),
                tenant_config: document(),
                ..ModuleEnablement::default()
            }],
            enable_dependencies: false,
        })
        .await?;
    Ok(())
}

/// What the echo process answers ResolveModuleConfig with: a resolution of
/// the bench's document, with no identity, store or cache behind it.
pub struct SameResolution(ResolveModuleConfigResponse);

impl SameResolution {
    pub fn new(module_id: &str) -> SameResolution {
        let document = document();
        SameResolution(ResolveModuleConfigResponse {
            resolution: Some(ModuleConfigResolution {
                module_id: module_id.to_owned(),
                tenant_id: uuid::Uuid::now_v7().to_string(),
                etag: "0".repeat(32),
                module_version: "1.0.0".to_owned(),
                document,
                ..ModuleConfigResolution::default()
            }),
            consistency_token: format!("m{}.1", uuid::Uuid::now_v7().simple()),
        })
    }
}

#[tonic::async_trait]
impl TenantService for SameResolution {
    async fn resolve_module_config(
        &self,
        _request: tonic::Request<ResolveModuleConfigRequest>,
    ) -> Result<tonic::Response<ResolveModuleConfigResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }
}

pub async fn measure(
    load: Load,
    (echo, echo_channels): (&ServerProcess, &[Channel]),
    core: &ServerProcess,
    channels: &[Channel],
    module_id: &str,
    module_key: &str,
    tenant_id: &str,
) -> Vec<Measurement> {
    let key = Credentials::api_key(module_key);
    let client_of = |channel| TenantServiceClient::with_interceptor(channel, key.clone());
    let asked = IsModuleEnabledRequest {
        tenant_id: tenant_id.to_owned(),
        module_id: module_id.to_owned(),
        ..IsModuleEnabledRequest::default()
    };
    let is_enabled = super::measure(IS_MODULE_ENABLED, core, channels, load, |channel| {
        let (client, asked) = (client_of(channel), asked.clone());
        move || {
            let (mut client, asked) = (client.clone(), asked.clone());
            async move {
                if client.is_module_enabled(asked).await?.into_inner().enabled {
                    Ok(())
                } else {
                    Err(tonic::Status::internal("the module is not enabled"))
                }
            }
        }
    })
    .await;
    let resolve = ResolveModuleConfigRequest {
        module_id: module_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        ..ResolveModuleConfigRequest::default()
    };
    let resolve_on = |name, server, channels| {
        super::measure(name, server, channels, load, |channel| {
            let (client, resolve) = (client_of(channel), resolve.clone());
            move || {
                let (mut client, resolve) = (client.clone(), resolve.clone());
                async move {
                    let resolution = client.resolve_module_config(resolve).await?.into_inner();
                    match resolution.resolution {
                        Some(resolution) if resolution.document.len() >= DOCUMENT_BYTES => Ok(()),
                        _ => Err(tonic::Status::internal("the document is missing")),
                    }
                }
            }
        })
    };
    let resolved = resolve_on(RESOLVE_CONFIG, core, channels).await;
    let bare = resolve_on(RESOLVE_BARE, echo, echo_channels).await;
    vec![is_enabled, resolved, bare]
}
