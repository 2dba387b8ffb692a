//! Companies: requests into commands, records into messages.

use plinth_api::tenant::v1::{
    self as proto, CompanyStatus as ProtoCompanyStatus, get_company_request,
};
use plinth_platform::{
    error::ApiError,
    identity,
    store::companies::{CompanyFilter, CompanyRecord, CompanyStatus},
};
use tonic::{Request, Response};
use uuid::Uuid;

use super::Answer;
use crate::{
    grpc::validate::{Fields, timestamp},
    tenant::{
        CompanyChanges, CompanyKey, CompanyListing, CompanyUpdate, MAX_COMPANY_NAME, NewCompany,
        Tenants,
    },
};

fn status_from_proto(status: ProtoCompanyStatus) -> Option<CompanyStatus> {
    match status {
        ProtoCompanyStatus::Unspecified => None,
        ProtoCompanyStatus::Active => Some(CompanyStatus::Active),
        ProtoCompanyStatus::Archived => Some(CompanyStatus::Archived),
    }
}

fn company_to_proto(company: CompanyRecord) -> proto::Company {
    let status = match company.status {
        CompanyStatus::Active => ProtoCompanyStatus::Active,
        CompanyStatus::Archived => ProtoCompanyStatus::Archived,
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

impl TryFrom<&proto::CreateCompanyRequest> for NewCompany {
    type Error = ApiError;

    fn try_from(body: &proto::CreateCompanyRequest) -> Result<NewCompany, ApiError> {
        let mut fields = Fields::default();
        let new = NewCompany {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            code: fields.slug("code", &body.code),
            name: fields.name("name", &body.name, MAX_COMPANY_NAME),
        };
        fields.finish()?;
        Ok(new)
    }
}

impl TryFrom<&proto::GetCompanyRequest> for CompanyKey {
    type Error = ApiError;

    fn try_from(body: &proto::GetCompanyRequest) -> Result<CompanyKey, ApiError> {
        let mut fields = Fields::default();
        let key = match &body.key {
            Some(get_company_request::Key::Id(id)) => CompanyKey::Id(fields.id("id", id)),
            Some(get_company_request::Key::Code(code)) => CompanyKey::Code {
                tenant_id: fields.id("code.tenant_id", &code.tenant_id),
                code: fields.slug("code.code", &code.code),
            },
            None => {
                fields.violation("key", "id or code is required");
                CompanyKey::Id(Uuid::nil())
            }
        };
        fields.finish()?;
        Ok(key)
    }
}

impl TryFrom<&proto::ListCompaniesRequest> for CompanyListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListCompaniesRequest) -> Result<CompanyListing, ApiError> {
        let mut fields = Fields::default();
        let listing = CompanyListing {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            filter: CompanyFilter {
                status: fields
                    .known("status", body.status)
                    .and_then(status_from_proto),
                code_prefix: fields.prefix("code_prefix", &body.code_prefix),
            },
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(listing)
    }
}

impl TryFrom<&proto::UpdateCompanyRequest> for CompanyUpdate {
    type Error = ApiError;

    fn try_from(body: &proto::UpdateCompanyRequest) -> Result<CompanyUpdate, ApiError> {
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let name = body
            .name
            .as_deref()
            .map(|name| fields.name("name", name, MAX_COMPANY_NAME));
        let status = body.status.and_then(|status| {
            let status = fields.known("status", status).and_then(status_from_proto);
            if status.is_none() {
                fields.violation("status", "must be ACTIVE or ARCHIVED");
            }
            status
        });
        fields.finish()?;
        Ok(CompanyUpdate {
            id,
            changes: CompanyChanges { name, status },
        })
    }
}

pub async fn create(
    tenants: &Tenants,
    request: Request<proto::CreateCompanyRequest>,
) -> Answer<proto::CreateCompanyResponse> {
    let principal = identity::principal(&request)?;
    let new = NewCompany::try_from(request.get_ref())?;
    let company = tenants.create_company(principal, new).await?;
    Ok(Response::new(proto::CreateCompanyResponse {
        company: Some(company_to_proto(company)),
    }))
}

pub async fn get(
    tenants: &Tenants,
    request: Request<proto::GetCompanyRequest>,
) -> Answer<proto::GetCompanyResponse> {
    let principal = identity::principal(&request)?;
    let key = CompanyKey::try_from(request.get_ref())?;
    let company = tenants.get_company(principal, key).await?;
    Ok(Response::new(proto::GetCompanyResponse {
        company: Some(company_to_proto(company)),
    }))
}

pub async fn list(
    tenants: &Tenants,
    request: Request<proto::ListCompaniesRequest>,
) -> Answer<proto::ListCompaniesResponse> {
    let principal = identity::principal(&request)?;
    let listing = CompanyListing::try_from(request.get_ref())?;
    let (companies, next_page_token) = tenants.list_companies(principal, listing).await?;
    Ok(Response::new(proto::ListCompaniesResponse {
        companies: companies.into_iter().map(company_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn update(
    tenants: &Tenants,
    request: Request<proto::UpdateCompanyRequest>,
) -> Answer<proto::UpdateCompanyResponse> {
    let principal = identity::principal(&request)?;
    let update = CompanyUpdate::try_from(request.get_ref())?;
    let company = tenants.update_company(principal, update).await?;
    Ok(Response::new(proto::UpdateCompanyResponse {
        company: Some(company_to_proto(company)),
    }))
}
