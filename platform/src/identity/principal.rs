//! The caller of one call, and the rules that combine what it presented
//! (API key, client certificate, bearer token) into one principal.

use std::{net::SocketAddr, sync::Arc};

use uuid::Uuid;

use super::certificate::CertificateIdentity;
use crate::{audit::Actor, error::ApiError, rate_limits::RateLimit};

/// The API key a caller presented, as verified. Cheap to clone: every call
/// of the key gets one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: Uuid,
    /// Set for module keys.
    pub module_id: Option<Arc<str>>,
    /// Set for keys restricted to one tenant.
    pub tenant_id: Option<Uuid>,
    pub scopes: Arc<[String]>,
    /// The key's own limit; unset takes the server's default for keys.
    pub rate_limit: Option<RateLimit>,
}

/// The user of a verified bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub session_id: Uuid,
    /// A user of the platform tenant: a super admin.
    pub platform_admin: bool,
}

/// The broad classes of callers the API distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Anonymous,
    /// An API key with no module: administers the platform, or one tenant
    /// when the key is scoped to it.
    Operator,
    /// An API key bound to a module.
    Module,
    /// A user's bearer token alone.
    User,
    /// A module key together with a user's bearer token of a tenant inside
    /// the key's scope.
    ModuleForUser,
}

/// How the server sees the caller of one call. Only [`Principal::combine`]
/// makes one, so every principal obeys its rules.
#[derive(Debug, Clone)]
pub struct Principal {
    pub request_id: Arc<str>,
    pub peer_address: Option<SocketAddr>,
    pub api_key: Option<KeyIdentity>,
    /// What a verified client certificate names.
    pub certificate: Option<CertificateIdentity>,
    /// The user of a verified bearer token.
    pub user: Option<UserIdentity>,
    kind: PrincipalKind,
}

impl Principal {
    /// The rules, in one place:
    /// - a module key must come with its own module's certificate, when a
    ///   certificate is presented; an operator key (no module) goes with any;
    /// - a bearer token combines only with a module key, and only when the
    ///   key's tenant scope (if any) is the token's tenant: the module then
    ///   acts for the user. An operator key with a bearer token, or a module
    ///   key scoped to another tenant, is refused rather than resolved to
    ///   either credential.
    pub fn combine(
        request_id: Arc<str>,
        peer_address: Option<SocketAddr>,
        api_key: Option<KeyIdentity>,
        certificate: Option<CertificateIdentity>,
        user: Option<UserIdentity>,
    ) -> Result<Principal, ApiError> {
        if let (Some(key), Some(certificate)) = (&api_key, &certificate)
            && let Some(key_module) = key.module_id.as_deref()
            && certificate.module() != Some(key_module)
        {
            return Err(ApiError::CertificateModuleMismatch);
        }
        let kind = match (&api_key, &user) {
            (None, None) => PrincipalKind::Anonymous,
            (None, Some(_)) => PrincipalKind::User,
            (Some(key), None) if key.module_id.is_none() => PrincipalKind::Operator,
            (Some(_), None) => PrincipalKind::Module,
            (Some(key), Some(user)) => {
                let module_in_scope = key.module_id.is_some()
                    && key.tenant_id.is_none_or(|scope| scope == user.tenant_id);
                if !module_in_scope {
                    return Err(ApiError::CredentialsConflict);
                }
                PrincipalKind::ModuleForUser
            }
        };
        Ok(Principal {
            request_id,
            peer_address,
            api_key,
            certificate,
            user,
            kind,
        })
    }

    /// A caller that presented nothing (health, reflection, anonymous calls).
    pub fn anonymous(request_id: Arc<str>, peer_address: Option<SocketAddr>) -> Principal {
        Principal {
            request_id,
            peer_address,
            api_key: None,
            certificate: None,
            user: None,
            kind: PrincipalKind::Anonymous,
        }
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The tenant the caller is confined to: its user's, else its key's;
    /// `None` for platform-wide keys and anonymous callers.
    pub fn tenant_scope(&self) -> Option<Uuid> {
        self.user
            .as_ref()
            .map(|user| user.tenant_id)
            .or_else(|| self.api_key.as_ref().and_then(|key| key.tenant_id))
    }

    /// The module a module key acts as.
    pub fn module_id(&self) -> Option<&str> {
        self.api_key.as_ref()?.module_id.as_deref()
    }

    /// The actor that audit events record for this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self
                .user
                .as_ref()
                .map(|user| user.user_id.to_string())
                .unwrap_or_default(),
            module_id: self.module_id().unwrap_or_default().to_owned(),
            api_key_id: self
                .api_key
                .as_ref()
                .map(|key| key.key_id.to_string())
                .unwrap_or_default(),
            peer_address: self
                .peer_address
                .map(|address| address.to_string())
                .unwrap_or_default(),
            user_claimed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT_X: Uuid = Uuid::from_u128(1);
    const TENANT_Z: Uuid = Uuid::from_u128(2);

    fn key(module: Option<&str>, tenant: Option<Uuid>) -> KeyIdentity {
        KeyIdentity {
            key_id: Uuid::from_u128(10),
            module_id: module.map(Arc::from),
            tenant_id: tenant,
            scopes: Arc::from([]),
            rate_limit: None,
        }
    }

    fn user_of(tenant: Uuid) -> UserIdentity {
        UserIdentity {
            user_id: Uuid::from_u128(20),
            tenant_id: tenant,
            session_id: Uuid::from_u128(30),
            platform_admin: false,
        }
    }

    fn combine(
        api_key: Option<KeyIdentity>,
        certificate: Option<CertificateIdentity>,
        user: Option<UserIdentity>,
    ) -> Result<PrincipalKind, String> {
        Principal::combine("request".into(), None, api_key, certificate, user)
            .map(|principal| principal.kind())
            .map_err(|error| format!("{error:?}"))
    }

    fn module_certificate(module: &str) -> Option<CertificateIdentity> {
        Some(CertificateIdentity::Module(module.to_owned()))
    }

    fn operator_certificate() -> Option<CertificateIdentity> {
        Some(CertificateIdentity::Operator("ops".to_owned()))
    }

    #[test]
    fn every_combination_of_credentials_has_one_answer() {
        use PrincipalKind::*;
        let conflict = Err("CredentialsConflict".to_owned());
        let mismatch = Err("CertificateModuleMismatch".to_owned());
        let cases = [
            // (key, certificate, user) → answer
            (None, None, None, Ok(Anonymous)),
            (None, None, Some(user_of(TENANT_X)), Ok(User)),
            (
                None,
                module_certificate("finance"),
                Some(user_of(TENANT_X)),
                Ok(User),
            ),
            (Some(key(None, None)), None, None, Ok(Operator)),
            (Some(key(None, Some(TENANT_X))), None, None, Ok(Operator)),
            (
                Some(key(None, None)),
                module_certificate("finance"),
                None,
                Ok(Operator),
            ),
            (
                Some(key(None, None)),
                operator_certificate(),
                None,
                Ok(Operator),
            ),
            (
                Some(key(None, None)),
                None,
                Some(user_of(TENANT_X)),
                conflict.clone(),
            ),
            (
                Some(key(None, Some(TENANT_X))),
                None,
                Some(user_of(TENANT_X)),
                conflict.clone(),
            ),
            (
                Some(key(None, Some(TENANT_Z))),
                None,
                Some(user_of(TENANT_X)),
                conflict.clone(),
            ),
            (Some(key(Some("finance"), None)), None, None, Ok(Module)),
            (
                Some(key(Some("finance"), Some(TENANT_X))),
                None,
                None,
                Ok(Module),
            ),
            (
                Some(key(Some("finance"), None)),
                module_certificate("finance"),
                None,
                Ok(Module),
            ),
            (
                Some(key(Some("finance"), None)),
                module_certificate("crm"),
                None,
                mismatch.clone(),
            ),
            (
                Some(key(Some("finance"), None)),
                operator_certificate(),
                None,
                mismatch.clone(),
            ),
            (
                Some(key(Some("finance"), None)),
                None,
                Some(user_of(TENANT_X)),
                Ok(ModuleForUser),
            ),
            (
                Some(key(Some("finance"), Some(TENANT_X))),
                None,
                Some(user_of(TENANT_X)),
                Ok(ModuleForUser),
            ),
            (
                Some(key(Some("finance"), Some(TENANT_X))),
                None,
                Some(user_of(TENANT_Z)),
                conflict.clone(),
            ),
            (
                Some(key(Some("finance"), Some(TENANT_X))),
                module_certificate("crm"),
                Some(user_of(TENANT_X)),
                mismatch,
            ),
        ];
        for (index, (api_key, certificate, user, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                combine(api_key, certificate, user),
                expected,
                "case {index}"
            );
        }
    }

    #[test]
    fn the_tenant_scope_is_the_users_else_the_keys() {
        let module_for_user = Principal::combine(
            "r".into(),
            None,
            Some(key(Some("finance"), None)),
            None,
            Some(user_of(TENANT_Z)),
        )
        .unwrap();
        assert_eq!(module_for_user.tenant_scope(), Some(TENANT_Z));
        let scoped_key = Principal::combine(
            "r".into(),
            None,
            Some(key(Some("finance"), Some(TENANT_X))),
            None,
            None,
        )
        .unwrap();
        assert_eq!(scoped_key.tenant_scope(), Some(TENANT_X));
        let platform_key =
            Principal::combine("r".into(), None, Some(key(None, None)), None, None).unwrap();
        assert_eq!(platform_key.tenant_scope(), None);
    }
}
