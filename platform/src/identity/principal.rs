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

/// How the server sees the caller of one call.
#[derive(Debug, Clone)]
pub struct Principal {
    pub request_id: Arc<str>,
    pub peer_address: Option<SocketAddr>,
    pub api_key: Option<KeyIdentity>,
    /// The module named by a verified client certificate.
    pub certificate_module: Option<String>,
}

/// The broad classes of callers the API distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Anonymous,
    /// An API key with no module: administers the platform.
    Operator,
    /// An API key bound to a module.
    Module,
}

impl Principal {
    pub fn kind(&self) -> PrincipalKind {
        match &self.api_key {
            None => PrincipalKind::Anonymous,
            Some(KeyIdentity {
                module_id: None, ..
            }) => PrincipalKind::Operator,
            Some(KeyIdentity {
                module_id: Some(_), ..
            }) => PrincipalKind::Module,
        }
    }

    /// The actor that audit events record for this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: String::new(),
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
