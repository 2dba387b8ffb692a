//! AuditService: requests read into commands (see [`requests`]), the
//! domain asked, events mapped into messages.

mod requests;

use futures_util::StreamExt;
use plinth_api::audit::v1::{
    self as proto, audit_service_server::AuditService, tail_events_response::Kind,
};
use plinth_platform::{
    audit::{AuditEvent, Outcome},
    identity,
};
use registry_server::manifest::json;
use tonic::{Request, Response, Status, codegen::BoxStream};

use super::validate::timestamp;
use crate::audit::{Audit, TailMessage, Tails, cursor_text};
use requests::{page_token, read_query, read_record, read_tail, read_verify};

/// AuditService.
pub struct AuditApi {
    pub audit: Audit,
    pub tails: Tails,
}

type Answer<T> = Result<Response<T>, Status>;

fn event_to_proto(event: &AuditEvent) -> proto::AuditEvent {
    let details = match serde_json::from_str(&event.details) {
        Ok(serde_json::Value::Object(object)) => Some(json::to_struct(object)),
        _ => None,
    };
    proto::AuditEvent {
        id: event.id.to_string(),
        tenant_id: event.tenant_id.clone(),
        sequence: event.sequence,
        occurred_at: Some(timestamp(event.occurred_at)),
        recorded_at: Some(timestamp(event.recorded_at)),
        actor: Some(proto::Actor {
            user_id: event.actor.user_id.clone(),
            module_id: event.actor.module_id.clone(),
            api_key_id: event.actor.api_key_id.clone(),
            peer_address: event.actor.peer_address.clone(),
            user_claimed: event.actor.user_claimed,
        }),
        action: event.action.clone(),
        resource_type: event.resource_type.clone(),
        resource_id: event.resource_id.clone(),
        company_id: event.company_id.clone(),
        outcome: match event.outcome {
            Outcome::Success => proto::Outcome::Success,
            Outcome::Denied => proto::Outcome::Denied,
            Outcome::Failure => proto::Outcome::Failure,
        }
        .into(),
        details,
        request_id: event.request_id.clone(),
        idempotency_key: event.idempotency_key.clone(),
        previous_hash: event.previous_hash.clone(),
        hash: event.hash.clone(),
    }
}

fn tail_message(message: TailMessage) -> proto::TailEventsResponse {
    let kind = match message {
        TailMessage::Event { cursor, event } => Kind::Event(proto::TailedEvent {
            event: Some(event_to_proto(&event)),
            cursor: cursor_text(cursor),
        }),
        TailMessage::Checkpoint { cursor } => Kind::Checkpoint(proto::TailCheckpoint {
            cursor: cursor_text(cursor),
        }),
        TailMessage::Resync { cursor } => Kind::Resync(proto::TailResync {
            cursor: cursor_text(cursor),
        }),
    };
    proto::TailEventsResponse { kind: Some(kind) }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn record_events(
        &self,
        request: Request<proto::RecordEventsRequest>,
    ) -> Answer<proto::RecordEventsResponse> {
        let principal = identity::principal(&request)?;
        let batch = read_record(request.get_ref())?;
        let appended = self.audit.record(principal, batch).await?;
        Ok(Response::new(proto::RecordEventsResponse {
            events: appended
                .iter()
                .map(|appended| proto::RecordedEvent {
                    id: appended.event.id.to_string(),
                    sequence: appended.event.sequence,
                    recorded_at: Some(timestamp(appended.event.recorded_at)),
                    hash: appended.event.hash.clone(),
                    duplicate: appended.duplicate,
                })
                .collect(),
        }))
    }

    async fn query_events(
        &self,
        request: Request<proto::QueryEventsRequest>,
    ) -> Answer<proto::QueryEventsResponse> {
        let principal = identity::principal(&request)?;
        let query = read_query(request.get_ref())?;
        let page_size = (query.filters.limit - 1) as usize;
        let descending = query.filters.descending;
        let mut events = self.audit.query(principal, query).await?;
        let next_page_token = if events.len() > page_size {
            events.truncate(page_size);
            events
                .last()
                .map(|last| page_token(descending, last.sequence))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::QueryEventsResponse {
            events: events.iter().map(event_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn tail_events(
        &self,
        request: Request<proto::TailEventsRequest>,
    ) -> Answer<BoxStream<proto::TailEventsResponse>> {
        let principal = identity::principal(&request)?.clone();
        let asked = read_tail(request.get_ref())?;
        let mut messages = self.tails.tail(&principal, asked).await?;
        let stream = futures_util::stream::poll_fn(move |context| messages.poll_recv(context))
            .map(|message| message.map(tail_message).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn verify_chain(
        &self,
        request: Request<proto::VerifyChainRequest>,
    ) -> Answer<proto::VerifyChainResponse> {
        let principal = identity::principal(&request)?;
        let asked = read_verify(request.get_ref())?;
        let verification = self
            .audit
            .verify(
                principal,
                asked.chain,
                asked.from_sequence,
                asked.to_sequence,
            )
            .await?;
        Ok(Response::new(proto::VerifyChainResponse {
            valid: verification.first_broken_sequence.is_none(),
            events_checked: verification.events_checked,
            first_broken_sequence: verification.first_broken_sequence.unwrap_or(0),
            head_hash: verification.head_hash,
            last_sequence: verification.last_sequence,
        }))
    }
}
