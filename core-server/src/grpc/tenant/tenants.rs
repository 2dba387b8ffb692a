//! Tenants and signup: requests into commands, records into messages.

use plinth_api::tenant::v1::{
    self as proto, TenantStatus as ProtoTenantStatus, get_tenant_request,
};
use plinth_platform::{
    error::ApiError,
    identity,
    store::tenants::{TenantFilter, TenantRecord, TenantStatus},
};
use tonic::{Request, Response};
use uuid::Uuid;

use super::Answer;
use crate::{
    auth::{
        passwords,
        users::{MAX_DISPLAY_NAME, UserInput},
    },
    grpc::validate::{Fields, required_id, timestamp},
    templates::MAX_TEMPLATE_MODULES,
    tenant::{
        Limits, MAX_REASON, MAX_TENANT_NAME, NewTenant, SignUp, StatusChange, TenantChanges,
        TenantKey, TenantListing, TenantUpdate, Tenants,
    },
};

fn status_from_proto(status: ProtoTenantStatus) -> Option<TenantStatus> {
    Some(match status {
        ProtoTenantStatus::Unspecified => return None,
        ProtoTenantStatus::Provisioning => TenantStatus::Provisioning,
        ProtoTenantStatus::Active => TenantStatus::Active,
        ProtoTenantStatus::Suspended => TenantStatus::Suspended,
        ProtoTenantStatus::Inactive => TenantStatus::Inactive,
        ProtoTenantStatus::Deleted => TenantStatus::Deleted,
    })
}

fn status_to_proto(status: TenantStatus) -> ProtoTenantStatus {
    match status {
        TenantStatus::Provisioning => ProtoTenantStatus::Provisioning,
        TenantStatus::Active => ProtoTenantStatus::Active,
        TenantStatus::Suspended => ProtoTenantStatus::Suspended,
        TenantStatus::Inactive => ProtoTenantStatus::Inactive,
        TenantStatus::Deleted => ProtoTenantStatus::Deleted,
    }
}

pub fn tenant_to_proto(tenant: TenantRecord) -> proto::Tenant {
    proto::Tenant {
        status: status_to_proto(tenant.status).into(),
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

fn tenant_response<T>(
    tenant: TenantRecord,
    wrap: impl FnOnce(Option<proto::Tenant>) -> T,
) -> Answer<T> {
    Ok(Response::new(wrap(Some(tenant_to_proto(tenant)))))
}

fn limits(fields: &mut Fields, limits: Option<proto::TenantLimits>) -> Option<Limits> {
    limits.map(|limits| Limits {
        max_users: fields.non_negative("limits.max_users", limits.max_users),
        max_companies: fields.non_negative("limits.max_companies", limits.max_companies),
    })
}

/// An industry template code, or empty.
fn industry(fields: &mut Fields, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    fields.slug("industry", value)
}

impl TryFrom<&proto::CreateTenantRequest> for NewTenant {
    type Error = ApiError;

    fn try_from(body: &proto::CreateTenantRequest) -> Result<NewTenant, ApiError> {
        let mut fields = Fields::default();
        let new = NewTenant {
            code: fields.slug("code", &body.code),
            name: fields.name("name", &body.name, MAX_TENANT_NAME),
            limits: limits(&mut fields, body.limits).unwrap_or_default(),
            industry: industry(&mut fields, &body.industry),
            provisioning: body.provisioning,
        };
        fields.finish()?;
        Ok(new)
    }
}

impl TryFrom<&proto::GetTenantRequest> for TenantKey {
    type Error = ApiError;

    fn try_from(body: &proto::GetTenantRequest) -> Result<TenantKey, ApiError> {
        let mut fields = Fields::default();
        let key = match &body.key {
            Some(get_tenant_request::Key::Id(id)) => TenantKey::Id(fields.id("id", id)),
            Some(get_tenant_request::Key::Code(code)) => TenantKey::Code(fields.slug("code", code)),
            None => {
                fields.violation("key", "id or code is required");
                TenantKey::Id(Uuid::nil())
            }
        };
        fields.finish()?;
        Ok(key)
    }
}

impl TryFrom<&proto::ListTenantsRequest> for TenantListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListTenantsRequest) -> Result<TenantListing, ApiError> {
        let mut fields = Fields::default();
        let listing = TenantListing {
            filter: TenantFilter {
                status: fields
                    .known("status", body.status)
                    .and_then(status_from_proto),
                code_prefix: fields.prefix("code_prefix", &body.code_prefix),
                industry: fields.prefix("industry", &body.industry),
                include_deleted: body.include_deleted,
            },
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(listing)
    }
}

impl TryFrom<&proto::UpdateTenantRequest> for TenantUpdate {
    type Error = ApiError;

    fn try_from(body: &proto::UpdateTenantRequest) -> Result<TenantUpdate, ApiError> {
        let mut fields = Fields::default();
        let update = TenantUpdate {
            id: fields.id("id", &body.id),
            changes: TenantChanges {
                name: body
                    .name
                    .as_deref()
                    .map(|name| fields.name("name", name, MAX_TENANT_NAME)),
                limits: limits(&mut fields, body.limits),
                industry: body
                    .industry
                    .as_deref()
                    .map(|value| industry(&mut fields, value)),
            },
        };
        fields.finish()?;
        Ok(update)
    }
}

impl TryFrom<&proto::SetTenantStatusRequest> for StatusChange {
    type Error = ApiError;

    fn try_from(body: &proto::SetTenantStatusRequest) -> Result<StatusChange, ApiError> {
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let status = fields
            .known("status", body.status)
            .and_then(status_from_proto);
        if status.is_none() {
            fields.violation("status", "is required");
        }
        let reason = fields.text("reason", &body.reason, MAX_REASON);
        fields.finish()?;
        Ok(StatusChange {
            id,
            status: status.unwrap_or(TenantStatus::Active),
            reason,
        })
    }
}

impl TryFrom<&proto::SignupRequest> for SignUp {
    type Error = ApiError;

    fn try_from(body: &proto::SignupRequest) -> Result<SignUp, ApiError> {
        let mut fields = Fields::default();
        let sign_up = SignUp {
            tenant_code: fields.slug("tenant_code", &body.tenant_code),
            tenant_name: fields.name("tenant_name", &body.tenant_name, MAX_TENANT_NAME),
            admin: UserInput {
                email: fields.email("admin_email", &body.admin_email),
                display_name: fields.name(
                    "admin_display_name",
                    &body.admin_display_name,
                    MAX_DISPLAY_NAME,
                ),
                password: fields
                    .secret("admin_password", &body.admin_password, passwords::MAX_BYTES)
                    .to_owned(),
            },
            template: (!body.industry_template_code.is_empty()).then(|| {
                (
                    fields.slug("industry_template_code", &body.industry_template_code),
                    fields
                        .bounded(
                            "optional_module_ids",
                            &body.optional_module_ids,
                            MAX_TEMPLATE_MODULES,
                        )
                        .iter()
                        .enumerate()
                        .map(|(index, module_id)| {
                            fields.module_id(&format!("optional_module_ids[{index}]"), module_id)
                        })
                        .collect(),
                )
            }),
        };
        if body.industry_template_code.is_empty() && !body.optional_module_ids.is_empty() {
            fields.violation("optional_module_ids", "needs an industry_template_code");
        }
        fields.finish()?;
        Ok(sign_up)
    }
}

pub async fn create(
    tenants: &Tenants,
    request: Request<proto::CreateTenantRequest>,
) -> Answer<proto::CreateTenantResponse> {
    let principal = identity::principal(&request)?;
    let new = NewTenant::try_from(request.get_ref())?;
    let tenant = tenants.create(principal, new).await?;
    tenant_response(tenant, |tenant| proto::CreateTenantResponse { tenant })
}

pub async fn get(
    tenants: &Tenants,
    request: Request<proto::GetTenantRequest>,
) -> Answer<proto::GetTenantResponse> {
    let principal = identity::principal(&request)?;
    let key = TenantKey::try_from(request.get_ref())?;
    let tenant = tenants.get(principal, key).await?;
    tenant_response(tenant, |tenant| proto::GetTenantResponse { tenant })
}

pub async fn list(
    tenants: &Tenants,
    request: Request<proto::ListTenantsRequest>,
) -> Answer<proto::ListTenantsResponse> {
    let principal = identity::principal(&request)?;
    let listing = TenantListing::try_from(request.get_ref())?;
    let (tenants, next_page_token) = tenants.list(principal, listing).await?;
    Ok(Response::new(proto::ListTenantsResponse {
        tenants: tenants.into_iter().map(tenant_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn update(
    tenants: &Tenants,
    request: Request<proto::UpdateTenantRequest>,
) -> Answer<proto::UpdateTenantResponse> {
    let principal = identity::principal(&request)?;
    let update = TenantUpdate::try_from(request.get_ref())?;
    let tenant = tenants.update(principal, update).await?;
    tenant_response(tenant, |tenant| proto::UpdateTenantResponse { tenant })
}

pub async fn set_status(
    tenants: &Tenants,
    request: Request<proto::SetTenantStatusRequest>,
) -> Answer<proto::SetTenantStatusResponse> {
    let principal = identity::principal(&request)?;
    let change = StatusChange::try_from(request.get_ref())?;
    let tenant = tenants.set_status(principal, change).await?;
    tenant_response(tenant, |tenant| proto::SetTenantStatusResponse { tenant })
}

pub async fn delete(
    tenants: &Tenants,
    request: Request<proto::DeleteTenantRequest>,
) -> Answer<proto::DeleteTenantResponse> {
    let principal = identity::principal(&request)?;
    let change = StatusChange {
        id: required_id("id", &request.get_ref().id)?,
        status: TenantStatus::Deleted,
        reason: String::new(),
    };
    let tenant = tenants.set_status(principal, change).await?;
    tenant_response(tenant, |tenant| proto::DeleteTenantResponse { tenant })
}

pub async fn signup(
    tenants: &Tenants,
    request: Request<proto::SignupRequest>,
) -> Answer<proto::SignupResponse> {
    let principal = identity::principal(&request)?;
    let sign_up = SignUp::try_from(request.get_ref())?;
    let signed_up = tenants.sign_up(principal, sign_up).await?;
    Ok(Response::new(proto::SignupResponse {
        tenant: Some(tenant_to_proto(signed_up.tenant)),
        admin_user_id: signed_up.admin_user_id.to_string(),
        modules: signed_up
            .modules
            .into_iter()
            .map(|(record, version)| super::modules::tenant_module_to_proto(record, Some(version)))
            .collect(),
    }))
}
