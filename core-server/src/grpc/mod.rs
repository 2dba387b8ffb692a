//! The gRPC adapters, one per service: decode and validate, ask the domain,
//! map the answer. Services whose calls later issues build keep the generated
//! default of UNIMPLEMENTED for every call.

mod auth;

use plinth_client::{
    audit::v1::audit_service_server::AuditService, rbac::v1::rbac_service_server::RbacService,
    tenant::v1::tenant_service_server::TenantService,
};

pub use auth::AuthApi;

pub struct RbacApi;

impl RbacService for RbacApi {}

pub struct TenantApi;

impl TenantService for TenantApi {}

pub struct AuditApi;

impl AuditService for AuditApi {}
