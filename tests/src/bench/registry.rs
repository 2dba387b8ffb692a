//! The registry's hot calls: heartbeats of a module's instances, and
//! discovery of them, both by the module's own key; and, for scale, the
//! same discovery answer from a bare tonic server.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use plinth_api::registry::v1::{
    DiscoverInstancesRequest, DiscoverInstancesResponse, HeartbeatRequest, Instance,
    InstanceStatus, ModuleManifest, RegisterInstanceRequest, RegisterModuleRequest,
    module_registry_service_client::ModuleRegistryServiceClient,
    module_registry_service_server::ModuleRegistryService,
};
use tonic::{
    codegen::http::uri::PathAndQuery, service::interceptor::InterceptedService, transport::Channel,
};

use super::{
    Load, Measurement, ServerProcess,
    report::{DISCOVER, DISCOVER_BARE, HEARTBEAT},
};
use crate::Credentials;

/// Instances of the bench module, all serving.
const INSTANCES: usize = 8;

/// Registers the module of `module_key` with serving instances, each at
/// `endpoint` (a real `grpc.health.v1` server, so the registry's probes
/// keep them serving); their ids.
pub async fn populate(
    channel: Channel,
    module_id: &str,
    module_key: &str,
    endpoint: &str,
) -> anyhow::Result<Vec<String>> {
    let mut client =
        ModuleRegistryServiceClient::with_interceptor(channel, Credentials::api_key(module_key));
    client
        .register_module(RegisterModuleRequest {
            manifest: Some(ModuleManifest {
                id: module_id.to_owned(),
                version: "1.0.0".to_owned(),
                display_name: "Bench".to_owned(),
                // Takes any configuration object.
                config_schema: Some(plinth_api::prost_types::Struct {
                    fields: [(
                        "type".to_owned(),
                        plinth_api::prost_types::Value {
                            kind: Some(plinth_api::prost_types::value::Kind::StringValue(
                                "object".to_owned(),
                            )),
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
                ..ModuleManifest::default()
            }),
        })
        .await?;
    let mut ids = Vec::with_capacity(INSTANCES);
    for index in 0..INSTANCES {
        let registered = client
            .register_instance(RegisterInstanceRequest {
                module_id: module_id.to_owned(),
                version: "1.0.0".to_owned(),
                endpoint: endpoint.to_owned(),
                instance_key: format!("bench-{index}"),
                lease_ttl: Some(plinth_api::prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
                ..RegisterInstanceRequest::default()
            })
            .await?
            .into_inner();
        let id = registered
            .instance
            .ok_or_else(|| anyhow::anyhow!("registration returned no instance"))?
            .instance_id;
        client
            .heartbeat(HeartbeatRequest {
                instance_id: id.clone(),
                status: plinth_api::registry::v1::InstanceStatus::Serving.into(),
            })
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

const DISCOVER_PATH: &str = "/plinth.registry.v1.ModuleRegistryService/DiscoverInstances";

/// A DiscoverInstances answer as the load generator reads it: the
/// instances counted, their fields skipped unread. A load generator that
/// decodes every field spends its CPU (on the cores the server shares)
/// in proportion to the answer's size, which the echo's tiny answer does
/// not; h2load reads no message either.
#[derive(Clone, PartialEq, prost::Message)]
struct CountedInstances {
    #[prost(message, repeated, tag = "1")]
    instances: Vec<Unread>,
}

/// A message whose fields are all skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct Unread {}

/// What the echo process answers DiscoverInstances with: as many instances
/// as core-server's answer, of the same shape and about the same size, with
/// no identity, store or view behind it.
pub struct SameAnswer(DiscoverInstancesResponse);

impl SameAnswer {
    pub fn new(module_id: &str, endpoint: &str) -> SameAnswer {
        let now = plinth_platform::clock::timestamp(chrono::Utc::now());
        SameAnswer(DiscoverInstancesResponse {
            instances: (0..INSTANCES)
                .map(|index| Instance {
                    instance_id: uuid::Uuid::now_v7().to_string(),
                    module_id: module_id.to_owned(),
                    version: "1.0.0".to_owned(),
                    endpoint: endpoint.to_owned(),
                    labels: Default::default(),
                    status: InstanceStatus::Serving.into(),
                    registered_at: Some(now),
                    last_heartbeat_at: Some(now),
                    lease_expires_at: Some(now),
                    instance_key: format!("bench-{index}"),
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl ModuleRegistryService for SameAnswer {
    async fn discover_instances(
        &self,
        _request: tonic::Request<DiscoverInstancesRequest>,
    ) -> Result<tonic::Response<DiscoverInstancesResponse>, tonic::Status> {
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
    instance_ids: &[String],
) -> Vec<Measurement> {
    let key = Credentials::api_key(module_key);
    let client_of = |channel| ModuleRegistryServiceClient::with_interceptor(channel, key.clone());
    let ids = Arc::new(instance_ids.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let heartbeat = super::measure(HEARTBEAT, core, channels, load, |channel| {
        let (client, ids, next) = (client_of(channel), ids.clone(), next.clone());
        move || {
            let mut client = client.clone();
            let instance_id = ids[next.fetch_add(1, Ordering::Relaxed) % ids.len()].clone();
            async move {
                client
                    .heartbeat(HeartbeatRequest {
                        instance_id,
                        status: 0,
                    })
                    .await?;
                Ok(())
            }
        }
    })
    .await;
    let discover = |name, server, channels| {
        super::measure(name, server, channels, load, |channel| {
            let client = tonic::client::Grpc::new(InterceptedService::new(channel, key.clone()));
            let module_id = module_id.to_owned();
            move || {
                let mut client = client.clone();
                let request = DiscoverInstancesRequest {
                    module_id: module_id.clone(),
                    ..DiscoverInstancesRequest::default()
                };
                async move {
                    client.ready().await.map_err(|error| {
                        tonic::Status::unavailable(format!("connection: {error}"))
                    })?;
                    let found = client
                        .unary(
                            tonic::Request::new(request),
                            PathAndQuery::from_static(DISCOVER_PATH),
                            tonic_prost::ProstCodec::<_, CountedInstances>::default(),
                        )
                        .await?
                        .into_inner();
                    if found.instances.len() == INSTANCES {
                        Ok(())
                    } else {
                        Err(tonic::Status::internal(
                            "discovery missed serving instances",
                        ))
                    }
                }
            }
        })
    };
    let discovered = discover(DISCOVER, core, channels).await;
    let bare = discover(DISCOVER_BARE, echo, echo_channels).await;
    vec![heartbeat, discovered, bare]
}
