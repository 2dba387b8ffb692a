//! API keys: requests into commands, records into messages.

use plinth_api::auth::v1 as proto;
use plinth_platform::{
    error::ApiError,
    identity,
    rate_limits::{MAX_RATE, RateLimit},
    store::{ApiKeyFilter, ApiKeyRecord},
};
use tonic::{Request, Response};

use super::Answer;
use crate::{
    auth::api_keys::{
        KEY_LIFETIME, KeyAdmin, KeyListing, KeyRequest, KeyRotation, MAX_NAME_CHARACTERS,
        MAX_SCOPE_CHARACTERS, MAX_SCOPES, ROTATION_GRACE,
    },
    grpc::validate::{Fields, required_id, timestamp},
};

fn api_key_to_proto(key: ApiKeyRecord) -> proto::ApiKey {
    let rate_limit = key.rate_limit().map(|limit| proto::RateLimit {
        calls_per_second: limit.calls_per_second,
        burst: limit.burst,
    });
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
        rate_limit,
    }
}

/// A rate limit as asked for: both figures within 1 to [`MAX_RATE`].
fn rate_limit(fields: &mut Fields, field: &str, limit: &proto::RateLimit) -> RateLimit {
    for (name, value) in [
        ("calls_per_second", limit.calls_per_second),
        ("burst", limit.burst),
    ] {
        if !(1..=MAX_RATE).contains(&value) {
            fields.violation(&format!("{field}.{name}"), "must be 1 to 1000000");
        }
    }
    RateLimit {
        calls_per_second: limit.calls_per_second,
        burst: limit.burst,
    }
}

impl TryFrom<&proto::CreateApiKeyRequest> for KeyRequest {
    type Error = ApiError;

    fn try_from(body: &proto::CreateApiKeyRequest) -> Result<KeyRequest, ApiError> {
        let mut fields = Fields::default();
        let name = fields.name("name", &body.name, MAX_NAME_CHARACTERS);
        let module_id =
            (!body.module_id.is_empty()).then(|| fields.module_id("module_id", &body.module_id));
        let tenant_id = fields.optional_id("tenant_id", &body.tenant_id);
        let scopes = fields.bounded("scopes", &body.scopes, MAX_SCOPES);
        for (index, scope) in scopes.iter().enumerate() {
            let well_formed = !scope.is_empty()
                && scope.len() <= MAX_SCOPE_CHARACTERS
                && scope.bytes().all(|b| b.is_ascii_graphic());
            if !well_formed {
                fields.violation(
                    &format!("scopes[{index}]"),
                    "must be 1 to 100 visible ASCII characters",
                );
            }
        }
        let lifetime = body
            .ttl
            .as_ref()
            .map(|ttl| fields.duration("ttl", ttl, KEY_LIFETIME));
        let rate_limit = body
            .rate_limit
            .as_ref()
            .map(|limit| rate_limit(&mut fields, "rate_limit", limit));
        fields.finish()?;
        Ok(KeyRequest {
            name,
            module_id,
            tenant_id,
            scopes: scopes.to_vec(),
            lifetime,
            rate_limit,
        })
    }
}

impl TryFrom<&proto::ListApiKeysRequest> for KeyListing {
    type Error = ApiError;

    fn try_from(body: &proto::ListApiKeysRequest) -> Result<KeyListing, ApiError> {
        let mut fields = Fields::default();
        let listing = KeyListing {
            filter: ApiKeyFilter {
                module_id: (!body.module_id.is_empty())
                    .then(|| fields.module_id("module_id", &body.module_id)),
                tenant_id: fields.optional_id("tenant_id", &body.tenant_id),
                include_revoked: body.include_revoked,
            },
            page: fields.page(body.page_size, &body.page_token),
        };
        fields.finish()?;
        Ok(listing)
    }
}

impl TryFrom<&proto::RotateApiKeyRequest> for KeyRotation {
    type Error = ApiError;

    fn try_from(body: &proto::RotateApiKeyRequest) -> Result<KeyRotation, ApiError> {
        let mut fields = Fields::default();
        let rotation = KeyRotation {
            id: fields.id("id", &body.id),
            grace: body
                .grace_period
                .as_ref()
                .map(|grace| fields.duration("grace_period", grace, ROTATION_GRACE)),
        };
        fields.finish()?;
        Ok(rotation)
    }
}

pub async fn create(
    keys: &KeyAdmin,
    request: Request<proto::CreateApiKeyRequest>,
) -> Answer<proto::CreateApiKeyResponse> {
    let principal = identity::principal(&request)?;
    let command = KeyRequest::try_from(request.get_ref())?;
    let issued = keys.create(principal, command).await?;
    Ok(Response::new(proto::CreateApiKeyResponse {
        api_key: Some(api_key_to_proto(issued.record)),
        secret: issued.secret,
    }))
}

pub async fn list(
    keys: &KeyAdmin,
    request: Request<proto::ListApiKeysRequest>,
) -> Answer<proto::ListApiKeysResponse> {
    let principal = identity::principal(&request)?;
    let listing = KeyListing::try_from(request.get_ref())?;
    let (keys, next_page_token) = keys.list(principal, listing).await?;
    Ok(Response::new(proto::ListApiKeysResponse {
        api_keys: keys.into_iter().map(api_key_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn rotate(
    keys: &KeyAdmin,
    request: Request<proto::RotateApiKeyRequest>,
) -> Answer<proto::RotateApiKeyResponse> {
    let principal = identity::principal(&request)?;
    let rotation = KeyRotation::try_from(request.get_ref())?;
    let issued = keys.rotate(principal, rotation).await?;
    Ok(Response::new(proto::RotateApiKeyResponse {
        api_key: Some(api_key_to_proto(issued.record)),
        secret: issued.secret,
    }))
}

pub async fn revoke(
    keys: &KeyAdmin,
    request: Request<proto::RevokeApiKeyRequest>,
) -> Answer<proto::RevokeApiKeyResponse> {
    let principal = identity::principal(&request)?;
    let id = required_id("id", &request.get_ref().id)?;
    let revoked = keys.revoke(principal, id).await?;
    Ok(Response::new(proto::RevokeApiKeyResponse {
        api_key: Some(api_key_to_proto(revoked)),
    }))
}

pub async fn set_rate_limit(
    keys: &KeyAdmin,
    request: Request<proto::SetApiKeyRateLimitRequest>,
) -> Answer<proto::SetApiKeyRateLimitResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let id = fields.id("id", &body.id);
    let limit = body
        .rate_limit
        .as_ref()
        .map(|limit| rate_limit(&mut fields, "rate_limit", limit));
    fields.finish()?;
    let updated = keys.set_rate_limit(principal, id, limit).await?;
    Ok(Response::new(proto::SetApiKeyRateLimitResponse {
        api_key: Some(api_key_to_proto(updated)),
    }))
}
