//! Login, tokens, sessions, signing keys and the caller's own identity.

use plinth_api::auth::v1::{self as proto, PrincipalKind as ProtoPrincipalKind};
use plinth_platform::{
    error::ApiError,
    identity::{self, Principal, PrincipalKind, tokens::MAX_TOKEN_BYTES},
    store::sessions::SessionRecord,
};
use tonic::{Request, Response};

use super::{Answer, users::user_to_proto};
use crate::{
    auth::{
        passwords,
        sessions::{LoginAttempt, SessionListing, Sessions, TokenPair},
        signing::Jwk,
    },
    grpc::validate::{Fields, required_id, required_secret, timestamp},
};

/// Longest refresh token accepted (they are 47 characters).
const MAX_REFRESH_TOKEN_BYTES: usize = 128;

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

fn jwk_to_proto(jwk: Jwk) -> proto::Jwk {
    proto::Jwk {
        kty: jwk.kty.to_owned(),
        crv: jwk.crv.to_owned(),
        x: jwk.x,
        kid: jwk.kid,
        alg: jwk.alg,
        r#use: jwk.key_use.to_owned(),
    }
}

impl TryFrom<&proto::LoginRequest> for LoginAttempt {
    type Error = ApiError;

    fn try_from(body: &proto::LoginRequest) -> Result<LoginAttempt, ApiError> {
        let mut fields = Fields::default();
        let attempt = LoginAttempt {
            tenant_code: fields.slug("tenant_code", &body.tenant_code),
            email: fields.email("email", &body.email),
            password: fields
                .secret("password", &body.password, passwords::MAX_BYTES)
                .to_owned(),
        };
        fields.finish()?;
        Ok(attempt)
    }
}

impl TryFrom<&proto::ListSessionsRequest> for SessionListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListSessionsRequest) -> Result<SessionListing, ApiError> {
        let mut fields = Fields::default();
        let listing = SessionListing {
            user_id: fields.id("user_id", &body.user_id),
            include_inactive: body.include_inactive,
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(listing)
    }
}

pub async fn login(
    sessions: &Sessions,
    request: Request<proto::LoginRequest>,
) -> Answer<proto::LoginResponse> {
    let principal = identity::principal(&request)?;
    let attempt = LoginAttempt::try_from(request.get_ref())?;
    let (tokens, user) = sessions.login(principal, attempt).await?;
    Ok(Response::new(proto::LoginResponse {
        tokens: Some(token_pair_to_proto(tokens)),
        user: Some(user_to_proto(user)),
    }))
}

pub async fn refresh(
    sessions: &Sessions,
    request: Request<proto::RefreshRequest>,
) -> Answer<proto::RefreshResponse> {
    let principal = identity::principal(&request)?;
    let refresh_token = required_secret(
        "refresh_token",
        &request.get_ref().refresh_token,
        MAX_REFRESH_TOKEN_BYTES,
    )?;
    let tokens = sessions.refresh(principal, refresh_token).await?;
    Ok(Response::new(proto::RefreshResponse {
        tokens: Some(token_pair_to_proto(tokens)),
    }))
}

pub async fn logout(
    sessions: &Sessions,
    request: Request<proto::LogoutRequest>,
) -> Answer<proto::LogoutResponse> {
    let principal = identity::principal(&request)?;
    let refresh_token = &request.get_ref().refresh_token;
    if refresh_token.len() > MAX_REFRESH_TOKEN_BYTES {
        return Err(ApiError::invalid_field("refresh_token", "must be at most 128 bytes").into());
    }
    sessions.logout(principal, refresh_token).await?;
    Ok(Response::new(proto::LogoutResponse {}))
}

pub async fn verify_token(
    sessions: &Sessions,
    request: Request<proto::VerifyTokenRequest>,
) -> Answer<proto::VerifyTokenResponse> {
    let principal = identity::principal(&request)?;
    let token = required_secret(
        "access_token",
        &request.get_ref().access_token,
        MAX_TOKEN_BYTES,
    )?;
    let verified = sessions.verify(principal, token).await?;
    let user = verified.user();
    Ok(Response::new(proto::VerifyTokenResponse {
        user_id: user.user_id.to_string(),
        tenant_id: user.tenant_id.to_string(),
        session_id: user.session_id.to_string(),
        platform_admin: user.platform_admin,
        expires_at: Some(timestamp(verified.expires_at())),
        email: verified.email().to_owned(),
        key_id: verified.key_id().to_owned(),
    }))
}

pub async fn get_jwks(sessions: &Sessions) -> Answer<proto::GetJwksResponse> {
    let jwks = sessions.jwks().await?;
    Ok(Response::new(proto::GetJwksResponse {
        keys: jwks.keys.into_iter().map(jwk_to_proto).collect(),
        jwks_json: jwks.json,
    }))
}

pub async fn rotate_signing_key(
    sessions: &Sessions,
    request: Request<proto::RotateSigningKeyRequest>,
) -> Answer<proto::RotateSigningKeyResponse> {
    let principal = identity::principal(&request)?;
    let jwk = sessions.rotate_signing_key(principal).await?;
    Ok(Response::new(proto::RotateSigningKeyResponse {
        key: Some(jwk_to_proto(jwk)),
    }))
}

pub async fn list(
    sessions: &Sessions,
    request: Request<proto::ListSessionsRequest>,
) -> Answer<proto::ListSessionsResponse> {
    let principal = identity::principal(&request)?;
    let listing = SessionListing::try_from(request.get_ref())?;
    let (sessions, next_page_token) = sessions.list(principal, listing).await?;
    Ok(Response::new(proto::ListSessionsResponse {
        sessions: sessions.into_iter().map(session_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn revoke(
    sessions: &Sessions,
    request: Request<proto::RevokeSessionRequest>,
) -> Answer<proto::RevokeSessionResponse> {
    let principal = identity::principal(&request)?;
    let session_id = required_id("session_id", &request.get_ref().session_id)?;
    sessions.revoke_session(principal, session_id).await?;
    Ok(Response::new(proto::RevokeSessionResponse {}))
}

pub fn who_am_i(request: Request<proto::WhoAmIRequest>) -> Answer<proto::WhoAmIResponse> {
    let principal = identity::principal(&request)?;
    Ok(Response::new(who_am_i_response(principal)))
}

fn who_am_i_response(principal: &Principal) -> proto::WhoAmIResponse {
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
        module_id: principal.module_id().unwrap_or_default().to_owned(),
        tenant_id: principal
            .tenant_scope()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        user_id: user
            .map(|user| user.user_id.to_string())
            .unwrap_or_default(),
        session_id: user
            .map(|user| user.session_id.to_string())
            .unwrap_or_default(),
        certificate_module_id: principal
            .certificate
            .as_ref()
            .and_then(|certificate| certificate.module())
            .unwrap_or_default()
            .to_owned(),
        scopes: key.map(|key| key.scopes.to_vec()).unwrap_or_default(),
        request_id: principal.request_id.to_string(),
    }
}
