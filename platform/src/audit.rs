//! Audit records and the per-tenant hash chain that makes them tamper-evident.
//!
//! Each chain (a tenant's, or the platform's) links its events by
//! `hash = SHA-256(previous_hash || canonical JSON of the event)`; changing,
//! removing or reordering an event breaks every later link.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock;

/// The chain of events that belong to no tenant.
pub const PLATFORM_CHAIN: &str = "platform";

/// The hash that precedes the first event of a chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Who acted, as established from the caller's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub user_id: String,
    pub module_id: String,
    pub api_key_id: String,
    pub peer_address: String,
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// An event about to be recorded; the store assigns its place in the chain.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub tenant_id: Option<Uuid>,
    pub company_id: Option<Uuid>,
    pub actor: Actor,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
    pub request_id: String,
    pub idempotency_key: String,
    pub occurred_at: Option<DateTime<Utc>>,
}

impl AuditDraft {
    /// A successful action on a resource, with no details yet.
    pub fn new(actor: Actor, action: &str, resource_type: &str, resource_id: &str) -> AuditDraft {
        AuditDraft {
            tenant_id: None,
            company_id: None,
            actor,
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            outcome: Outcome::Success,
            details: serde_json::Value::Object(Default::default()),
            request_id: String::new(),
            idempotency_key: String::new(),
            occurred_at: None,
        }
    }

    pub fn in_tenant(mut self, tenant_id: Option<Uuid>) -> AuditDraft {
        self.tenant_id = tenant_id;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> AuditDraft {
        self.details = details;
        self
    }

    pub fn with_request_id(mut self, request_id: &str) -> AuditDraft {
        request_id.clone_into(&mut self.request_id);
        self
    }

    pub fn chain_id(&self) -> String {
        self.tenant_id
            .map_or_else(|| PLATFORM_CHAIN.to_owned(), |id| id.to_string())
    }

    /// Places the draft in its chain after `previous_hash`, at `sequence`.
    pub fn seal(self, sequence: i64, previous_hash: [u8; 32]) -> AuditEvent {
        let recorded_at = clock::now();
        let mut event = AuditEvent {
            id: Uuid::now_v7(),
            chain_id: self.chain_id(),
            sequence,
            tenant_id: self.tenant_id.map(|id| id.to_string()).unwrap_or_default(),
            company_id: self.company_id.map(|id| id.to_string()).unwrap_or_default(),
            occurred_at: self.occurred_at.map_or(recorded_at, clock::truncate),
            recorded_at,
            actor: self.actor,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            outcome: self.outcome,
            details: self.details.to_string(),
            request_id: self.request_id,
            idempotency_key: self.idempotency_key,
            previous_hash: previous_hash.to_vec(),
            hash: Vec::new(),
        };
        event.hash = event.compute_hash().to_vec();
        event
    }
}

/// A recorded event, linked into its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub chain_id: String,
    pub sequence: i64,
    pub tenant_id: String,
    pub company_id: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: Outcome,
    /// JSON text, kept byte for byte as hashed.
    pub details: String,
    pub request_id: String,
    pub idempotency_key: String,
    #[serde(skip)]
    pub previous_hash: Vec<u8>,
    #[serde(skip)]
    pub hash: Vec<u8>,
}

impl AuditEvent {
    /// SHA-256 over the previous hash and the event's canonical JSON (every
    /// field but the two hashes, in declaration order).
    pub fn compute_hash(&self) -> [u8; 32] {
        let canonical = serde_json::to_vec(self).expect("an audit event always serialises");
        let mut hasher = Sha256::new();
        hasher.update(&self.previous_hash);
        hasher.update(&canonical);
        hasher.finalize().into()
    }
}

/// The result of checking a run of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerification {
    pub events_checked: i64,
    /// The first event whose link or hash does not verify.
    pub first_broken_sequence: Option<i64>,
    pub head_hash: Vec<u8>,
}

/// Checks that `events` (ascending, contiguous) link to each other and to
/// `expected_previous`, and that each hash matches its content.
pub fn verify_chain(expected_previous: &[u8], events: &[AuditEvent]) -> ChainVerification {
    let mut previous = expected_previous.to_vec();
    let first_sequence = events.first().map_or(1, |event| event.sequence);
    for (offset, event) in (0_i64..).zip(events) {
        let expected_sequence = first_sequence + offset;
        let intact = event.sequence == expected_sequence
            && event.previous_hash == previous
            && event.hash == event.compute_hash();
        if !intact {
            return ChainVerification {
                events_checked: offset,
                first_broken_sequence: Some(expected_sequence),
                head_hash: previous,
            };
        }
        previous.clone_from(&event.hash);
    }
    ChainVerification {
        events_checked: events.len() as i64,
        first_broken_sequence: None,
        head_hash: previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(length: i64) -> Vec<AuditEvent> {
        let mut previous = GENESIS_HASH;
        (1..=length)
            .map(|sequence| {
                let draft = AuditDraft::new(Actor::default(), "test.event.happened", "thing", "1")
                    .with_details(serde_json::json!({ "n": sequence }));
                let event = draft.seal(sequence, previous);
                previous = event.hash.clone().try_into().unwrap();
                event
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let chain = chain_of(4);
        let verification = verify_chain(&GENESIS_HASH, &chain);
        assert_eq!(verification.first_broken_sequence, None);
        assert_eq!(verification.events_checked, 4);
        assert_eq!(verification.head_hash, chain[3].hash);
    }

    #[test]
    fn an_edited_event_breaks_the_chain_at_that_event() {
        let mut chain = chain_of(4);
        chain[2].details = r#"{"n":99}"#.to_owned();
        assert_eq!(
            verify_chain(&GENESIS_HASH, &chain).first_broken_sequence,
            Some(3)
        );
    }

    #[test]
    fn a_removed_event_breaks_the_chain_where_it_was() {
        let mut chain = chain_of(4);
        chain.remove(1);
        assert_eq!(
            verify_chain(&GENESIS_HASH, &chain).first_broken_sequence,
            Some(2)
        );
    }

    #[test]
    fn a_swapped_actor_breaks_the_chain() {
        let mut chain = chain_of(2);
        chain[0].actor.user_id = "someone else".to_owned();
        assert_eq!(
            verify_chain(&GENESIS_HASH, &chain).first_broken_sequence,
            Some(1)
        );
    }
}
