//! The registry's hot calls: heartbeats of a module's instances, and
//! discovery of them, both by the module's own key.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use plinth_client::registry::v1::{
    DiscoverInstancesRequest, HeartbeatRequest, ModuleManifest, RegisterInstanceRequest,
    RegisterModuleRequest, module_registry_service_client::ModuleRegistryServiceClient,
};
use tonic::transport::Channel;

use super::{
    Load, Measurement, ServerProcess,
    report::{DISCOVER, HEARTBEAT},
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
                lease_ttl: Some(plinth_client::prost_types::Duration {
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
                status: plinth_client::registry::v1::InstanceStatus::Serving.into(),
            })
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

pub async fn measure(
    load: Load,
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
    let module_id = module_id.to_owned();
    let discover = super::measure(DISCOVER, core, channels, load, |channel| {
        let (client, module_id) = (client_of(channel), module_id.clone());
        move || {
            let mut client = client.clone();
            let request = DiscoverInstancesRequest {
                module_id: module_id.clone(),
                ..DiscoverInstancesRequest::default()
            };
            async move {
                let found = client.discover_instances(request).await?.into_inner();
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
    .await;
    vec![heartbeat, discover]
}
