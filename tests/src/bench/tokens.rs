//! Never-seen access tokens for the bench: signed with the server's own
//! key, from its own store, for the session of a token it issued.

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use plinth_platform::{
    config::{Config, ConfigArgs},
    identity::tokens::AccessClaims,
    node::Node,
    store::Store,
};

/// Signs fresh tokens for a live session with the server's own key.
pub struct TokenMint {
    keys: core_server::SigningKeys,
    claims: AccessClaims,
}

impl TokenMint {
    pub async fn mint(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut tokens = Vec::with_capacity(count);
        for _ in 0..count {
            let claims = AccessClaims {
                jti: uuid::Uuid::now_v7(),
                ..self.claims.clone()
            };
            tokens.push(self.keys.sign(&claims).await?);
        }
        Ok(tokens)
    }
}

/// Opens the server's own store (SQLite, in its data directory) and its
/// key-encryption key, to sign tokens as the server does; the store serves
/// the RBAC import too.
pub async fn token_mint(data_dir: &Path, seen_token: &str) -> anyhow::Result<(TokenMint, Store)> {
    let payload = seen_token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("malformed token"))?;
    let claims: AccessClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let config = Config::load(&ConfigArgs {
        data_dir: Some(data_dir.to_owned()),
        ..ConfigArgs::default()
    })?;
    let store = Store::open(&config.database_url(), 2).await?;
    let encryption = core_server::KeyEncryptionKey::load(&config, &store).await?;
    let node = Node::start(config, store).await?;
    let store = node.store.clone();
    let keys = core_server::SigningKeys::new(
        node.store,
        std::sync::Arc::new(encryption),
        node.tokens,
        node.invalidator,
    );
    Ok((TokenMint { keys, claims }, store))
}
