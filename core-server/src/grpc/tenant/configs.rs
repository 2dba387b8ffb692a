//! Module configuration: requests into commands, resolutions into messages.

use std::{future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;

use futures_util::StreamExt;
use plinth_api::prost::Message;
use plinth_api::tenant::v1::{
    self as proto, ConfigSource, set_module_config_request, watch_module_config_response::Event,
};
use plinth_platform::{error::ApiError, identity};
use tonic::{Request, Response, Status, codegen::BoxStream, server::UnaryService};

use super::Answer;
use crate::{
    grpc::validate::Fields,
    module_config::{
        ConfigWatches, LayerAddress, LayerChange, ModuleConfigs, Resolution, ResolveRequest,
        Source, WatchEvent, WatchRequest,
    },
};

/// Longest etag accepted (ours are 32 hex digits).
const MAX_ETAG: usize = 64;

fn address(
    fields: &mut Fields,
    module_id: &str,
    tenant_id: &str,
    company_id: &str,
) -> LayerAddress {
    LayerAddress {
        module_id: fields.module_id("module_id", module_id),
        tenant_id: fields.id("tenant_id", tenant_id),
        company_id: fields.optional_id("company_id", company_id),
    }
}

impl Fields {
    fn etag(&mut self, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        if value.len() > MAX_ETAG || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            self.violation("etag", "is not an etag from a previous answer");
            return None;
        }
        Some(value.to_owned())
    }
}

pub fn resolution_to_proto(
    resolution: &Resolution,
    include_provenance: bool,
) -> proto::ModuleConfigResolution {
    proto::ModuleConfigResolution {
        module_id: resolution.module_id.clone(),
        tenant_id: resolution.tenant_id.to_string(),
        company_id: resolution
            .company_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        document: resolution.document.clone(),
        etag: resolution.etag.clone(),
        module_version: resolution.module_version.clone(),
        provenance: match include_provenance {
            true => resolution
                .provenance
                .iter()
                .map(|(path, source)| proto::LeafSource {
                    path: path.clone(),
                    source: match source {
                        Source::Default => ConfigSource::ModuleDefault,
                        Source::Tenant => ConfigSource::Tenant,
                        Source::Company => ConfigSource::Company,
                    }
                    .into(),
                })
                .collect(),
            false => Vec::new(),
        },
    }
}

pub async fn get(
    configs: &ModuleConfigs,
    request: Request<proto::GetModuleConfigRequest>,
) -> Answer<proto::GetModuleConfigResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let address = address(
        &mut fields,
        &body.module_id,
        &body.tenant_id,
        &body.company_id,
    );
    fields.finish()?;
    let layer = configs.layer(principal, address).await?;
    Ok(Response::new(proto::GetModuleConfigResponse {
        document: layer.document,
        etag: layer.etag,
    }))
}

pub async fn set(
    configs: &ModuleConfigs,
    request: Request<proto::SetModuleConfigRequest>,
) -> Answer<proto::SetModuleConfigResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let address = address(
        &mut fields,
        &body.module_id,
        &body.tenant_id,
        &body.company_id,
    );
    let etag = fields.etag(&body.etag);
    let change = match &body.change {
        Some(set_module_config_request::Change::Document(text)) => {
            let document = fields.document("document", text);
            match etag {
                Some(etag) => Some(LayerChange::Replace { document, etag }),
                None => {
                    fields.violation("etag", "is required to replace a layer whole");
                    None
                }
            }
        }
        Some(set_module_config_request::Change::MergePatch(text)) => Some(LayerChange::Patch {
            patch: fields.document("merge_patch", text),
            etag,
        }),
        None => {
            fields.violation("change", "document or merge_patch is required");
            None
        }
    };
    fields.finish()?;
    let change = change.ok_or_else(|| ApiError::invalid_field("change", "is required"))?;
    let (layer, token) = configs.set_layer(principal, address, change).await?;
    Ok(Response::new(proto::SetModuleConfigResponse {
        document: layer.document,
        etag: layer.etag,
        consistency_token: token,
    }))
}

/// `ResolveModuleConfigResponse` on the wire, its resolution kept encoded
/// (see [`Resolution::encoded`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedResolveResponse {
    #[prost(bytes = "bytes", tag = "1")]
    pub resolution: Bytes,
    #[prost(string, tag = "2")]
    pub consistency_token: String,
}

/// ResolveModuleConfig, answered from encoded resolutions (see
/// [`plinth_platform::server::Rerouted`]); cloned per call, so it holds
/// the domain behind one reference count.
#[derive(Clone)]
pub struct Resolve(pub Arc<ModuleConfigs>);

impl UnaryService<proto::ResolveModuleConfigRequest> for Resolve {
    type Response = EncodedResolveResponse;
    type Future = Pin<Box<dyn Future<Output = Answer<EncodedResolveResponse>> + Send>>;

    fn call(&mut self, request: Request<proto::ResolveModuleConfigRequest>) -> Self::Future {
        let configs = self.0.clone();
        Box::pin(async move {
            let principal = identity::principal(&request)?;
            let body = request.get_ref();
            let mut fields = Fields::default();
            let resolve = ResolveRequest {
                module_id: fields.module_id("module_id", &body.module_id),
                tenant_id: fields.id("tenant_id", &body.tenant_id),
                company_id: fields.optional_id("company_id", &body.company_id),
                consistency: fields.modules_consistency(body.consistency.as_ref()),
            };
            fields.finish()?;
            let (resolution, token) = configs.resolve(principal, resolve).await?;
            let with_provenance = body.include_provenance;
            let encoded = resolution.encoded[usize::from(with_provenance)]
                .get_or_init(|| {
                    resolution_to_proto(&resolution, with_provenance)
                        .encode_to_vec()
                        .into()
                })
                .clone();
            Ok(Response::new(EncodedResolveResponse {
                resolution: encoded,
                consistency_token: token,
            }))
        })
    }
}

pub async fn watch(
    watches: &ConfigWatches,
    request: Request<proto::WatchModuleConfigRequest>,
) -> Answer<BoxStream<proto::WatchModuleConfigResponse>> {
    let principal = identity::principal(&request)?.clone();
    let body = request.get_ref();
    let mut fields = Fields::default();
    let asked = WatchRequest {
        module_id: fields.module_id("module_id", &body.module_id),
        tenant_id: fields.optional_id("tenant_id", &body.tenant_id),
        after_revision: body.after_revision,
        checkpoint_every: fields.checkpoint_interval(body.checkpoint_interval.as_ref()),
    };
    fields.finish()?;
    let mut events = watches.watch(&principal, asked).await?;
    let stream = futures_util::stream::poll_fn(move |context| events.poll_recv(context))
        .map(|event| event.map(watch_event).map_err(Status::from));
    Ok(Response::new(Box::pin(stream)))
}

fn watch_event(event: WatchEvent) -> proto::WatchModuleConfigResponse {
    let (revision, event) = match event {
        WatchEvent::Snapshot {
            revision,
            resync,
            resolutions,
            complete,
        } => (
            revision,
            Event::Snapshot(proto::ConfigSnapshot {
                resync,
                resolutions: resolutions
                    .iter()
                    .map(|resolution| resolution_to_proto(resolution, false))
                    .collect(),
                complete,
            }),
        ),
        WatchEvent::Change {
            revision,
            removed,
            resolution,
        } => {
            let resolution = match (resolution, removed) {
                (Some(resolution), _) => resolution_to_proto(&resolution, false),
                (None, Some((tenant_id, company_id))) => proto::ModuleConfigResolution {
                    tenant_id: tenant_id.to_string(),
                    company_id: company_id.map(|id| id.to_string()).unwrap_or_default(),
                    ..proto::ModuleConfigResolution::default()
                },
                (None, None) => proto::ModuleConfigResolution::default(),
            };
            (
                revision,
                Event::Change(proto::ConfigChange {
                    removed: removed.is_some(),
                    resolution: Some(resolution),
                }),
            )
        }
        WatchEvent::Checkpoint { revision } => {
            (revision, Event::Checkpoint(proto::ConfigCheckpoint {}))
        }
    };
    proto::WatchModuleConfigResponse {
        revision: u64::try_from(revision).unwrap_or_default(),
        event: Some(event),
    }
}
