//! The gRPC adapters, one per service, split by resource: read the request
//! into a domain command (`TryFrom`, validating every field), ask the
//! domain, map the answer. Services whose calls later issues build keep the
//! generated default of UNIMPLEMENTED for every call.

mod auth;
mod rbac;
mod tenant;
mod validate;

use plinth_client::audit::v1::audit_service_server::AuditService;

pub use auth::AuthApi;
pub use rbac::RbacApi;
pub use tenant::{TenantApi, tenant_service};

pub struct AuditApi;

impl AuditService for AuditApi {}
