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
        Store,
        sessions::{RefreshOutcome, RefreshTokenRecord, SessionRecord},
        signing_keys::SigningKeyRecord,
        users::UserRecord,
    },
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    passwords::Passwords,
    signing::SigningKeys,
    throttle::{LoginThrottles, Throttle},
};
use crate::{
    access::{Access, Need},
    listing::PageRequest,
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
            refresh_token_ttl: chrono::Duration::days(config.refresh_token_days as i64),
        }
    }

    /// One answer for unknown tenant, unknown user, wrong password and
    /// disabled user or tenant, after the same single password check.
    pub async fn login(
        &self,
        principal: &Principal,
        tenant_code: &str,
        email: &str,
        password: &str,
    ) -> Result<(TokenPair, UserRecord), ApiError> {
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
        } else if user.status != "active" {
            Some("user_disabled")
        } else if tenant.status != "active" {
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
        self.store
            .sessions
            .create_session(&session, &refresh_record, audit)
            .await?;
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
        self.store.audit.record(vec![audit]).await?;
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
        let mut reuse_audit = AuditDraft::new(
            principal.actor(),
            "auth.session.refresh_token_reused",
            "session",
            "",
        )
        .with_request_id(&principal.request_id);
        reuse_audit.outcome = Outcome::Denied;
        let outcome = self
            .store
            .sessions
            .rotate_refresh_token(
                &hash_token(refresh_token),
                &successor_record,
                now,
                reuse_audit,
            )
            .await?;
        match outcome {
            RefreshOutcome::Rotated(session) => {
                let user = self.store.users.get_user(session.user_id).await?;
                let tenant = self.store.tenants.get_tenant(session.tenant_id).await?;
                let admitted = user.is_some_and(|user| user.status == "active")
                    && tenant.is_some_and(|tenant| tenant.status == "active");
                if !admitted {
                    return Err(ApiError::Unauthenticated);
                }
                self.token_pair(&session, successor, successor_record.expires_at)
                    .await
            }
            RefreshOutcome::Reused { .. } => {
                self.invalidator.changed(Change::Subjects).await;
                Err(ApiError::RefreshTokenReused)
            }
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
        if principal.api_key.is_none() {
            return Err(ApiError::PermissionDenied {
                permission: "plinth:token:verify".to_owned(),
            });
        }
        self.verifier.verify(access_token).await
    }

    pub async fn list(
        &self,
        principal: &Principal,
        user_id: Uuid,
        include_inactive: bool,
        page: PageRequest,
    ) -> Result<(Vec<SessionRecord>, String), ApiError> {
        self.require_user_or_admin(principal, user_id, "plinth:session:list")
            .await?;
        let rows = self
            .store
            .sessions
            .list_sessions(user_id, include_inactive, clock::now(), page.store_page())
            .await?;
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
        self.require_user_or_admin(principal, session.user_id, "plinth:session:revoke")
            .await?;
        self.revoke(principal, session_id, session.tenant_id, "revoked")
            .await
    }

    /// Makes a new signing key current (platform admins only).
    pub async fn rotate_signing_key(
        &self,
        principal: &Principal,
    ) -> Result<SigningKeyRecord, ApiError> {
        self.access
            .require(principal, Need::PlatformAdmin, "plinth:signing_key:rotate")
            .await?;
        self.keys
            .rotate(principal.actor(), &principal.request_id)
            .await
    }

    /// The public keys that verify tokens now.
    pub async fn published_keys(&self) -> Result<Vec<SigningKeyRecord>, ApiError> {
        self.keys.published().await
    }

    async fn revoke(
        &self,
        principal: &Principal,
        session_id: Uuid,
        tenant_id: Uuid,
        reason: &str,
    ) -> Result<(), ApiError> {
        let audit = AuditDraft::new(
            principal.actor(),
            "auth.session.revoked",
            "session",
            &session_id.to_string(),
        )
        .in_tenant(Some(tenant_id))
        .with_request_id(&principal.request_id)
        .with_details(serde_json::json!({ "reason": reason }));
        self.store
            .sessions
            .revoke_session(session_id, reason, clock::now(), audit)
            .await?;
        self.invalidator.changed(Change::Subjects).await;
        Ok(())
    }

    async fn require_user_or_admin(
        &self,
        principal: &Principal,
        user_id: Uuid,
        permission: &str,
    ) -> Result<(), ApiError> {
        if principal
            .user
            .as_ref()
            .is_some_and(|me| me.user_id == user_id)
        {
            return Ok(());
        }
        let user = self
            .store
            .users
            .get_user(user_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "user",
            })?;
        self.access
            .require_visible(
                principal,
                Need::TenantAdmin(user.tenant_id),
                permission,
                "user",
            )
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
