//! Users: creation within tenant limits, reading and listing within the
//! caller's reach, status and password changes.

use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        Store, StoreError,
        tenants::LimitError,
        users::{NewUser, UserFilter, UserRecord},
    },
};
use std::sync::Arc;

use plinth_platform::invalidation::{Change, Invalidator};
use uuid::Uuid;

use super::passwords::{self, Passwords};
use crate::{
    access::{Access, Need},
    listing::PageRequest,
};

/// What a caller gives to create a user (email already normalised).
#[derive(Debug, Clone)]
pub struct UserInput {
    pub email: String,
    pub display_name: String,
    pub password: String,
}

#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    /// `active` or `disabled`.
    pub status: Option<&'static str>,
}

/// Checks the password against the policy and hashes it into a new record.
pub async fn new_user(
    passwords: &Passwords,
    tenant_id: Uuid,
    tenant_code: &str,
    input: UserInput,
) -> Result<NewUser, ApiError> {
    check_password(
        &input.password,
        &input.email,
        &input.display_name,
        tenant_code,
    )?;
    let password_hash = passwords.hash(&input.password).await?;
    let now = clock::now();
    Ok(NewUser {
        user: UserRecord {
            id: Uuid::now_v7(),
            tenant_id,
            email: input.email,
            display_name: input.display_name,
            status: "active".to_owned(),
            created_at: now,
            updated_at: now,
            last_login_at: None,
        },
        password_hash,
    })
}

/// The policy, with the account's own words as context.
fn check_password(
    password: &str,
    email: &str,
    display_name: &str,
    tenant_code: &str,
) -> Result<(), ApiError> {
    let local_part = email.split('@').next().unwrap_or_default();
    passwords::check_policy(password, &[email, local_part, display_name, tenant_code])
}

pub fn user_event(principal: &Principal, action: &str, user: &UserRecord) -> AuditDraft {
    AuditDraft::new(principal.actor(), action, "user", &user.id.to_string())
        .in_tenant(Some(user.tenant_id))
        .with_request_id(&principal.request_id)
        .with_details(serde_json::json!({
            "email": user.email,
            "display_name": user.display_name,
            "status": user.status,
        }))
}

/// The user domain.
#[derive(Clone)]
pub struct Users {
    store: Store,
    access: Access,
    passwords: Passwords,
    invalidator: Arc<Invalidator>,
}

impl Users {
    pub fn new(
        store: Store,
        access: Access,
        passwords: Passwords,
        invalidator: Arc<Invalidator>,
    ) -> Users {
        Users {
            store,
            access,
            passwords,
            invalidator,
        }
    }

    pub async fn create(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        input: UserInput,
    ) -> Result<UserRecord, ApiError> {
        self.access
            .require(
                principal,
                Need::TenantAdmin(tenant_id),
                "plinth:user:create",
            )
            .await?;
        let tenant = self
            .store
            .tenants
            .get_tenant(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        let new_user = new_user(&self.passwords, tenant.id, &tenant.code, input).await?;
        let audit = user_event(principal, "auth.user.created", &new_user.user);
        self.store
            .users
            .create_user(&new_user, audit)
            .await
            .map_err(|error| match error {
                LimitError::Reached { limit, value } => {
                    ApiError::TenantLimitReached { limit, value }
                }
                LimitError::Store(StoreError::Conflict) => ApiError::AlreadyExists {
                    resource_type: "user",
                    field: "email",
                },
                LimitError::Store(other) => other.into(),
            })?;
        Ok(new_user.user)
    }

    /// A user is visible to itself and to whoever administers its tenant.
    pub async fn get(&self, principal: &Principal, id: Uuid) -> Result<UserRecord, ApiError> {
        let user = self.existing(id).await?;
        if principal.user.as_ref().is_some_and(|me| me.user_id == id) {
            return Ok(user);
        }
        self.access
            .require_visible(
                principal,
                Need::TenantAdmin(user.tenant_id),
                "plinth:user:read",
                "user",
            )
            .await?;
        Ok(user)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        tenant_id: Uuid,
        filter: UserFilter,
        page: PageRequest,
    ) -> Result<(Vec<UserRecord>, String), ApiError> {
        self.access
            .require(principal, Need::TenantAdmin(tenant_id), "plinth:user:list")
            .await?;
        let rows = self
            .store
            .users
            .list_users(tenant_id, &filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |user| user.id))
    }

    pub async fn update(
        &self,
        principal: &Principal,
        id: Uuid,
        changes: UserChanges,
    ) -> Result<UserRecord, ApiError> {
        let mut user = self.existing(id).await?;
        self.access
            .require_visible(
                principal,
                Need::TenantAdmin(user.tenant_id),
                "plinth:user:update",
                "user",
            )
            .await?;
        if let Some(display_name) = changes.display_name {
            user.display_name = display_name;
        }
        if let Some(status) = changes.status {
            user.status = status.to_owned();
        }
        user.updated_at = clock::now();
        let audit = user_event(principal, "auth.user.updated", &user);
        self.store.users.update_user(&user, audit).await?;
        if user.status != "active" {
            self.store
                .sessions
                .revoke_user_sessions(user.id, None, "user_disabled", user.updated_at)
                .await?;
        }
        self.invalidator.changed(Change::Subjects).await;
        Ok(user)
    }

    /// Users changing their own password give the current one; admins of
    /// the user's tenant may reset it without.
    pub async fn set_password(
        &self,
        principal: &Principal,
        user_id: Uuid,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), ApiError> {
        let user = self.existing(user_id).await?;
        let is_self = principal
            .user
            .as_ref()
            .is_some_and(|me| me.user_id == user_id);
        if is_self {
            let stored = self
                .store
                .users
                .find_credentials(user.tenant_id, &user.email)
                .await?;
            let hash = stored.as_ref().map(|found| found.password_hash.as_str());
            if !self.passwords.verify(current_password, hash).await? {
                return Err(ApiError::InvalidCredentials);
            }
        } else {
            self.access
                .require_visible(
                    principal,
                    Need::TenantAdmin(user.tenant_id),
                    "plinth:user:set_password",
                    "user",
                )
                .await?;
        }
        let tenant_code = self
            .store
            .tenants
            .get_tenant(user.tenant_id)
            .await?
            .map(|tenant| tenant.code)
            .unwrap_or_default();
        check_password(new_password, &user.email, &user.display_name, &tenant_code)?;
        let hash = self.passwords.hash(new_password).await?;
        let audit = user_event(principal, "auth.user.password_changed", &user);
        self.store
            .users
            .set_password_hash(user_id, &hash, clock::now(), audit)
            .await?;
        Ok(())
    }

    async fn existing(&self, id: Uuid) -> Result<UserRecord, ApiError> {
        self.store
            .users
            .get_user(id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "user",
            })
    }
}
