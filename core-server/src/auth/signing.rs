//! Token signing keys: Ed25519 pairs whose private halves are stored sealed
//! with the key-encryption key (ChaCha20-Poly1305, the `kid` as associated
//! data), rotated on demand, published as a JWKS.

use std::{
    path::Path,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use plinth_platform::{
    audit::{Actor, AuditDraft},
    clock,
    config::Config,
    error::ApiError,
    identity::tokens::{ALGORITHM, AccessClaims, TokenVerifier, encode},
    invalidation::{Cache, Change, Invalidator},
    store::{
        Backend, Store, StoreError,
        signing_keys::{self, SigningKeyRecord},
    },
};
use ring::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
    signature::{Ed25519KeyPair, KeyPair},
};

/// The file in the data directory holding a generated key-encryption key.
pub const KEY_ENCRYPTION_KEY_FILE: &str = "key-encryption-key";

/// How long this replica trusts its idea of the current key, so that a
/// rotation on another replica is picked up.
const CURRENT_KEY_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum KeyEncryptionKeyError {
    #[error("key_encryption_key must be base64 of exactly 32 bytes")]
    Malformed,
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key_encryption_key must be configured with a shared (PostgreSQL) database: every \
         replica needs the same one (generate it with `openssl rand -base64 32`)"
    )]
    RequiredForSharedDatabase,
    #[error(
        "the store holds signing keys but {path} is missing: configure the key_encryption_key \
         that sealed them instead of generating a new one"
    )]
    MissingForExistingKeys { path: std::path::PathBuf },
    #[error(
        "the key-encryption key does not open the stored signing keys: configure the \
         key_encryption_key that sealed them"
    )]
    DoesNotOpen,
    #[error("reading signing keys: {0}")]
    Store(#[from] StoreError),
}

/// Seals and opens private keys at rest.
pub struct KeyEncryptionKey {
    key: LessSafeKey,
}

impl KeyEncryptionKey {
    /// From configuration; with the embedded (SQLite) store, else from the
    /// data directory, generated there only while the store has no signing
    /// key. A key that does not open the stored signing keys is refused, so
    /// a misconfigured server fails at start, not at its first login.
    pub async fn load(
        config: &Config,
        store: &Store,
    ) -> Result<KeyEncryptionKey, KeyEncryptionKeyError> {
        let newest = store.signing_keys.newest().await?;
        let encoded = match (&config.key_encryption_key, store.backend()) {
            (Some(secret), _) => secret.expose().to_owned(),
            (None, Backend::Postgres) => {
                return Err(KeyEncryptionKeyError::RequiredForSharedDatabase);
            }
            (None, Backend::Sqlite) => read_or_create(
                &config.data_dir.join(KEY_ENCRYPTION_KEY_FILE),
                newest.is_none(),
            )?,
        };
        let key = KeyEncryptionKey::parse(&encoded)?;
        if let Some(newest) = newest
            && key
                .open(&newest.kid, &newest.encrypted_private_key)
                .is_none()
        {
            return Err(KeyEncryptionKeyError::DoesNotOpen);
        }
        Ok(key)
    }

    fn parse(encoded: &str) -> Result<KeyEncryptionKey, KeyEncryptionKeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| KeyEncryptionKeyError::Malformed)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| KeyEncryptionKeyError::Malformed)?;
        Ok(KeyEncryptionKey {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `plaintext`, bound to `associated` (which opening must name
    /// again): a nonce, then the ciphertext with its tag.
    pub(crate) fn seal(&self, associated: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("system randomness");
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated.as_bytes()),
                &mut sealed,
            )
            .expect("sealing a small buffer cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    /// What [`KeyEncryptionKey::seal`] sealed with `associated`; `None`
    /// for anything else.
    pub(crate) fn open(&self, associated: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(associated.as_bytes()), &mut buffer)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

fn read_or_create(path: &Path, store_is_empty: bool) -> Result<String, KeyEncryptionKeyError> {
    let file_error = |source| KeyEncryptionKeyError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(encoded) => Ok(encoded),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !store_is_empty => {
            Err(KeyEncryptionKeyError::MissingForExistingKeys {
                path: path.to_owned(),
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .expect("system randomness");
            let encoded = STANDARD.encode(bytes);
            plinth_platform::write_private(path, encoded.as_bytes()).map_err(file_error)?;
            tracing::warn!(path = %path.display(), "generated a key-encryption key; back it up or configure one");
            Ok(encoded)
        }
        Err(error) => Err(file_error(error)),
    }
}

struct CurrentKey {
    kid: String,
    pair: Ed25519KeyPair,
    loaded_at: Instant,
}

/// The signing side of access tokens.
pub struct SigningKeys {
    store: Store,
    encryption: Arc<KeyEncryptionKey>,
    verifier: Arc<TokenVerifier>,
    invalidator: Arc<Invalidator>,
    current: RwLock<Option<Arc<CurrentKey>>>,
}

impl SigningKeys {
    pub fn new(
        store: Store,
        encryption: Arc<KeyEncryptionKey>,
        verifier: Arc<TokenVerifier>,
        invalidator: Arc<Invalidator>,
    ) -> SigningKeys {
        SigningKeys {
            store,
            encryption,
            verifier,
            invalidator,
            current: RwLock::new(None),
        }
    }

    /// The verifier whose settings (issuer, audience, lifetimes) tokens get.
    pub fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }

    /// Signs `claims` with the current key (made on first use if none).
    pub async fn sign(&self, claims: &AccessClaims) -> Result<String, ApiError> {
        let current = self.current().await?;
        Ok(encode(&current.kid, claims, &current.pair))
    }

    /// Makes a new current key; older keys stay published for their grace.
    pub async fn rotate(
        &self,
        actor: Actor,
        request_id: &str,
    ) -> Result<SigningKeyRecord, ApiError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| ApiError::Internal("key generation failed".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| ApiError::Internal("generated key does not parse".into()))?;
        let kid = uuid::Uuid::now_v7().simple().to_string();
        let record = SigningKeyRecord {
            encrypted_private_key: self.encryption.seal(&kid, pkcs8.as_ref()),
            public_key: pair.public_key().as_ref().to_vec(),
            algorithm: ALGORITHM.to_owned(),
            created_at: clock::now(),
            retired_at: None,
            kid: kid.clone(),
        };
        let audit = AuditDraft::new(actor, "auth.signing_key.rotated", "signing_key", &kid)
            .with_request_id(request_id);
        let mut tx = self.store.begin().await?;
        signing_keys::rotate_in(&mut tx, &record, audit).await?;
        tx.commit().await?;
        // Told first: this replica's own cache forgets the old key too.
        self.invalidator.changed(Change::SigningKeys).await;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(CurrentKey {
            kid,
            pair,
            loaded_at: Instant::now(),
        }));
        Ok(record)
    }

    /// The public keys that verify tokens now, as a JWKS.
    pub async fn jwks(&self) -> Result<Jwks, ApiError> {
        Ok(Jwks::of(&self.published().await?))
    }

    /// The public keys that verify tokens now, newest first.
    async fn published(&self) -> Result<Vec<SigningKeyRecord>, ApiError> {
        let retired_since = clock::now() - self.verifier.settings().retired_key_grace();
        Ok(self.store.signing_keys.published(retired_since).await?)
    }

    async fn current(&self) -> Result<Arc<CurrentKey>, ApiError> {
        let cached = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .filter(|current| current.loaded_at.elapsed() < CURRENT_KEY_TTL);
        if let Some(current) = cached {
            return Ok(current);
        }
        let newest = self
            .published()
            .await?
            .into_iter()
            .find(|key| key.retired_at.is_none());
        let Some(record) = newest else {
            self.rotate(Actor::default(), "").await?;
            return Box::pin(self.current()).await;
        };
        let pkcs8 = self
            .encryption
            .open(&record.kid, &record.encrypted_private_key)
            .ok_or_else(|| {
                ApiError::Internal("signing key does not open with the key-encryption key".into())
            })?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| ApiError::Internal("stored signing key does not parse".into()))?;
        let current = Arc::new(CurrentKey {
            kid: record.kid,
            pair,
            loaded_at: Instant::now(),
        });
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(current.clone());
        Ok(current)
    }
}

impl Cache for SigningKeys {
    /// A rotation on another replica makes its key current here at once.
    fn apply(&self, change: Change) {
        if matches!(change, Change::SigningKeys | Change::Everything) {
            *self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
    }
}

/// One public key in RFC 7517 / RFC 8037 form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: &'static str,
}

/// The published keys, and the same set as an RFC 7517 JSON document.
#[derive(Debug, Clone)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
    pub json: String,
}

impl Jwk {
    pub fn of(record: &SigningKeyRecord) -> Jwk {
        Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: URL_SAFE_NO_PAD.encode(&record.public_key),
            kid: record.kid.clone(),
            alg: record.algorithm.clone(),
            key_use: "sig",
        }
    }
}

impl Jwks {
    fn of(records: &[SigningKeyRecord]) -> Jwks {
        let keys: Vec<Jwk> = records.iter().map(Jwk::of).collect();
        let json = serde_json::json!({ "keys": keys }).to_string();
        Jwks { keys, json }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyEncryptionKey {
        KeyEncryptionKey::parse(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_only_under_its_own_kid() {
        let sealed = key().seal("kid-1", b"private");
        assert_eq!(
            key().open("kid-1", &sealed).as_deref(),
            Some(b"private".as_slice())
        );
        assert_eq!(key().open("kid-2", &sealed), None);
    }

    #[test]
    fn a_tampered_ciphertext_does_not_open() {
        let mut sealed = key().seal("kid-1", b"private");
        *sealed.last_mut().unwrap() ^= 1;
        assert_eq!(key().open("kid-1", &sealed), None);
    }
}
