//! Tenants and companies: lifecycle, limits, signup.

use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        Store, StoreError,
        tenants::{
            CompanyFilter, CompanyRecord, LimitError, PLATFORM_TENANT_ID, TenantFilter,
            TenantRecord,
        },
    },
};
use std::sync::Arc;

use plinth_platform::invalidation::{Change, Invalidator};
use uuid::Uuid;

use crate::{
    access::{Access, Need},
    auth::throttle::Throttle,
    auth::users::{self, UserInput},
    listing::PageRequest,
};

/// Where a tenant is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Provisioning,
    Active,
    Suspended,
    Inactive,
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Inactive => "inactive",
            TenantStatus::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<TenantStatus> {
        [
            TenantStatus::Provisioning,
            TenantStatus::Active,
            TenantStatus::Suspended,
            TenantStatus::Inactive,
            TenantStatus::Deleted,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// provisioning → active ⇄ suspended → inactive; deletion is separate.
    fn may_become(self, next: TenantStatus) -> bool {
        use TenantStatus::*;
        matches!(
            (self, next),
            (Provisioning, Active)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Suspended, Inactive)
        )
    }
}

/// A tenant's caps; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_users: i32,
    pub max_companies: i32,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub code: String,
    pub name: String,
    pub limits: Limits,
    pub industry: String,
    pub provisioning: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub limits: Option<Limits>,
    pub industry: Option<String>,
}

#[derive(Debug, Clone)]
pub enum TenantKey {
    Id(Uuid),
    Code(String),
}

#[derive(Debug, Clone)]
pub struct SignUp {
    pub tenant_code: String,
    pub tenant_name: String,
    pub admin: UserInput,
}

#[derive(Debug, Clone)]
pub struct NewCompany {
    pub tenant_id: Uuid,
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum CompanyKey {
    Id(Uuid),
    Code { tenant_id: Uuid, code: String },
}

#[derive(Debug, Clone, Default)]
pub struct CompanyChanges {
    pub name: Option<String>,
    /// `active` or `archived`.
    pub status: Option<&'static str>,
}

/// The tenant domain.
#[derive(Clone)]
pub struct Tenants {
    store: Store,
    access: Access,
    passwords: crate::auth::passwords::Passwords,
    invalidator: Arc<Invalidator>,
    open_signup: Arc<OpenSignup>,
}

/// Signup by callers without credentials.
pub struct OpenSignup {
    /// Whether configuration allows it at all.
    pub allowed: bool,
    /// Each signup counts; past the free ones a peer waits ever longer.
    pub per_peer: Throttle,
}

/// Anonymous signups a peer address gets before it must wait.
pub const FREE_SIGNUPS_PER_PEER: u32 = 5;

fn tenant_conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict => ApiError::AlreadyExists {
            resource_type: "tenant",
            field: "code",
        },
        other => other.into(),
    }
}

fn company_error(error: LimitError) -> ApiError {
    match error {
        LimitError::Reached { limit, value } => ApiError::TenantLimitReached { limit, value },
        LimitError::Store(StoreError::Conflict) => ApiError::AlreadyExists {
            resource_type: "company",
            field: "code",
        },
        LimitError::Store(StoreError::MissingReference) => ApiError::NotFound {
            resource_type: "tenant",
        },
        LimitError::Store(other) => other.into(),
    }
}

impl Tenants {
    pub fn new(
        store: Store,
        access: Access,
        passwords: crate::auth::passwords::Passwords,
        invalidator: Arc<Invalidator>,
        open_signup: OpenSignup,
    ) -> Tenants {
        Tenants {
            store,
            access,
            passwords,
            invalidator,
            open_signup: Arc::new(open_signup),
        }
    }

    pub async fn create(
        &self,
        principal: &Principal,
        new: NewTenant,
    ) -> Result<TenantRecord, ApiError> {
        self.access
            .require(principal, Need::PlatformAdmin, "plinth:tenant:create")
            .await?;
        let now = clock::now();
        let status = if new.provisioning {
            TenantStatus::Provisioning
        } else {
            TenantStatus::Active
        };
        let tenant = TenantRecord {
            id: Uuid::now_v7(),
            code: new.code,
            name: new.name,
            status: status.as_str().to_owned(),
            max_users: new.limits.max_users,
            max_companies: new.limits.max_companies,
            industry: new.industry,
            created_at: now,
            updated_at: now,
        };
        let audit = tenant_event(principal, "tenant.created", &tenant);
        self.store
            .tenants
            .create_tenant(&tenant, audit)
            .await
            .map_err(tenant_conflict)?;
        Ok(tenant)
    }

    pub async fn get(
        &self,
        principal: &Principal,
        key: TenantKey,
    ) -> Result<TenantRecord, ApiError> {
        let found = match &key {
            TenantKey::Id(id) => self.store.tenants.get_tenant(*id).await?,
            TenantKey::Code(code) => self.store.tenants.get_tenant_by_code(code).await?,
        };
        let tenant = found.ok_or(ApiError::NotFound {
            resource_type: "tenant",
        })?;
        self.access
            .require_visible(
                principal,
                Need::TenantRead(tenant.id),
                "plinth:tenant:read",
                "tenant",
            )
            .await?;
        Ok(tenant)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        filter: TenantFilter,
        page: PageRequest,
    ) -> Result<(Vec<TenantRecord>, String), ApiError> {
        self.access
            .require(principal, Need::PlatformAdmin, "plinth:tenant:list")
            .await?;
        let rows = self
            .store
            .tenants
            .list_tenants(&filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |tenant| tenant.id))
    }

    pub async fn update(
        &self,
        principal: &Principal,
        id: Uuid,
        changes: TenantChanges,
    ) -> Result<TenantRecord, ApiError> {
        self.access
            .require(principal, Need::PlatformAdmin, "plinth:tenant:update")
            .await?;
        let mut tenant = self.existing(id).await?;
        if let Some(name) = changes.name {
            tenant.name = name;
        }
        if let Some(limits) = changes.limits {
            tenant.max_users = limits.max_users;
            tenant.max_companies = limits.max_companies;
        }
        if let Some(industry) = changes.industry {
            tenant.industry = industry;
        }
        tenant.updated_at = clock::now();
        let audit = tenant_event(principal, "tenant.updated", &tenant);
        self.store.tenants.update_tenant(&tenant, audit).await?;
        Ok(tenant)
    }

    pub async fn set_status(
        &self,
        principal: &Principal,
        id: Uuid,
        next: TenantStatus,
        reason: String,
    ) -> Result<TenantRecord, ApiError> {
        self.access
            .require(principal, Need::PlatformAdmin, "plinth:tenant:set_status")
            .await?;
        let mut tenant = self.existing(id).await?;
        let current = TenantStatus::parse(&tenant.status).unwrap_or(TenantStatus::Inactive);
        if current == next {
            return Ok(tenant);
        }
        let movable =
            id != PLATFORM_TENANT_ID && (current.may_become(next) || next == TenantStatus::Deleted);
        if !movable {
            return Err(ApiError::FailedPrecondition {
                resource_type: "tenant",
                state: format!("{} and cannot become {}", current.as_str(), next.as_str()),
            });
        }
        tenant.status = next.as_str().to_owned();
        tenant.updated_at = clock::now();
        let action = if next == TenantStatus::Deleted {
            "tenant.deleted"
        } else {
            "tenant.status_changed"
        };
        let audit = tenant_event(principal, action, &tenant).with_details(serde_json::json!({
            "from": current.as_str(),
            "to": next.as_str(),
            "reason": reason,
        }));
        self.store.tenants.update_tenant(&tenant, audit).await?;
        // Suspension and closing stop the tenant's tokens on this replica now.
        self.invalidator.changed(Change::Subjects).await;
        Ok(tenant)
    }

    /// Creates a tenant with its first admin. Anonymous callers may sign up
    /// only where configuration allows it.
    pub async fn sign_up(
        &self,
        principal: &Principal,
        sign_up: SignUp,
    ) -> Result<(TenantRecord, Uuid), ApiError> {
        if principal.api_key.is_none() && principal.user.is_none() {
            if !self.open_signup.allowed {
                return Err(ApiError::PermissionDenied {
                    permission: "plinth:tenant:signup".to_owned(),
                });
            }
            let peer = principal
                .peer_address
                .map(|address| address.ip().to_string())
                .unwrap_or_default();
            if let Err(retry_after) = self.open_signup.per_peer.check(&peer).await {
                return Err(ApiError::RateLimited {
                    scope: "peer",
                    retry_after,
                });
            }
            self.open_signup.per_peer.count(&peer).await;
        } else {
            self.access
                .require(principal, Need::PlatformAdmin, "plinth:tenant:signup")
                .await?;
        }
        let now = clock::now();
        let tenant = TenantRecord {
            id: Uuid::now_v7(),
            code: sign_up.tenant_code,
            name: sign_up.tenant_name,
            status: TenantStatus::Active.as_str().to_owned(),
            max_users: 0,
            max_companies: 0,
            industry: String::new(),
            created_at: now,
            updated_at: now,
        };
        let admin =
            users::new_user(&self.passwords, tenant.id, &tenant.code, sign_up.admin).await?;
        let audit = vec![
            tenant_event(principal, "tenant.created", &tenant)
                .with_details(serde_json::json!({ "signup": true })),
            users::user_event(principal, "auth.user.created", &admin.user),
            AuditDraft::new(
                principal.actor(),
                "rbac.role.assigned",
                "user",
                &admin.user.id.to_string(),
            )
            .in_tenant(Some(tenant.id))
            .with_request_id(&principal.request_id)
            .with_details(serde_json::json!({ "role": "tenant-admin" })),
        ];
        self.store
            .users
            .sign_up(&tenant, &admin, audit)
            .await
            .map_err(tenant_conflict)?;
        Ok((tenant, admin.user.id))
    }

    pub async fn create_company(
        &self,
        principal: &Principal,
        new: NewCompany,
    ) -> Result<CompanyRecord, ApiError> {
        self.access
            .require(
                principal,
                Need::TenantAdmin(new.tenant_id),
                "plinth:company:create",
            )
            .await?;
        self.existing(new.tenant_id).await?;
        let now = clock::now();
        let company = CompanyRecord {
            id: Uuid::now_v7(),
            tenant_id: new.tenant_id,
            code: new.code,
            name: new.name,
            status: "active".to_owned(),
            created_at: now,
            updated_at: now,
        };
        let audit = company_event(principal, "tenant.company.created", &company);
        self.store
            .tenants
            .create_company(&company, audit)
            .await
            .map_err(company_error)?;
        Ok(company)
    }

    pub async fn get_company(
        &self,
        principal: &Principal,
        key: CompanyKey,
    ) -> Result<CompanyRecord, ApiError> {
        let found = match &key {
            CompanyKey::Id(id) => self.store.tenants.get_company(*id).await?,
            CompanyKey::Code { tenant_id, code } => {
                self.store
                    .tenants
                    .get_company_by_code(*tenant_id, code)
                    .await?
            }
        };
        let company = found.ok_or(ApiError::NotFound {
            resource_type: "company",
        })?;
        self.access
            .require_visible(
                principal,
                Need::TenantRead(company.tenant_id),
                "plinth:company:read",
                "company",
            )
            .await?;
        Ok(company)
    }

    pub async fn list_companies(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        filter: CompanyFilter,
        page: PageRequest,
    ) -> Result<(Vec<CompanyRecord>, String), ApiError> {
        self.access
            .require(
                principal,
                Need::TenantRead(tenant_id),
                "plinth:company:list",
            )
            .await?;
        let rows = self
            .store
            .tenants
            .list_companies(tenant_id, &filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |company| company.id))
    }

    pub async fn update_company(
        &self,
        principal: &Principal,
        id: Uuid,
        changes: CompanyChanges,
    ) -> Result<CompanyRecord, ApiError> {
        let mut company = self
            .store
            .tenants
            .get_company(id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "company",
            })?;
        self.access
            .require_visible(
                principal,
                Need::TenantAdmin(company.tenant_id),
                "plinth:company:update",
                "company",
            )
            .await?;
        if let Some(name) = changes.name {
            company.name = name;
        }
        if let Some(status) = changes.status {
            company.status = status.to_owned();
        }
        company.updated_at = clock::now();
        let audit = company_event(principal, "tenant.company.updated", &company);
        self.store.tenants.update_company(&company, audit).await?;
        Ok(company)
    }

    async fn existing(&self, id: Uuid) -> Result<TenantRecord, ApiError> {
        self.store
            .tenants
            .get_tenant(id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })
    }
}

fn tenant_event(principal: &Principal, action: &str, tenant: &TenantRecord) -> AuditDraft {
    AuditDraft::new(principal.actor(), action, "tenant", &tenant.id.to_string())
        .in_tenant(Some(tenant.id))
        .with_request_id(&principal.request_id)
        .with_details(serde_json::json!({
            "code": tenant.code,
            "name": tenant.name,
            "status": tenant.status,
            "max_users": tenant.max_users,
            "max_companies": tenant.max_companies,
        }))
}

fn company_event(principal: &Principal, action: &str, company: &CompanyRecord) -> AuditDraft {
    AuditDraft::new(
        principal.actor(),
        action,
        "company",
        &company.id.to_string(),
    )
    .in_tenant(Some(company.tenant_id))
    .with_request_id(&principal.request_id)
    .with_details(serde_json::json!({
        "code": company.code,
        "name": company.name,
        "status": company.status,
    }))
}
