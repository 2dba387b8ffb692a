//! Users: requests into commands, records into messages.

use plinth_api::auth::v1::{self as proto, UserStatus as ProtoUserStatus};
use plinth_platform::{
    error::ApiError,
    identity,
    store::{
        tenants::PLATFORM_TENANT_ID,
        users::{UserFilter, UserRecord, UserStatus},
    },
};
use tonic::{Request, Response};

use super::Answer;
use crate::{
    auth::{
        passwords,
        users::{
            CreateUser, MAX_DISPLAY_NAME, PasswordChange, UserChanges, UserInput, UserListing,
            UserUpdate, Users,
        },
    },
    grpc::validate::{Fields, required_id, timestamp},
};

fn status_from_proto(status: ProtoUserStatus) -> Option<UserStatus> {
    match status {
        ProtoUserStatus::Unspecified => None,
        ProtoUserStatus::Active => Some(UserStatus::Active),
        ProtoUserStatus::Disabled => Some(UserStatus::Disabled),
    }
}

pub fn user_to_proto(user: UserRecord) -> proto::User {
    let status = match user.status {
        UserStatus::Active => ProtoUserStatus::Active,
        UserStatus::Disabled => ProtoUserStatus::Disabled,
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

impl TryFrom<&proto::CreateUserRequest> for CreateUser {
    type Error = ApiError;

    fn try_from(body: &proto::CreateUserRequest) -> Result<CreateUser, ApiError> {
        let mut fields = Fields::default();
        let command = CreateUser {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            input: UserInput {
                email: fields.email("email", &body.email),
                display_name: fields.name("display_name", &body.display_name, MAX_DISPLAY_NAME),
                password: fields
                    .secret("password", &body.password, passwords::MAX_BYTES)
                    .to_owned(),
            },
        };
        fields.finish()?;
        Ok(command)
    }
}

impl TryFrom<&proto::ListUsersRequest> for UserListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListUsersRequest) -> Result<UserListing, ApiError> {
        let mut fields = Fields::default();
        let command = UserListing {
            tenant_id: fields.id("tenant_id", &body.tenant_id),
            filter: UserFilter {
                status: fields
                    .known("status", body.status)
                    .and_then(status_from_proto),
                email_prefix: fields
                    .prefix("email_prefix", &body.email_prefix)
                    .map(|prefix| crate::auth::email::normalize_prefix(&prefix)),
            },
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(command)
    }
}

impl TryFrom<&proto::UpdateUserRequest> for UserUpdate {
    type Error = ApiError;

    fn try_from(body: &proto::UpdateUserRequest) -> Result<UserUpdate, ApiError> {
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let display_name = body
            .display_name
            .as_deref()
            .map(|name| fields.name("display_name", name, MAX_DISPLAY_NAME));
        let status = body.status.and_then(|status| {
            let status = fields.known("status", status).and_then(status_from_proto);
            if status.is_none() {
                fields.violation("status", "must be ACTIVE or DISABLED");
            }
            status
        });
        fields.finish()?;
        Ok(UserUpdate {
            id,
            changes: UserChanges {
                display_name,
                status,
            },
        })
    }
}

impl TryFrom<&proto::SetPasswordRequest> for PasswordChange {
    type Error = ApiError;

    fn try_from(body: &proto::SetPasswordRequest) -> Result<PasswordChange, ApiError> {
        let mut fields = Fields::default();
        let user_id = fields.id("user_id", &body.user_id);
        let new_password = fields
            .secret("new_password", &body.new_password, passwords::MAX_BYTES)
            .to_owned();
        if body.current_password.len() > passwords::MAX_BYTES {
            fields.violation(
                "current_password",
                format!("must be at most {} bytes", passwords::MAX_BYTES),
            );
        }
        fields.finish()?;
        Ok(PasswordChange {
            user_id,
            current_password: body.current_password.clone(),
            new_password,
        })
    }
}

pub async fn create(
    users: &Users,
    request: Request<proto::CreateUserRequest>,
) -> Answer<proto::CreateUserResponse> {
    let principal = identity::principal(&request)?;
    let command = CreateUser::try_from(request.get_ref())?;
    let user = users.create(principal, command).await?;
    Ok(Response::new(proto::CreateUserResponse {
        user: Some(user_to_proto(user)),
    }))
}

pub async fn get(
    users: &Users,
    request: Request<proto::GetUserRequest>,
) -> Answer<proto::GetUserResponse> {
    let principal = identity::principal(&request)?;
    let id = required_id("id", &request.get_ref().id)?;
    let user = users.get(principal, id).await?;
    Ok(Response::new(proto::GetUserResponse {
        user: Some(user_to_proto(user)),
    }))
}

pub async fn list(
    users: &Users,
    request: Request<proto::ListUsersRequest>,
) -> Answer<proto::ListUsersResponse> {
    let principal = identity::principal(&request)?;
    let command = UserListing::try_from(request.get_ref())?;
    let (users, next_page_token) = users.list(principal, command).await?;
    Ok(Response::new(proto::ListUsersResponse {
        users: users.into_iter().map(user_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn update(
    users: &Users,
    request: Request<proto::UpdateUserRequest>,
) -> Answer<proto::UpdateUserResponse> {
    let principal = identity::principal(&request)?;
    let command = UserUpdate::try_from(request.get_ref())?;
    let user = users.update(principal, command).await?;
    Ok(Response::new(proto::UpdateUserResponse {
        user: Some(user_to_proto(user)),
    }))
}

pub async fn set_password(
    users: &Users,
    request: Request<proto::SetPasswordRequest>,
) -> Answer<proto::SetPasswordResponse> {
    let principal = identity::principal(&request)?;
    let command = PasswordChange::try_from(request.get_ref())?;
    users.set_password(principal, command).await?;
    Ok(Response::new(proto::SetPasswordResponse {}))
}
