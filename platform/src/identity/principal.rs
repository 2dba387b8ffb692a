use std::{net::SocketAddr, sync::Arc};

use uuid::Uuid;

use crate::audit::Actor;

/// The API key a caller presented, as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: Uuid,
    /// Set for module keys.
    pub module_id: Option<String>,
    /// Set for keys restricted to one tenant.
    pub tenant_id: Option<Uuid>,
    pub scopes: Vec<String>,
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

/// How the server sees the caller of one call.
#[derive(Debug, Clone)]
pub struct Principal {
    pub request_id: Arc<str>,
    pub peer_address: Option<SocketAddr>,
    pub api_key: Option<KeyIdentity>,
    /// The module named by a verified client certificate.
    pub certificate_module: Option<String>,
    /// The user of a verified bearer token.
    pub user: Option<UserIdentity>,
}

/// The broad classes of callers the API distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Anonymous,
    /// An API key with no module: administers the platform.
    Operator,
    /// An API key bound to a module.
    Module,
    /// A user's bearer token alone.
    User,
    /// A module key together with a user's bearer token.
    ModuleForUser,
}

impl Principal {
    pub fn kind(&self) -> PrincipalKind {
        let module_key = self.api_key.as_ref().map(|key| key.module_id.is_some());
        match (module_key, self.user.is_some()) {
            (None, false) => PrincipalKind::Anonymous,
            (None, true) => PrincipalKind::User,
            (Some(false), _) => PrincipalKind::Operator,
            (Some(true), false) => PrincipalKind::Module,
            (Some(true), true) => PrincipalKind::ModuleForUser,
        }
    }

    /// The actor that audit events record for this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self
                .user
                .as_ref()
                .map(|user| user.user_id.to_string())
                .unwrap_or_default(),
            module_id: self
                .api_key
                .as_ref()
                .and_then(|key| key.module_id.clone())
                .unwrap_or_default(),
            api_key_id: self
                .api_key
                .as_ref()
                .map(|key| key.key_id.to_string())
                .unwrap_or_default(),
            peer_address: self
                .peer_address
                .map(|address| address.to_string())
                .unwrap_or_default(),
        }
    }
}
