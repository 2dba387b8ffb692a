//! The gRPC face of the registry: read the request, ask the catalog, the
//! instances, the directory or the watches, map the answer.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use plinth_api::registry::v1::{
    ActivateModuleRequest, ActivateModuleResponse, DeactivateModuleRequest,
    DeactivateModuleResponse, DeleteModuleRequest, DeleteModuleResponse, DeregisterInstanceRequest,
    DeregisterInstanceResponse, GetModuleRequest, GetModuleResponse, HeartbeatRequest,
    HeartbeatResponse, ListModuleVersionsRequest, ListModuleVersionsResponse, ListModulesRequest,
    ListModulesResponse, ManifestViolation, Module, ModuleManifest,
    ModuleStatus as ProtoModuleStatus, ModuleVersion, RegisterInstanceRequest,
    RegisterInstanceResponse, RegisterModuleRequest, RegisterModuleResponse, UpdateModuleRequest,
    UpdateModuleResponse, ValidateManifestRequest, ValidateManifestResponse, WatchInstancesRequest,
    WatchInstancesResponse, module_registry_service_server::ModuleRegistryService,
};
use plinth_platform::{
    clock::timestamp,
    error::{ApiError, Violations},
    identity,
    store::modules::{
        ModuleFilter, ModuleRecord, ModuleStatus, ModuleVersionRecord, VersionCursor,
    },
    text,
};
use tonic::{Request, Response, Status, codegen::BoxStream};

mod discover;
mod instances;

pub use discover::registry_service;
pub use instances::encoded_instance;

use crate::{
    catalog::{Catalog, ModuleChanges},
    instances::Instances,
    manifest::{MAX_DESCRIPTION, MAX_NAME, MAX_VERSION},
    watch::Watches,
};

/// Longest text query of a module listing.
const MAX_QUERY: usize = 100;

/// Versions per page when the request does not say.
const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 500;
/// Longest page token accepted (hex of a time and a version).
const MAX_PAGE_TOKEN: usize = 300;

pub struct RegistryApi {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) instances: Arc<Instances>,
    pub(crate) watches: Watches,
}

/// Every call but DiscoverInstances, which [`registry_service`] routes apart.
#[tonic::async_trait]
impl ModuleRegistryService for RegistryApi {
    async fn validate_manifest(
        &self,
        request: Request<ValidateManifestRequest>,
    ) -> Result<Response<ValidateManifestResponse>, Status> {
        let principal = identity::principal(&request)?;
        let manifest = required_manifest(request.get_ref().manifest.as_ref())?;
        let violations: Vec<ManifestViolation> = self
            .catalog
            .dry_run(principal, manifest)
            .await?
            .into_iter()
            .map(|violation| ManifestViolation {
                field: violation.field,
                description: violation.description,
            })
            .collect();
        Ok(Response::new(ValidateManifestResponse {
            valid: violations.is_empty(),
            violations,
        }))
    }

    async fn register_module(
        &self,
        request: Request<RegisterModuleRequest>,
    ) -> Result<Response<RegisterModuleResponse>, Status> {
        let principal = identity::principal(&request)?;
        let manifest = required_manifest(request.get_ref().manifest.as_ref())?.clone();
        let registered = self.catalog.register(principal, manifest.clone()).await?;
        Ok(Response::new(RegisterModuleResponse {
            module: Some(module(&registered.module)),
            version: Some(version(&registered.version, manifest)),
        }))
    }

    async fn get_module(
        &self,
        request: Request<GetModuleRequest>,
    ) -> Result<Response<GetModuleResponse>, Status> {
        let principal = identity::principal(&request)?;
        let module_id = module_id(&request.get_ref().module_id)?;
        let view = self.catalog.module(principal, module_id).await?;
        Ok(Response::new(GetModuleResponse {
            module: Some(module(&view.module)),
            manifest: Some(view.manifest),
        }))
    }

    async fn list_module_versions(
        &self,
        request: Request<ListModuleVersionsRequest>,
    ) -> Result<Response<ListModuleVersionsResponse>, Status> {
        let principal = identity::principal(&request)?;
        let asked = request.get_ref();
        let module_id = module_id(&asked.module_id)?;
        let size = page_size(asked.page_size)
            .map_err(|problem| ApiError::invalid_field("page_size", problem))?;
        let before = version_cursor(&asked.page_token)?;
        let (versions, more) = self
            .catalog
            .versions(principal, module_id, before, size)
            .await?;
        let next_page_token = match (more, versions.last()) {
            (true, Some((last, _))) => cursor_token(last.registered_at, &last.version),
            _ => String::new(),
        };
        Ok(Response::new(ListModuleVersionsResponse {
            versions: versions
                .into_iter()
                .map(|(record, manifest)| version(&record, manifest))
                .collect(),
            next_page_token,
        }))
    }

    async fn list_modules(
        &self,
        request: Request<ListModulesRequest>,
    ) -> Result<Response<ListModulesResponse>, Status> {
        let principal = identity::principal(&request)?;
        let asked = request.get_ref();
        let mut violations = Violations::default();
        let status = match ProtoModuleStatus::try_from(asked.status) {
            Ok(ProtoModuleStatus::Unspecified) => None,
            Ok(ProtoModuleStatus::Inactive) => Some(ModuleStatus::Inactive),
            Ok(ProtoModuleStatus::Active) => Some(ModuleStatus::Active),
            Err(_) => {
                violations.push("status", "must be a ModuleStatus");
                None
            }
        };
        if !asked.category.is_empty() && !text::is_slug(&asked.category) {
            violations.push("category", text::SLUG_RULE);
        }
        if let Some(problem) = text::text_problem(&asked.query, MAX_QUERY) {
            violations.push("query", problem);
        }
        let size = page_size(asked.page_size).unwrap_or_else(|problem| {
            violations.push("page_size", problem);
            0
        });
        let after = module_cursor(&asked.page_token).unwrap_or_else(|problem| {
            violations.push("page_token", problem);
            None
        });
        violations.into_result()?;
        let filter = ModuleFilter {
            status,
            category: (!asked.category.is_empty()).then(|| asked.category.clone()),
            text: (!asked.query.trim().is_empty()).then(|| asked.query.trim().to_owned()),
            after,
        };
        let (modules, more) = self.catalog.list(principal, filter, size).await?;
        let next_page_token = match (more, modules.last()) {
            (true, Some(last)) => hex::encode(&last.module_id),
            _ => String::new(),
        };
        Ok(Response::new(ListModulesResponse {
            modules: modules.iter().map(module).collect(),
            next_page_token,
        }))
    }

    async fn update_module(
        &self,
        request: Request<UpdateModuleRequest>,
    ) -> Result<Response<UpdateModuleResponse>, Status> {
        let principal = identity::principal(&request)?;
        let asked = request.get_ref();
        let mut violations = Violations::default();
        if !text::is_module_id(&asked.module_id) {
            violations.push("module_id", text::MODULE_ID_RULE);
        }
        if let Some(name) = &asked.display_name {
            if name.trim().is_empty() {
                violations.push("display_name", "is required");
            } else if let Some(problem) = text::text_problem(name, MAX_NAME) {
                violations.push("display_name", problem);
            }
        }
        if let Some(problem) = asked
            .description
            .as_deref()
            .and_then(|description| text::text_problem(description, MAX_DESCRIPTION))
        {
            violations.push("description", problem);
        }
        if asked
            .category
            .as_deref()
            .is_some_and(|category| !category.is_empty() && !text::is_slug(category))
        {
            violations.push("category", text::SLUG_RULE);
        }
        violations.into_result()?;
        let changes = ModuleChanges {
            display_name: asked
                .display_name
                .as_deref()
                .map(|name| name.trim().to_owned()),
            description: asked
                .description
                .as_deref()
                .map(|text| text.trim().to_owned()),
            category: asked.category.clone(),
        };
        let updated = self
            .catalog
            .update(principal, &asked.module_id, changes)
            .await?;
        Ok(Response::new(UpdateModuleResponse {
            module: Some(module(&updated)),
        }))
    }

    async fn activate_module(
        &self,
        request: Request<ActivateModuleRequest>,
    ) -> Result<Response<ActivateModuleResponse>, Status> {
        let principal = identity::principal(&request)?;
        let asked = request.get_ref();
        let module_id = module_id(&asked.module_id)?;
        if !asked.version.is_empty()
            && (asked.version.len() > MAX_VERSION
                || semver::Version::parse(&asked.version).is_err())
        {
            return Err(
                ApiError::invalid_field("version", "must be a semantic version, or empty").into(),
            );
        }
        let activated = self
            .catalog
            .activate(principal, module_id, &asked.version)
            .await?;
        Ok(Response::new(ActivateModuleResponse {
            module: Some(module(&activated)),
        }))
    }

    async fn deactivate_module(
        &self,
        request: Request<DeactivateModuleRequest>,
    ) -> Result<Response<DeactivateModuleResponse>, Status> {
        let principal = identity::principal(&request)?;
        let module_id = module_id(&request.get_ref().module_id)?;
        let deactivated = self.catalog.deactivate(principal, module_id).await?;
        Ok(Response::new(DeactivateModuleResponse {
            module: Some(module(&deactivated)),
        }))
    }

    async fn delete_module(
        &self,
        request: Request<DeleteModuleRequest>,
    ) -> Result<Response<DeleteModuleResponse>, Status> {
        let principal = identity::principal(&request)?;
        let module_id = module_id(&request.get_ref().module_id)?;
        self.catalog.delete(principal, module_id).await?;
        Ok(Response::new(DeleteModuleResponse {}))
    }

    async fn register_instance(
        &self,
        request: Request<RegisterInstanceRequest>,
    ) -> Result<Response<RegisterInstanceResponse>, Status> {
        let principal = identity::principal(&request)?.clone();
        let asked = instances::new_instance(request.into_inner())?;
        let lease = asked.lease;
        let registered = self.instances.register(&principal, asked).await?;
        Ok(Response::new(RegisterInstanceResponse {
            instance: Some(instances::instance(&registered)),
            lease_ttl: Some(instances::duration(lease)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let principal = identity::principal(&request)?;
        let asked = request.get_ref();
        let instance_id = instances::instance_id(&asked.instance_id)?;
        let reported = instances::reported(asked.status)?;
        let (lease_expires_at, status) = self
            .instances
            .heartbeat(principal, instance_id, reported)
            .await?;
        Ok(Response::new(HeartbeatResponse {
            lease_expires_at: Some(timestamp(lease_expires_at)),
            status: instances::proto_status(status).into(),
        }))
    }

    async fn deregister_instance(
        &self,
        request: Request<DeregisterInstanceRequest>,
    ) -> Result<Response<DeregisterInstanceResponse>, Status> {
        let principal = identity::principal(&request)?;
        let instance_id = instances::instance_id(&request.get_ref().instance_id)?;
        self.instances.deregister(principal, instance_id).await?;
        Ok(Response::new(DeregisterInstanceResponse {}))
    }

    async fn watch_instances(
        &self,
        request: Request<WatchInstancesRequest>,
    ) -> Result<Response<BoxStream<WatchInstancesResponse>>, Status> {
        let principal = identity::principal(&request)?.clone();
        let asked = instances::watch_request(request.into_inner())?;
        let mut events = self.watches.watch(&principal, asked).await?;
        let stream = futures_util::stream::poll_fn(move |context| events.poll_recv(context))
            .map(|event| event.map(instances::watch_event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Hex of the last module id of the previous page.
fn module_cursor(token: &str) -> Result<Option<String>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|module_id| text::is_module_id(module_id))
        .map(Some)
        .ok_or_else(|| "is not a token this call gave".to_owned())
}

fn required_manifest(manifest: Option<&ModuleManifest>) -> Result<&ModuleManifest, ApiError> {
    manifest.ok_or_else(|| ApiError::invalid_field("manifest", "is required"))
}

fn module_id(value: &str) -> Result<&str, ApiError> {
    if text::is_module_id(value) {
        Ok(value)
    } else {
        Err(ApiError::invalid_field("module_id", text::MODULE_ID_RULE))
    }
}

fn page_size(asked: i32) -> Result<i64, String> {
    match asked {
        0 => Ok(DEFAULT_PAGE_SIZE.into()),
        1..=MAX_PAGE_SIZE => Ok(asked.into()),
        _ => Err(format!("must be 0 to {MAX_PAGE_SIZE}")),
    }
}

/// Hex of `<microseconds since the epoch>/<version>`.
fn cursor_token(registered_at: DateTime<Utc>, version: &str) -> String {
    hex::encode(format!("{}/{version}", registered_at.timestamp_micros()))
}

fn version_cursor(token: &str) -> Result<Option<VersionCursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || ApiError::invalid_field("page_token", "is not a token this call gave");
    if token.len() > MAX_PAGE_TOKEN {
        return Err(malformed());
    }
    let decoded = hex::decode(token).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (micros, version) = decoded.split_once('/').ok_or_else(malformed)?;
    let micros: i64 = micros.parse().map_err(|_| malformed())?;
    let registered_at = DateTime::from_timestamp_micros(micros).ok_or_else(malformed)?;
    Ok(Some((registered_at, version.to_owned())))
}

fn module(record: &ModuleRecord) -> Module {
    Module {
        module_id: record.module_id.clone(),
        display_name: record.display_name.clone(),
        description: record.description.clone(),
        category: record.category.clone(),
        status: match record.status {
            ModuleStatus::Inactive => ProtoModuleStatus::Inactive,
            ModuleStatus::Active => ProtoModuleStatus::Active,
        }
        .into(),
        active_version: record.active_version.clone().unwrap_or_default(),
        latest_version: record.latest_version.clone(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
    }
}

fn version(record: &ModuleVersionRecord, manifest: ModuleManifest) -> ModuleVersion {
    ModuleVersion {
        module_id: record.module_id.clone(),
        version: record.version.clone(),
        manifest: Some(manifest),
        registered_at: Some(timestamp(record.registered_at)),
    }
}
