//! AuditService requests read into commands, every field bounded.

use chrono::{DateTime, Utc};
use plinth_api::audit::v1::{self as proto, query_events_request, verify_chain_request};
use plinth_api::prost_types::{self, Struct, Value, value::Kind as ValueKind};
use plinth_platform::{audit::Outcome, clock, error::ApiError, store::audit_log::EventQuery};
use registry_server::manifest::json;

use crate::{
    audit::{Chain, EventInput, MAX_BATCH, QueryRequest, RecordBatch, TailRequest, parse_cursor},
    grpc::validate::Fields,
};

/// Longest action, action prefix or idempotency key.
const MAX_ACTION_BYTES: usize = 128;
/// Longest resource type or id.
const MAX_RESOURCE_BYTES: usize = 64;
/// Longest request id filter.
const MAX_REQUEST_ID_BYTES: usize = 128;
/// Largest details, as canonical JSON.
const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Deepest nesting of details.
const MAX_DETAILS_DEPTH: usize = 32;
/// Exact actions a query may name.
const MAX_QUERY_ACTIONS: usize = 20;
const MAX_PAGE_SIZE: i32 = 1_000;
const DEFAULT_PAGE_SIZE: i32 = 100;
/// How far ahead and behind the server's clock `occurred_at` may be.
const MAX_AHEAD: chrono::Duration = chrono::Duration::minutes(1);
const MAX_BEHIND: chrono::Duration = chrono::Duration::days(30);

const ACTION_RULE: &str = "must match ^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)+$, at most 128 bytes";
const PREFIX_RULE: &str = "must be lower-case letters, digits, '_' and '.', at most 128 bytes";

fn is_action(value: &str) -> bool {
    let mut parts = value.split('.');
    let first = parts.next().unwrap_or_default();
    let word = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    value.len() <= MAX_ACTION_BYTES
        && first.starts_with(|c: char| c.is_ascii_lowercase())
        && word(first)
        && value.contains('.')
        && parts.all(word)
}

impl Fields {
    fn action(&mut self, field: &str, value: &str) -> String {
        if !is_action(value) {
            self.violation(field, ACTION_RULE);
        }
        value.to_owned()
    }

    fn action_prefix(&mut self, field: &str, value: &str) -> Option<String> {
        let well_formed = value.len() <= MAX_ACTION_BYTES
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !well_formed {
            self.violation(field, PREFIX_RULE);
            return None;
        }
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// Printable ASCII (no spaces), at most `max_bytes`; empty allowed.
    fn token(&mut self, field: &str, value: &str, max_bytes: usize) -> String {
        if value.len() > max_bytes || !value.bytes().all(|b| b.is_ascii_graphic()) {
            self.violation(
                field,
                format!("must be printable ASCII without spaces, at most {max_bytes} bytes"),
            );
            return String::new();
        }
        value.to_owned()
    }

    /// Text without control characters, at most `max_bytes`.
    fn short_text(&mut self, field: &str, value: &str, max_bytes: usize) -> String {
        if value.len() > max_bytes {
            self.violation(field, format!("must be at most {max_bytes} bytes"));
            return String::new();
        }
        self.text(field, value, max_bytes)
    }

    fn time(&mut self, field: &str, value: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
        let time = u32::try_from(value.nanos)
            .ok()
            .filter(|nanos| *nanos < 1_000_000_000)
            .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
            .filter(|time| (1..=9999).contains(&chrono::Datelike::year(time)));
        if time.is_none() {
            self.violation(field, "must be a time between the years 1 and 9999");
        }
        time.map(clock::truncate)
    }

    fn outcome(&mut self, field: &str, value: i32, required: bool) -> Option<Outcome> {
        let outcome = match self.known::<proto::Outcome>(field, value)? {
            proto::Outcome::Unspecified => None,
            proto::Outcome::Success => Some(Outcome::Success),
            proto::Outcome::Denied => Some(Outcome::Denied),
            proto::Outcome::Failure => Some(Outcome::Failure),
        };
        if outcome.is_none() && required {
            self.violation(field, "is required");
        }
        outcome
    }

    /// Details as canonical JSON text.
    fn details(&mut self, field: &str, value: Option<&Struct>) -> String {
        let Some(details) = value else {
            return "{}".to_owned();
        };
        if let Some(problem) = struct_problem(details, 1) {
            self.violation(field, problem);
            return String::new();
        }
        let details = plinth_platform::audit::canonical_json(&json::object(details));
        if details.len() > MAX_DETAILS_BYTES {
            self.violation(
                field,
                format!("must be at most {MAX_DETAILS_BYTES} bytes as JSON"),
            );
        }
        details
    }

    /// One chain, named explicitly.
    fn chain(&mut self, tenant_id: Option<&str>, platform: Option<bool>) -> Chain {
        match (tenant_id, platform) {
            (Some(tenant_id), None) => Chain::Tenant(self.id("tenant_id", tenant_id)),
            (None, Some(true)) => Chain::Platform,
            (None, Some(false)) => {
                self.violation("platform", "must be true when set");
                Chain::Platform
            }
            _ => {
                self.violation("chain", "name a tenant_id or the platform chain");
                Chain::Platform
            }
        }
    }

    fn sequence(&mut self, field: &str, value: i64) -> Option<i64> {
        if value < 0 {
            self.violation(field, "must not be negative");
        }
        (value > 0).then_some(value)
    }
}

/// Why a Struct cannot be details: too deep, or a number JSON cannot hold.
fn struct_problem(document: &Struct, depth: usize) -> Option<String> {
    if depth > MAX_DETAILS_DEPTH {
        return Some(format!("must nest at most {MAX_DETAILS_DEPTH} deep"));
    }
    document
        .fields
        .values()
        .find_map(|value| value_problem(value, depth))
}

fn value_problem(value: &Value, depth: usize) -> Option<String> {
    match &value.kind {
        Some(ValueKind::NumberValue(number)) if !number.is_finite() => {
            Some("numbers must be finite".to_owned())
        }
        Some(ValueKind::StructValue(document)) => struct_problem(document, depth + 1),
        Some(ValueKind::ListValue(list)) => {
            if depth + 1 > MAX_DETAILS_DEPTH {
                return Some(format!("must nest at most {MAX_DETAILS_DEPTH} deep"));
            }
            list.values
                .iter()
                .find_map(|value| value_problem(value, depth + 1))
        }
        _ => None,
    }
}

/// A page token: the order's letter and the last sequence returned.
pub fn page_token(descending: bool, sequence: i64) -> String {
    crate::grpc::validate::key_token(&format!("{}{sequence}", if descending { 'd' } else { 'a' }))
}

fn is_page_key(key: &str) -> bool {
    key.len() > 1
        && (key.starts_with('a') || key.starts_with('d'))
        && key[1..].parse::<i64>().is_ok_and(|sequence| sequence >= 0)
}

fn read_event(fields: &mut Fields, index: usize, input: &proto::EventInput) -> EventInput {
    let field = |name: &str| format!("events[{index}].{name}");
    let now = clock::now();
    let occurred_at = input.occurred_at.as_ref().and_then(|time| {
        let time = fields.time(&field("occurred_at"), time)?;
        if time > now + MAX_AHEAD || time < now - MAX_BEHIND {
            fields.violation(
                &field("occurred_at"),
                "must be at most a minute ahead and 30 days behind the server's clock",
            );
        }
        Some(time)
    });
    EventInput {
        company_id: fields.optional_id(&field("company_id"), &input.company_id),
        action: fields.action(&field("action"), &input.action),
        resource_type: fields.short_text(
            &field("resource_type"),
            &input.resource_type,
            MAX_RESOURCE_BYTES,
        ),
        resource_id: fields.short_text(
            &field("resource_id"),
            &input.resource_id,
            MAX_RESOURCE_BYTES,
        ),
        outcome: fields
            .outcome(&field("outcome"), input.outcome, true)
            .unwrap_or(Outcome::Success),
        details: fields.details(&field("details"), input.details.as_ref()),
        occurred_at,
        idempotency_key: fields.token(
            &field("idempotency_key"),
            &input.idempotency_key,
            MAX_ACTION_BYTES,
        ),
    }
}

/// A QueryEvents request as one page's filters.
pub fn read_query(body: &proto::QueryEventsRequest) -> Result<QueryRequest, ApiError> {
    let mut fields = Fields::default();
    let chain = fields.chain(
        match &body.chain {
            Some(query_events_request::Chain::TenantId(id)) => Some(id),
            _ => None,
        },
        match body.chain {
            Some(query_events_request::Chain::Platform(platform)) => Some(platform),
            _ => None,
        },
    );
    let since = body
        .since
        .as_ref()
        .and_then(|time| fields.time("since", time));
    let until = body
        .until
        .as_ref()
        .and_then(|time| fields.time("until", time));
    if let (Some(since), Some(until)) = (since, until)
        && until <= since
    {
        fields.violation("until", "must be after since");
    }
    let actions: Vec<String> = fields
        .bounded("actions", &body.actions, MAX_QUERY_ACTIONS)
        .iter()
        .enumerate()
        .map(|(index, action)| fields.action(&format!("actions[{index}]"), action))
        .collect();
    let action_prefix = fields.action_prefix("action_prefix", &body.action_prefix);
    if !actions.is_empty() && action_prefix.is_some() {
        fields.violation("action_prefix", "cannot be combined with actions");
    }
    let optional = |text: String| (!text.is_empty()).then_some(text);
    let resource_type =
        optional(fields.short_text("resource_type", &body.resource_type, MAX_RESOURCE_BYTES));
    let resource_id =
        optional(fields.short_text("resource_id", &body.resource_id, MAX_RESOURCE_BYTES));
    if resource_id.is_some() && resource_type.is_none() {
        fields.violation("resource_id", "requires resource_type");
    }
    let descending = matches!(
        fields.known::<proto::Order>("order", body.order),
        Some(proto::Order::Descending)
    );
    if !(0..=MAX_PAGE_SIZE).contains(&body.page_size) {
        fields.violation(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        );
    }
    let page_size = match body.page_size {
        0 => DEFAULT_PAGE_SIZE,
        size => size.clamp(1, MAX_PAGE_SIZE),
    };
    let after_page = fields
        .key_token(&body.page_token, is_page_key)
        .and_then(|key| {
            if key.starts_with('d') != descending {
                fields.violation("page_token", "was made for the other order");
            }
            key[1..].parse::<i64>().ok()
        });
    let after_sequence = fields
        .sequence("after_sequence", body.after_sequence)
        .unwrap_or(0);
    let filters = EventQuery {
        since,
        until,
        actor_user_id: fields
            .optional_id("actor_user_id", &body.actor_user_id)
            .map(|id| id.to_string()),
        actor_module_id: (!body.actor_module_id.is_empty())
            .then(|| fields.module_id("actor_module_id", &body.actor_module_id)),
        actor_api_key_id: fields
            .optional_id("actor_api_key_id", &body.actor_api_key_id)
            .map(|id| id.to_string()),
        actions,
        action_prefix,
        resource_type,
        resource_id,
        outcome: fields.outcome("outcome", body.outcome, false),
        request_id: optional(fields.token("request_id", &body.request_id, MAX_REQUEST_ID_BYTES)),
        company_id: fields
            .optional_id("company_id", &body.company_id)
            .map(|id| id.to_string()),
        after_sequence: match (descending, after_page) {
            (false, Some(last)) => last.max(after_sequence),
            _ => after_sequence,
        },
        before_sequence: after_page.filter(|_| descending),
        descending,
        limit: i64::from(page_size) + 1,
        ..EventQuery::default()
    };
    fields.finish()?;
    Ok(QueryRequest { chain, filters })
}

/// A RecordEvents request as a batch.
pub fn read_record(body: &proto::RecordEventsRequest) -> Result<RecordBatch, ApiError> {
    let mut fields = Fields::default();
    let tenant_id = fields.id("tenant_id", &body.tenant_id);
    let claimed_user_id = fields.optional_id("claimed_user_id", &body.claimed_user_id);
    if body.events.is_empty() {
        fields.violation("events", "is required");
    }
    let events: Vec<EventInput> = fields
        .bounded("events", &body.events, MAX_BATCH)
        .iter()
        .enumerate()
        .map(|(index, input)| read_event(&mut fields, index, input))
        .collect();
    fields.finish()?;
    Ok(RecordBatch {
        tenant_id,
        events,
        claimed_user_id,
    })
}

/// A TailEvents request.
pub fn read_tail(body: &proto::TailEventsRequest) -> Result<TailRequest, ApiError> {
    let mut fields = Fields::default();
    let after = (!body.cursor.is_empty())
        .then(|| parse_cursor(&body.cursor))
        .and_then(|cursor| {
            if cursor.is_none() {
                fields.violation("cursor", "is not a cursor from an earlier tail");
            }
            cursor
        });
    let asked = TailRequest {
        action_prefix: fields.action_prefix("action_prefix", &body.action_prefix),
        after,
        checkpoint_every: fields.checkpoint_interval(body.checkpoint_interval.as_ref()),
    };
    fields.finish()?;
    Ok(asked)
}

/// A VerifyChain request: the chain and the run's bounds.
pub struct VerifyRequest {
    pub chain: Chain,
    pub from_sequence: Option<i64>,
    pub to_sequence: Option<i64>,
}

pub fn read_verify(body: &proto::VerifyChainRequest) -> Result<VerifyRequest, ApiError> {
    let mut fields = Fields::default();
    let chain = fields.chain(
        match &body.chain {
            Some(verify_chain_request::Chain::TenantId(id)) => Some(id),
            _ => None,
        },
        match body.chain {
            Some(verify_chain_request::Chain::Platform(platform)) => Some(platform),
            _ => None,
        },
    );
    let from_sequence = fields.sequence("from_sequence", body.from_sequence);
    let to_sequence = fields.sequence("to_sequence", body.to_sequence);
    if let (Some(from), Some(to)) = (from_sequence, to_sequence)
        && to < from
    {
        fields.violation("to_sequence", "must not be below from_sequence");
    }
    fields.finish()?;
    Ok(VerifyRequest {
        chain,
        from_sequence,
        to_sequence,
    })
}
