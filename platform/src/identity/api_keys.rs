//! API keys: issuing, verifying and revoking, with an in-process cache so that
//! verifying a key on every call costs one hash and no database round trip.
//!
//! A key reads `plk_<key id as 32 hex digits>_<secret>`, the secret being 256
//! random bits in base64url. Only SHA-256 of the secret is stored: with that
//! much entropy a slow password hash would add cost and no safety.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{KeyIdentity, tenant_states::TenantStates};
use crate::{
    audit::{Actor, AuditDraft},
    clock,
    error::ApiError,
    invalidation::{Cache, Change},
    metrics::CacheCounters,
    rate_limits::RateLimit,
    store::{self, ApiKeyRecord, ApiKeyStore, Store, StoreError, Tx},
};

const PREFIX: &str = "plk_";

/// How long a cached key is trusted before it is read again. Revocations on
/// this replica evict at once; this bounds staleness for other replicas.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// `last_used_at` is written at most this often per key and replica.
const LAST_USED_RESOLUTION_SECONDS: i64 = 60;

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    pub name: String,
    pub module_id: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Unset takes the server's default for keys.
    pub rate_limit: Option<RateLimit>,
}

/// A freshly created key and the only copy of its secret.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    pub record: ApiKeyRecord,
    pub secret: String,
}

struct CachedKey {
    record: ApiKeyRecord,
    /// What each call of the key is told, made once.
    identity: KeyIdentity,
    loaded_at: Instant,
    last_use_written: AtomicI64,
}

/// Verifies presented keys, with a cache that [`Change::ApiKey`] evicts.
pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    tenants: Arc<TenantStates>,
    cache: RwLock<HashMap<Uuid, Arc<CachedKey>>>,
    counters: CacheCounters,
}

impl ApiKeys {
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        tenants: Arc<TenantStates>,
        counters: CacheCounters,
    ) -> ApiKeys {
        ApiKeys {
            store,
            tenants,
            cache: RwLock::new(HashMap::new()),
            counters,
        }
    }

    /// Verifies `presented` (the `x-api-key` value). Every failure is the same
    /// `Unauthenticated`, whatever the cause, a key of a tenant that is not
    /// active included (as its users' logins are refused).
    pub async fn authenticate(&self, presented: &str) -> Result<KeyIdentity, ApiError> {
        let (key_id, secret) = parse(presented).ok_or(ApiError::Unauthenticated)?;
        let presented_hash = hash_secret(secret);
        let cached = match self.cached(key_id) {
            Some(cached) => {
                self.counters.hit();
                cached
            }
            None => {
                self.counters.miss();
                self.load(key_id).await?.ok_or(ApiError::Unauthenticated)?
            }
        };
        let now = clock::now();
        if !secret_matches(&cached.record, &presented_hash, now) || !is_usable(&cached.record, now)
        {
            return Err(ApiError::Unauthenticated);
        }
        if let Some(tenant_id) = cached.record.tenant_id {
            let status = self.tenants.status(tenant_id).await?;
            if !status.is_some_and(|status| status.admits_callers()) {
                return Err(ApiError::Unauthenticated);
            }
        }
        self.note_use(&cached, now);
        Ok(cached.identity.clone())
    }

    pub fn store(&self) -> &Arc<dyn ApiKeyStore> {
        &self.store
    }

    fn evict(&self, key_id: Uuid) {
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&key_id);
    }

    fn evict_all(&self) {
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn cached(&self, key_id: Uuid) -> Option<Arc<CachedKey>> {
        let cache = self
            .cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .get(&key_id)
            .filter(|cached| cached.loaded_at.elapsed() < CACHE_TTL)
            .cloned()
    }

    async fn load(&self, key_id: Uuid) -> Result<Option<Arc<CachedKey>>, ApiError> {
        let Some(record) = self.store.get(key_id).await? else {
            return Ok(None);
        };
        let last_use = record.last_used_at.map_or(0, |at| at.timestamp());
        let identity = KeyIdentity {
            key_id,
            module_id: record.module_id.as_deref().map(Arc::from),
            tenant_id: record.tenant_id,
            scopes: Arc::from(record.scopes.as_slice()),
            rate_limit: record.rate_limit(),
        };
        let cached = Arc::new(CachedKey {
            identity,
            record,
            loaded_at: Instant::now(),
            last_use_written: AtomicI64::new(last_use),
        });
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key_id, cached.clone());
        Ok(Some(cached))
    }

    /// Writes `last_used_at` in the background, once per resolution window.
    fn note_use(&self, cached: &CachedKey, now: DateTime<Utc>) {
        let now_seconds = now.timestamp();
        let written = cached.last_use_written.load(Ordering::Relaxed);
        if now_seconds - written < LAST_USED_RESOLUTION_SECONDS
            || cached
                .last_use_written
                .compare_exchange(written, now_seconds, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.store.clone();
        let key_id = cached.record.id;
        tokio::spawn(async move {
            if let Err(error) = store.record_use(key_id, now).await {
                tracing::warn!(%key_id, %error, "could not record api key use");
            }
        });
    }
}

impl Cache for ApiKeys {
    fn apply(&self, change: Change) {
        match change {
            Change::ApiKey(key_id) => self.evict(key_id),
            Change::Everything => self.evict_all(),
            Change::Subjects
            | Change::SigningKeys
            | Change::Rbac { .. }
            | Change::Instances { .. }
            | Change::Modules { .. }
            | Change::Catalog
            | Change::Audit { .. } => {}
        }
    }
}

/// Stores a new key, audited as done by `actor`, and returns its secret
/// once. Callers decide who may (the API's rules live in the domain).
pub async fn insert_new(
    tx: &mut Tx,
    new_key: NewApiKey,
    actor: Actor,
    request_id: &str,
) -> Result<IssuedApiKey, StoreError> {
    let (secret, secret_hash) = generate_secret();
    let (rate_limit_calls_per_second, rate_limit_burst) =
        store::api_keys::rate_limit_columns(new_key.rate_limit);
    let record = ApiKeyRecord {
        id: Uuid::now_v7(),
        name: new_key.name,
        module_id: new_key.module_id,
        tenant_id: new_key.tenant_id,
        scopes: new_key.scopes,
        secret_hash: secret_hash.to_vec(),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        created_at: clock::now(),
        expires_at: new_key.expires_at.map(clock::truncate),
        revoked_at: None,
        last_used_at: None,
        rate_limit_calls_per_second,
        rate_limit_burst,
    };
    let audit = key_event(actor, request_id, "auth.api_key.created", &record).with_details(
        serde_json::json!({
            "name": record.name,
            "module_id": record.module_id,
            "scopes": record.scopes,
            "expires_at": record.expires_at,
            "rate_limit": rate_limit_details(record.rate_limit()),
        }),
    );
    store::api_keys::insert(tx, &record, audit).await?;
    let secret = format!("{PREFIX}{}_{secret}", record.id.simple());
    Ok(IssuedApiKey { record, secret })
}

/// Revokes `key`; evicting it from caches is the caller's (after commit).
pub async fn revoke(
    tx: &mut Tx,
    key: &ApiKeyRecord,
    actor: Actor,
    request_id: &str,
) -> Result<ApiKeyRecord, StoreError> {
    let audit = key_event(actor, request_id, "auth.api_key.revoked", key);
    store::api_keys::revoke(tx, key.id, clock::now(), audit).await
}

/// Sets `key`'s own rate limit (`None`: the server's default for keys);
/// evicting it from caches is the caller's (after commit).
pub async fn set_rate_limit(
    tx: &mut Tx,
    key: &ApiKeyRecord,
    limit: Option<RateLimit>,
    actor: Actor,
    request_id: &str,
) -> Result<ApiKeyRecord, StoreError> {
    let audit = key_event(actor, request_id, "auth.api_key.rate_limit_set", key).with_details(
        serde_json::json!({
            "from": rate_limit_details(key.rate_limit()),
            "to": rate_limit_details(limit),
        }),
    );
    store::api_keys::set_rate_limit(tx, key.id, limit, audit).await
}

fn rate_limit_details(limit: Option<RateLimit>) -> serde_json::Value {
    limit.map_or(serde_json::Value::Null, |limit| {
        serde_json::json!({
            "calls_per_second": limit.calls_per_second,
            "burst": limit.burst,
        })
    })
}

/// Gives `key` a new secret (returned once); the old one keeps working for
/// `grace`.
pub async fn rotate(
    tx: &mut Tx,
    key: &ApiKeyRecord,
    grace: chrono::Duration,
    actor: Actor,
    request_id: &str,
) -> Result<IssuedApiKey, StoreError> {
    let (secret, secret_hash) = generate_secret();
    let previous_expires_at = clock::now() + grace;
    let audit = key_event(actor, request_id, "auth.api_key.rotated", key)
        .with_details(serde_json::json!({ "previous_secret_expires_at": previous_expires_at }));
    let record =
        store::api_keys::rotate(tx, key.id, &secret_hash, previous_expires_at, audit).await?;
    let secret = format!("{PREFIX}{}_{secret}", record.id.simple());
    Ok(IssuedApiKey { record, secret })
}

fn key_event(actor: Actor, request_id: &str, action: &str, key: &ApiKeyRecord) -> AuditDraft {
    AuditDraft::new(actor, action, "api_key", &key.id.to_string())
        .in_tenant(key.tenant_id)
        .with_request_id(request_id)
}

/// Creates an operator key when no usable one exists (first start).
pub async fn bootstrap_operator_key(store: &Store) -> Result<Option<IssuedApiKey>, StoreError> {
    if store.api_keys.has_usable_operator_key(clock::now()).await? {
        return Ok(None);
    }
    let new_key = NewApiKey {
        name: "bootstrap operator".to_owned(),
        ..NewApiKey::default()
    };
    let mut tx = store.begin().await?;
    let issued = insert_new(&mut tx, new_key, Actor::default(), "").await?;
    tx.commit().await?;
    Ok(Some(issued))
}

/// Splits `plk_<32 hex>_<secret>` into the key id and the secret.
fn parse(presented: &str) -> Option<(Uuid, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.is_empty() || secret.len() > 64 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn generate_secret() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// Compares against the current secret and, within its grace period, the
/// previous one; both comparisons always run, in constant time.
fn secret_matches(record: &ApiKeyRecord, presented_hash: &[u8; 32], now: DateTime<Utc>) -> bool {
    let current = record.secret_hash.ct_eq(presented_hash);
    let previous_in_grace = record
        .previous_secret_expires_at
        .is_some_and(|expires_at| expires_at > now);
    let previous = match &record.previous_secret_hash {
        Some(hash) => {
            hash.ct_eq(presented_hash) & subtle::Choice::from(u8::from(previous_in_grace))
        }
        None => subtle::Choice::from(0),
    };
    bool::from(current | previous)
}

fn is_usable(record: &ApiKeyRecord, now: DateTime<Utc>) -> bool {
    record.revoked_at.is_none() && record.expires_at.is_none_or(|expires_at| expires_at > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_well_formed_key() {
        let id = Uuid::now_v7();
        let presented = format!("plk_{}_secret", id.simple());
        assert_eq!(parse(&presented), Some((id, "secret")));
    }

    #[test]
    fn refuses_malformed_keys() {
        for presented in [
            "",
            "plk_",
            "plk__x",
            "pk_0123",
            "plk_zz_secret",
            "plk_0123456789abcdef0123456789abcdef_",
        ] {
            assert_eq!(parse(presented), None, "{presented:?}");
        }
    }
}
