//! AuthService: each call delegates to the module of its resource.

mod api_keys;
mod sessions;
mod users;

use plinth_api::auth::v1::{self as proto, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use crate::auth::{api_keys::KeyAdmin, sessions::Sessions, users::Users};

/// AuthService.
pub struct AuthApi {
    pub users: Users,
    pub sessions: Sessions,
    pub keys: KeyAdmin,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(&self, request: Request<proto::LoginRequest>) -> Answer<proto::LoginResponse> {
        sessions::login(&self.sessions, request).await
    }

    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Answer<proto::RefreshResponse> {
        sessions::refresh(&self.sessions, request).await
    }

    async fn logout(
        &self,
        request: Request<proto::LogoutRequest>,
    ) -> Answer<proto::LogoutResponse> {
        sessions::logout(&self.sessions, request).await
    }

    async fn verify_token(
        &self,
        request: Request<proto::VerifyTokenRequest>,
    ) -> Answer<proto::VerifyTokenResponse> {
        sessions::verify_token(&self.sessions, request).await
    }

    async fn get_jwks(
        &self,
        _request: Request<proto::GetJwksRequest>,
    ) -> Answer<proto::GetJwksResponse> {
        sessions::get_jwks(&self.sessions).await
    }

    async fn rotate_signing_key(
        &self,
        request: Request<proto::RotateSigningKeyRequest>,
    ) -> Answer<proto::RotateSigningKeyResponse> {
        sessions::rotate_signing_key(&self.sessions, request).await
    }

    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Answer<proto::WhoAmIResponse> {
        sessions::who_am_i(request)
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Answer<proto::CreateUserResponse> {
        users::create(&self.users, request).await
    }

    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Answer<proto::GetUserResponse> {
        users::get(&self.users, request).await
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Answer<proto::ListUsersResponse> {
        users::list(&self.users, request).await
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Answer<proto::UpdateUserResponse> {
        users::update(&self.users, request).await
    }

    async fn set_password(
        &self,
        request: Request<proto::SetPasswordRequest>,
    ) -> Answer<proto::SetPasswordResponse> {
        users::set_password(&self.users, request).await
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListSessionsRequest>,
    ) -> Answer<proto::ListSessionsResponse> {
        sessions::list(&self.sessions, request).await
    }

    async fn revoke_session(
        &self,
        request: Request<proto::RevokeSessionRequest>,
    ) -> Answer<proto::RevokeSessionResponse> {
        sessions::revoke(&self.sessions, request).await
    }

    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Answer<proto::CreateApiKeyResponse> {
        api_keys::create(&self.keys, request).await
    }

    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Answer<proto::ListApiKeysResponse> {
        api_keys::list(&self.keys, request).await
    }

    async fn rotate_api_key(
        &self,
        request: Request<proto::RotateApiKeyRequest>,
    ) -> Answer<proto::RotateApiKeyResponse> {
        api_keys::rotate(&self.keys, request).await
    }

    async fn set_api_key_rate_limit(
        &self,
        request: Request<proto::SetApiKeyRateLimitRequest>,
    ) -> Answer<proto::SetApiKeyRateLimitResponse> {
        api_keys::set_rate_limit(&self.keys, request).await
    }

    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Answer<proto::RevokeApiKeyResponse> {
        api_keys::revoke(&self.keys, request).await
    }
}
