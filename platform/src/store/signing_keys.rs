//! Token signing keys: public halves in the clear, private halves encrypted
//! with the key-encryption key (the store never sees them in plaintext).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::{SqlStore, StoreError};
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

#[async_trait::async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Stores `key` as the current key, retiring the previous one.
    async fn rotate_in(&self, key: &SigningKeyRecord, audit: AuditDraft) -> Result<(), StoreError>;

    /// The current key and those retired after `retired_since` (still
    /// verifying tokens they signed), newest first.
    async fn published(
        &self,
        retired_since: DateTime<Utc>,
    ) -> Result<Vec<SigningKeyRecord>, StoreError>;
}

macro_rules! impl_signing_key_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl SigningKeyStore for SqlStore<$db> {
            async fn rotate_in(&self, key: &SigningKeyRecord, audit: AuditDraft) -> Result<(), StoreError> {
                let mut transaction = self.begin_write().await?;
                sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                    .bind(key.created_at)
                    .execute(&mut *transaction)
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
                .execute(&mut *transaction)
                .await?;
                Self::append_audit(&mut transaction, audit).await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn published(&self, retired_since: DateTime<Utc>) -> Result<Vec<SigningKeyRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT kid, algorithm, public_key, encrypted_private_key, created_at, retired_at \
                     FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
                )
                .bind(retired_since)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_signing_key_store!(Postgres);
impl_signing_key_store!(Sqlite);
