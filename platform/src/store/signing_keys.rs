//! Token signing keys: public halves in the clear, private halves encrypted
//! with the key-encryption key (the store never sees them in plaintext).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::{SqlStore, StoreError, Tx, in_tx};
use crate::audit::AuditDraft;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// Always `EdDSA` for now.
    pub algorithm: String,
    pub public_key: Vec<u8>,
    /// Nonce followed by the AEAD ciphertext of the PKCS#8 private key.
    pub encrypted_private_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// When a newer key became current.
    pub retired_at: Option<DateTime<Utc>>,
}

/// Reads signing keys.
#[async_trait::async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// The current key and those retired after `retired_since` (still
    /// verifying tokens they signed), newest first.
    async fn published(
        &self,
        retired_since: DateTime<Utc>,
    ) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// The newest key ever stored, retired or not.
    async fn newest(&self) -> Result<Option<SigningKeyRecord>, StoreError>;
}

/// Stores `key` as the current key, retiring the previous one.
pub async fn rotate_in(
    tx: &mut Tx,
    key: &SigningKeyRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(key.created_at)
            .execute(&mut *connection)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, public_key, encrypted_private_key, \
             created_at, retired_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.public_key)
        .bind(&key.encrypted_private_key)
        .bind(key.created_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

macro_rules! signing_key_columns {
    () => {
        "kid, algorithm, public_key, encrypted_private_key, created_at, retired_at"
    };
}

macro_rules! impl_signing_key_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl SigningKeyStore for SqlStore<$db> {
            async fn published(
                &self,
                retired_since: DateTime<Utc>,
            ) -> Result<Vec<SigningKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    signing_key_columns!(),
                    " FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 \
                     ORDER BY created_at DESC"
                ))
                .bind(retired_since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn newest(&self) -> Result<Option<SigningKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    signing_key_columns!(),
                    " FROM signing_keys ORDER BY created_at DESC LIMIT 1"
                ))
                .fetch_optional(&self.pool)
                .await?)
            }
        }
    };
}
impl_signing_key_store!(Postgres);
impl_signing_key_store!(Sqlite);
