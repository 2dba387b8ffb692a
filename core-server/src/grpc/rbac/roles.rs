//! Roles and bindings: requests into commands, records into messages.

use plinth_api::rbac::v1::{self as proto, get_role_request};
use plinth_platform::{
    error::ApiError,
    identity,
    store::rbac::{BindingFilter, RoleBinding, RoleRecord},
};
use tonic::{Request, Response};
use uuid::Uuid;

use super::Answer;
use crate::{
    grpc::validate::{Fields, required_id, timestamp},
    rbac::{
        BindingListing, MAX_ROLE_DESCRIPTION, MAX_ROLE_GRANTS, MAX_ROLE_NAME, MAX_ROLE_PARENTS,
        NewBinding, NewRole, Rbac, RoleChanges, RoleKey, RoleListing, RoleUpdate,
    },
};

/// Longest a binding may last: ten years.
const MAX_BINDING_LIFETIME_DAYS: i64 = 3660;

fn role_to_proto(role: RoleRecord) -> proto::Role {
    proto::Role {
        id: role.id.to_string(),
        tenant_id: role.tenant_id.to_string(),
        key: role.key,
        display_name: role.display_name,
        description: role.description,
        permissions: role.permissions,
        parent_role_ids: role.parent_role_ids.iter().map(Uuid::to_string).collect(),
        system: role.system,
        created_at: Some(timestamp(role.created_at)),
        updated_at: Some(timestamp(role.updated_at)),
        etag: role.etag,
    }
}

fn binding_to_proto(binding: RoleBinding) -> proto::RoleBinding {
    proto::RoleBinding {
        id: binding.id.to_string(),
        tenant_id: binding.tenant_id.to_string(),
        user_id: binding.user_id.to_string(),
        role_id: binding.role_id.to_string(),
        company_id: binding
            .company_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        created_at: Some(timestamp(binding.created_at)),
        expires_at: binding.expires_at.map(timestamp),
    }
}

impl TryFrom<&proto::CreateRoleRequest> for NewRole {
    type Error = ApiError;

    fn try_from(body: &proto::CreateRoleRequest) -> Result<NewRole, ApiError> {
        let mut fields = Fields::default();
        let new = NewRole {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            key: fields.slug("key", &body.key),
            display_name: fields.name("display_name", &body.display_name, MAX_ROLE_NAME),
            description: fields.text("description", &body.description, MAX_ROLE_DESCRIPTION),
            permissions: fields.grants("permissions", &body.permissions, MAX_ROLE_GRANTS),
            parent_role_ids: fields.ids("parent_role_ids", &body.parent_role_ids, MAX_ROLE_PARENTS),
        };
        fields.finish()?;
        Ok(new)
    }
}

impl TryFrom<&proto::GetRoleRequest> for RoleKey {
    type Error = ApiError;

    fn try_from(body: &proto::GetRoleRequest) -> Result<RoleKey, ApiError> {
        let mut fields = Fields::default();
        let key = match &body.key {
            Some(get_role_request::Key::Id(id)) => RoleKey::Id(fields.id("id", id)),
            Some(get_role_request::Key::TenantKey(key)) => RoleKey::Key {
                tenant_id: fields.id("tenant_key.tenant_id", &key.tenant_id),
                key: fields.slug("tenant_key.key", &key.key),
            },
            None => {
                fields.violation("key", "id or tenant_key is required");
                RoleKey::Id(Uuid::nil())
            }
        };
        fields.finish()?;
        Ok(key)
    }
}

impl TryFrom<&proto::ListRolesRequest> for RoleListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListRolesRequest) -> Result<RoleListing, ApiError> {
        let mut fields = Fields::default();
        let listing = RoleListing {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(listing)
    }
}

impl TryFrom<&proto::UpdateRoleRequest> for RoleUpdate {
    type Error = ApiError;

    fn try_from(body: &proto::UpdateRoleRequest) -> Result<RoleUpdate, ApiError> {
        let mut fields = Fields::default();
        let update = RoleUpdate {
            id: fields.id("id", &body.id),
            changes: RoleChanges {
                display_name: body
                    .display_name
                    .as_deref()
                    .map(|name| fields.name("display_name", name, MAX_ROLE_NAME)),
                description: body.description.as_deref().map(|description| {
                    fields.text("description", description, MAX_ROLE_DESCRIPTION)
                }),
                permissions: body.permissions.as_ref().map(|list| {
                    fields.grants(
                        "permissions.permissions",
                        &list.permissions,
                        MAX_ROLE_GRANTS,
                    )
                }),
                parent_role_ids: body.parent_role_ids.as_ref().map(|list| {
                    fields.ids("parent_role_ids.role_ids", &list.role_ids, MAX_ROLE_PARENTS)
                }),
            },
            etag: (!body.etag.is_empty()).then(|| fields.text("etag", &body.etag, 64)),
        };
        fields.finish()?;
        Ok(update)
    }
}

impl TryFrom<&proto::AssignRoleRequest> for NewBinding {
    type Error = ApiError;

    fn try_from(body: &proto::AssignRoleRequest) -> Result<NewBinding, ApiError> {
        let mut fields = Fields::default();
        let new = NewBinding {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            user_id: fields.id("user_id", &body.user_id),
            role_id: fields.id("role_id", &body.role_id),
            company_id: fields.optional_id("company_id", &body.company_id),
            expires_at: fields.future_time(
                "expires_at",
                body.expires_at.as_ref(),
                chrono::Duration::days(MAX_BINDING_LIFETIME_DAYS),
            ),
        };
        fields.finish()?;
        Ok(new)
    }
}

impl TryFrom<&proto::ListRoleBindingsRequest> for BindingListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListRoleBindingsRequest) -> Result<BindingListing, ApiError> {
        let mut fields = Fields::default();
        let listing = BindingListing {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            filter: BindingFilter {
                user_id: fields.optional_id("user_id", &body.user_id),
                role_id: fields.optional_id("role_id", &body.role_id),
                company_id: fields.optional_id("company_id", &body.company_id),
            },
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(listing)
    }
}

pub async fn create(
    rbac: &Rbac,
    request: Request<proto::CreateRoleRequest>,
) -> Answer<proto::CreateRoleResponse> {
    let principal = identity::principal(&request)?;
    let new = NewRole::try_from(request.get_ref())?;
    let (role, consistency_token) = rbac.create_role(principal, new).await?;
    Ok(Response::new(proto::CreateRoleResponse {
        role: Some(role_to_proto(role)),
        consistency_token,
    }))
}

pub async fn get(
    rbac: &Rbac,
    request: Request<proto::GetRoleRequest>,
) -> Answer<proto::GetRoleResponse> {
    let principal = identity::principal(&request)?;
    let key = RoleKey::try_from(request.get_ref())?;
    let role = rbac.get_role(principal, key).await?;
    Ok(Response::new(proto::GetRoleResponse {
        role: Some(role_to_proto(role)),
    }))
}

pub async fn list(
    rbac: &Rbac,
    request: Request<proto::ListRolesRequest>,
) -> Answer<proto::ListRolesResponse> {
    let principal = identity::principal(&request)?;
    let listing = RoleListing::try_from(request.get_ref())?;
    let (roles, next_page_token) = rbac.list_roles(principal, listing).await?;
    Ok(Response::new(proto::ListRolesResponse {
        roles: roles.into_iter().map(role_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn update(
    rbac: &Rbac,
    request: Request<proto::UpdateRoleRequest>,
) -> Answer<proto::UpdateRoleResponse> {
    let principal = identity::principal(&request)?;
    let update = RoleUpdate::try_from(request.get_ref())?;
    let (role, consistency_token) = rbac.update_role(principal, update).await?;
    Ok(Response::new(proto::UpdateRoleResponse {
        role: Some(role_to_proto(role)),
        consistency_token,
    }))
}

pub async fn delete(
    rbac: &Rbac,
    request: Request<proto::DeleteRoleRequest>,
) -> Answer<proto::DeleteRoleResponse> {
    let principal = identity::principal(&request)?;
    let id = required_id("id", &request.get_ref().id)?;
    let consistency_token = rbac.delete_role(principal, id).await?;
    Ok(Response::new(proto::DeleteRoleResponse {
        consistency_token,
    }))
}

pub async fn assign(
    rbac: &Rbac,
    request: Request<proto::AssignRoleRequest>,
) -> Answer<proto::AssignRoleResponse> {
    let principal = identity::principal(&request)?;
    let new = NewBinding::try_from(request.get_ref())?;
    let (binding, consistency_token) = rbac.assign(principal, new).await?;
    Ok(Response::new(proto::AssignRoleResponse {
        binding: Some(binding_to_proto(binding)),
        consistency_token,
    }))
}

pub async fn unassign(
    rbac: &Rbac,
    request: Request<proto::UnassignRoleRequest>,
) -> Answer<proto::UnassignRoleResponse> {
    let principal = identity::principal(&request)?;
    let id = required_id("binding_id", &request.get_ref().binding_id)?;
    let consistency_token = rbac.unassign(principal, id).await?;
    Ok(Response::new(proto::UnassignRoleResponse {
        consistency_token,
    }))
}

pub async fn list_bindings(
    rbac: &Rbac,
    request: Request<proto::ListRoleBindingsRequest>,
) -> Answer<proto::ListRoleBindingsResponse> {
    let principal = identity::principal(&request)?;
    let listing = BindingListing::try_from(request.get_ref())?;
    let (bindings, next_page_token) = rbac.list_bindings(principal, listing).await?;
    Ok(Response::new(proto::ListRoleBindingsResponse {
        bindings: bindings.into_iter().map(binding_to_proto).collect(),
        next_page_token,
    }))
}
