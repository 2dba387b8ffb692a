//! Who is calling: API keys, client certificates and bearer tokens are
//! resolved once per call, by [`layer::IdentityLayer`], into one
//! [`Principal`] that handlers find in the request extensions.

pub mod api_keys;
pub mod certificate;
pub mod layer;
mod principal;
pub mod tenant_states;
pub mod tokens;

pub use principal::{KeyIdentity, Principal, PrincipalKind, UserIdentity};

/// The caller of a call, as the identity layer resolved it.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    request.extensions().get::<Principal>().ok_or_else(|| {
        crate::error::ApiError::Internal("call reached a handler without the identity layer".into())
            .into()
    })
}
