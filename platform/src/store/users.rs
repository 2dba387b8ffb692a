//! Users, their password hashes, and the tenant-admin standing that signup
//! grants (a binding to the tenant's system role `tenant-admin`).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{
    Page, SqlStore, StoreError,
    tenants::{LimitError, TenantRecord},
};
use crate::audit::AuditDraft;

/// The key of the system role every tenant has for its administrators.
pub const TENANT_ADMIN_ROLE: &str = "tenant-admin";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Normalised (NFKC, lower case).
    pub email: String,
    pub display_name: String,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Optional filters of a user listing.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub status: Option<String>,
    pub email_prefix: Option<String>,
}

/// A new user together with its password hash (PHC string).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: UserRecord,
    pub password_hash: String,
}

#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user unless the tenant's `max_users` is reached; two
    /// concurrent creations cannot both take the last seat.
    async fn create_user(&self, new_user: &NewUser, audit: AuditDraft) -> Result<(), LimitError>;

    /// Creates a tenant, its `tenant-admin` role and its first admin, in one
    /// transaction with all their audit events.
    async fn sign_up(
        &self,
        tenant: &TenantRecord,
        admin: &NewUser,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError>;

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

    /// Writes display name and status of an existing user.
    async fn update_user(&self, user: &UserRecord, audit: AuditDraft) -> Result<(), StoreError>;

    async fn set_password_hash(
        &self,
        user_id: Uuid,
        password_hash: &str,
        at: DateTime<Utc>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;

    async fn record_login(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Whether the user holds its tenant's `tenant-admin` role tenant-wide.
    async fn is_tenant_admin(&self, user_id: Uuid) -> Result<bool, StoreError>;
}

macro_rules! user_columns {
    () => {
        "id, tenant_id, email, display_name, status, created_at, updated_at, last_login_at"
    };
}

macro_rules! impl_user_store {
    ($db:ty) => {
        impl SqlStore<$db> {
            async fn insert_user(
                transaction: &mut sqlx::Transaction<'_, $db>,
                new_user: &NewUser,
            ) -> Result<(), StoreError> {
                let user = &new_user.user;
                sqlx::query(concat!(
                    "INSERT INTO users (",
                    user_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(user.id)
                .bind(user.tenant_id)
                .bind(&user.email)
                .bind(&user.display_name)
                .bind(&user.status)
                .bind(user.created_at)
                .bind(user.updated_at)
                .bind(user.last_login_at)
                .execute(&mut **transaction)
                .await?;
                sqlx::query(
                    "INSERT INTO password_credentials (user_id, password_hash, updated_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(user.id)
                .bind(&new_user.password_hash)
                .bind(user.created_at)
                .execute(&mut **transaction)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl UserStore for SqlStore<$db> {
            async fn create_user(&self, new_user: &NewUser, audit: AuditDraft) -> Result<(), LimitError> {
                let mut transaction = self.begin_write().await?;
                let max_users = Self::lock_tenant(&mut transaction, new_user.user.tenant_id)
                    .await?
                    .max_users;
                if max_users > 0 {
                    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
                        .bind(new_user.user.tenant_id)
                        .fetch_one(&mut *transaction)
                        .await
                        .map_err(StoreError::from)?;
                    if users >= i64::from(max_users) {
                        return Err(LimitError::Reached {
                            limit: "max_users",
                            value: max_users,
                        });
                    }
                }
                Self::insert_user(&mut transaction, new_user).await?;
                Self::append_audit(&mut transaction, audit).await?;
                transaction.commit().await.map_err(StoreError::from)?;
                Ok(())
            }

            async fn sign_up(
                &self,
                tenant: &TenantRecord,
                admin: &NewUser,
                audit: Vec<AuditDraft>,
            ) -> Result<(), StoreError> {
                let mut transaction = self.begin_write().await?;
                Self::insert_tenant(&mut transaction, tenant).await?;
                Self::insert_user(&mut transaction, admin).await?;
                let role_id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO roles (id, tenant_id, key, display_name, description, system, etag, \
                     created_at, updated_at) VALUES ($1, $2, $3, 'Tenant administrator', \
                     'Manages the tenant: users, companies, roles and modules.', TRUE, $4, $5, $5)",
                )
                .bind(role_id)
                .bind(tenant.id)
                .bind(TENANT_ADMIN_ROLE)
                .bind(Uuid::now_v7().simple().to_string())
                .bind(tenant.created_at)
                .execute(&mut *transaction)
                .await?;
                sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, 'plinth:*')")
                    .bind(role_id)
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query(
                    "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, company_id, created_at) \
                     VALUES ($1, $2, $3, $4, '', $5)",
                )
                .bind(Uuid::now_v7())
                .bind(tenant.id)
                .bind(admin.user.id)
                .bind(role_id)
                .bind(tenant.created_at)
                .execute(&mut *transaction)
                .await?;
                for draft in audit {
                    Self::append_audit(&mut transaction, draft).await?;
                }
                transaction.commit().await?;
                Ok(())
            }

            async fn get_user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
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
                .bind(&filter.status)
                .bind(&filter.email_prefix)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_user(&self, user: &UserRecord, audit: AuditDraft) -> Result<(), StoreError> {
                self.execute_audited(
                    sqlx::query(
                        "UPDATE users SET display_name = $2, status = $3, updated_at = $4 WHERE id = $1",
                    )
                    .bind(user.id)
                    .bind(&user.display_name)
                    .bind(&user.status)
                    .bind(user.updated_at),
                    audit,
                )
                .await
            }

            async fn set_password_hash(
                &self,
                user_id: Uuid,
                password_hash: &str,
                at: DateTime<Utc>,
                audit: AuditDraft,
            ) -> Result<(), StoreError> {
                self.execute_audited(
                    sqlx::query(
                        "UPDATE password_credentials SET password_hash = $2, updated_at = $3 WHERE user_id = $1",
                    )
                    .bind(user_id)
                    .bind(password_hash)
                    .bind(at),
                    audit,
                )
                .await
            }

            async fn record_login(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn is_tenant_admin(&self, user_id: Uuid) -> Result<bool, StoreError> {
                let bound: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM role_bindings b JOIN roles r ON r.id = b.role_id \
                     WHERE b.user_id = $1 AND b.company_id = '' AND r.system AND r.key = $2 \
                     AND r.tenant_id = b.tenant_id LIMIT 1",
                )
                .bind(user_id)
                .bind(TENANT_ADMIN_ROLE)
                .fetch_optional(&self.pool)
                .await?;
                Ok(bound.is_some())
            }
        }
    };
}
impl_user_store!(Postgres);
impl_user_store!(Sqlite);
