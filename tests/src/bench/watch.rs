//! How fast an instance change reaches watchers: an instance's status is
//! flipped on one server, paced, and each flip is timed from the start of
//! its Heartbeat call to its arrival on every watcher's stream.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use plinth_api::registry::v1::{
    HeartbeatRequest, InstanceStatus, RegisterInstanceRequest, WatchInstancesRequest,
    module_registry_service_client::ModuleRegistryServiceClient, watch_instances_response::Event,
};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{ServerProcess, new_histogram, rbac::MODULE};
use crate::{Backend, Credentials, TestDatabase, TestRedis, random_key_encryption_key};

/// Status flips timed per watcher.
pub const CHANGES: usize = 200;
/// Wait between flips.
const PACE: Duration = Duration::from_millis(20);
/// The longest a flip may take to arrive before the run counts it lost.
const ARRIVAL_WAIT: Duration = Duration::from_secs(5);

/// One watcher's arrivals, in microseconds.
pub struct Delivery {
    pub name: String,
    pub latency: Histogram<u64>,
    pub max_p99: Duration,
}

/// A watcher of the module and the instants its changes to the instance
/// arrived at.
struct Watcher {
    name: String,
    max_p99: Duration,
    arrivals: JoinHandle<anyhow::Result<Vec<Instant>>>,
}

/// Registers an instance of `module_id` (at `endpoint`, which answers
/// health probes) on `writer`, starts a watch on each of `watchers` (name,
/// channel, target p99), then flips the instance's status [`CHANGES`]
/// times.
pub async fn measure(
    writer: Channel,
    watchers: Vec<(String, Channel, Duration)>,
    module_id: &str,
    module_key: &str,
    endpoint: &str,
) -> anyhow::Result<Vec<Delivery>> {
    let key = Credentials::api_key(module_key);
    let mut client = ModuleRegistryServiceClient::with_interceptor(writer, key.clone());
    let instance_id = client
        .register_instance(RegisterInstanceRequest {
            module_id: module_id.to_owned(),
            version: "1.0.0".to_owned(),
            endpoint: endpoint.to_owned(),
            instance_key: format!("watched-{}", uuid::Uuid::now_v7().simple()),
            ..RegisterInstanceRequest::default()
        })
        .await?
        .into_inner()
        .instance
        .ok_or_else(|| anyhow::anyhow!("registration returned no instance"))?
        .instance_id;
    let mut started = Vec::with_capacity(watchers.len());
    for (name, channel, max_p99) in watchers {
        let watcher = ModuleRegistryServiceClient::with_interceptor(channel, key.clone());
        started.push(Watcher {
            name,
            max_p99,
            arrivals: watch(watcher, module_id, instance_id.clone()).await?,
        });
    }
    let mut sent = Vec::with_capacity(CHANGES);
    for flip in 0..CHANGES {
        let status = match flip % 2 {
            0 => InstanceStatus::Draining,
            _ => InstanceStatus::Serving,
        };
        sent.push(Instant::now());
        client
            .heartbeat(HeartbeatRequest {
                instance_id: instance_id.clone(),
                status: status.into(),
            })
            .await?;
        tokio::time::sleep(PACE).await;
    }
    let mut deliveries = Vec::with_capacity(started.len());
    for watcher in started {
        let arrivals = watcher.arrivals.await??;
        let mut latency = new_histogram();
        for (sent, arrived) in sent.iter().zip(&arrivals) {
            latency.record(arrived.duration_since(*sent).as_micros() as u64)?;
        }
        deliveries.push(Delivery {
            name: watcher.name,
            latency,
            max_p99: watcher.max_p99,
        });
    }
    Ok(deliveries)
}

type Client = ModuleRegistryServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, Credentials>,
>;

/// Starts a watch and, once its snapshot is in, a task collecting when
/// each of the instance's next [`CHANGES`] changes arrives.
async fn watch(
    mut client: Client,
    module_id: &str,
    instance_id: String,
) -> anyhow::Result<JoinHandle<anyhow::Result<Vec<Instant>>>> {
    let mut stream = client
        .watch_instances(WatchInstancesRequest {
            module_ids: vec![module_id.to_owned()],
            ..WatchInstancesRequest::default()
        })
        .await?
        .into_inner();
    loop {
        let message = stream
            .message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the watch ended in its snapshot"))?;
        if let Some(Event::Snapshot(part)) = message.event
            && part.complete
        {
            break;
        }
    }
    Ok(tokio::spawn(async move {
        let mut arrivals = Vec::with_capacity(CHANGES);
        while arrivals.len() < CHANGES {
            let message = tokio::time::timeout(ARRIVAL_WAIT, stream.message())
                .await
                .map_err(|_| anyhow::anyhow!("a change did not arrive within {ARRIVAL_WAIT:?}"))??
                .ok_or_else(|| anyhow::anyhow!("the watch ended"))?;
            let arrived = Instant::now();
            if let Some(Event::Change(change)) = message.event
                && change
                    .instance
                    .is_some_and(|instance| instance.instance_id == instance_id)
            {
                arrivals.push(arrived);
            }
        }
        Ok(arrivals)
    }))
}

/// A change reaches a watcher on the replica written to within this.
const SAME_REPLICA_P99: Duration = Duration::from_millis(50);
/// And one on another replica (through Redis) within this.
const OTHER_REPLICA_P99: Duration = Duration::from_millis(200);

/// Watch deliveries on the embedded server (at `embedded`, whose module
/// key is `module_key`), then on two replicas of `core_server` on
/// PostgreSQL and Redis started for the purpose; instances point at `echo`.
pub async fn deliveries(
    core_server: &Path,
    embedded: SocketAddr,
    echo: SocketAddr,
    module_key: &str,
) -> anyhow::Result<Vec<Delivery>> {
    let endpoint = format!("http://{echo}");
    let embedded = super::connect(embedded, 1).await?.remove(0);
    let mut deliveries = measure(
        embedded.clone(),
        vec![(
            "same replica, embedded".to_owned(),
            embedded,
            SAME_REPLICA_P99,
        )],
        MODULE,
        module_key,
        &endpoint,
    )
    .await?;

    let database = TestDatabase::create(Backend::Postgres).await;
    let redis = TestRedis::new();
    let key_encryption_key = random_key_encryption_key();
    let directories = [tempfile::tempdir()?, tempfile::tempdir()?];
    let mut replicas = Vec::with_capacity(directories.len());
    for directory in &directories {
        let address = super::free_address()?;
        let mut command = super::core_server_command(core_server, address, directory.path());
        command
            .args(["--database-url", &database.url])
            .args(["--redis-url", &redis.url, "--redis-prefix", &redis.prefix])
            .env("PLINTH_KEY_ENCRYPTION_KEY", &key_encryption_key);
        replicas.push(ServerProcess::start(command, address).await?.0);
    }
    let operator_key =
        std::fs::read_to_string(directories[0].path().join(core_server::BOOTSTRAP_KEY_FILE))?;
    let written = super::connect(replicas[0].address, 1).await?.remove(0);
    let other = super::connect(replicas[1].address, 1).await?.remove(0);
    let module_key = super::module_key(written.clone(), &operator_key).await?;
    super::registry::populate(written.clone(), MODULE, &module_key, &endpoint).await?;
    deliveries.extend(
        measure(
            written.clone(),
            vec![
                (
                    "same replica, PostgreSQL + Redis".to_owned(),
                    written,
                    SAME_REPLICA_P99,
                ),
                (
                    "other replica, PostgreSQL + Redis".to_owned(),
                    other,
                    OTHER_REPLICA_P99,
                ),
            ],
            MODULE,
            &module_key,
            &endpoint,
        )
        .await?,
    );
    drop(replicas);
    Ok(deliveries)
}
