//! Audit records and the per-tenant hash chain that makes them tamper-evident.
//!
//! Each chain (a tenant's, or the platform's) links its events by
//! `hash = SHA-256(previous_hash || RFC 8785 JSON of the event's fields)`,
//! the canonical form the AuditEvent proto specifies, so anyone can verify
//! an exported chain; changing, removing or reordering an event breaks every
//! later link.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock;

/// The chain of events that belong to no tenant.
pub const PLATFORM_CHAIN: &str = "platform";

/// The resource types of the core's events about a module in a tenant,
/// which the module reads beside its own.
pub const MODULE_RESOURCE_TYPES: [&str; 3] = ["tenant_module", "company_module", "module_config"];

/// The hash that precedes the first event of a chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Who acted, as established from the caller's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: String,
    pub module_id: String,
    pub api_key_id: String,
    pub peer_address: String,
    /// The user was named by a module, not proven by a bearer token.
    pub user_claimed: bool,
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// JSON text, in canonical form (see [`AuditDraft::with_details`]).
    pub details: String,
    pub request_id: String,
    pub idempotency_key: String,
    /// What was submitted under the idempotency key, to tell a repeat from
    /// a conflicting reuse.
    pub idempotency_digest: Vec<u8>,
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
            details: "{}".to_owned(),
            request_id: String::new(),
            idempotency_key: String::new(),
            idempotency_digest: Vec::new(),
            occurred_at: None,
        }
    }

    pub fn in_tenant(mut self, tenant_id: Option<Uuid>) -> AuditDraft {
        self.tenant_id = tenant_id;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> AuditDraft {
        self.details = canonical_json(&details);
        self
    }

    /// Details already in canonical form (see [`canonical_json`]).
    pub fn with_canonical_details(mut self, details: String) -> AuditDraft {
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
            details: self.details,
            request_id: self.request_id,
            idempotency_key: self.idempotency_key,
            idempotency_digest: self.idempotency_digest,
            previous_hash: previous_hash.to_vec(),
            hash: Vec::new(),
        };
        // The details were just canonicalized: hash them as they are.
        event.hash = event.hash_with(event.details.as_bytes()).to_vec();
        event
    }
}

/// A recorded event, linked into its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// JSON text, in canonical form.
    pub details: String,
    pub request_id: String,
    pub idempotency_key: String,
    /// Not part of the chain: see [`AuditDraft::idempotency_digest`].
    pub idempotency_digest: Vec<u8>,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl AuditEvent {
    /// SHA-256 over the previous hash and the canonical form, the stored
    /// details canonicalized again (so the hash is of what they mean).
    pub fn compute_hash(&self) -> [u8; 32] {
        let details = match serde_json::from_str::<serde_json::Value>(&self.details) {
            Ok(details) => canonical_json(&details),
            // Details that no longer parse were tampered with: hashing them
            // as a string keeps the event unverifiable rather than failing.
            Err(_) => canonical_json(&serde_json::Value::String(self.details.clone())),
        };
        self.hash_with(details.as_bytes())
    }

    fn hash_with(&self, canonical_details: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(&self.previous_hash);
        hasher.update(self.canonical_form(canonical_details, false));
        hasher.finalize().into()
    }

    /// The event as one line of the export format (without the newline):
    /// the canonical form with the two hashes. Stored details are written
    /// as they are when they are JSON (a reader canonicalizes them to
    /// verify), else as a string.
    pub fn export_line(&self) -> String {
        let details = match serde_json::from_str::<&serde_json::value::RawValue>(&self.details) {
            Ok(_) => self.details.clone(),
            Err(_) => canonical_json(&serde_json::Value::String(self.details.clone())),
        };
        String::from_utf8(self.canonical_form(details.as_bytes(), true))
            .expect("the canonical form is UTF-8")
    }

    /// The RFC 8785 encoding of the fields the AuditEvent proto lists (keys
    /// in their sorted order, strings escaped as RFC 8785 and serde_json
    /// both do), with `details` already encoded; an export line adds
    /// "hash" and "previous_hash" in hex.
    fn canonical_form(&self, details: &[u8], with_hashes: bool) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, key: &str, value: &str) {
            out.extend_from_slice(key.as_bytes());
            serde_json::to_writer(&mut *out, value).expect("writing to memory");
        }
        fn time(out: &mut Vec<u8>, key: &str, value: DateTime<Utc>) {
            text(out, key, &canonical_time(value));
        }
        let mut out = Vec::with_capacity(600 + details.len());
        text(&mut out, "{\"action\":", &self.action);
        text(
            &mut out,
            ",\"actor\":{\"api_key_id\":",
            &self.actor.api_key_id,
        );
        text(&mut out, ",\"module_id\":", &self.actor.module_id);
        text(&mut out, ",\"peer_address\":", &self.actor.peer_address);
        out.extend_from_slice(if self.actor.user_claimed {
            b",\"user_claimed\":true"
        } else {
            b",\"user_claimed\":false"
        });
        text(&mut out, ",\"user_id\":", &self.actor.user_id);
        text(&mut out, "},\"chain\":", &self.chain_id);
        text(&mut out, ",\"company_id\":", &self.company_id);
        out.extend_from_slice(b",\"details\":");
        out.extend_from_slice(details);
        if with_hashes {
            text(&mut out, ",\"hash\":", &hex::encode(&self.hash));
        }
        text(&mut out, ",\"id\":", &self.id.to_string());
        text(&mut out, ",\"idempotency_key\":", &self.idempotency_key);
        time(&mut out, ",\"occurred_at\":", self.occurred_at);
        text(&mut out, ",\"outcome\":", self.outcome.as_str());
        if with_hashes {
            text(
                &mut out,
                ",\"previous_hash\":",
                &hex::encode(&self.previous_hash),
            );
        }
        time(&mut out, ",\"recorded_at\":", self.recorded_at);
        text(&mut out, ",\"request_id\":", &self.request_id);
        text(&mut out, ",\"resource_id\":", &self.resource_id);
        text(&mut out, ",\"resource_type\":", &self.resource_type);
        // Sequences stay far below 2^53, where an integer's digits are its
        // RFC 8785 form.
        out.extend_from_slice(format!(",\"sequence\":{}", self.sequence).as_bytes());
        text(&mut out, ",\"tenant_id\":", &self.tenant_id);
        out.push(b'}');
        out
    }

    /// Recorded by `module_id`, or the core's record about it.
    pub fn concerns_module(&self, module_id: &str) -> bool {
        self.actor.module_id == module_id
            || (self.resource_id == module_id
                && MODULE_RESOURCE_TYPES.contains(&self.resource_type.as_str()))
    }
}

/// RFC 3339 in UTC with six fractional digits, as the canonical form has it.
fn canonical_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `value` as RFC 8785 JSON: what details are stored as, so that the
/// stored text is the hashed one.
pub fn canonical_json(value: &serde_json::Value) -> String {
    serde_json_canonicalizer::to_string(value).expect("a JSON value always serialises")
}

/// Where a tail stands in the feed: after the event `sequence` of the chain
/// run committed at feed `position` (every event of that run when
/// `sequence` is `i64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedCursor {
    pub position: i64,
    pub sequence: i64,
}

impl FeedCursor {
    /// Past every event of the runs up to `position`.
    pub fn after_position(position: i64) -> FeedCursor {
        FeedCursor {
            position,
            sequence: i64::MAX,
        }
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
    fn the_canonical_form_is_rfc_8785_of_the_listed_fields() {
        let actor = Actor {
            user_id: "u\u{1}\"".to_owned(),
            module_id: "finance".to_owned(),
            api_key_id: "key".to_owned(),
            peer_address: "127.0.0.1:4000".to_owned(),
            user_claimed: true,
        };
        let mut draft = AuditDraft::new(actor, "finance.x\u{7f}.ü", "t\n", "r\u{2028}😀")
            .in_tenant(Some(Uuid::now_v7()))
            .with_request_id("request")
            .with_details(serde_json::json!({"z": 1.5e-7, "a": [1, "é"], "big": 1e21, "n": null}));
        draft.company_id = Some(Uuid::now_v7());
        draft.idempotency_key = "once".to_owned();
        let event = draft.seal(7, [3; 32]);
        let listed = serde_json::json!({
            "action": event.action,
            "actor": {
                "api_key_id": "key", "module_id": "finance", "peer_address": "127.0.0.1:4000",
                "user_claimed": true, "user_id": "u\u{1}\"",
            },
            "chain": event.chain_id,
            "company_id": event.company_id,
            "details": serde_json::from_str::<serde_json::Value>(&event.details).unwrap(),
            "id": event.id.to_string(),
            "idempotency_key": "once",
            "occurred_at": canonical_time(event.occurred_at),
            "outcome": "success",
            "recorded_at": canonical_time(event.recorded_at),
            "request_id": "request",
            "resource_id": event.resource_id,
            "resource_type": event.resource_type,
            "sequence": 7,
            "tenant_id": event.tenant_id,
        });
        let expected = serde_json_canonicalizer::to_vec(&listed).unwrap();

        assert_eq!(
            String::from_utf8(event.canonical_form(event.details.as_bytes(), false)).unwrap(),
            String::from_utf8(expected.clone()).unwrap()
        );
        let mut exported: serde_json::Value = serde_json::from_str(&event.export_line()).unwrap();
        let exported_map = exported.as_object_mut().unwrap();
        assert_eq!(
            exported_map.remove("hash").unwrap(),
            hex::encode(&event.hash)
        );
        assert_eq!(
            exported_map.remove("previous_hash").unwrap(),
            hex::encode([3; 32])
        );
        assert_eq!(
            serde_json_canonicalizer::to_vec(&exported).unwrap(),
            expected
        );
        assert_eq!(event.compute_hash().to_vec(), event.hash);
    }

    #[test]
    fn canonical_times_have_six_fractional_digits_and_z() {
        let time = DateTime::parse_from_rfc3339("2026-12-07T09:30:00.1Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(canonical_time(time), "2026-12-07T09:30:00.100000Z");
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
