use plinth_client::auth::v1::{
    self as proto, PrincipalKind as ProtoPrincipalKind, UserStatus as ProtoUserStatus,
    auth_service_server::AuthService,
};
use plinth_platform::{
    error::ApiError,
    identity::api_keys::NewApiKey,
    identity::{self, Principal, PrincipalKind},
    store::{
        ApiKeyFilter, ApiKeyRecord,
        sessions::SessionRecord,
        signing_keys::SigningKeyRecord,
        tenants::PLATFORM_TENANT_ID,
        users::{UserFilter, UserRecord},
    },
};
use tonic::{Request, Response, Status};

use super::validate::{Fields, timestamp};
use std::time::Duration;

use crate::{
    auth::{
        api_keys::KeyAdmin,
        sessions::{Sessions, TokenPair},
        signing::jwk_fields,
        users::{UserChanges, UserInput, Users},
    },
    listing::PageRequest,
};

const MAX_NAME: usize = 200;

/// AuthService.
pub struct AuthApi {
    pub users: Users,
    pub sessions: Sessions,
    pub keys: KeyAdmin,
}

const MAX_SCOPES: usize = 32;
const MAX_SCOPE_CHARACTERS: usize = 100;
const MIN_KEY_TTL: Duration = Duration::from_secs(60);
const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

fn api_key_to_proto(key: ApiKeyRecord) -> proto::ApiKey {
    proto::ApiKey {
        id: key.id.to_string(),
        name: key.name,
        module_id: key.module_id.unwrap_or_default(),
        tenant_id: key.tenant_id.map(|id| id.to_string()).unwrap_or_default(),
        scopes: key.scopes,
        created_at: Some(timestamp(key.created_at)),
        expires_at: key.expires_at.map(timestamp),
        last_used_at: key.last_used_at.map(timestamp),
        revoked_at: key.revoked_at.map(timestamp),
        previous_secret_expires_at: key.previous_secret_expires_at.map(timestamp),
    }
}

/// A `google.protobuf.Duration` as a std one, if it is non-negative.
fn duration(value: Option<&prost_types::Duration>) -> Option<Duration> {
    let value = value?;
    (value.seconds >= 0 && value.nanos >= 0)
        .then(|| Duration::new(value.seconds as u64, value.nanos as u32))
}

fn token_pair_to_proto(tokens: TokenPair) -> proto::TokenPair {
    proto::TokenPair {
        access_token: tokens.access_token,
        access_token_expires_at: Some(timestamp(tokens.access_token_expires_at)),
        refresh_token: tokens.refresh_token,
        refresh_token_expires_at: Some(timestamp(tokens.refresh_token_expires_at)),
        session_id: tokens.session_id.to_string(),
        token_type: "Bearer".to_owned(),
    }
}

fn session_to_proto(session: SessionRecord) -> proto::Session {
    proto::Session {
        id: session.id.to_string(),
        user_id: session.user_id.to_string(),
        tenant_id: session.tenant_id.to_string(),
        created_at: Some(timestamp(session.created_at)),
        last_refreshed_at: Some(timestamp(session.last_refreshed_at)),
        expires_at: Some(timestamp(session.expires_at)),
        revoked_at: session.revoked_at.map(timestamp),
        peer_address: session.peer_address,
    }
}

fn jwk_to_proto(record: &SigningKeyRecord) -> proto::Jwk {
    let [kty, crv, x, kid, alg, key_use] = jwk_fields(record).map(|(_, value)| value);
    proto::Jwk {
        kty,
        crv,
        x,
        kid,
        alg,
        r#use: key_use,
    }
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
    async fn login(
        &self,
        request: Request<proto::LoginRequest>,
    ) -> Result<Response<proto::LoginResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let tenant_code = fields.slug("tenant_code", &body.tenant_code);
        let email = fields.email("email", &body.email);
        let password = fields.password("password", &body.password);
        if body.password.chars().count() > crate::auth::passwords::MAX_LENGTH {
            fields.violation("password", "must be at most 128 characters");
        }
        fields.finish()?;
        let (tokens, user) = self
            .sessions
            .login(principal, &tenant_code, &email, &password)
            .await?;
        Ok(Response::new(proto::LoginResponse {
            tokens: Some(token_pair_to_proto(tokens)),
            user: Some(user_to_proto(user)),
        }))
    }

    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::RefreshResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let refresh_token = fields.password("refresh_token", &request.get_ref().refresh_token);
        fields.finish()?;
        let tokens = self.sessions.refresh(principal, &refresh_token).await?;
        Ok(Response::new(proto::RefreshResponse {
            tokens: Some(token_pair_to_proto(tokens)),
        }))
    }

    async fn logout(
        &self,
        request: Request<proto::LogoutRequest>,
    ) -> Result<Response<proto::LogoutResponse>, Status> {
        let principal = identity::principal(&request)?;
        self.sessions
            .logout(principal, &request.get_ref().refresh_token)
            .await?;
        Ok(Response::new(proto::LogoutResponse {}))
    }

    async fn verify_token(
        &self,
        request: Request<proto::VerifyTokenRequest>,
    ) -> Result<Response<proto::VerifyTokenResponse>, Status> {
        let principal = identity::principal(&request)?;
        let token = &request.get_ref().access_token;
        if token.is_empty() {
            return Err(ApiError::invalid_field("access_token", "is required").into());
        }
        let verified = self.sessions.verify(principal, token).await?;
        let user = verified.user();
        Ok(Response::new(proto::VerifyTokenResponse {
            user_id: user.user_id.to_string(),
            tenant_id: user.tenant_id.to_string(),
            session_id: user.session_id.to_string(),
            platform_admin: user.platform_admin,
            expires_at: Some(timestamp(verified.expires_at())),
            email: verified.email,
            key_id: verified.key_id,
        }))
    }

    async fn get_jwks(
        &self,
        _request: Request<proto::GetJwksRequest>,
    ) -> Result<Response<proto::GetJwksResponse>, Status> {
        let published = self.sessions.published_keys().await?;
        let keys_json: Vec<serde_json::Value> = published
            .iter()
            .map(|record| {
                serde_json::Value::Object(
                    jwk_fields(record)
                        .map(|(name, value)| (name.to_owned(), value.into()))
                        .into_iter()
                        .collect(),
                )
            })
            .collect();
        Ok(Response::new(proto::GetJwksResponse {
            keys: published.iter().map(jwk_to_proto).collect(),
            jwks_json: serde_json::json!({ "keys": keys_json }).to_string(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<proto::RotateSigningKeyRequest>,
    ) -> Result<Response<proto::RotateSigningKeyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let record = self.sessions.rotate_signing_key(principal).await?;
        Ok(Response::new(proto::RotateSigningKeyResponse {
            key: Some(jwk_to_proto(&record)),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Result<Response<proto::CreateApiKeyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let name = fields.name("name", &body.name, 100);
        let module_id =
            (!body.module_id.is_empty()).then(|| fields.module_id("module_id", &body.module_id));
        let tenant_id =
            (!body.tenant_id.is_empty()).then(|| fields.id("tenant_id", &body.tenant_id));
        if body.scopes.len() > MAX_SCOPES {
            fields.violation("scopes", "at most 32 scopes");
        }
        for (index, scope) in body.scopes.iter().enumerate() {
            let well_formed = !scope.is_empty()
                && scope.chars().count() <= MAX_SCOPE_CHARACTERS
                && scope.chars().all(|c| c.is_ascii_graphic());
            if !well_formed {
                fields.violation(
                    &format!("scopes[{index}]"),
                    "must be 1 to 100 visible ASCII characters",
                );
            }
        }
        let ttl = match &body.ttl {
            None => None,
            Some(ttl) => match duration(Some(ttl)).filter(|ttl| *ttl >= MIN_KEY_TTL) {
                Some(ttl) => Some(ttl),
                None => {
                    fields.violation("ttl", "must be at least one minute");
                    None
                }
            },
        };
        fields.finish()?;
        let expires_at = ttl
            .map(|ttl| {
                chrono::Duration::from_std(ttl).map(|ttl| plinth_platform::clock::now() + ttl)
            })
            .transpose()
            .map_err(|_| ApiError::invalid_field("ttl", "is too long"))?;
        let new_key = NewApiKey {
            name,
            module_id,
            tenant_id,
            scopes: body.scopes.clone(),
            expires_at,
        };
        let issued = self.keys.create(principal, new_key).await?;
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(issued.record)),
            secret: issued.secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Result<Response<proto::ListApiKeysResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let filter = ApiKeyFilter {
            module_id: (!body.module_id.is_empty()).then(|| body.module_id.clone()),
            tenant_id: (!body.tenant_id.is_empty())
                .then(|| fields.id("tenant_id", &body.tenant_id)),
            include_revoked: body.include_revoked,
        };
        fields.finish()?;
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let (keys, next_page_token) = self.keys.list(principal, filter, page).await?;
        Ok(Response::new(proto::ListApiKeysResponse {
            api_keys: keys.into_iter().map(api_key_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn rotate_api_key(
        &self,
        request: Request<proto::RotateApiKeyRequest>,
    ) -> Result<Response<proto::RotateApiKeyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let id = fields.id("id", &body.id);
        let grace = match &body.grace_period {
            None => DEFAULT_GRACE,
            Some(grace) => match duration(Some(grace)).filter(|grace| *grace <= MAX_GRACE) {
                Some(grace) if grace.is_zero() => DEFAULT_GRACE,
                Some(grace) => grace,
                None => {
                    fields.violation("grace_period", "must be between 0 and 7 days");
                    DEFAULT_GRACE
                }
            },
        };
        fields.finish()?;
        let grace = chrono::Duration::from_std(grace).unwrap_or_default();
        let issued = self.keys.rotate(principal, id, grace).await?;
        Ok(Response::new(proto::RotateApiKeyResponse {
            api_key: Some(api_key_to_proto(issued.record)),
            secret: issued.secret,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Result<Response<proto::RevokeApiKeyResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let id = fields.id("id", &request.get_ref().id);
        fields.finish()?;
        let revoked = self.keys.revoke(principal, id).await?;
        Ok(Response::new(proto::RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(revoked)),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListSessionsRequest>,
    ) -> Result<Response<proto::ListSessionsResponse>, Status> {
        let principal = identity::principal(&request)?;
        let body = request.get_ref();
        let mut fields = Fields::default();
        let user_id = fields.id("user_id", &body.user_id);
        fields.finish()?;
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let (sessions, next_page_token) = self
            .sessions
            .list(principal, user_id, body.include_inactive, page)
            .await?;
        Ok(Response::new(proto::ListSessionsResponse {
            sessions: sessions.into_iter().map(session_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<proto::RevokeSessionRequest>,
    ) -> Result<Response<proto::RevokeSessionResponse>, Status> {
        let principal = identity::principal(&request)?;
        let mut fields = Fields::default();
        let session_id = fields.id("session_id", &request.get_ref().session_id);
        fields.finish()?;
        self.sessions.revoke_session(principal, session_id).await?;
        Ok(Response::new(proto::RevokeSessionResponse {}))
    }

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
