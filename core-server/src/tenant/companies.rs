//! Companies inside tenants.

use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        StoreError, TenantRows, companies,
        companies::{CompanyFilter, CompanyRecord, CompanyStatus},
        count_in_tenant,
    },
};
use uuid::Uuid;

use super::{Tenants, lock_writable, within_limit};
use crate::{
    access::Scope,
    listing::PageRequest,
    permissions::{COMPANY_CREATE, COMPANY_LIST, COMPANY_READ, COMPANY_UPDATE},
};

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
    pub status: Option<CompanyStatus>,
}

/// Longest company name, in characters.
pub const MAX_COMPANY_NAME: usize = 200;

/// Changes to one company.
#[derive(Debug, Clone)]
pub struct CompanyUpdate {
    pub id: Uuid,
    pub changes: CompanyChanges,
}

/// A page of a tenant's companies.
#[derive(Debug, Clone)]
pub struct CompanyListing {
    pub tenant_id: Uuid,
    pub filter: CompanyFilter,
    pub page: PageRequest,
}

impl Tenants {
    /// Creates a company unless the tenant's `max_companies` is reached; two
    /// concurrent creations cannot both take the last place.
    pub async fn create_company(
        &self,
        principal: &Principal,
        new: NewCompany,
    ) -> Result<CompanyRecord, ApiError> {
        self.access
            .require(principal, COMPANY_CREATE, Scope::tenant(new.tenant_id))
            .await?;
        let now = clock::now();
        let company = CompanyRecord {
            id: Uuid::now_v7(),
            tenant_id: new.tenant_id,
            code: new.code,
            name: new.name,
            status: CompanyStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        let tenant = lock_writable(&mut tx, new.tenant_id).await?;
        let existing = count_in_tenant(&mut tx, TenantRows::Companies, tenant.id).await?;
        within_limit("max_companies", tenant.max_companies, existing)?;
        let audit = company_event(principal, "tenant.company.created", &company);
        companies::insert(&mut tx, &company, audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict => ApiError::AlreadyExists {
                    resource_type: "company",
                    field: "code",
                },
                other => other.into(),
            })?;
        tx.commit().await?;
        Ok(company)
    }

    pub async fn get_company(
        &self,
        principal: &Principal,
        key: CompanyKey,
    ) -> Result<CompanyRecord, ApiError> {
        let found = match &key {
            CompanyKey::Id(id) => self.store.companies.get_company(*id).await?,
            CompanyKey::Code { tenant_id, code } => {
                self.store
                    .companies
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
                COMPANY_READ,
                Scope::tenant(company.tenant_id),
                "company",
            )
            .await?;
        Ok(company)
    }

    pub async fn list_companies(
        &self,
        principal: &Principal,
        listing: CompanyListing,
    ) -> Result<(Vec<CompanyRecord>, String), ApiError> {
        let CompanyListing {
            tenant_id,
            filter,
            page,
        } = listing;
        self.access
            .require(principal, COMPANY_LIST, Scope::tenant(tenant_id))
            .await?;
        let rows = self
            .store
            .companies
            .list_companies(tenant_id, &filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |company| company.id))
    }

    pub async fn update_company(
        &self,
        principal: &Principal,
        update: CompanyUpdate,
    ) -> Result<CompanyRecord, ApiError> {
        let CompanyUpdate { id, changes } = update;
        let mut company =
            self.store
                .companies
                .get_company(id)
                .await?
                .ok_or(ApiError::NotFound {
                    resource_type: "company",
                })?;
        self.access
            .require_visible(
                principal,
                COMPANY_UPDATE,
                Scope::tenant(company.tenant_id),
                "company",
            )
            .await?;
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, company.tenant_id).await?;
        if let Some(name) = changes.name {
            company.name = name;
        }
        if let Some(status) = changes.status {
            company.status = status;
        }
        company.updated_at = clock::now();
        let audit = company_event(principal, "tenant.company.updated", &company);
        companies::update(&mut tx, &company, audit).await?;
        tx.commit().await?;
        Ok(company)
    }
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
        "status": company.status.as_str(),
    }))
}
