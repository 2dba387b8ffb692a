//! Access tokens as every server verifies them: the token format and its
//! checks are `plinth_api::token`'s, the same code modules verify with; the
//! keys are the store's published signing keys.
//!
//! A valid signature is not enough: every answer also checks, through a
//! short-lived cache that local changes clear at once, that the session is
//! live, the user active and the tenant active.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
pub use plinth_api::token::{ALGORITHM, AccessClaims, MAX_TOKEN_BYTES};
use plinth_api::token::{TokenRules, VerifyingKey};
use uuid::Uuid;

use super::UserIdentity;
use crate::{
    clock,
    error::ApiError,
    invalidation::{Cache, Change},
    metrics::CacheCounters,
    store::{Store, tenants::PLATFORM_TENANT_ID, users::UserStatus},
};

/// How long session, user and tenant states are trusted before they are
/// read again (changes made on this replica clear them at once).
const STATE_TTL: Duration = Duration::from_secs(2);

/// How often an unknown `kid` may trigger a reload of the key set.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How long the key set is trusted, so retirements made by other replicas
/// are seen.
const KEY_SET_TTL: Duration = Duration::from_secs(60);

/// Verified tokens kept (about 1 KiB each); the cache starts afresh when it
/// grows past this, so its memory stays bounded and is given back.
const MAX_CACHED_TOKENS: usize = 20_000;

/// Issuer, audience and lifetimes of access tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl TokenSettings {
    /// How long a retired key stays published: until the last token it
    /// signed has expired.
    pub fn retired_key_grace(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.access_token_ttl + self.leeway).unwrap_or_default()
    }
}

/// A token that verified, with what it says. Cheap to clone: the parts
/// that stay the same are shared with the cache.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    signed: Arc<SignedToken>,
    email: Arc<str>,
}

impl VerifiedToken {
    pub fn claims(&self) -> &AccessClaims {
        &self.signed.claims
    }

    /// The `kid` of the key that signed it.
    pub fn key_id(&self) -> &str {
        &self.signed.key_id
    }

    /// The user's email now (not when the token was issued).
    pub fn email(&self) -> &str {
        &self.email
    }

    pub fn user(&self) -> UserIdentity {
        let claims = self.claims();
        UserIdentity {
            user_id: claims.sub,
            tenant_id: claims.tid,
            session_id: claims.sid,
            platform_admin: claims.tid == PLATFORM_TENANT_ID,
        }
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.claims().exp, 0).unwrap_or_default()
    }
}

struct PublicKey {
    key: VerifyingKey,
    retired_at: Option<DateTime<Utc>>,
}

/// The live state of a token's subject.
#[derive(Clone)]
struct SubjectState {
    live: bool,
    email: Arc<str>,
    checked_at: Instant,
}

/// The published keys by `kid`, and when they were read.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<PublicKey>>,
    loaded_at: Option<Instant>,
}

/// A token whose header, signature and claims verified.
#[derive(Debug)]
struct SignedToken {
    claims: AccessClaims,
    key_id: String,
}

/// Verifies access tokens.
pub struct TokenVerifier {
    settings: TokenSettings,
    rules: TokenRules,
    store: Store,
    keys: RwLock<KeySet>,
    states: RwLock<HashMap<Uuid, SubjectState>>,
    verified: RwLock<HashMap<Arc<str>, Arc<SignedToken>>>,
    counters: CacheCounters,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings, store: Store, counters: CacheCounters) -> TokenVerifier {
        TokenVerifier {
            rules: TokenRules::new(&settings.issuer, &settings.audience, settings.leeway),
            settings,
            store,
            keys: RwLock::new(KeySet::default()),
            states: RwLock::new(HashMap::new()),
            verified: RwLock::new(HashMap::new()),
            counters,
        }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Verifies signature, header and claims (cached per token), then the
    /// live state of session, user and tenant (never older than 2 s).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let now = clock::now();
        let cached = self
            .verified
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(token)
            .cloned();
        let signed = match cached {
            Some(signed) => {
                self.counters.hit();
                signed
            }
            None => {
                self.counters.miss();
                let signed = Arc::new(self.verify_signed(token, now).await?);
                let mut tokens = self
                    .verified
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if tokens.len() >= MAX_CACHED_TOKENS {
                    *tokens = HashMap::new();
                }
                tokens.insert(Arc::from(token), signed.clone());
                signed
            }
        };
        let key_valid = self.public_key(&signed.key_id, now).await?.is_some();
        if self.rules.expired(&signed.claims, now.timestamp()) || !key_valid {
            return Err(ApiError::Unauthenticated);
        }
        let state = self.subject_state(&signed.claims, now).await?;
        if !state.live {
            return Err(ApiError::Unauthenticated);
        }
        Ok(VerifiedToken {
            signed,
            email: state.email,
        })
    }

    fn forget_states(&self) {
        self.states
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn forget_keys(&self) {
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = KeySet::default();
    }

    async fn verify_signed(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<SignedToken, ApiError> {
        let key_id = self
            .rules
            .key_id(token)
            .map_err(|_| ApiError::Unauthenticated)?;
        let key = self
            .public_key(&key_id, now)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let claims = self
            .rules
            .verify(token, &key.key, now.timestamp())
            .map_err(|_| ApiError::Unauthenticated)?;
        Ok(SignedToken { claims, key_id })
    }

    /// A key verifies tokens until its last token has expired after it was
    /// retired.
    fn within_grace(&self, key: &PublicKey, now: DateTime<Utc>) -> bool {
        key.retired_at
            .is_none_or(|retired_at| retired_at + self.settings.retired_key_grace() > now)
    }

    async fn public_key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<PublicKey>>, ApiError> {
        {
            let keys = self
                .keys
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let loaded_for = keys.loaded_at.map(|loaded_at| loaded_at.elapsed());
            if loaded_for.is_some_and(|age| age < KEY_SET_TTL) {
                if let Some(key) = keys.by_kid.get(kid) {
                    return Ok(Some(key.clone()).filter(|key| self.within_grace(key, now)));
                }
                if loaded_for.is_some_and(|age| age < KEY_RELOAD_INTERVAL) {
                    return Ok(None);
                }
            }
        }
        let retired_since = now - self.settings.retired_key_grace();
        let published = self.store.signing_keys.published(retired_since).await?;
        let by_kid: HashMap<String, Arc<PublicKey>> = published
            .into_iter()
            .filter_map(|record| {
                let key = PublicKey {
                    key: VerifyingKey::from_bytes(&record.public_key).ok()?,
                    retired_at: record.retired_at,
                };
                Some((record.kid, Arc::new(key)))
            })
            .collect();
        let found = by_kid.get(kid).cloned();
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = KeySet {
            by_kid,
            loaded_at: Some(Instant::now()),
        };
        Ok(found.filter(|key| self.within_grace(key, now)))
    }

    async fn subject_state(
        &self,
        claims: &AccessClaims,
        now: DateTime<Utc>,
    ) -> Result<SubjectState, ApiError> {
        let cached = self
            .states
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&claims.sid)
            .filter(|state| state.checked_at.elapsed() < STATE_TTL)
            .cloned();
        if let Some(state) = cached {
            return Ok(state);
        }
        let session = self.store.sessions.get_session(claims.sid).await?;
        let user = self.store.users.get_user(claims.sub).await?;
        let tenant = self.store.tenants.get_tenant(claims.tid).await?;
        let live = match (&session, &user, &tenant) {
            (Some(session), Some(user), Some(tenant)) => {
                session.revoked_at.is_none()
                    && session.expires_at > now
                    && session.user_id == claims.sub
                    && user.tenant_id == claims.tid
                    && user.status == UserStatus::Active
                    && tenant.status.admits_callers()
            }
            _ => false,
        };
        let state = SubjectState {
            live,
            email: user.map_or_else(|| Arc::from(""), |user| Arc::from(user.email)),
            checked_at: Instant::now(),
        };
        self.states
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(claims.sid, state.clone());
        Ok(state)
    }
}

impl Cache for TokenVerifier {
    fn apply(&self, change: Change) {
        match change {
            Change::Subjects => self.forget_states(),
            Change::SigningKeys => self.forget_keys(),
            Change::Everything => {
                self.forget_states();
                self.forget_keys();
            }
            Change::ApiKey(_)
            | Change::Rbac { .. }
            | Change::Instances { .. }
            | Change::Modules { .. }
            | Change::Catalog
            | Change::Audit { .. } => {}
        }
    }
}

/// Encodes and signs `claims` (the issuing side, given a key pair).
pub fn encode(
    kid: &str,
    claims: &AccessClaims,
    key_pair: &ring::signature::Ed25519KeyPair,
) -> String {
    plinth_api::token::encode(kid, claims, |message| {
        key_pair.sign(message).as_ref().to_vec()
    })
}
