//! What users hold: the questions checks ask of the store ([`Holder`]),
//! the rows that answer them, and the statements that read many at once.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::BindingScope;

/// A user of a tenant, and which of its bindings count: one question of
/// [`RbacStore::held_roles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holder {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub scope: BindingScope,
}

/// Holders one [`RbacStore::held_roles`] statement reads at most.
pub const MAX_HOLDERS_READ: usize = 32;

/// `asked a` rows `(i, tenant_id, user_id, company_id, every_company)`,
/// numbered from 0 and bound from `$2` on, 4 parameters a row.
pub(super) fn asked(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = 2 + 4 * row;
            format!(
                "({row}, ${first}, ${}, ${}, ${})",
                first + 1,
                first + 2,
                first + 3
            )
        })
        .collect();
    format!(
        "WITH asked (i, tenant_id, user_id, company_id, every_company) AS (VALUES {}) ",
        values.join(", ")
    )
}

/// The statements of [`RbacStore::held_roles`], by power of two of rows
/// (so a handful of texts serve every batch and stay in each connection's
/// statement cache). `role_ids` aggregates `b.role_id` as text, which
/// each backend spells its own way.
pub(super) fn held_roles_texts(role_ids: &str) -> Vec<String> {
    (0..=MAX_HOLDERS_READ.trailing_zeros())
        .map(|power| {
            format!(
                "{}SELECT a.i, t.rbac_version, u.status, \
                 (a.company_id IS NULL OR c.id IS NOT NULL), {role_ids}, MIN(b.expires_at) \
                 FROM asked a \
                 JOIN users u ON u.id = a.user_id AND u.tenant_id = a.tenant_id \
                 JOIN tenants t ON t.id = a.tenant_id \
                 LEFT JOIN companies c ON c.id = a.company_id AND c.tenant_id = a.tenant_id \
                 LEFT JOIN role_bindings b ON {} \
                 GROUP BY a.i, t.rbac_version, u.status, a.company_id, c.id",
                asked(1 << power),
                held_bindings!()
            )
        })
        .collect()
}

/// The statement of [`RbacStore::user_bindings`].
pub(super) fn user_bindings_sql() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{}SELECT t.rbac_version, u.status, (a.company_id IS NULL OR c.id IS NOT NULL), \
             b.id, b.role_id, b.company_id, b.expires_at \
             FROM asked a \
             JOIN users u ON u.id = a.user_id AND u.tenant_id = a.tenant_id \
             JOIN tenants t ON t.id = a.tenant_id \
             LEFT JOIN companies c ON c.id = a.company_id AND c.tenant_id = a.tenant_id \
             LEFT JOIN role_bindings b ON {}",
            asked(1),
            held_bindings!()
        )
    });
    TEXT.as_str()
}

/// A binding as checks use it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HeldBinding {
    pub id: Uuid,
    pub role_id: Uuid,
    pub company_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A user's unexpired bindings in a scope, read at (at least) `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserBindings {
    /// The tenant's RBAC version, read in the same statement.
    pub version: i64,
    pub user_active: bool,
    /// Whether the company the scope names is one of the tenant's.
    pub company_found: bool,
    pub bindings: Vec<HeldBinding>,
}

/// The roles a user holds in a scope, read as one row at (at least)
/// `version`: what checks compile from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRoles {
    pub version: i64,
    pub user_active: bool,
    pub company_found: bool,
    /// Roles of unexpired bindings, unsorted, maybe repeated.
    pub role_ids: Vec<Uuid>,
    /// When the first of those bindings expires.
    pub valid_until: Option<DateTime<Utc>>,
}
