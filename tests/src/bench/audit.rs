//! The audit part of `plinth-bench`, on core-server processes of its own:
//! RecordEvents throughput (batches of 100 from 8 streams, one tenant
//! each) with the server's CPU per event, on PostgreSQL with Redis (the
//! event stream published too) and on the embedded SQLite; then, with the
//! PostgreSQL log filled to a million events, QueryEvents by actor and the
//! delay from a commit to a tail receiving the event.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use plinth_api::{
    audit::v1::{
        EventInput, Outcome, QueryEventsRequest, RecordEventsRequest, TailEventsRequest,
        audit_service_client::AuditServiceClient, query_events_request, tail_events_response,
    },
    auth::v1::{CreateApiKeyRequest, auth_service_client::AuthServiceClient},
    registry::v1::{
        ActivateModuleRequest, ModuleManifest, RegisterModuleRequest,
        module_registry_service_client::ModuleRegistryServiceClient,
    },
    tenant::v1::{
        CreateTenantRequest, EnableModulesRequest, ModuleEnablement,
        tenant_service_client::TenantServiceClient,
    },
};
use tonic::transport::Channel;
use uuid::Uuid;

use super::{ServerProcess, connect, core_server_command, free_address, new_histogram};
use crate::{
    Backend, Credentials, KeyedChannel, TestDatabase, TestRedis, random_key_encryption_key,
};

/// The module whose key records.
const MODULE: &str = "ledger";
const STREAMS: usize = 8;
const BATCH: usize = 100;
/// Users each tenant's events are claimed for (QueryEvents looks one up).
const USERS: usize = 1_000;
const QUERIES: usize = 2_000;
const TAIL_SAMPLES: usize = 500;

const MIN_EVENTS_PER_SECOND_POSTGRES: f64 = 20_000.0;
const MIN_EVENTS_PER_SECOND_SQLITE: f64 = 10_000.0;
const MAX_QUERY_P99: Duration = Duration::from_millis(20);
const MAX_TAIL_P99: Duration = Duration::from_millis(50);

/// RecordEvents on one backend.
pub struct Throughput {
    pub backend: &'static str,
    pub events: u64,
    pub elapsed: Duration,
    pub server_cpu: Duration,
    pub batch_latency: Histogram<u64>,
    pub min_events_per_second: f64,
}

impl Throughput {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Everything the audit bench measured.
pub struct AuditFigures {
    pub throughput: Vec<Throughput>,
    pub filled_events: u64,
    /// Events recorded while filling, and how long that took.
    pub fill_recorded: u64,
    pub fill_elapsed: Duration,
    pub query_latency: Histogram<u64>,
    pub query_rows: u64,
    /// From a RecordEvents answer (the commit) to the tail receiving it.
    pub tail_after_commit: Histogram<u64>,
    /// From sending the RecordEvents call.
    pub tail_from_call: Histogram<u64>,
}

/// A server with `STREAMS` tenants holding the bench module, and its key.
struct Recording {
    server: ServerProcess,
    channel: Channel,
    operator_key: String,
    module_key: String,
    tenants: Vec<String>,
    users: Vec<String>,
    _directory: tempfile::TempDir,
}

impl Recording {
    async fn start(
        core_server: &Path,
        database: &TestDatabase,
        redis: Option<&TestRedis>,
    ) -> anyhow::Result<Recording> {
        let directory = tempfile::tempdir()?;
        let address = free_address()?;
        let mut command = core_server_command(core_server, address, directory.path());
        command
            .args(["--database-url", &database.url])
            .env("PLINTH_KEY_ENCRYPTION_KEY", random_key_encryption_key());
        if let Some(redis) = redis {
            command.args(["--redis-url", &redis.url, "--redis-prefix", &redis.prefix]);
        }
        let (server, _) = ServerProcess::start(command, address).await?;
        let operator_key =
            std::fs::read_to_string(directory.path().join(core_server::BOOTSTRAP_KEY_FILE))?;
        let channel = connect(address, 1).await?.remove(0);
        let credentials = Credentials::api_key(&operator_key);
        let mut registry =
            ModuleRegistryServiceClient::with_interceptor(channel.clone(), credentials.clone());
        registry
            .register_module(RegisterModuleRequest {
                manifest: Some(ModuleManifest {
                    id: MODULE.to_owned(),
                    version: "1.0.0".to_owned(),
                    display_name: "Ledger".to_owned(),
                    ..ModuleManifest::default()
                }),
            })
            .await?;
        registry
            .activate_module(ActivateModuleRequest {
                module_id: MODULE.to_owned(),
                version: "1.0.0".to_owned(),
            })
            .await?;
        let mut tenants_client =
            TenantServiceClient::with_interceptor(channel.clone(), credentials.clone());
        let mut tenants = Vec::with_capacity(STREAMS);
        for index in 0..STREAMS {
            let tenant = tenants_client
                .create_tenant(CreateTenantRequest {
                    code: format!("ledger-{index}"),
                    name: format!("Ledger {index}"),
                    ..CreateTenantRequest::default()
                })
                .await?
                .into_inner()
                .tenant
                .ok_or_else(|| anyhow::anyhow!("no tenant"))?;
            tenants_client
                .enable_modules(EnableModulesRequest {
                    tenant_id: tenant.id.clone(),
                    modules: vec![ModuleEnablement {
                        module_id: MODULE.to_owned(),
                        ..ModuleEnablement::default()
                    }],
                    enable_dependencies: false,
                })
                .await?;
            tenants.push(tenant.id);
        }
        let module_key = AuthServiceClient::with_interceptor(channel.clone(), credentials)
            .create_api_key(CreateApiKeyRequest {
                name: "ledger".to_owned(),
                module_id: MODULE.to_owned(),
                ..CreateApiKeyRequest::default()
            })
            .await?
            .into_inner()
            .secret;
        Ok(Recording {
            server,
            channel,
            operator_key,
            module_key,
            tenants,
            users: (0..USERS).map(|_| Uuid::now_v7().to_string()).collect(),
            _directory: directory,
        })
    }

    fn client(&self, channel: Channel, key: &str) -> AuditServiceClient<KeyedChannel> {
        AuditServiceClient::with_interceptor(channel, Credentials::api_key(key))
    }

    /// One stream per tenant, each on a connection of its own, recording
    /// batches until `until` (or `each` events); events recorded and the
    /// latency of each batch.
    async fn record(
        &self,
        until: Instant,
        each: Option<u64>,
    ) -> anyhow::Result<(u64, Histogram<u64>)> {
        let channels = connect(self.server.address, STREAMS).await?;
        let mut streams = Vec::with_capacity(STREAMS);
        for (index, channel) in channels.into_iter().enumerate() {
            let mut client = self.client(channel, &self.module_key);
            let tenant_id = self.tenants[index].clone();
            let users = Arc::new(self.users.clone());
            streams.push(tokio::spawn(async move {
                let mut latency = new_histogram();
                let mut events = 0_u64;
                let mut batch_number = 0_usize;
                while Instant::now() < until && each.is_none_or(|each| events < each) {
                    let request = RecordEventsRequest {
                        tenant_id: tenant_id.clone(),
                        events: batch(batch_number),
                        claimed_user_id: users[batch_number % users.len()].clone(),
                    };
                    batch_number += 1;
                    let began = Instant::now();
                    client.record_events(request).await?;
                    latency.saturating_record(began.elapsed().as_micros() as u64);
                    events += BATCH as u64;
                }
                anyhow::Ok((events, latency))
            }));
        }
        let mut total = 0;
        let mut latency = new_histogram();
        for stream in streams {
            let (events, stream_latency) = stream.await??;
            total += events;
            latency.add(&stream_latency)?;
        }
        Ok((total, latency))
    }
}

/// A batch of invoice events, numbered.
fn batch(number: usize) -> Vec<EventInput> {
    (0..BATCH)
        .map(|index| EventInput {
            action: format!("{MODULE}.invoice.posted"),
            resource_type: "invoice".to_owned(),
            resource_id: format!("{number}-{index}"),
            outcome: Outcome::Success.into(),
            ..EventInput::default()
        })
        .collect()
}

/// RecordEvents for `seconds` on the server.
async fn throughput(
    backend: &'static str,
    recording: &Recording,
    seconds: u64,
    min_events_per_second: f64,
) -> anyhow::Result<Throughput> {
    // A second of warm-up, then the measured window.
    recording
        .record(Instant::now() + Duration::from_secs(1), None)
        .await?;
    let cpu_before = recording.server.cpu_time();
    let started = Instant::now();
    let (events, batch_latency) = recording
        .record(started + Duration::from_secs(seconds), None)
        .await?;
    let elapsed = started.elapsed();
    Ok(Throughput {
        backend,
        events,
        elapsed,
        server_cpu: recording.server.cpu_time().saturating_sub(cpu_before),
        batch_latency,
        min_events_per_second,
    })
}

/// Runs the audit bench: `seconds` of RecordEvents per backend, then the
/// PostgreSQL log filled to `fill_to` events for queries and the tail.
pub async fn measure(
    core_server: &Path,
    seconds: u64,
    fill_to: u64,
) -> anyhow::Result<AuditFigures> {
    let sqlite = TestDatabase::create(Backend::Sqlite).await;
    let embedded = Recording::start(core_server, &sqlite, None).await?;
    let sqlite_throughput = throughput(
        "SQLite (embedded)",
        &embedded,
        seconds,
        MIN_EVENTS_PER_SECOND_SQLITE,
    )
    .await?;
    drop(embedded);

    let postgres = TestDatabase::create(Backend::Postgres).await;
    let redis = TestRedis::new();
    let recording = Recording::start(core_server, &postgres, Some(&redis)).await?;
    let postgres_throughput = throughput(
        "PostgreSQL + Redis",
        &recording,
        seconds,
        MIN_EVENTS_PER_SECOND_POSTGRES,
    )
    .await?;

    let filled_before = stored_events(&postgres).await?;
    let fill_started = Instant::now();
    let missing = fill_to.saturating_sub(filled_before);
    let (fill_recorded, _) = recording
        .record(
            Instant::now() + Duration::from_secs(3600),
            Some(missing.div_ceil(STREAMS as u64)),
        )
        .await?;
    let fill_elapsed = fill_started.elapsed();
    let filled_events = stored_events(&postgres).await?;

    let (query_latency, query_rows) = query_by_actor(&recording).await?;
    let (tail_after_commit, tail_from_call) = tail_delivery(&recording).await?;
    Ok(AuditFigures {
        throughput: vec![postgres_throughput, sqlite_throughput],
        filled_events,
        fill_recorded,
        fill_elapsed,
        query_latency,
        query_rows,
        tail_after_commit,
        tail_from_call,
    })
}

async fn stored_events(database: &TestDatabase) -> anyhow::Result<u64> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(&database.url).await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&mut connection)
        .await?;
    Ok(count as u64)
}

/// Sequential QueryEvents by a claimed user (a page of at most 100 of its
/// events), each user and tenant in turn, as the operator.
async fn query_by_actor(recording: &Recording) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut client = recording.client(recording.channel.clone(), &recording.operator_key);
    let mut latency = new_histogram();
    let mut rows = 0;
    for index in 0..QUERIES {
        let request = QueryEventsRequest {
            chain: Some(query_events_request::Chain::TenantId(
                recording.tenants[index % STREAMS].clone(),
            )),
            actor_user_id: recording.users[index % USERS].clone(),
            page_size: 100,
            ..QueryEventsRequest::default()
        };
        let began = Instant::now();
        let page = client.query_events(request).await?.into_inner();
        latency.saturating_record(began.elapsed().as_micros() as u64);
        rows += page.events.len() as u64;
    }
    Ok((latency, rows))
}

/// One event at a time into a quiet server, each awaited on a tail.
async fn tail_delivery(recording: &Recording) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let mut tailer = recording.client(recording.channel.clone(), &recording.operator_key);
    let mut tail = tailer
        .tail_events(TailEventsRequest {
            action_prefix: format!("{MODULE}.tail."),
            ..TailEventsRequest::default()
        })
        .await?
        .into_inner();
    let mut recorder = recording.client(recording.channel.clone(), &recording.module_key);
    let (mut after_commit, mut from_call) = (new_histogram(), new_histogram());
    for number in 0..TAIL_SAMPLES {
        let sent = Instant::now();
        recorder
            .record_events(RecordEventsRequest {
                tenant_id: recording.tenants[number % STREAMS].clone(),
                events: vec![EventInput {
                    action: format!("{MODULE}.tail.sampled"),
                    resource_id: number.to_string(),
                    outcome: Outcome::Success.into(),
                    ..EventInput::default()
                }],
                claimed_user_id: String::new(),
            })
            .await?;
        let committed = Instant::now();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), tail.message())
                .await??
                .ok_or_else(|| anyhow::anyhow!("the tail ended"))?;
            if let Some(tail_events_response::Kind::Event(tailed)) = message.kind
                && tailed
                    .event
                    .is_some_and(|event| event.resource_id == number.to_string())
            {
                break;
            }
        }
        after_commit.saturating_record(committed.elapsed().as_micros() as u64);
        from_call.saturating_record(sent.elapsed().as_micros() as u64);
    }
    Ok((after_commit, from_call))
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Prints the figures and the targets; whether one was missed.
pub fn report(figures: &AuditFigures) -> bool {
    let mut failed = false;
    let mut verdict = |met: bool| {
        failed |= !met;
        if met { "met" } else { "MISSED" }
    };
    for throughput in &figures.throughput {
        let per_second = throughput.events_per_second();
        println!(
            "target RecordEvents, {}: {per_second:.0} events/s in batches of {BATCH} from \
             {STREAMS} streams over {STREAMS} tenants (>= {:.0}); batch p50 {:.1} ms, p99 {:.1} ms; \
             server cpu {:.1} µs/event: {}",
            throughput.backend,
            throughput.min_events_per_second,
            millis(&throughput.batch_latency, 0.50),
            millis(&throughput.batch_latency, 0.99),
            throughput.server_cpu.as_secs_f64() * 1e6 / throughput.events.max(1) as f64,
            verdict(per_second >= throughput.min_events_per_second)
        );
    }
    println!(
        "audit log filled to {} events on PostgreSQL ({:.0} events/s while filling)",
        figures.filled_events,
        figures.fill_recorded as f64 / figures.fill_elapsed.as_secs_f64().max(1e-3)
    );
    let query_p99 = Duration::from_micros(figures.query_latency.value_at_quantile(0.99));
    println!(
        "target QueryEvents by actor over {} events: p50 {:.2} ms, p99 {:.2} ms over {QUERIES} \
         queries ({:.0} rows each) (p99 < {} ms): {}",
        figures.filled_events,
        millis(&figures.query_latency, 0.50),
        query_p99.as_secs_f64() * 1000.0,
        figures.query_rows as f64 / QUERIES as f64,
        MAX_QUERY_P99.as_millis(),
        verdict(query_p99 < MAX_QUERY_P99 && figures.filled_events >= 1_000_000)
    );
    let tail_p99 = Duration::from_micros(figures.tail_after_commit.value_at_quantile(0.99));
    println!(
        "target tail delivery after commit: p50 {:.2} ms, p99 {:.2} ms over {TAIL_SAMPLES} \
         events (p99 < {} ms; from the call's start p50 {:.2} ms, p99 {:.2} ms): {}",
        millis(&figures.tail_after_commit, 0.50),
        tail_p99.as_secs_f64() * 1000.0,
        MAX_TAIL_P99.as_millis(),
        millis(&figures.tail_from_call, 0.50),
        millis(&figures.tail_from_call, 0.99),
        verdict(tail_p99 < MAX_TAIL_P99)
    );
    failed
}
