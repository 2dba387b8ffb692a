//! TenantService: tenants and companies, modules in tenants, their
//! configuration, and industry templates.

mod companies;
mod configs;
mod modules;
mod templates;
mod tenants;

use plinth_api::tenant::v1::{
    self as proto,
    tenant_service_server::{TenantService as GeneratedTenantService, TenantServiceServer},
};
use plinth_platform::server::Rerouted;
use tonic::{Request, Response, Status, codegen::BoxStream};

use crate::{
    enablement::Enablements,
    module_config::{ConfigWatches, ModuleConfigs},
    templates::Templates,
    tenant::Tenants,
};

/// TenantService: ResolveModuleConfig apart, every call by the generated
/// server.
pub type TenantService =
    Rerouted<TenantServiceServer<TenantApi>, configs::Resolve, proto::ResolveModuleConfigRequest>;

pub fn tenant_service(api: TenantApi, max_decoding_message_size: usize) -> TenantService {
    let resolve = configs::Resolve(std::sync::Arc::new(api.configs.clone()));
    Rerouted::new(
        TenantServiceServer::new(api).max_decoding_message_size(max_decoding_message_size),
        "/plinth.tenant.v1.TenantService/ResolveModuleConfig",
        resolve,
        max_decoding_message_size,
    )
}

/// Every TenantService call but ResolveModuleConfig.
pub struct TenantApi {
    pub tenants: Tenants,
    pub enablements: Enablements,
    pub configs: ModuleConfigs,
    pub config_watches: ConfigWatches,
    pub templates: Templates,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl GeneratedTenantService for TenantApi {
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

    async fn enable_modules(
        &self,
        request: Request<proto::EnableModulesRequest>,
    ) -> Answer<proto::EnableModulesResponse> {
        modules::enable(&self.enablements, request).await
    }

    async fn disable_module(
        &self,
        request: Request<proto::DisableModuleRequest>,
    ) -> Answer<proto::DisableModuleResponse> {
        modules::disable(&self.enablements, request).await
    }

    async fn list_tenant_modules(
        &self,
        request: Request<proto::ListTenantModulesRequest>,
    ) -> Answer<proto::ListTenantModulesResponse> {
        modules::list_tenant_modules(&self.enablements, request).await
    }

    async fn set_company_module(
        &self,
        request: Request<proto::SetCompanyModuleRequest>,
    ) -> Answer<proto::SetCompanyModuleResponse> {
        modules::set_company_module(&self.enablements, request).await
    }

    async fn is_module_enabled(
        &self,
        request: Request<proto::IsModuleEnabledRequest>,
    ) -> Answer<proto::IsModuleEnabledResponse> {
        modules::is_enabled(&self.enablements, request).await
    }

    async fn list_enabled_modules(
        &self,
        request: Request<proto::ListEnabledModulesRequest>,
    ) -> Answer<proto::ListEnabledModulesResponse> {
        modules::list_enabled(&self.enablements, request).await
    }

    async fn report_module_provisioning(
        &self,
        request: Request<proto::ReportModuleProvisioningRequest>,
    ) -> Answer<proto::ReportModuleProvisioningResponse> {
        modules::report_provisioning(&self.enablements, request).await
    }

    async fn get_module_config(
        &self,
        request: Request<proto::GetModuleConfigRequest>,
    ) -> Answer<proto::GetModuleConfigResponse> {
        configs::get(&self.configs, request).await
    }

    async fn set_module_config(
        &self,
        request: Request<proto::SetModuleConfigRequest>,
    ) -> Answer<proto::SetModuleConfigResponse> {
        configs::set(&self.configs, request).await
    }

    async fn watch_module_config(
        &self,
        request: Request<proto::WatchModuleConfigRequest>,
    ) -> Answer<BoxStream<proto::WatchModuleConfigResponse>> {
        configs::watch(&self.config_watches, request).await
    }

    async fn create_industry_template(
        &self,
        request: Request<proto::CreateIndustryTemplateRequest>,
    ) -> Answer<proto::CreateIndustryTemplateResponse> {
        templates::create(&self.templates, request).await
    }

    async fn get_industry_template(
        &self,
        request: Request<proto::GetIndustryTemplateRequest>,
    ) -> Answer<proto::GetIndustryTemplateResponse> {
        templates::get(&self.templates, request).await
    }

    async fn list_industry_templates(
        &self,
        request: Request<proto::ListIndustryTemplatesRequest>,
    ) -> Answer<proto::ListIndustryTemplatesResponse> {
        templates::list(&self.templates, request).await
    }

    async fn update_industry_template(
        &self,
        request: Request<proto::UpdateIndustryTemplateRequest>,
    ) -> Answer<proto::UpdateIndustryTemplateResponse> {
        templates::update(&self.templates, request).await
    }

    async fn delete_industry_template(
        &self,
        request: Request<proto::DeleteIndustryTemplateRequest>,
    ) -> Answer<proto::DeleteIndustryTemplateResponse> {
        templates::delete(&self.templates, request).await
    }

    async fn apply_industry_template(
        &self,
        request: Request<proto::ApplyIndustryTemplateRequest>,
    ) -> Answer<proto::ApplyIndustryTemplateResponse> {
        templates::apply(&self.templates, request).await
    }
}
