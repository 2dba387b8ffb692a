//! Active health probing: each replica asks `grpc.health.v1` of the
//! instances it hears from, as each module's manifest says (service,
//! interval, timeout, failure threshold), over TLS with the core's own
//! certificate for `https://` endpoints when one is configured. After the
//! threshold of consecutive failures the instance is NOT_SERVING; a probe
//! that answers SERVING afterwards makes it SERVING again. Each endpoint
//! keeps one connection across probes (see [`InstanceChannels`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use plinth_api::{prost::Message, registry::v1::ModuleManifest};
use plinth_platform::{config::Config, store::instances::InstanceStatus};
use tokio::time::Instant;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use uuid::Uuid;

use crate::{connections::InstanceChannels, instances::Instances};

/// How often the prober looks for probes that are due.
const TICK: Duration = Duration::from_millis(200);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_THRESHOLD: u32 = 3;

/// How a module version is probed.
#[derive(Debug, Clone)]
struct HealthSettings {
    service: String,
    interval: Duration,
    timeout: Duration,
    threshold: u32,
}

impl HealthSettings {
    fn of(manifest: &ModuleManifest) -> HealthSettings {
        let health = manifest.health_check.clone().unwrap_or_default();
        let interval = health
            .interval
            .and_then(|interval| Duration::try_from(interval).ok())
            .unwrap_or(DEFAULT_INTERVAL);
        let timeout = health
            .timeout
            .and_then(|timeout| Duration::try_from(timeout).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
            .min(interval);
        HealthSettings {
            service: health.service,
            interval,
            timeout,
            threshold: match health.failure_threshold {
                0 => DEFAULT_THRESHOLD,
                threshold => threshold,
            },
        }
    }
}

#[derive(Debug)]
struct ProbeState {
    next_at: Instant,
    failures: u32,
    marked_down: bool,
    in_flight: bool,
}

pub struct Prober {
    instances: Arc<Instances>,
    states: Mutex<HashMap<Uuid, ProbeState>>,
    settings: Mutex<HashMap<(String, String), HealthSettings>>,
    channels: InstanceChannels,
}

impl Prober {
    /// Probes for as long as the runtime runs.
    pub fn start(instances: Arc<Instances>, config: &Config) {
        let prober = Arc::new(Prober {
            instances,
            states: Mutex::default(),
            settings: Mutex::default(),
            channels: InstanceChannels::new(config),
        });
        tokio::spawn(probe_forever(prober));
    }

    /// Starts the probes that are due.
    async fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        let heard = self.instances.heard_from();
        lock(&self.states).retain(|instance_id, _| heard.iter().any(|(id, ..)| id == instance_id));
        self.channels
            .retain(|endpoint| heard.iter().any(|(.., heard)| heard == endpoint));
        for (instance_id, module_id, version, endpoint) in heard {
            let due = {
                let mut states = lock(&self.states);
                let state = states.entry(instance_id).or_insert(ProbeState {
                    next_at: now,
                    failures: 0,
                    marked_down: false,
                    in_flight: false,
                });
                let due = !state.in_flight && state.next_at <= now;
                if due {
                    state.in_flight = true;
                }
                due
            };
            if !due {
                continue;
            }
            let Some(settings) = self.settings(&module_id, &version).await else {
                continue;
            };
            let prober = self.clone();
            tokio::spawn(async move {
                let serving = prober.probe(&endpoint, &settings).await;
                prober.record(instance_id, serving, &settings).await;
            });
        }
    }

    async fn settings(&self, module_id: &str, version: &str) -> Option<HealthSettings> {
        let key = (module_id.to_owned(), version.to_owned());
        if let Some(settings) = lock(&self.settings).get(&key) {
            return Some(settings.clone());
        }
        let record = self
            .instances
            .store()
            .modules
            .version(module_id, version)
            .await
            .ok()
            .flatten()?;
        let manifest = ModuleManifest::decode(record.manifest.as_slice()).ok()?;
        let settings = HealthSettings::of(&manifest);
        lock(&self.settings).insert(key, settings.clone());
        Some(settings)
    }

    /// The endpoint's connection, made on first use (it connects when
    /// first called, and again after it drops).
    /// Whether the instance answered SERVING within the timeout.
    async fn probe(&self, endpoint: &str, settings: &HealthSettings) -> bool {
        let Some(channel) = self.channels.channel(endpoint, settings.timeout) else {
            return false;
        };
        let asked = async {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: settings.service.clone(),
                })
                .await
                .ok()?;
            Some(answer.into_inner().status() == ServingStatus::Serving)
        };
        tokio::time::timeout(settings.timeout, asked)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    async fn record(&self, instance_id: Uuid, serving: bool, settings: &HealthSettings) {
        let change = {
            let mut states = lock(&self.states);
            let Some(state) = states.get_mut(&instance_id) else {
                return;
            };
            state.in_flight = false;
            state.next_at = Instant::now() + settings.interval;
            if serving {
                state.failures = 0;
                let recovered = state.marked_down;
                state.marked_down = false;
                recovered.then_some(InstanceStatus::Serving)
            } else {
                state.failures = state.failures.saturating_add(1);
                let down = state.failures >= settings.threshold && !state.marked_down;
                if down {
                    state.marked_down = true;
                }
                down.then_some(InstanceStatus::NotServing)
            }
        };
        if let Some(status) = change
            && let Err(error) = self.instances.probed(instance_id, status).await
        {
            tracing::warn!(%instance_id, %error, "recording a probe result failed");
        }
    }
}

async fn probe_forever(prober: Arc<Prober>) {
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        prober.tick().await;
    }
}

/// TLS for `https://` instances: trust the CA that signs module
/// certificates, present the core's own certificate.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
