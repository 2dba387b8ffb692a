use plinth_client::auth::v1::{
    self as proto, PrincipalKind as ProtoPrincipalKind, UserStatus as ProtoUserStatus,
    auth_service_server::AuthService,
};
use plinth_platform::{
    identity::{self, Principal, PrincipalKind},
    store::{
        tenants::PLATFORM_TENANT_ID,
        users::{UserFilter, UserRecord},
    },
};
use tonic::{Request, Response, Status};

use super::validate::{Fields, timestamp};
use crate::{
    auth::users::{UserChanges, UserInput, Users},
    listing::PageRequest,
};

const MAX_NAME: usize = 200;

/// AuthService: WhoAmI and users are served; tokens and keys answer
/// UNIMPLEMENTED until they land.
pub struct AuthApi {
    pub users: Users,
}

fn user_status_from_proto(status: ProtoUserStatus) -> Option<&'static str> {
    match status {
        ProtoUserStatus::Unspecified => None,
        ProtoUserStatus::Active => Some("active"),
        ProtoUserStatus::Disabled => Some("disabled"),
    }
}

fn user_to_proto(user: UserRecord) -> proto::User {
    let status = match user.status.as_str() {
        "active" => ProtoUserStatus::Active,
        "disabled" => ProtoUserStatus::Disabled,
        _ => ProtoUserStatus::Unspecified,
    };
    proto::User {
        id: user.id.to_string(),
        platform_admin: user.tenant_id == PLATFORM_TENANT_ID,
        tenant_id: user.tenant_id.to_string(),
        email: user.email,
        display_name: user.display_name,
        status: status.into(),
        created_at: Some(timestamp(user.created_at)),
        updated_at: Some(timestamp(user.updated_at)),
        last_login_at: user.last_login_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<Response<proto::WhoAmIResponse>, Status> {
        let principal = identity::principal(&request)?;
        Ok(Response::new(who_am_i(principal)))
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let tenant_id = fields.id("tenant_id", &body.tenant_id);
        let input = UserInput {
            email: fields.email("email", &body.email),
            display_name: fields.name("display_name", &body.display_name, MAX_NAME),
            password: fields.password("password", &body.password),
        };
        fields.finish()?;
        let user = self.users.create(principal, tenant_id, input).await?;
        Ok(Response::new(proto::CreateUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let id = fields.id("id", &request.get_ref().id);
        fields.finish()?;
        let user = self.users.get(principal, id).await?;
        Ok(Response::new(proto::GetUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let tenant_id = fields.id("tenant_id", &body.tenant_id);
        let email_prefix = (!body.email_prefix.is_empty())
            .then(|| crate::auth::email::normalize_prefix(&body.email_prefix));
        fields.finish()?;
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let filter = UserFilter {
            status: user_status_from_proto(body.status()).map(str::to_owned),
            email_prefix,
        };
        let (users, next_page_token) = self.users.list(principal, tenant_id, filter, page).await?;
        Ok(Response::new(proto::ListUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Result<Response<proto::UpdateUserResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let changes = UserChanges {
            display_name: body
                .display_name
                .as_deref()
                .map(|name| fields.name("display_name", name, MAX_NAME)),
            status: body.status.and_then(|status| {
                let status =
                    ProtoUserStatus::try_from(status).unwrap_or(ProtoUserStatus::Unspecified);
                let parsed = user_status_from_proto(status);
                if parsed.is_none() {
                    fields.violation("status", "must be ACTIVE or DISABLED");
                }
                parsed
            }),
        };
        fields.finish()?;
        let user = self.users.update(principal, id, changes).await?;
        Ok(Response::new(proto::UpdateUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn set_password(
        &self,
        request: Request<proto::SetPasswordRequest>,
    ) -> Result<Response<proto::SetPasswordResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let user_id = fields.id("user_id", &body.user_id);
        let new_password = fields.password("new_password", &body.new_password);
        fields.finish()?;
        self.users
            .set_password(principal, user_id, &body.current_password, &new_password)
            .await?;
        Ok(Response::new(proto::SetPasswordResponse {}))
    }
}

fn who_am_i(principal: &Principal) -> proto::WhoAmIResponse {
    let kind = match principal.kind() {
        PrincipalKind::Anonymous => ProtoPrincipalKind::Anonymous,
        PrincipalKind::Operator => ProtoPrincipalKind::Operator,
        PrincipalKind::Module => ProtoPrincipalKind::Module,
        PrincipalKind::User => ProtoPrincipalKind::User,
        PrincipalKind::ModuleForUser => ProtoPrincipalKind::ModuleForUser,
    };
    let key = principal.api_key.as_ref();
    let user = principal.user.as_ref();
    proto::WhoAmIResponse {
        kind: kind.into(),
        api_key_id: key.map(|key| key.key_id.to_string()).unwrap_or_default(),
        module_id: key
            .and_then(|key| key.module_id.clone())
            .unwrap_or_default(),
        tenant_id: user
            .map(|user| user.tenant_id)
            .or(key.and_then(|key| key.tenant_id))
            .map(|id| id.to_string())
            .unwrap_or_default(),
        user_id: user
            .map(|user| user.user_id.to_string())
            .unwrap_or_default(),
        session_id: user
            .map(|user| user.session_id.to_string())
            .unwrap_or_default(),
        certificate_module_id: principal.certificate_module.clone().unwrap_or_default(),
        scopes: key.map(|key| key.scopes.clone()).unwrap_or_default(),
        request_id: principal.request_id.to_string(),
    }
}
