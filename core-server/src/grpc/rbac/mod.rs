//! RbacService: roles and bindings, checks, declared permissions.

mod checks;
mod roles;

use plinth_api::rbac::v1::{self as proto, consistency, rbac_service_server::RbacService};
use tonic::{Request, Response, Status};

use super::validate::Fields;
use plinth_platform::versions::{Consistency, Counter};

use crate::rbac::Rbac;

/// RbacService.
pub struct RbacApi {
    pub rbac: Rbac,
}

type Answer<T> = Result<Response<T>, Status>;

impl Fields {
    /// How fresh an RBAC answer must be; unset means the cached view.
    fn rbac_consistency(&mut self, value: Option<&proto::Consistency>) -> Consistency {
        let asked = value
            .and_then(|value| value.requirement.as_ref())
            .map(|requirement| match requirement {
                consistency::Requirement::AtLeastAsFresh(token) => Ok(token.as_str()),
                consistency::Requirement::FullyConsistent(full) => Err(*full),
            });
        self.consistency(Counter::Rbac, asked)
    }
}

#[tonic::async_trait]
impl RbacService for RbacApi {
    async fn create_role(
        &self,
        request: Request<proto::CreateRoleRequest>,
    ) -> Answer<proto::CreateRoleResponse> {
        roles::create(&self.rbac, request).await
    }

    async fn get_role(
        &self,
        request: Request<proto::GetRoleRequest>,
    ) -> Answer<proto::GetRoleResponse> {
        roles::get(&self.rbac, request).await
    }

    async fn list_roles(
        &self,
        request: Request<proto::ListRolesRequest>,
    ) -> Answer<proto::ListRolesResponse> {
        roles::list(&self.rbac, request).await
    }

    async fn update_role(
        &self,
        request: Request<proto::UpdateRoleRequest>,
    ) -> Answer<proto::UpdateRoleResponse> {
        roles::update(&self.rbac, request).await
    }

    async fn delete_role(
        &self,
        request: Request<proto::DeleteRoleRequest>,
    ) -> Answer<proto::DeleteRoleResponse> {
        roles::delete(&self.rbac, request).await
    }

    async fn assign_role(
        &self,
        request: Request<proto::AssignRoleRequest>,
    ) -> Answer<proto::AssignRoleResponse> {
        roles::assign(&self.rbac, request).await
    }

    async fn unassign_role(
        &self,
        request: Request<proto::UnassignRoleRequest>,
    ) -> Answer<proto::UnassignRoleResponse> {
        roles::unassign(&self.rbac, request).await
    }

    async fn list_role_bindings(
        &self,
        request: Request<proto::ListRoleBindingsRequest>,
    ) -> Answer<proto::ListRoleBindingsResponse> {
        roles::list_bindings(&self.rbac, request).await
    }

    async fn check(&self, request: Request<proto::CheckRequest>) -> Answer<proto::CheckResponse> {
        checks::check(&self.rbac, request).await
    }

    async fn check_batch(
        &self,
        request: Request<proto::CheckBatchRequest>,
    ) -> Answer<proto::CheckBatchResponse> {
        checks::check_batch(&self.rbac, request).await
    }

    async fn list_user_permissions(
        &self,
        request: Request<proto::ListUserPermissionsRequest>,
    ) -> Answer<proto::ListUserPermissionsResponse> {
        checks::list_user_permissions(&self.rbac, request).await
    }

    async fn lookup_companies(
        &self,
        request: Request<proto::LookupCompaniesRequest>,
    ) -> Answer<proto::LookupCompaniesResponse> {
        checks::lookup_companies(&self.rbac, request).await
    }

    async fn lookup_users(
        &self,
        request: Request<proto::LookupUsersRequest>,
    ) -> Answer<proto::LookupUsersResponse> {
        checks::lookup_users(&self.rbac, request).await
    }

    async fn register_permissions(
        &self,
        request: Request<proto::RegisterPermissionsRequest>,
    ) -> Answer<proto::RegisterPermissionsResponse> {
        checks::register_permissions(&self.rbac, request).await
    }

    async fn list_permissions(
        &self,
        request: Request<proto::ListPermissionsRequest>,
    ) -> Answer<proto::ListPermissionsResponse> {
        checks::list_permissions(&self.rbac, request).await
    }
}
