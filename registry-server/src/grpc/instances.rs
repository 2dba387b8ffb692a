//! Reading the instance calls: every field bounded, every bad field
//! reported at once.

use std::{collections::BTreeMap, ops::RangeInclusive, time::Duration};

use plinth_api::{
    prost_types,
    registry::v1::{
        DiscoverInstancesRequest, Instance, InstanceChange, InstanceEventKind, InstanceSnapshot,
        InstanceStatus as ProtoStatus, RegisterInstanceRequest, WatchCheckpoint,
        WatchInstancesRequest, WatchInstancesResponse, watch_instances_response::Event,
    },
};
use plinth_platform::{
    clock::timestamp,
    error::{ApiError, Violations},
    store::instances::{InstanceRecord, InstanceStatus},
    text,
};
use uuid::Uuid;

use crate::{
    discovery::Discovery,
    instances::{DEFAULT_LEASE, MAX_LEASE, MIN_LEASE, NewInstance},
    manifest::{self, MAX_REQUIREMENT, MAX_URL, MAX_VERSION},
    watch::{WatchEvent, WatchRequest},
};

const MAX_LABELS: usize = 32;
const MAX_LABEL_VALUE: usize = 200;
const MAX_INSTANCE_KEY: usize = 128;
const MAX_STATUSES: usize = 4;
const MAX_WATCHED_MODULES: usize = 50;
const MIN_CHECKPOINT: Duration = Duration::from_secs(1);
const MAX_CHECKPOINT: Duration = Duration::from_secs(300);
const DEFAULT_CHECKPOINT: Duration = Duration::from_secs(10);

pub fn new_instance(asked: RegisterInstanceRequest) -> Result<NewInstance, ApiError> {
    let mut violations = Violations::default();
    if !text::is_module_id(&asked.module_id) {
        violations.push("module_id", text::MODULE_ID_RULE);
    }
    if asked.version.len() > MAX_VERSION || semver::Version::parse(&asked.version).is_err() {
        violations.push("version", "must be a semantic version");
    }
    if !manifest::is_http_url(&asked.endpoint) {
        violations.push(
            "endpoint",
            format!("must be an absolute http(s) URL of at most {MAX_URL} characters"),
        );
    }
    let key_ok = (1..=MAX_INSTANCE_KEY).contains(&asked.instance_key.len())
        && asked
            .instance_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !key_ok {
        violations.push(
            "instance_key",
            format!("must be 1 to {MAX_INSTANCE_KEY} characters of [A-Za-z0-9._:-]"),
        );
    }
    labels(&mut violations, "labels", &asked.labels);
    let lease = bounded_duration(
        &mut violations,
        "lease_ttl",
        asked.lease_ttl,
        (MIN_LEASE..=MAX_LEASE, DEFAULT_LEASE),
        "must be 5 s to 5 min",
    );
    violations.into_result()?;
    Ok(NewInstance {
        module_id: asked.module_id,
        version: asked.version,
        endpoint: asked.endpoint,
        labels: asked.labels,
        lease,
        instance_key: asked.instance_key,
    })
}

pub fn discovery(asked: DiscoverInstancesRequest) -> Result<Discovery, ApiError> {
    let mut violations = Violations::default();
    if !text::is_module_id(&asked.module_id) {
        violations.push("module_id", text::MODULE_ID_RULE);
    }
    let version_requirement = if asked.version_requirement.is_empty() {
        None
    } else if asked.version_requirement.len() > MAX_REQUIREMENT {
        violations.push(
            "version_requirement",
            format!("must be at most {MAX_REQUIREMENT} characters"),
        );
        None
    } else {
        semver::VersionReq::parse(&asked.version_requirement)
            .map_err(|_| violations.push("version_requirement", "must be a semver requirement"))
            .ok()
    };
    let mut statuses = Vec::new();
    if asked.statuses.len() > MAX_STATUSES {
        violations.push(
            "statuses",
            format!("must have at most {MAX_STATUSES} entries"),
        );
    } else {
        for (index, value) in asked.statuses.iter().enumerate() {
            match ProtoStatus::try_from(*value).ok().and_then(status) {
                Some(found) if !statuses.contains(&found) => statuses.push(found),
                Some(_) => violations.push(&format!("statuses[{index}]"), "is listed twice"),
                None => violations.push(&format!("statuses[{index}]"), "must be an InstanceStatus"),
            }
        }
    }
    if statuses.is_empty() {
        statuses.push(InstanceStatus::Serving);
    }
    labels(&mut violations, "labels", &asked.labels);
    violations.into_result()?;
    Ok(Discovery {
        module_id: asked.module_id,
        version_requirement,
        statuses,
        labels: asked.labels,
    })
}

pub fn watch_request(asked: WatchInstancesRequest) -> Result<WatchRequest, ApiError> {
    let mut violations = Violations::default();
    if asked.module_ids.is_empty() || asked.module_ids.len() > MAX_WATCHED_MODULES {
        violations.push(
            "module_ids",
            format!("must have 1 to {MAX_WATCHED_MODULES} entries"),
        );
    } else {
        for (index, module_id) in asked.module_ids.iter().enumerate() {
            let field = format!("module_ids[{index}]");
            if !text::is_module_id(module_id) {
                violations.push(&field, text::MODULE_ID_RULE);
            } else if asked.module_ids[..index].contains(module_id) {
                violations.push(&field, "is listed twice");
            }
        }
    }
    let checkpoint_every = bounded_duration(
        &mut violations,
        "checkpoint_interval",
        asked.checkpoint_interval,
        (MIN_CHECKPOINT..=MAX_CHECKPOINT, DEFAULT_CHECKPOINT),
        "must be 1 s to 5 min",
    );
    violations.into_result()?;
    Ok(WatchRequest {
        module_ids: asked.module_ids,
        after_revision: asked.after_revision,
        checkpoint_every,
    })
}

/// The duration asked when it lies within `bounds` (the default when
/// unset); a violation of `field` saying `rule` otherwise.
fn bounded_duration(
    violations: &mut Violations,
    field: &str,
    asked: Option<prost_types::Duration>,
    (bounds, default): (RangeInclusive<Duration>, Duration),
    rule: &str,
) -> Duration {
    match asked.map(Duration::try_from) {
        None => default,
        Some(Ok(asked)) if bounds.contains(&asked) => asked,
        Some(_) => {
            violations.push(field, rule);
            default
        }
    }
}

pub fn watch_event(event: WatchEvent) -> WatchInstancesResponse {
    let (revision, event) = match event {
        WatchEvent::Snapshot {
            revision,
            resync,
            instances,
            complete,
        } => (
            revision,
            Event::Snapshot(InstanceSnapshot {
                resync,
                instances: instances.iter().map(instance).collect(),
                complete,
            }),
        ),
        WatchEvent::Change(change) => (
            change.revision,
            Event::Change(InstanceChange {
                kind: match change.removed {
                    true => InstanceEventKind::Removed,
                    false => InstanceEventKind::Upserted,
                }
                .into(),
                instance: Some(instance(&change.instance)),
            }),
        ),
        WatchEvent::Checkpoint { revision } => (revision, Event::Checkpoint(WatchCheckpoint {})),
    };
    WatchInstancesResponse {
        revision: revision.max(0) as u64,
        event: Some(event),
    }
}

/// What a heartbeat reports: serving, draining or not serving; nothing
/// when unspecified.
pub fn reported(value: i32) -> Result<Option<InstanceStatus>, ApiError> {
    let refused = || ApiError::invalid_field("status", "must be SERVING, DRAINING or NOT_SERVING");
    match ProtoStatus::try_from(value).map_err(|_| refused())? {
        ProtoStatus::Unspecified => Ok(None),
        ProtoStatus::Starting => Err(refused()),
        other => Ok(status(other)),
    }
}

pub fn instance_id(value: &str) -> Result<Uuid, ApiError> {
    (value.len() <= 45)
        .then(|| Uuid::try_parse(value).ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid_field("instance_id", "must be a UUID"))
}

fn labels(violations: &mut Violations, field: &str, labels: &BTreeMap<String, String>) {
    if labels.len() > MAX_LABELS {
        violations.push(field, format!("must have at most {MAX_LABELS} entries"));
        return;
    }
    for (key, value) in labels {
        let bytes = key.as_bytes();
        let key_ok = (1..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|&b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'/' | b'-')
            });
        if !key_ok {
            violations.push(field, "keys must match ^[a-z][a-z0-9._/-]{0,62}$");
        } else if let Some(problem) = text::text_problem(value, MAX_LABEL_VALUE) {
            violations.push(&format!("{field}[{key}]"), problem);
        }
    }
}

fn status(value: ProtoStatus) -> Option<InstanceStatus> {
    match value {
        ProtoStatus::Unspecified => None,
        ProtoStatus::Starting => Some(InstanceStatus::Starting),
        ProtoStatus::Serving => Some(InstanceStatus::Serving),
        ProtoStatus::NotServing => Some(InstanceStatus::NotServing),
        ProtoStatus::Draining => Some(InstanceStatus::Draining),
    }
}

pub fn proto_status(value: InstanceStatus) -> ProtoStatus {
    match value {
        InstanceStatus::Starting => ProtoStatus::Starting,
        InstanceStatus::Serving => ProtoStatus::Serving,
        InstanceStatus::NotServing => ProtoStatus::NotServing,
        InstanceStatus::Draining => ProtoStatus::Draining,
    }
}

pub fn instance(record: &InstanceRecord) -> Instance {
    Instance {
        instance_id: record.instance_id.to_string(),
        module_id: record.module_id.clone(),
        version: record.version.clone(),
        endpoint: record.endpoint.clone(),
        labels: record.labels.clone(),
        status: proto_status(record.status).into(),
        registered_at: Some(timestamp(record.registered_at)),
        last_heartbeat_at: Some(timestamp(record.last_heartbeat_at)),
        lease_expires_at: Some(timestamp(record.lease_expires_at)),
        instance_key: record.instance_key.clone(),
    }
}

/// An instance as DiscoverInstances answers carry it.
pub fn encoded_instance(record: &InstanceRecord) -> bytes::Bytes {
    plinth_api::prost::Message::encode_to_vec(&instance(record)).into()
}

pub fn duration(value: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: value.as_secs() as i64,
        nanos: value.subsec_nanos() as i32,
    }
}
