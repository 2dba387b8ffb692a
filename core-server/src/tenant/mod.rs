//! Tenants and companies: lifecycle, limits, signup.

mod companies;
mod lifecycle;
mod signup;

use std::sync::Arc;

use plinth_platform::{
    audit::AuditDraft,
    error::ApiError,
    identity::Principal,
    invalidation::Invalidator,
    store::{
        Store, Tx,
        tenants::{self, TenantRecord},
    },
};
use uuid::Uuid;

pub use companies::{
    CompanyChanges, CompanyKey, CompanyListing, CompanyUpdate, MAX_COMPANY_NAME, NewCompany,
};
pub use lifecycle::{
    Limits, MAX_REASON, MAX_TENANT_NAME, NewTenant, StatusChange, TenantChanges, TenantKey,
    TenantListing, TenantUpdate,
};
pub use signup::{FREE_SIGNUPS_PER_PEER, OpenSignup, SignUp};

use crate::{
    access::Access, auth::passwords::Passwords, enablement::Enablements, templates::Templates,
};

/// The tenant domain.
#[derive(Clone)]
pub struct Tenants {
    store: Store,
    access: Access,
    passwords: Passwords,
    invalidator: Arc<Invalidator>,
    open_signup: Arc<OpenSignup>,
    enablements: Enablements,
    templates: Templates,
}

/// What signing up a tenant with an industry template uses.
pub struct Modules {
    pub enablements: Enablements,
    pub templates: Templates,
}

impl Tenants {
    pub fn new(
        store: Store,
        access: Access,
        passwords: Passwords,
        invalidator: Arc<Invalidator>,
        open_signup: OpenSignup,
        modules: Modules,
    ) -> Tenants {
        Tenants {
            store,
            access,
            passwords,
            invalidator,
            open_signup: Arc::new(open_signup),
            enablements: modules.enablements,
            templates: modules.templates,
        }
    }
}

/// Locks the tenant for the rest of the transaction and refuses writes into
/// a tenant that does not take them (suspended, inactive, deleted). Every
/// write into a tenant starts here, so the status cannot change under it.
pub async fn lock_writable(tx: &mut Tx, tenant_id: Uuid) -> Result<TenantRecord, ApiError> {
    let tenant = tenants::lock(tx, tenant_id).await?;
    if !tenant.status.accepts_writes() {
        return Err(ApiError::TenantNotActive {
            status: tenant.status.as_str(),
        });
    }
    Ok(tenant)
}

/// Refuses a creation that would pass a limit (0 is unlimited); `current`
/// was counted after [`lock_writable`].
pub fn within_limit(limit: &'static str, value: i32, current: i64) -> Result<(), ApiError> {
    if value > 0 && current >= i64::from(value) {
        return Err(ApiError::TenantLimitReached { limit, value });
    }
    Ok(())
}

fn tenant_event(principal: &Principal, action: &str, tenant: &TenantRecord) -> AuditDraft {
    AuditDraft::new(principal.actor(), action, "tenant", &tenant.id.to_string())
        .in_tenant(Some(tenant.id))
        .with_request_id(&principal.request_id)
        .with_details(serde_json::json!({
            "code": tenant.code,
            "name": tenant.name,
            "status": tenant.status.as_str(),
            "max_users": tenant.max_users,
            "max_companies": tenant.max_companies,
            "industry": tenant.industry,
        }))
}
