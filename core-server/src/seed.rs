//! `core-server seed FILE`: loads a seed file (catalog manifests, each
//! registered and activated, and industry templates, created or brought up
//! to date) into a running server through its API, as an operator. Loading
//! the same file again changes nothing.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plinth_api::{
    registry::v1::{
        ActivateModuleRequest, GetModuleRequest, ListModuleVersionsRequest, ModuleStatus,
        RegisterModuleRequest, module_registry_service_client::ModuleRegistryServiceClient,
    },
    tenant::v1::{
        CreateIndustryTemplateRequest, GetIndustryTemplateRequest, IndustryTemplate,
        TemplateModule, UpdateIndustryTemplateRequest, tenant_service_client::TenantServiceClient,
    },
};
use registry_server::manifest::document;
use serde::Deserialize;
use tonic::{
    Code, metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

/// Largest seed file read.
const MAX_FILE_BYTES: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    /// Manifest files, relative to the seed file.
    #[serde(default)]
    manifests: Vec<PathBuf>,
    #[serde(default)]
    templates: Vec<SeedTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedTemplate {
    code: String,
    name: String,
    #[serde(default)]
    description: String,
    modules: Vec<SeedModule>,
    #[serde(default = "active_by_default")]
    active: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedModule {
    module_id: String,
    #[serde(default)]
    required: bool,
    tenant_config: Option<serde_json::Value>,
}

fn active_by_default() -> bool {
    true
}

/// What loading did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub versions_registered: usize,
    pub modules_activated: usize,
    pub templates_created: usize,
    pub templates_updated: usize,
    /// Manifests and templates already as the file says.
    pub unchanged: usize,
}

type Keyed = InterceptedService<Channel, ApiKey>;

/// Presents the operator's key on every call.
#[derive(Clone)]
struct ApiKey(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("x-api-key", self.0.clone());
        Ok(request)
    }
}

/// Loads the seed file at `path` through `channel` with an operator key.
pub async fn load(path: &Path, channel: Channel, api_key: &str) -> anyhow::Result<Loaded> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        text.len() <= MAX_FILE_BYTES,
        "{} is over {MAX_FILE_BYTES} bytes",
        path.display()
    );
    let seed: SeedFile =
        serde_norway::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let key = ApiKey(api_key.trim().parse().context("the API key is not ASCII")?);
    let mut registry = ModuleRegistryServiceClient::with_interceptor(channel.clone(), key.clone());
    let mut tenants = TenantServiceClient::with_interceptor(channel, key);
    let directory = path.parent().unwrap_or(Path::new("."));
    let mut loaded = Loaded::default();
    for manifest_path in &seed.manifests {
        let manifest_path = directory.join(manifest_path);
        let manifest_text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let manifest = document::parse(&manifest_text)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let label = format!("{} {}", manifest.id, manifest.version);
        seed_module(&mut registry, manifest, &mut loaded)
            .await
            .with_context(|| format!("module {label}"))?;
    }
    for template in seed.templates {
        let code = template.code.clone();
        seed_template(&mut tenants, template, &mut loaded)
            .await
            .with_context(|| format!("template {code}"))?;
    }
    Ok(loaded)
}

async fn seed_module(
    registry: &mut ModuleRegistryServiceClient<Keyed>,
    manifest: plinth_api::registry::v1::ModuleManifest,
    loaded: &mut Loaded,
) -> anyhow::Result<()> {
    let (module_id, version) = (manifest.id.clone(), manifest.version.clone());
    let registered = match registry
        .list_module_versions(ListModuleVersionsRequest {
            module_id: module_id.clone(),
            page_size: 500,
            page_token: String::new(),
        })
        .await
    {
        Ok(listed) => listed
            .into_inner()
            .versions
            .iter()
            .any(|listed| listed.version == version),
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => return Err(status.into()),
    };
    registry
        .register_module(RegisterModuleRequest {
            manifest: Some(manifest),
        })
        .await?;
    let module = registry
        .get_module(GetModuleRequest {
            module_id: module_id.clone(),
        })
        .await?
        .into_inner()
        .module
        .unwrap_or_default();
    let active = module.status() == ModuleStatus::Active && module.active_version == version;
    if !active {
        registry
            .activate_module(ActivateModuleRequest { module_id, version })
            .await?;
    }
    match (registered, active) {
        (true, true) => loaded.unchanged += 1,
        (registered, active) => {
            loaded.versions_registered += usize::from(!registered);
            loaded.modules_activated += usize::from(!active);
        }
    }
    Ok(())
}

async fn seed_template(
    tenants: &mut TenantServiceClient<Keyed>,
    seed: SeedTemplate,
    loaded: &mut Loaded,
) -> anyhow::Result<()> {
    let wanted = IndustryTemplate {
        code: seed.code.clone(),
        name: seed.name,
        description: seed.description,
        modules: seed
            .modules
            .into_iter()
            .map(|module| TemplateModule {
                module_id: module.module_id,
                required: module.required,
                tenant_config: module
                    .tenant_config
                    .map(|config| config.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        active: seed.active,
        ..IndustryTemplate::default()
    };
    let current = match tenants
        .get_industry_template(GetIndustryTemplateRequest { code: seed.code })
        .await
    {
        Ok(found) => found.into_inner().template,
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => return Err(status.into()),
    };
    match current {
        None => {
            tenants
                .create_industry_template(CreateIndustryTemplateRequest {
                    template: Some(wanted),
                })
                .await?;
            loaded.templates_created += 1;
        }
        Some(current) if same_template(&current, &wanted) => loaded.unchanged += 1,
        Some(current) => {
            tenants
                .update_industry_template(UpdateIndustryTemplateRequest {
                    template: Some(IndustryTemplate {
                        etag: current.etag,
                        ..wanted
                    }),
                })
                .await?;
            loaded.templates_updated += 1;
        }
    }
    Ok(())
}

/// Whether a stored template already says what the seed says (configs
/// compared as JSON values).
fn same_template(current: &IndustryTemplate, wanted: &IndustryTemplate) -> bool {
    let config = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    current.name == wanted.name
        && current.description == wanted.description
        && current.active == wanted.active
        && current.modules.len() == wanted.modules.len()
        && current
            .modules
            .iter()
            .zip(&wanted.modules)
            .all(|(have, want)| {
                have.module_id == want.module_id
                    && have.required == want.required
                    && config(&have.tenant_config) == config(&want.tenant_config)
            })
}
