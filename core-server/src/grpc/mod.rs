//! The gRPC adapters, one per service, split by resource: read the request
//! into a domain command (`TryFrom`, validating every field), ask the
//! domain, map the answer.

mod audit;
mod auth;
mod rbac;
mod tenant;
mod validate;

pub use audit::AuditApi;
pub use auth::AuthApi;
pub use rbac::RbacApi;
pub use tenant::{TenantApi, tenant_service};
