//! Users and their password hashes.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

stored_enum! {
    /// Lifecycle of a user account.
    pub enum UserStatus {
        /// May log in.
        Active => "active",
        /// May not log in; its tokens stop verifying.
        Disabled => "disabled",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Normalised (NFKC, lower case).
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Optional filters of a user listing.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub status: Option<UserStatus>,
    pub email_prefix: Option<String>,
}

/// A user together with its password hash (PHC string).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: UserRecord,
    pub password_hash: String,
}

/// Reads users; notes logins.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    async fn get_user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;

    /// The user and password hash for a login, in one query (so a known and
    /// an unknown account cost the same round trips).
    async fn find_credentials(
        &self,
        tenant_id: Uuid,
        email: &str,
    ) -> Result<Option<NewUser>, StoreError>;

    async fn list_users(
        &self,
        tenant_id: Uuid,
        filter: &UserFilter,
        page: Page,
    ) -> Result<Vec<UserRecord>, StoreError>;

    /// Bookkeeping, not audited: the login itself is, with its session.
    async fn record_login(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;
}

macro_rules! user_columns {
    () => {
        "id, tenant_id, email, display_name, status, created_at, updated_at, last_login_at"
    };
}

/// Creates a user with its password hash.
pub async fn insert(tx: &mut Tx, new_user: &NewUser, audit: AuditDraft) -> Result<(), StoreError> {
    let user = &new_user.user;
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(user.id)
        .bind(user.tenant_id)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(user.status.as_str())
        .bind(user.created_at)
        .bind(user.updated_at)
        .bind(user.last_login_at)
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO password_credentials (user_id, password_hash, updated_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(user.id)
        .bind(&new_user.password_hash)
        .bind(user.created_at)
        .execute(connection)
        .await?;
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// Writes display name and status of an existing user.
pub async fn update(tx: &mut Tx, user: &UserRecord, audit: AuditDraft) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query("UPDATE users SET display_name = $2, status = $3, updated_at = $4 WHERE id = $1")
            .bind(user.id)
            .bind(&user.display_name)
            .bind(user.status.as_str())
            .bind(user.updated_at)
            .execute(connection)
            .await?
            .rows_affected()
    });
    super::audited(tx, changed, audit).await
}

pub async fn set_password_hash(
    tx: &mut Tx,
    user_id: Uuid,
    password_hash: &str,
    at: DateTime<Utc>,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query(
            "UPDATE password_credentials SET password_hash = $2, updated_at = $3 WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(password_hash)
        .bind(at)
        .execute(connection)
        .await?
        .rows_affected()
    });
    super::audited(tx, changed, audit).await
}

macro_rules! impl_user_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl UserStore for SqlStore<$db> {
            async fn get_user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
                self.row_where(
                    concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"),
                    id,
                )
                .await
            }

            async fn find_credentials(
                &self,
                tenant_id: Uuid,
                email: &str,
            ) -> Result<Option<NewUser>, StoreError> {
                #[derive(sqlx::FromRow)]
                struct Credentials {
                    #[sqlx(flatten)]
                    user: UserRecord,
                    password_hash: String,
                }
                let found: Option<Credentials> = sqlx::query_as(
                    "SELECT u.id, u.tenant_id, u.email, u.display_name, u.status, u.created_at, \
                     u.updated_at, u.last_login_at, p.password_hash FROM users u \
                     JOIN password_credentials p ON p.user_id = u.id \
                     WHERE u.tenant_id = $1 AND u.email = $2",
                )
                .bind(tenant_id)
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.map(|found| NewUser {
                    user: found.user,
                    password_hash: found.password_hash,
                }))
            }

            async fn list_users(
                &self,
                tenant_id: Uuid,
                filter: &UserFilter,
                page: Page,
            ) -> Result<Vec<UserRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR substr(email, 1, length($3)) = $3) \
                     AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
                ))
                .bind(tenant_id)
                .bind(filter.status.map(UserStatus::as_str))
                .bind(&filter.email_prefix)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn record_login(
                &self,
                user_id: Uuid,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}
impl_user_store!(Postgres);
impl_user_store!(Sqlite);
