//! Roles (with their grants and parents), the bindings of users to them,
//! and each tenant's RBAC version. Every change to a
//! tenant's roles or bindings bumps that version in its own transaction
//! ([`bump_version`]); the composite foreign keys keep every role, parent,
//! user and company of a binding inside the binding's tenant.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError};

/// The key of the system role every tenant has for its administrators.
pub const TENANT_ADMIN_ROLE: &str = "tenant-admin";

/// Deepest chain of ancestors a role may have; the grant queries follow
/// parents no further.
pub const MAX_ROLE_DEPTH: i64 = 8;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Unique within the tenant.
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// Made by the platform; cannot be deleted or stripped.
    pub system: bool,
    /// Granted directly, sorted.
    #[sqlx(skip)]
    pub permissions: Vec<String>,
    #[sqlx(skip)]
    pub parent_role_ids: Vec<Uuid>,
    pub etag: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user holding a role, tenant-wide or for one company, maybe until a
/// time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleBinding {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub company_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Optional filters of a binding listing.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindingFilter {
    pub user_id: Option<Uuid>,
    pub role_id: Option<Uuid>,
    pub company_id: Option<Uuid>,
}

/// Which of a user's bindings count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingScope {
    /// Tenant-wide bindings only.
    Tenant,
    /// Tenant-wide bindings and those for this company.
    Company(Uuid),
    /// Every binding, whatever its company.
    Every,
}

impl BindingScope {
    /// The company and every-company flag of an [`asked`] row.
    fn filter(self) -> (Option<Uuid>, bool) {
        match self {
            BindingScope::Tenant => (None, false),
            BindingScope::Company(company_id) => (Some(company_id), false),
            BindingScope::Every => (None, true),
        }
    }
}

/// Reads roles, bindings and what users hold through them.
#[async_trait::async_trait]
pub trait RbacStore: Send + Sync {
    /// Every role of the tenant, oldest first.
    async fn tenant_roles(&self, tenant_id: Uuid) -> Result<Vec<RoleRecord>, StoreError>;

    async fn role(&self, id: Uuid) -> Result<Option<RoleRecord>, StoreError>;

    async fn role_by_key(
        &self,
        tenant_id: Uuid,
        key: &str,
    ) -> Result<Option<RoleRecord>, StoreError>;

    async fn binding(&self, id: Uuid) -> Result<Option<RoleBinding>, StoreError>;

    async fn list_bindings(
        &self,
        tenant_id: Uuid,
        filter: BindingFilter,
        page: Page,
    ) -> Result<Vec<RoleBinding>, StoreError>;

    /// `None` for an unknown tenant.
    async fn rbac_version(&self, tenant_id: Uuid) -> Result<Option<i64>, StoreError>;

    /// What each holder holds, in the order asked: [`RbacStore::user_bindings`]
    /// folded into one row per holder (rows and statements are what a
    /// check's compile pays most for), `None` where the user is not the
    /// tenant's. At most [`MAX_HOLDERS_READ`] holders; one statement, so one
    /// snapshot.
    async fn held_roles(
        &self,
        holders: &[Holder],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<UserRoles>>, StoreError>;

    /// `None` when the user is not one of the tenant's. One statement, so
    /// the version and the bindings come from one snapshot.
    async fn user_bindings(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        scope: BindingScope,
        now: DateTime<Utc>,
    ) -> Result<Option<UserBindings>, StoreError>;

    /// Active users bound (tenant-wide, or for `company_id`) to a role that
    /// holds, itself or through an ancestor, one of `grants` (a permission
    /// and the wildcards over it), by id.
    async fn users_granted(
        &self,
        tenant_id: Uuid,
        grants: &[String; 4],
        company_id: Option<Uuid>,
        now: DateTime<Utc>,
        page: Page,
    ) -> Result<Vec<Uuid>, StoreError>;
}

macro_rules! role_columns {
    () => {
        "r.id, r.tenant_id, r.key, r.display_name, r.description, r.system, r.etag, \
         r.created_at, r.updated_at"
    };
}

macro_rules! binding_columns {
    () => {
        "id, tenant_id, user_id, role_id, company_id, created_at, expires_at"
    };
}
/// The roles `$filter` (a condition on `roles r`) selects, with their grants
/// and parents, oldest first; written once for pools and transactions.
macro_rules! load_roles {
    ($executor:expr, $filter:literal $(, $bind:expr)*) => {{
        let mut roles: Vec<RoleRecord> = sqlx::query_as(concat!(
            "SELECT ", role_columns!(), " FROM roles r WHERE ", $filter, " ORDER BY r.id"
        ))
        $(.bind($bind))*
        .fetch_all($executor)
        .await?;
        let grants: Vec<(Uuid, String)> = sqlx::query_as(concat!(
            "SELECT rp.role_id, rp.permission FROM role_permissions rp \
             JOIN roles r ON r.id = rp.role_id WHERE ", $filter, " ORDER BY rp.permission"
        ))
        $(.bind($bind))*
        .fetch_all($executor)
        .await?;
        let parents: Vec<(Uuid, Uuid)> = sqlx::query_as(concat!(
            "SELECT p.role_id, p.parent_role_id FROM role_parents p \
             JOIN roles r ON r.id = p.role_id WHERE ", $filter, " ORDER BY p.parent_role_id"
        ))
        $(.bind($bind))*
        .fetch_all($executor)
        .await?;
        attach(&mut roles, grants, parents);
        roles
    }};
}

fn attach(roles: &mut [RoleRecord], grants: Vec<(Uuid, String)>, parents: Vec<(Uuid, Uuid)>) {
    let index: std::collections::HashMap<Uuid, usize> = roles
        .iter()
        .enumerate()
        .map(|(position, role)| (role.id, position))
        .collect();
    for (role_id, permission) in grants {
        if let Some(&position) = index.get(&role_id) {
            roles[position].permissions.push(permission);
        }
    }
    for (role_id, parent_id) in parents {
        if let Some(&position) = index.get(&role_id) {
            roles[position].parent_role_ids.push(parent_id);
        }
    }
}

/// The unexpired bindings `b` that `asked a` holds, `$1` being now.
macro_rules! held_bindings {
    () => {
        "b.tenant_id = a.tenant_id AND b.user_id = a.user_id \
         AND (b.company_id IS NULL OR b.company_id = a.company_id OR a.every_company) \
         AND (b.expires_at IS NULL OR b.expires_at > $1)"
    };
}

/// Binds now (`$1`) and the rows of [`held::asked`]; rows past `holders` name
/// no user, so they match nothing.
macro_rules! bind_asked {
    ($query:expr, $now:expr, $holders:expr, $rows:expr) => {{
        let holders: &[Holder] = $holders;
        let mut query = $query.bind($now);
        for row in 0..$rows {
            let holder = holders.get(row);
            let (company_id, every_company) =
                holder.map_or((None, false), |holder| holder.scope.filter());
            query = query
                .bind(holder.map(|holder| holder.tenant_id))
                .bind(holder.map(|holder| holder.user_id))
                .bind(company_id)
                .bind(every_company);
        }
        query
    }};
}

// Declared after the macros above, which they use.
mod held;
mod writes;

pub use held::{HeldBinding, Holder, MAX_HOLDERS_READ, UserBindings, UserRoles};
use held::{held_roles_texts, user_bindings_sql};
pub use writes::{
    bind, binding, bump_version, count_permanent_admins, count_user_bindings, delete_role,
    insert_role, tenant_roles, unbind, update_role,
};

/// `$role_ids`: how the backend aggregates `b.role_id` as text.
macro_rules! impl_rbac_store {
    ($db:ty, $role_ids:literal) => {
        #[async_trait::async_trait]
        impl RbacStore for SqlStore<$db> {
            async fn tenant_roles(&self, tenant_id: Uuid) -> Result<Vec<RoleRecord>, StoreError> {
                Ok(load_roles!(&self.pool, "r.tenant_id = $1", tenant_id))
            }

            async fn role(&self, id: Uuid) -> Result<Option<RoleRecord>, StoreError> {
                Ok(load_roles!(&self.pool, "r.id = $1", id).pop())
            }

            async fn role_by_key(
                &self,
                tenant_id: Uuid,
                key: &str,
            ) -> Result<Option<RoleRecord>, StoreError> {
                Ok(load_roles!(
                    &self.pool,
                    "r.tenant_id = $1 AND r.key = $2",
                    tenant_id,
                    key
                )
                .pop())
            }

            async fn binding(&self, id: Uuid) -> Result<Option<RoleBinding>, StoreError> {
                self.row_where(
                    concat!(
                        "SELECT ",
                        binding_columns!(),
                        " FROM role_bindings WHERE id = $1"
                    ),
                    id,
                )
                .await
            }

            async fn list_bindings(
                &self,
                tenant_id: Uuid,
                filter: BindingFilter,
                page: Page,
            ) -> Result<Vec<RoleBinding>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    binding_columns!(),
                    " FROM role_bindings WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR role_id = $3) \
                     AND ($4 IS NULL OR company_id = $4) AND ($5 IS NULL OR id > $5) \
                     ORDER BY id LIMIT $6"
                ))
                .bind(tenant_id)
                .bind(filter.user_id)
                .bind(filter.role_id)
                .bind(filter.company_id)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn rbac_version(&self, tenant_id: Uuid) -> Result<Option<i64>, StoreError> {
                self.row_where("SELECT rbac_version FROM tenants WHERE id = $1", tenant_id)
                    .await
                    .map(|row: Option<(i64,)>| row.map(|(version,)| version))
            }

            async fn held_roles(
                &self,
                holders: &[Holder],
                now: DateTime<Utc>,
            ) -> Result<Vec<Option<UserRoles>>, StoreError> {
                type Row = (
                    i32,
                    i64,
                    String,
                    bool,
                    Option<String>,
                    Option<DateTime<Utc>>,
                );
                if holders.len() > MAX_HOLDERS_READ {
                    return Err(StoreError::Internal(
                        format!(
                            "{} holders read at once, at most {MAX_HOLDERS_READ}",
                            holders.len()
                        )
                        .into(),
                    ));
                }
                static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| held_roles_texts($role_ids));
                let rows = holders.len().max(1).next_power_of_two();
                let sql = TEXTS[rows.trailing_zeros() as usize].as_str();
                let read: Vec<Row> = bind_asked!(sqlx::query_as(sql), now, holders, rows)
                    .fetch_all(&self.pool)
                    .await?;
                let mut held = vec![None; holders.len()];
                for (i, version, status, company_found, role_ids, valid_until) in read {
                    let Some(slot) = usize::try_from(i).ok().and_then(|i| held.get_mut(i)) else {
                        continue;
                    };
                    *slot = Some(UserRoles {
                        version,
                        user_active: status == super::users::UserStatus::Active.as_str(),
                        company_found,
                        role_ids: role_ids
                            .iter()
                            .flat_map(|ids| ids.split(','))
                            .map(Uuid::parse_str)
                            .collect::<Result<_, _>>()
                            .map_err(|error| StoreError::Internal(Box::new(error)))?,
                        valid_until,
                    });
                }
                Ok(held)
            }

            async fn user_bindings(
                &self,
                tenant_id: Uuid,
                user_id: Uuid,
                scope: BindingScope,
                now: DateTime<Utc>,
            ) -> Result<Option<UserBindings>, StoreError> {
                type Row = (
                    i64,
                    String,
                    bool,
                    Option<Uuid>,
                    Option<Uuid>,
                    Option<Uuid>,
                    Option<DateTime<Utc>>,
                );
                let holder = Holder {
                    tenant_id,
                    user_id,
                    scope,
                };
                let rows: Vec<Row> =
                    bind_asked!(sqlx::query_as(user_bindings_sql()), now, &[holder], 1)
                        .fetch_all(&self.pool)
                        .await?;
                let Some((version, status, company_found, ..)) = rows.first().cloned() else {
                    return Ok(None);
                };
                let bindings = rows
                    .into_iter()
                    .filter_map(|(.., id, role_id, company_id, expires_at)| {
                        Some(HeldBinding {
                            id: id?,
                            role_id: role_id?,
                            company_id,
                            expires_at,
                        })
                    })
                    .collect();
                Ok(Some(UserBindings {
                    version,
                    user_active: status == super::users::UserStatus::Active.as_str(),
                    company_found,
                    bindings,
                }))
            }

            async fn users_granted(
                &self,
                tenant_id: Uuid,
                grants: &[String; 4],
                company_id: Option<Uuid>,
                now: DateTime<Utc>,
                page: Page,
            ) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(
                    "WITH RECURSIVE holding (role_id, depth) AS ( \
                         SELECT rp.role_id, 0 FROM role_permissions rp \
                         JOIN roles r ON r.id = rp.role_id \
                         WHERE r.tenant_id = $1 AND rp.permission IN ($2, $3, $4, $5) \
                       UNION \
                         SELECT p.role_id, h.depth + 1 FROM holding h \
                         JOIN role_parents p ON p.parent_role_id = h.role_id \
                         WHERE h.depth < $6 \
                     ) \
                     SELECT DISTINCT b.user_id FROM role_bindings b \
                     JOIN users u ON u.id = b.user_id \
                     WHERE b.tenant_id = $1 AND b.role_id IN (SELECT role_id FROM holding) \
                     AND (b.company_id IS NULL OR b.company_id = $7) \
                     AND (b.expires_at IS NULL OR b.expires_at > $8) \
                     AND u.status = 'active' AND ($9 IS NULL OR b.user_id > $9) \
                     ORDER BY b.user_id LIMIT $10",
                )
                .bind(tenant_id)
                .bind(&grants[0])
                .bind(&grants[1])
                .bind(&grants[2])
                .bind(&grants[3])
                .bind(MAX_ROLE_DEPTH)
                .bind(company_id)
                .bind(now)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_rbac_store!(Postgres, "string_agg(b.role_id::text, ',')");
// `hex(NULL)` is '', not NULL: a holder without bindings would hold "".
impl_rbac_store!(Sqlite, "group_concat(nullif(hex(b.role_id), ''), ',')");
