//! Audit over real gRPC: modules' records with their actors and idempotency,
//! queries of a chain by every filter, the live tail across chains, chain
//! verification (here and by an independent Python script), and the Redis
//! event stream with its outbox.

mod queries;
mod records;
mod stream;
mod tail;
mod verification;

use plinth_api::audit::v1::{
    AuditEvent, EventInput, Outcome, QueryEventsRequest, RecordEventsRequest, RecordedEvent,
    query_events_request,
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{Clients, Sandbox, create_key};

use crate::{
    modules::enabled_for,
    rbac::{Tenant, tenant},
};

/// A sandbox with two tenants; `finance` is enabled in acme only.
pub struct Setup {
    pub sandbox: Sandbox,
    pub acme: Tenant,
    pub globex: Tenant,
    pub finance: Clients,
    pub finance_key: String,
    pub finance_key_id: String,
}

pub async fn setup(sandbox: Sandbox) -> Setup {
    let acme = tenant(&sandbox, "acme").await;
    let globex = tenant(&sandbox, "globex").await;
    enabled_for(&sandbox, &acme.id, "finance").await;
    let issued = create_key(
        &sandbox,
        NewApiKey {
            name: "finance".to_owned(),
            module_id: Some("finance".to_owned()),
            ..NewApiKey::default()
        },
    )
    .await;
    let finance = sandbox.clients(&issued.secret).await;
    Setup {
        sandbox,
        acme,
        globex,
        finance,
        finance_key: issued.secret,
        finance_key_id: issued.record.id.to_string(),
    }
}

/// A successful event on invoice 42.
pub fn input(action: &str) -> EventInput {
    EventInput {
        action: action.to_owned(),
        resource_type: "invoice".to_owned(),
        resource_id: "42".to_owned(),
        outcome: Outcome::Success.into(),
        ..EventInput::default()
    }
}

pub async fn record(
    clients: &mut Clients,
    tenant_id: &str,
    events: Vec<EventInput>,
) -> Result<Vec<RecordedEvent>, tonic::Status> {
    clients
        .audit
        .record_events(RecordEventsRequest {
            tenant_id: tenant_id.to_owned(),
            events,
            claimed_user_id: String::new(),
        })
        .await
        .map(|response| response.into_inner().events)
}

/// A query of the tenant's chain (filters to be set by the caller).
pub fn in_tenant(tenant_id: &str) -> QueryEventsRequest {
    QueryEventsRequest {
        chain: Some(query_events_request::Chain::TenantId(tenant_id.to_owned())),
        ..QueryEventsRequest::default()
    }
}

/// Every page of `request`.
pub async fn query_all(
    clients: &mut Clients,
    mut request: QueryEventsRequest,
) -> Result<Vec<AuditEvent>, tonic::Status> {
    let mut events = Vec::new();
    loop {
        let page = clients
            .audit
            .query_events(request.clone())
            .await?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        request.page_token = page.next_page_token;
    }
}

/// The actions of `events`, in order.
pub fn actions(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|event| event.action.as_str()).collect()
}
