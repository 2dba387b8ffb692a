//! Login, refresh-token rotation with reuse detection, logout, and the
//! sessions a user has.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use plinth_platform::{
    audit::{AuditDraft, Outcome},
    clock,
    config::Config,
    error::ApiError,
    identity::{
        Principal,
        tokens::{AccessClaims, TokenVerifier, VerifiedToken},
    },
    invalidation::{Change, Invalidator},
    store::{
        Store, audit_log, sessions,
        sessions::{RefreshOutcome, RefreshTokenRecord, SessionQuery, SessionRecord},
        users::{UserRecord, UserStatus},
    },
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    passwords::Passwords,
    signing::{Jwk, Jwks, SigningKeys},
    throttle::{LoginThrottles, Throttle},
    users::user_scope,
};
use crate::{
    access::{Access, Scope},
    listing::PageRequest,
    permissions::{Permission, SESSION_LIST, SESSION_REVOKE, SIGNING_KEY_ROTATE, TOKEN_VERIFY},
};

const REFRESH_TOKEN_PREFIX: &str = "plr_";

/// What a login or refresh hands out.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub session_id: Uuid,
}

/// A login: tenant code, normalised email, password.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    pub tenant_code: String,
    pub email: String,
    pub password: String,
}

/// A page of a user's sessions.
#[derive(Debug, Clone)]
pub struct SessionListing {
    pub user_id: Uuid,
    /// Revoked and expired ones too.
    pub include_inactive: bool,
    pub page: PageRequest,
}

/// The session domain.
pub struct Sessions {
    store: Store,
    access: Access,
    passwords: Passwords,
    keys: Arc<SigningKeys>,
    verifier: Arc<TokenVerifier>,
    invalidator: Arc<Invalidator>,
    accounts: Throttle,
    peers: Throttle,
    refresh_token_ttl: chrono::Duration,
}

fn session_event(
    principal: &Principal,
    action: &str,
    session_id: Uuid,
    tenant_id: Uuid,
) -> AuditDraft {
    AuditDraft::new(
        principal.actor(),
        action,
        "session",
        &session_id.to_string(),
    )
    .in_tenant(Some(tenant_id))
    .with_request_id(&principal.request_id)
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_refresh_token(now: DateTime<Utc>, ttl: chrono::Duration) -> (String, RefreshTokenRecord) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{REFRESH_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let record = RefreshTokenRecord {
        token_hash: hash_token(&token),
        issued_at: now,
        expires_at: now + ttl,
    };
    (token, record)
}

impl Sessions {
    pub fn new(
        store: Store,
        access: Access,
        passwords: Passwords,
        keys: Arc<SigningKeys>,
        invalidator: Arc<Invalidator>,
        throttles: LoginThrottles,
        config: &Config,
    ) -> Sessions {
        Sessions {
            verifier: keys.verifier().clone(),
            store,
            access,
            passwords,
            keys,
            invalidator,
            accounts: throttles.accounts,
            peers: throttles.peers,
            refresh_token_ttl: config.refresh_token_ttl(),
        }
    }

    /// One answer for unknown tenant, unknown user, wrong password and
    /// disabled user or tenant, after the same single password check.
    pub async fn login(
        &self,
        principal: &Principal,
        attempt: LoginAttempt,
    ) -> Result<(TokenPair, UserRecord), ApiError> {
        let LoginAttempt {
            tenant_code,
            email,
            password,
        } = &attempt;
        let account = format!("{tenant_code}\n{email}");
        let peer = principal
            .peer_address
            .map(|address| address.ip().to_string())
            .unwrap_or_default();
        for (throttle, key, scope) in [
            (&self.accounts, &account, "account"),
            (&self.peers, &peer, "peer"),
        ] {
            if let Err(retry_after) = throttle.check(key).await {
                return Err(ApiError::RateLimited { scope, retry_after });
            }
        }
        let tenant = self.store.tenants.get_tenant_by_code(tenant_code).await?;
        let credentials = match &tenant {
            Some(tenant) => self.store.users.find_credentials(tenant.id, email).await?,
            None => None,
        };
        let hash = credentials
            .as_ref()
            .map(|found| found.password_hash.as_str());
        let password_matches = self.passwords.verify(password, hash).await?;
        let tenant_id = tenant.as_ref().map(|tenant| tenant.id);
        let (Some(tenant), Some(credentials)) = (tenant, credentials) else {
            return self
                .refuse(
                    principal,
                    &account,
                    &peer,
                    tenant_id,
                    email,
                    "unknown_account",
                )
                .await;
        };
        let user = credentials.user;
        let refusal = if !password_matches {
            Some("wrong_password")
        } else if user.status != UserStatus::Active {
            Some("user_disabled")
        } else if !tenant.status.admits_callers() {
            Some("tenant_not_active")
        } else {
            None
        };
        if let Some(reason) = refusal {
            return self
                .refuse(principal, &account, &peer, tenant_id, email, reason)
                .await;
        }
        self.accounts.clear(&account).await;

        let now = clock::now();
        let session = SessionRecord {
            id: Uuid::now_v7(),
            user_id: user.id,
            tenant_id: user.tenant_id,
            peer_address: principal
                .peer_address
                .map(|address| address.to_string())
                .unwrap_or_default(),
            created_at: now,
            last_refreshed_at: now,
            expires_at: now + self.refresh_token_ttl,
            revoked_at: None,
            revoke_reason: None,
        };
        let (refresh_token, refresh_record) = new_refresh_token(now, self.refresh_token_ttl);
        let mut actor = principal.actor();
        actor.user_id = user.id.to_string();
        let audit = AuditDraft::new(
            actor,
            "auth.login.succeeded",
            "session",
            &session.id.to_string(),
        )
        .in_tenant(Some(user.tenant_id))
        .with_request_id(&principal.request_id);
        let mut tx = self.store.begin().await?;
        sessions::insert(&mut tx, &session, &refresh_record, audit).await?;
        tx.commit().await?;
        self.store.users.record_login(user.id, now).await?;
        let tokens = self
            .token_pair(&session, refresh_token, refresh_record.expires_at)
            .await?;
        Ok((tokens, user))
    }

    /// Counts and records a failed login the same way whatever the cause,
    /// so that neither the answer nor its timing tells the causes apart (the
    /// audit log, read by operators only, keeps the reason).
    async fn refuse<T>(
        &self,
        principal: &Principal,
        account: &str,
        peer: &str,
        tenant_id: Option<Uuid>,
        email: &str,
        reason: &str,
    ) -> Result<T, ApiError> {
        self.accounts.count(account).await;
        self.peers.count(peer).await;
        let mut audit = AuditDraft::new(principal.actor(), "auth.login.failed", "account", email)
            .in_tenant(tenant_id)
            .with_request_id(&principal.request_id)
            .with_details(serde_json::json!({ "reason": reason }));
        audit.outcome = Outcome::Failure;
        let mut tx = self.store.begin().await?;
        audit_log::append(&mut tx, audit).await?;
        tx.commit().await?;
        Err(ApiError::InvalidCredentials)
    }

    /// Spends a refresh token for a new pair. A spent token revokes its
    /// session; of concurrent uses, exactly one succeeds.
    pub async fn refresh(
        &self,
        principal: &Principal,
        refresh_token: &str,
    ) -> Result<TokenPair, ApiError> {
        let now = clock::now();
        let (successor, successor_record) = new_refresh_token(now, self.refresh_token_ttl);
        let mut tx = self.store.begin().await?;
        let outcome = sessions::spend_refresh_token(
            &mut tx,
            &hash_token(refresh_token),
            &successor_record,
            now,
        )
        .await?;
        match outcome {
            RefreshOutcome::Rotated(session) => {
                tx.commit().await?;
                let user = self.store.users.get_user(session.user_id).await?;
                let tenant = self.store.tenants.get_tenant(session.tenant_id).await?;
                let admitted = user.is_some_and(|user| user.status == UserStatus::Active)
                    && tenant.is_some_and(|tenant| tenant.status.admits_callers());
                if !admitted {
                    return Err(ApiError::Unauthenticated);
                }
                self.token_pair(&session, successor, successor_record.expires_at)
                    .await
            }
            RefreshOutcome::Reused {
                session_id,
                tenant_id,
            } => {
                let mut audit = session_event(
                    principal,
                    "auth.session.refresh_token_reused",
                    session_id,
                    tenant_id,
                );
                audit.outcome = Outcome::Denied;
                sessions::revoke(&mut tx, session_id, "refresh_token_reused", now, audit).await?;
                tx.commit().await?;
                self.invalidator.changed(Change::Subjects).await;
                Err(ApiError::RefreshTokenReused)
            }
            // Spending a dead token changes nothing worth keeping: rolled back.
            RefreshOutcome::Refused => Err(ApiError::Unauthenticated),
        }
    }

    /// Ends the session of `refresh_token`, or else of the caller's token.
    pub async fn logout(&self, principal: &Principal, refresh_token: &str) -> Result<(), ApiError> {
        let session = if refresh_token.is_empty() {
            principal
                .user
                .as_ref()
                .map(|user| (user.session_id, user.tenant_id))
        } else {
            self.store
                .sessions
                .session_of_refresh_token(&hash_token(refresh_token))
                .await?
                .map(|session| (session.id, session.tenant_id))
        };
        let (session_id, tenant_id) = session.ok_or(ApiError::Unauthenticated)?;
        self.revoke(principal, session_id, tenant_id, "logout")
            .await
    }

    pub async fn verify(
        &self,
        principal: &Principal,
        access_token: &str,
    ) -> Result<VerifiedToken, ApiError> {
        let verified = self.verifier.verify(access_token).await?;
        self.access
            .require(
                principal,
                TOKEN_VERIFY,
                Scope::tenant(verified.claims().tid),
            )
            .await?;
        Ok(verified)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        listing: SessionListing,
    ) -> Result<(Vec<SessionRecord>, String), ApiError> {
        let SessionListing {
            user_id,
            include_inactive,
            page,
        } = listing;
        self.require_on_user(principal, user_id, SESSION_LIST)
            .await?;
        let query = SessionQuery {
            user_id,
            include_inactive,
            now: clock::now(),
            page: page.store_page(),
        };
        let rows = self.store.sessions.list_sessions(query).await?;
        Ok(page.finish(rows, |session| session.id))
    }

    /// Revokes a session of the caller, or of a user the caller administers.
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        session_id: Uuid,
    ) -> Result<(), ApiError> {
        let session =
            self.store
                .sessions
                .get_session(session_id)
                .await?
                .ok_or(ApiError::NotFound {
                    resource_type: "session",
                })?;
        self.require_on_user(principal, session.user_id, SESSION_REVOKE)
            .await?;
        self.revoke(principal, session_id, session.tenant_id, "revoked")
            .await
    }

    /// Makes a new signing key current (platform admins only).
    /// Makes a new signing key current and returns its public half.
    pub async fn rotate_signing_key(&self, principal: &Principal) -> Result<Jwk, ApiError> {
        self.access
            .require(principal, SIGNING_KEY_ROTATE, Scope::platform())
            .await?;
        let record = self
            .keys
            .rotate(principal.actor(), &principal.request_id)
            .await?;
        Ok(Jwk::of(&record))
    }

    /// The public keys that verify tokens now, as a JWKS.
    pub async fn jwks(&self) -> Result<Jwks, ApiError> {
        self.keys.jwks().await
    }

    /// Revocation is always allowed, whatever the tenant's status.
    async fn revoke(
        &self,
        principal: &Principal,
        session_id: Uuid,
        tenant_id: Uuid,
        reason: &str,
    ) -> Result<(), ApiError> {
        let audit = session_event(principal, "auth.session.revoked", session_id, tenant_id)
            .with_details(serde_json::json!({ "reason": reason }));
        let mut tx = self.store.begin().await?;
        sessions::revoke(&mut tx, session_id, reason, clock::now(), audit).await?;
        tx.commit().await?;
        self.invalidator.changed(Change::Subjects).await;
        Ok(())
    }

    /// The user's own sessions, or its tenant admins'.
    async fn require_on_user(
        &self,
        principal: &Principal,
        user_id: Uuid,
        permission: Permission,
    ) -> Result<(), ApiError> {
        let user = self
            .store
            .users
            .get_user(user_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "user",
            })?;
        self.access
            .require_visible(principal, permission, user_scope(&user), "user")
            .await
    }

    async fn token_pair(
        &self,
        session: &SessionRecord,
        refresh_token: String,
        refresh_token_expires_at: DateTime<Utc>,
    ) -> Result<TokenPair, ApiError> {
        let now = clock::now();
        let ttl = chrono::Duration::from_std(self.verifier.settings().access_token_ttl)
            .unwrap_or_default();
        let expires_at = now + ttl;
        let settings = self.verifier.settings();
        let claims = AccessClaims {
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            sub: session.user_id,
            tid: session.tenant_id,
            sid: session.id,
            jti: Uuid::now_v7(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        Ok(TokenPair {
            access_token: self.keys.sign(&claims).await?,
            access_token_expires_at: expires_at,
            refresh_token,
            refresh_token_expires_at: refresh_token_expires_at.min(session.expires_at),
            session_id: session.id,
        })
    }
}
