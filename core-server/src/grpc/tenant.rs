use plinth_client::tenant::v1::{
    self as proto, CompanyStatus as ProtoCompanyStatus, TenantStatus as ProtoTenantStatus,
    get_company_request, get_tenant_request, tenant_service_server::TenantService,
};
use plinth_platform::{
    identity,
    store::tenants::{CompanyFilter, CompanyRecord, TenantFilter, TenantRecord},
};
use tonic::{Request, Response, Status};

use super::validate::{Fields, timestamp};
use crate::{
    auth::users::UserInput,
    listing::PageRequest,
    tenant::{
        CompanyChanges, CompanyKey, Limits, NewCompany, NewTenant, SignUp, TenantChanges,
        TenantKey, TenantStatus, Tenants,
    },
};

const MAX_NAME: usize = 200;

/// TenantService. Tenants, companies and signup are served; modules,
/// configuration and templates answer UNIMPLEMENTED until their issue.
pub struct TenantApi {
    pub tenants: Tenants,
}

fn tenant_status_from_proto(status: ProtoTenantStatus) -> Option<TenantStatus> {
    Some(match status {
        ProtoTenantStatus::Unspecified => return None,
        ProtoTenantStatus::Provisioning => TenantStatus::Provisioning,
        ProtoTenantStatus::Active => TenantStatus::Active,
        ProtoTenantStatus::Suspended => TenantStatus::Suspended,
        ProtoTenantStatus::Inactive => TenantStatus::Inactive,
        ProtoTenantStatus::Deleted => TenantStatus::Deleted,
    })
}

fn tenant_status_to_proto(status: &str) -> ProtoTenantStatus {
    match TenantStatus::parse(status) {
        Some(TenantStatus::Provisioning) => ProtoTenantStatus::Provisioning,
        Some(TenantStatus::Active) => ProtoTenantStatus::Active,
        Some(TenantStatus::Suspended) => ProtoTenantStatus::Suspended,
        Some(TenantStatus::Inactive) => ProtoTenantStatus::Inactive,
        Some(TenantStatus::Deleted) => ProtoTenantStatus::Deleted,
        None => ProtoTenantStatus::Unspecified,
    }
}

fn company_status_from_proto(status: ProtoCompanyStatus) -> Option<&'static str> {
    match status {
        ProtoCompanyStatus::Unspecified => None,
        ProtoCompanyStatus::Active => Some("active"),
        ProtoCompanyStatus::Archived => Some("archived"),
    }
}

fn tenant_to_proto(tenant: TenantRecord) -> proto::Tenant {
    proto::Tenant {
        status: tenant_status_to_proto(&tenant.status).into(),
        id: tenant.id.to_string(),
        code: tenant.code,
        name: tenant.name,
        limits: Some(proto::TenantLimits {
            max_users: tenant.max_users,
            max_companies: tenant.max_companies,
        }),
        industry: tenant.industry,
        created_at: Some(timestamp(tenant.created_at)),
        updated_at: Some(timestamp(tenant.updated_at)),
    }
}

fn company_to_proto(company: CompanyRecord) -> proto::Company {
    let status = match company.status.as_str() {
        "active" => ProtoCompanyStatus::Active,
        "archived" => ProtoCompanyStatus::Archived,
        _ => ProtoCompanyStatus::Unspecified,
    };
    proto::Company {
        id: company.id.to_string(),
        tenant_id: company.tenant_id.to_string(),
        code: company.code,
        name: company.name,
        status: status.into(),
        created_at: Some(timestamp(company.created_at)),
        updated_at: Some(timestamp(company.updated_at)),
    }
}

fn limits(fields: &mut Fields, limits: Option<proto::TenantLimits>) -> Option<Limits> {
    limits.map(|limits| Limits {
        max_users: fields.non_negative("limits.max_users", limits.max_users),
        max_companies: fields.non_negative("limits.max_companies", limits.max_companies),
    })
}

fn optional_prefix(prefix: String) -> Option<String> {
    (!prefix.is_empty()).then_some(prefix)
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        request: Request<proto::CreateTenantRequest>,
    ) -> Result<Response<proto::CreateTenantResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let new = NewTenant {
            code: fields.slug("code", &body.code),
            name: fields.name("name", &body.name, MAX_NAME),
            limits: limits(&mut fields, body.limits).unwrap_or_default(),
            industry: body.industry.trim().to_owned(),
            provisioning: body.provisioning,
        };
        fields.finish()?;
        let tenant = self.tenants.create(principal, new).await?;
        Ok(Response::new(proto::CreateTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<proto::GetTenantRequest>,
    ) -> Result<Response<proto::GetTenantResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let key = match &request.get_ref().key {
            Some(get_tenant_request::Key::Id(id)) => TenantKey::Id(fields.id("id", id)),
            Some(get_tenant_request::Key::Code(code)) => TenantKey::Code(fields.slug("code", code)),
            None => {
                fields.violation("key", "id or code is required");
                TenantKey::Code(String::new())
            }
        };
        fields.finish()?;
        let tenant = self.tenants.get(principal, key).await?;
        Ok(Response::new(proto::GetTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Result<Response<proto::ListTenantsResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let filter = TenantFilter {
            status: tenant_status_from_proto(body.status())
                .map(|status| status.as_str().to_owned()),
            code_prefix: optional_prefix(body.code_prefix.clone()),
            industry: optional_prefix(body.industry.clone()),
            include_deleted: body.include_deleted,
        };
        let (tenants, next_page_token) = self.tenants.list(principal, filter, page).await?;
        Ok(Response::new(proto::ListTenantsResponse {
            tenants: tenants.into_iter().map(tenant_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<proto::UpdateTenantRequest>,
    ) -> Result<Response<proto::UpdateTenantResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let changes = TenantChanges {
            name: body
                .name
                .as_deref()
                .map(|name| fields.name("name", name, MAX_NAME)),
            limits: limits(&mut fields, body.limits),
            industry: body
                .industry
                .as_deref()
                .map(|industry| industry.trim().to_owned()),
        };
        fields.finish()?;
        let tenant = self.tenants.update(principal, id, changes).await?;
        Ok(Response::new(proto::UpdateTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn set_tenant_status(
        &self,
        request: Request<proto::SetTenantStatusRequest>,
    ) -> Result<Response<proto::SetTenantStatusResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let status = tenant_status_from_proto(body.status());
        if status.is_none() {
            fields.violation("status", "is required");
        }
        if body.reason.chars().count() > 500 {
            fields.violation("reason", "must be at most 500 characters");
        }
        fields.finish()?;
        let next = status.unwrap_or(TenantStatus::Active);
        let tenant = self
            .tenants
            .set_status(principal, id, next, body.reason.clone())
            .await?;
        Ok(Response::new(proto::SetTenantStatusResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<proto::DeleteTenantRequest>,
    ) -> Result<Response<proto::DeleteTenantResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let id = fields.id("id", &request.get_ref().id);
        fields.finish()?;
        let tenant = self
            .tenants
            .set_status(principal, id, TenantStatus::Deleted, String::new())
            .await?;
        Ok(Response::new(proto::DeleteTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn signup(
        &self,
        request: Request<proto::SignupRequest>,
    ) -> Result<Response<proto::SignupResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let sign_up = SignUp {
            tenant_code: fields.slug("tenant_code", &body.tenant_code),
            tenant_name: fields.name("tenant_name", &body.tenant_name, MAX_NAME),
            admin: UserInput {
                email: fields.email("admin_email", &body.admin_email),
                display_name: fields.name("admin_display_name", &body.admin_display_name, MAX_NAME),
                password: fields.password("admin_password", &body.admin_password),
            },
        };
        if !body.industry_template_code.is_empty() {
            fields.violation(
                "industry_template_code",
                "industry templates are not available yet",
            );
        }
        fields.finish()?;
        let (tenant, admin_user_id) = self.tenants.sign_up(principal, sign_up).await?;
        Ok(Response::new(proto::SignupResponse {
            tenant: Some(tenant_to_proto(tenant)),
            admin_user_id: admin_user_id.to_string(),
        }))
    }

    async fn create_company(
        &self,
        request: Request<proto::CreateCompanyRequest>,
    ) -> Result<Response<proto::CreateCompanyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let new = NewCompany {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            code: fields.slug("code", &body.code),
            name: fields.name("name", &body.name, MAX_NAME),
        };
        fields.finish()?;
        let company = self.tenants.create_company(principal, new).await?;
        Ok(Response::new(proto::CreateCompanyResponse {
            company: Some(company_to_proto(company)),
        }))
    }

    async fn get_company(
        &self,
        request: Request<proto::GetCompanyRequest>,
    ) -> Result<Response<proto::GetCompanyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let key = match &request.get_ref().key {
            Some(get_company_request::Key::Id(id)) => CompanyKey::Id(fields.id("id", id)),
            Some(get_company_request::Key::Code(code)) => CompanyKey::Code {
                tenant_id: fields.id("code.tenant_id", &code.tenant_id),
                code: fields.slug("code.code", &code.code),
            },
            None => {
                fields.violation("key", "id or code is required");
                CompanyKey::Id(uuid::Uuid::nil())
            }
        };
        fields.finish()?;
        let company = self.tenants.get_company(principal, key).await?;
        Ok(Response::new(proto::GetCompanyResponse {
            company: Some(company_to_proto(company)),
        }))
    }

    async fn list_companies(
        &self,
        request: Request<proto::ListCompaniesRequest>,
    ) -> Result<Response<proto::ListCompaniesResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let tenant_id = fields.id("tenant_id", &body.tenant_id);
        fields.finish()?;
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let filter = CompanyFilter {
            status: company_status_from_proto(body.status()).map(str::to_owned),
            code_prefix: optional_prefix(body.code_prefix.clone()),
        };
        let (companies, next_page_token) = self
            .tenants
            .list_companies(principal, tenant_id, filter, page)
            .await?;
        Ok(Response::new(proto::ListCompaniesResponse {
            companies: companies.into_iter().map(company_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_company(
        &self,
        request: Request<proto::UpdateCompanyRequest>,
    ) -> Result<Response<proto::UpdateCompanyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let changes = CompanyChanges {
            name: body
                .name
                .as_deref()
                .map(|name| fields.name("name", name, MAX_NAME)),
            status: body.status.and_then(|status| {
                let status =
                    ProtoCompanyStatus::try_from(status).unwrap_or(ProtoCompanyStatus::Unspecified);
                let parsed = company_status_from_proto(status);
                if parsed.is_none() {
                    fields.violation("status", "must be ACTIVE or ARCHIVED");
                }
                parsed
            }),
        };
        fields.finish()?;
        let company = self.tenants.update_company(principal, id, changes).await?;
        Ok(Response::new(proto::UpdateCompanyResponse {
            company: Some(company_to_proto(company)),
        }))
    }
}
