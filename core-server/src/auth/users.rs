//! Users: creation within tenant limits, reading and listing within the
//! caller's reach, status and password changes (which end sessions in the
//! same transaction).

use std::sync::Arc;

use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::ApiError,
    identity::Principal,
    invalidation::{Change, Invalidator},
    store::{
        Store, StoreError, TenantRows, Tx, count_in_tenant, rbac, sessions,
        users::{self, NewUser, UserFilter, UserRecord, UserStatus},
    },
};
use uuid::Uuid;

use super::passwords::{self, Passwords};
use crate::{
    access::{Access, Owner, Scope},
    listing::PageRequest,
    permissions::{USER_CREATE, USER_LIST, USER_READ, USER_SET_PASSWORD, USER_UPDATE},
    rbac::keep_last_admin,
    tenant::{lock_writable, within_limit},
};

/// What a caller gives to create a user (email already normalised).
#[derive(Debug, Clone)]
pub struct UserInput {
    pub email: String,
    pub display_name: String,
    pub password: String,
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 200;

/// A user to create in a tenant.
#[derive(Debug, Clone)]
pub struct CreateUser {
    pub tenant_id: Uuid,
    pub input: UserInput,
}

#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub status: Option<UserStatus>,
}

/// Changes to one user.
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub id: Uuid,
    pub changes: UserChanges,
}

/// A page of a tenant's users.
#[derive(Debug, Clone)]
pub struct UserListing {
    pub tenant_id: Uuid,
    pub filter: UserFilter,
    pub page: PageRequest,
}

/// A password change: users give their current password; admins reset.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub user_id: Uuid,
    pub current_password: String,
    pub new_password: String,
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
            status: UserStatus::Active,
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
            "status": user.status.as_str(),
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

    /// Creates a user unless the tenant's `max_users` is reached; two
    /// concurrent creations cannot both take the last seat.
    pub async fn create(
        &self,
        principal: &Principal,
        command: CreateUser,
    ) -> Result<UserRecord, ApiError> {
        let CreateUser { tenant_id, input } = command;
        self.access
            .require(principal, USER_CREATE, Scope::tenant(tenant_id))
            .await?;
        let tenant = self
            .store
            .tenants
            .get_tenant(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        // Hashing is slow: it happens before the tenant is locked.
        let new_user = new_user(&self.passwords, tenant.id, &tenant.code, input).await?;
        let mut tx = self.store.begin().await?;
        let tenant = lock_writable(&mut tx, tenant_id).await?;
        let existing = count_in_tenant(&mut tx, TenantRows::Users, tenant_id).await?;
        within_limit("max_users", tenant.max_users, existing)?;
        let audit = user_event(principal, "auth.user.created", &new_user.user);
        users::insert(&mut tx, &new_user, audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict => ApiError::AlreadyExists {
                    resource_type: "user",
                    field: "email",
                },
                other => other.into(),
            })?;
        tx.commit().await?;
        Ok(new_user.user)
    }

    /// A user is visible to itself and to whoever administers its tenant.
    pub async fn get(&self, principal: &Principal, id: Uuid) -> Result<UserRecord, ApiError> {
        let user = self.existing(id).await?;
        self.access
            .require_visible(principal, USER_READ, user_scope(&user), "user")
            .await?;
        Ok(user)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        listing: UserListing,
    ) -> Result<(Vec<UserRecord>, String), ApiError> {
        let UserListing {
            tenant_id,
            filter,
            page,
        } = listing;
        self.access
            .require(principal, USER_LIST, Scope::tenant(tenant_id))
            .await?;
        let rows = self
            .store
            .users
            .list_users(tenant_id, &filter, page.store_page())
            .await?;
        Ok(page.finish(rows, |user| user.id))
    }

    /// Disabling a user ends its sessions in the same transaction.
    pub async fn update(
        &self,
        principal: &Principal,
        update: UserUpdate,
    ) -> Result<UserRecord, ApiError> {
        let UserUpdate { id, changes } = update;
        let mut user = self.existing(id).await?;
        self.access
            .require_visible(
                principal,
                USER_UPDATE,
                Scope::tenant(user.tenant_id),
                "user",
            )
            .await?;
        if let Some(display_name) = changes.display_name {
            user.display_name = display_name;
        }
        if let Some(status) = changes.status {
            user.status = status;
        }
        user.updated_at = clock::now();
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, user.tenant_id).await?;
        if user.status != UserStatus::Active {
            let (tenant_id, user_id) = (user.tenant_id, user.id);
            keep_last_admin(&mut tx, tenant_id, async |tx| {
                rbac::count_permanent_admins(tx, tenant_id, None, Some(user_id)).await
            })
            .await?;
        }
        users::update(
            &mut tx,
            &user,
            user_event(principal, "auth.user.updated", &user),
        )
        .await?;
        if user.status != UserStatus::Active {
            self.end_sessions(&mut tx, principal, &user, None, "user_disabled")
                .await?;
        }
        tx.commit().await?;
        self.invalidator.changed(Change::Subjects).await;
        Ok(user)
    }

    /// Users changing their own password give the current one; admins of
    /// the user's tenant may reset it without. Every other session of the
    /// user ends in the same transaction.
    pub async fn set_password(
        &self,
        principal: &Principal,
        change: PasswordChange,
    ) -> Result<(), ApiError> {
        let user = self.existing(change.user_id).await?;
        let own_session = principal
            .user
            .as_ref()
            .filter(|me| me.user_id == user.id)
            .map(|me| me.session_id);
        if own_session.is_some() {
            let stored = self
                .store
                .users
                .find_credentials(user.tenant_id, &user.email)
                .await?;
            let hash = stored.as_ref().map(|found| found.password_hash.as_str());
            if !self
                .passwords
                .verify(&change.current_password, hash)
                .await?
            {
                return Err(ApiError::InvalidCredentials);
            }
        } else {
            self.access
                .require_visible(
                    principal,
                    USER_SET_PASSWORD,
                    Scope::tenant(user.tenant_id),
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
        check_password(
            &change.new_password,
            &user.email,
            &user.display_name,
            &tenant_code,
        )?;
        let hash = self.passwords.hash(&change.new_password).await?;
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, user.tenant_id).await?;
        let audit = user_event(principal, "auth.user.password_changed", &user);
        users::set_password_hash(&mut tx, user.id, &hash, clock::now(), audit).await?;
        self.end_sessions(&mut tx, principal, &user, own_session, "password_changed")
            .await?;
        tx.commit().await?;
        self.invalidator.changed(Change::Subjects).await;
        Ok(())
    }

    async fn end_sessions(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        user: &UserRecord,
        keep: Option<Uuid>,
        reason: &str,
    ) -> Result<(), ApiError> {
        let audit = user_event(principal, "auth.user.sessions_revoked", user);
        sessions::revoke_user_sessions(tx, user.id, keep, reason, clock::now(), audit).await?;
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

/// A user's scope: its tenant, owned by itself.
pub fn user_scope(user: &UserRecord) -> Scope {
    Scope::tenant(user.tenant_id).owned_by(Owner::User(user.id))
}
