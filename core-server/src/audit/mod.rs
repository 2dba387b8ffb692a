//! Audit: modules' records, queries of one chain, chain verification, the
//! live tail across chains, and the Redis event stream.

mod stream;
mod tail;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use plinth_platform::{
    access::{Access, Scope},
    audit::{self, AuditDraft, AuditEvent, GENESIS_HASH, Outcome, PLATFORM_CHAIN},
    enablement::Enablement,
    error::ApiError,
    identity::Principal,
    store::{
        Store,
        audit_log::{self, Appended, EventQuery},
    },
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use stream::EventStream;
pub use tail::{TailMessage, TailRequest, Tails, cursor_text, parse_cursor};

use crate::{
    permissions::{AUDIT_READ, AUDIT_RECORD},
    tenant::lock_writable,
};

/// Events per RecordEvents batch.
pub const MAX_BATCH: usize = 100;
/// Events a VerifyChain call checks at most.
pub const MAX_VERIFIED: i64 = 1_000_000;
/// Events read from the store at once while verifying or exporting.
const CHAIN_PAGE: i64 = 1_000;

/// A chain, named explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    Tenant(Uuid),
    Platform,
}

impl Chain {
    fn id(self) -> String {
        match self {
            Chain::Tenant(tenant_id) => tenant_id.to_string(),
            Chain::Platform => PLATFORM_CHAIN.to_owned(),
        }
    }
}

/// One event as a module submits it (validated).
#[derive(Debug, Clone)]
pub struct EventInput {
    pub company_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: Outcome,
    /// Canonical JSON text.
    pub details: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub idempotency_key: String,
}

/// A RecordEvents batch (validated).
#[derive(Debug, Clone)]
pub struct RecordBatch {
    pub tenant_id: Uuid,
    pub events: Vec<EventInput>,
    pub claimed_user_id: Option<Uuid>,
}

/// A QueryEvents page (validated): the filters, bar the chain and the
/// caller's visibility, which the domain sets.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub chain: Chain,
    pub filters: EventQuery,
}

/// What VerifyChain found.
#[derive(Debug, Clone)]
pub struct Verification {
    pub events_checked: i64,
    pub first_broken_sequence: Option<i64>,
    pub head_hash: Vec<u8>,
    pub last_sequence: i64,
}

/// Which events of a chain a reader sees.
enum Visibility {
    Everything,
    /// A module's own events and the core's about it.
    Module(String),
}

#[derive(Clone)]
pub struct Audit {
    store: Store,
    access: Access,
    enablement: Arc<Enablement>,
}

impl Audit {
    pub fn new(store: Store, access: Access, enablement: Arc<Enablement>) -> Audit {
        Audit {
            store,
            access,
            enablement,
        }
    }

    /// Appends a module's batch to the tenant's chain, atomically; not into
    /// a tenant that takes no writes.
    pub async fn record(
        &self,
        principal: &Principal,
        batch: RecordBatch,
    ) -> Result<Vec<Appended>, ApiError> {
        // Only a module records: its id is the namespace of its actions.
        let Some(module_id) = principal.module_id() else {
            return Err(ApiError::PermissionDenied {
                permission: AUDIT_RECORD.name.to_owned(),
            });
        };
        self.access
            .require_visible(
                principal,
                AUDIT_RECORD,
                Scope::tenant(batch.tenant_id),
                "tenant",
            )
            .await?;
        if batch.claimed_user_id.is_some() && principal.user.is_some() {
            return Err(ApiError::invalid_field(
                "claimed_user_id",
                "must be empty when a bearer token is presented",
            ));
        }
        let namespace = format!("{module_id}.");
        if batch
            .events
            .iter()
            .any(|event| !event.action.starts_with(&namespace))
        {
            return Err(ApiError::NamespaceViolation {
                module_id: module_id.to_owned(),
            });
        }
        for company_id in batch.events.iter().filter_map(|event| event.company_id) {
            self.enablement
                .company_tenant(company_id, Some(batch.tenant_id))
                .await?;
        }
        let mut actor = principal.actor();
        if let Some(user_id) = batch.claimed_user_id {
            actor.user_id = user_id.to_string();
            actor.user_claimed = true;
        }
        let drafts: Vec<AuditDraft> = batch
            .events
            .into_iter()
            .map(|input| draft(&actor, principal, batch.tenant_id, input))
            .collect();
        let digests: Vec<Vec<u8>> = drafts
            .iter()
            .map(|draft| draft.idempotency_digest.clone())
            .collect();
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, batch.tenant_id).await?;
        let appended = audit_log::append_batch(&mut tx, drafts).await?;
        for (index, (appended, digest)) in appended.iter().zip(&digests).enumerate() {
            if appended.duplicate && appended.event.idempotency_digest != *digest {
                return Err(ApiError::IdempotencyKeyConflict {
                    idempotency_key: appended.event.idempotency_key.clone(),
                    index,
                });
            }
        }
        tx.commit().await?;
        Ok(appended)
    }

    /// One page of a chain, as much of it as the caller may see.
    pub async fn query(
        &self,
        principal: &Principal,
        request: QueryRequest,
    ) -> Result<Vec<AuditEvent>, ApiError> {
        let mut filters = request.filters;
        filters.chain_id = request.chain.id();
        filters.visible_to_module = match self.visibility(principal, request.chain).await? {
            Visibility::Everything => None,
            Visibility::Module(module_id) => Some(module_id),
        };
        Ok(self.store.audit.query(&filters).await?)
    }

    /// Recomputes a run of a chain (every event, for its whole chain's
    /// readers only) and checks the chain's head when the run ends there.
    pub async fn verify(
        &self,
        principal: &Principal,
        chain: Chain,
        from_sequence: Option<i64>,
        to_sequence: Option<i64>,
    ) -> Result<Verification, ApiError> {
        if !matches!(
            self.visibility(principal, chain).await?,
            Visibility::Everything
        ) {
            return Err(ApiError::PermissionDenied {
                permission: AUDIT_READ.name.to_owned(),
            });
        }
        let chain_id = chain.id();
        let (last_sequence, head_hash) = self
            .store
            .audit
            .chain_head(&chain_id)
            .await?
            .unwrap_or((0, GENESIS_HASH.to_vec()));
        let from = from_sequence.unwrap_or(1);
        let to = to_sequence.map_or(last_sequence, |to| to.min(last_sequence));
        let mut verification = Verification {
            events_checked: 0,
            first_broken_sequence: None,
            head_hash: Vec::new(),
            last_sequence,
        };
        if from > to {
            return Ok(verification);
        }
        let to = to.min(from.saturating_add(MAX_VERIFIED - 1));
        let mut previous = if from == 1 {
            GENESIS_HASH.to_vec()
        } else {
            match self
                .store
                .audit
                .read_chain(&chain_id, from - 1, 1)
                .await?
                .pop()
            {
                Some(event) if event.sequence == from - 1 => event.hash,
                _ => {
                    verification.first_broken_sequence = Some(from);
                    return Ok(verification);
                }
            }
        };
        let mut next = from;
        while next <= to {
            let limit = (to - next + 1).min(CHAIN_PAGE);
            let mut events = self.store.audit.read_chain(&chain_id, next, limit).await?;
            events.retain(|event| event.sequence <= to);
            let run = audit::verify_chain(&previous, &events);
            verification.events_checked += run.events_checked;
            previous = run.head_hash;
            let missing = run.first_broken_sequence.is_none() && events.len() < limit as usize;
            if let Some(broken) = run.first_broken_sequence {
                verification.first_broken_sequence = Some(broken);
                break;
            }
            if missing {
                verification.first_broken_sequence = Some(next + run.events_checked);
                break;
            }
            next += limit;
        }
        // The head row holds the last hash: a rewritten tail, or a tail cut
        // off the chain, shows there.
        if verification.first_broken_sequence.is_none()
            && to == last_sequence
            && previous != head_hash
        {
            verification.first_broken_sequence = Some(last_sequence);
        }
        verification.head_hash = previous;
        Ok(verification)
    }

    /// What the caller sees of a chain; refusals audited, and answered
    /// NOT_FOUND for tenants it cannot see at all.
    async fn visibility(
        &self,
        principal: &Principal,
        chain: Chain,
    ) -> Result<Visibility, ApiError> {
        let Chain::Tenant(tenant_id) = chain else {
            self.access
                .require(principal, AUDIT_READ, Scope::platform())
                .await?;
            return Ok(Visibility::Everything);
        };
        let scope = Scope::tenant(tenant_id);
        let held = self.access.held(principal, scope).await?;
        if held.allows(AUDIT_READ.name) {
            return Ok(Visibility::Everything);
        }
        if let Some(module_id) = principal.module_id()
            && held.allows(AUDIT_RECORD.name)
        {
            return Ok(Visibility::Module(module_id.to_owned()));
        }
        self.access
            .require_visible(principal, AUDIT_READ, scope, "tenant")
            .await?;
        Ok(Visibility::Everything)
    }
}

/// Writes a chain from `from_sequence` on as export lines; how many.
pub async fn export_chain(
    store: &Store,
    chain_id: &str,
    from_sequence: i64,
    out: &mut impl std::io::Write,
) -> anyhow::Result<u64> {
    let mut next = from_sequence;
    let mut exported = 0;
    loop {
        let events = store.audit.read_chain(chain_id, next, CHAIN_PAGE).await?;
        for event in &events {
            writeln!(out, "{}", event.export_line())?;
        }
        exported += events.len() as u64;
        match events.last() {
            Some(last) if events.len() as i64 == CHAIN_PAGE => next = last.sequence + 1,
            _ => return Ok(exported),
        }
    }
}

/// The draft of a module's event, stamped with the caller and the digest
/// of what it submitted under an idempotency key.
fn draft(
    actor: &audit::Actor,
    principal: &Principal,
    tenant_id: Uuid,
    input: EventInput,
) -> AuditDraft {
    let idempotency_digest = if input.idempotency_key.is_empty() {
        Vec::new()
    } else {
        let submitted = serde_json::json!({
            "company_id": input.company_id,
            "action": input.action,
            "resource_type": input.resource_type,
            "resource_id": input.resource_id,
            "outcome": input.outcome.as_str(),
            "details": input.details,
            "occurred_at": input.occurred_at.map(|time| time.timestamp_micros()),
            "user_id": actor.user_id,
        });
        Sha256::digest(audit::canonical_json(&submitted)).to_vec()
    };
    let mut draft = AuditDraft::new(
        actor.clone(),
        &input.action,
        &input.resource_type,
        &input.resource_id,
    )
    .in_tenant(Some(tenant_id))
    .with_request_id(&principal.request_id)
    .with_canonical_details(input.details);
    draft.company_id = input.company_id;
    draft.outcome = input.outcome;
    draft.occurred_at = input.occurred_at;
    draft.idempotency_key = input.idempotency_key;
    draft.idempotency_digest = idempotency_digest;
    draft
}
