//! TenantService: tenants and companies are served; modules, configuration
//! and templates answer UNIMPLEMENTED until their issue.

mod companies;
mod tenants;

use plinth_client::tenant::v1::{self as proto, tenant_service_server::TenantService};
use tonic::{Request, Response, Status};

use crate::tenant::Tenants;

/// TenantService.
pub struct TenantApi {
    pub tenants: Tenants,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        request: Request<proto::CreateTenantRequest>,
    ) -> Answer<proto::CreateTenantResponse> {
        tenants::create(&self.tenants, request).await
    }

    async fn get_tenant(
        &self,
        request: Request<proto::GetTenantRequest>,
    ) -> Answer<proto::GetTenantResponse> {
        tenants::get(&self.tenants, request).await
    }

    async fn list_tenants(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Answer<proto::ListTenantsResponse> {
        tenants::list(&self.tenants, request).await
    }

    async fn update_tenant(
        &self,
        request: Request<proto::UpdateTenantRequest>,
    ) -> Answer<proto::UpdateTenantResponse> {
        tenants::update(&self.tenants, request).await
    }

    async fn set_tenant_status(
        &self,
        request: Request<proto::SetTenantStatusRequest>,
    ) -> Answer<proto::SetTenantStatusResponse> {
        tenants::set_status(&self.tenants, request).await
    }

    async fn delete_tenant(
        &self,
        request: Request<proto::DeleteTenantRequest>,
    ) -> Answer<proto::DeleteTenantResponse> {
        tenants::delete(&self.tenants, request).await
    }

    async fn signup(
        &self,
        request: Request<proto::SignupRequest>,
    ) -> Answer<proto::SignupResponse> {
        tenants::signup(&self.tenants, request).await
    }

    async fn create_company(
        &self,
        request: Request<proto::CreateCompanyRequest>,
    ) -> Answer<proto::CreateCompanyResponse> {
        companies::create(&self.tenants, request).await
    }

    async fn get_company(
        &self,
        request: Request<proto::GetCompanyRequest>,
    ) -> Answer<proto::GetCompanyResponse> {
        companies::get(&self.tenants, request).await
    }

    async fn list_companies(
        &self,
        request: Request<proto::ListCompaniesRequest>,
    ) -> Answer<proto::ListCompaniesResponse> {
        companies::list(&self.tenants, request).await
    }

    async fn update_company(
        &self,
        request: Request<proto::UpdateCompanyRequest>,
    ) -> Answer<proto::UpdateCompanyResponse> {
        companies::update(&self.tenants, request).await
    }
}
