//! The RBAC writers: functions over a transaction, each bumping the
//! tenant's RBAC version through [`bump_version`] once per change.

use uuid::Uuid;

use super::{RoleBinding, RoleRecord, TENANT_ADMIN_ROLE, attach};
use crate::{
    audit::AuditDraft,
    store::{StoreError, Tx, audit_log, audited, in_tx},
};

/// Every role of the tenant, read inside the writer's transaction (the
/// tenant locked, so the graph holds until commit).
pub async fn tenant_roles(tx: &mut Tx, tenant_id: Uuid) -> Result<Vec<RoleRecord>, StoreError> {
    Ok(in_tx!(tx, connection => {
        load_roles!(&mut *connection, "r.tenant_id = $1", tenant_id)
    }))
}

/// A binding, read inside the writer's transaction.
pub async fn binding(tx: &mut Tx, id: Uuid) -> Result<Option<RoleBinding>, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query_as(concat!("SELECT ", binding_columns!(), " FROM role_bindings WHERE id = $1"))
            .bind(id)
            .fetch_optional(connection)
            .await?
    }))
}

/// Bumps the tenant's RBAC version; every RBAC writer calls it once, in the
/// transaction of its change.
pub async fn bump_version(tx: &mut Tx, tenant_id: Uuid) -> Result<i64, StoreError> {
    let version: Option<i64> = in_tx!(tx, connection => {
        sqlx::query_scalar(
            "UPDATE tenants SET rbac_version = rbac_version + 1 WHERE id = $1 RETURNING rbac_version",
        )
        .bind(tenant_id)
        .fetch_optional(connection)
        .await?
    });
    version.ok_or(StoreError::NotFound)
}

/// Active users of the tenant holding its tenant-admin role tenant-wide
/// without expiry, other than through `except_binding` and other than
/// `except_user`: who would be left to administer it.
pub async fn count_permanent_admins(
    tx: &mut Tx,
    tenant_id: Uuid,
    except_binding: Option<Uuid>,
    except_user: Option<Uuid>,
) -> Result<i64, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT b.user_id) FROM role_bindings b \
             JOIN roles r ON r.id = b.role_id JOIN users u ON u.id = b.user_id \
             WHERE b.tenant_id = $1 AND r.system AND r.key = $2 AND b.company_id IS NULL \
             AND b.expires_at IS NULL AND u.status = 'active' \
             AND ($3 IS NULL OR b.id <> $3) AND ($4 IS NULL OR b.user_id <> $4)",
        )
        .bind(tenant_id)
        .bind(TENANT_ADMIN_ROLE)
        .bind(except_binding)
        .bind(except_user)
        .fetch_one(connection)
        .await?
    }))
}

/// How many bindings the user has, expired ones included.
pub async fn count_user_bindings(tx: &mut Tx, user_id: Uuid) -> Result<i64, StoreError> {
    Ok(in_tx!(tx, connection => {
        sqlx::query_scalar("SELECT COUNT(*) FROM role_bindings WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(connection)
            .await?
    }))
}

pub async fn insert_role(
    tx: &mut Tx,
    role: &RoleRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(
            "INSERT INTO roles (id, tenant_id, key, display_name, description, system, etag, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(role.id)
        .bind(role.tenant_id)
        .bind(&role.key)
        .bind(&role.display_name)
        .bind(&role.description)
        .bind(role.system)
        .bind(&role.etag)
        .bind(role.created_at)
        .bind(role.updated_at)
        .execute(&mut *connection)
        .await?;
    });
    write_grants_and_parents(tx, role).await?;
    audit_log::append(tx, audit).await?;
    Ok(())
}

/// Writes name, description and etag, and replaces grants and parents.
pub async fn update_role(
    tx: &mut Tx,
    role: &RoleRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        let changed = sqlx::query(
            "UPDATE roles SET display_name = $2, description = $3, etag = $4, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(role.id)
        .bind(&role.display_name)
        .bind(&role.description)
        .bind(&role.etag)
        .bind(role.updated_at)
        .execute(&mut *connection)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM role_permissions WHERE role_id = $1")
            .bind(role.id)
            .execute(&mut *connection)
            .await?;
        sqlx::query("DELETE FROM role_parents WHERE role_id = $1")
            .bind(role.id)
            .execute(&mut *connection)
            .await?;
        changed
    });
    write_grants_and_parents(tx, role).await?;
    audited(tx, changed, audit).await
}

async fn write_grants_and_parents(tx: &mut Tx, role: &RoleRecord) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        for permission in &role.permissions {
            sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                .bind(role.id)
                .bind(permission)
                .execute(&mut *connection)
                .await?;
        }
        for parent_id in &role.parent_role_ids {
            sqlx::query(
                "INSERT INTO role_parents (tenant_id, role_id, parent_role_id) VALUES ($1, $2, $3)",
            )
            .bind(role.tenant_id)
            .bind(role.id)
            .bind(parent_id)
            .execute(&mut *connection)
            .await?;
        }
    });
    Ok(())
}

/// Deletes a role; its grants, its bindings and its place as a parent go
/// with it.
pub async fn delete_role(tx: &mut Tx, id: Uuid, audit: AuditDraft) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(id)
            .execute(connection)
            .await?
            .rows_affected()
    });
    audited(tx, changed, audit).await
}

pub async fn bind(tx: &mut Tx, binding: &RoleBinding, audit: AuditDraft) -> Result<(), StoreError> {
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO role_bindings (", binding_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(binding.id)
        .bind(binding.tenant_id)
        .bind(binding.user_id)
        .bind(binding.role_id)
        .bind(binding.company_id)
        .bind(binding.created_at)
        .bind(binding.expires_at)
        .execute(connection)
        .await?;
    });
    audit_log::append(tx, audit).await?;
    Ok(())
}

pub async fn unbind(tx: &mut Tx, id: Uuid, audit: AuditDraft) -> Result<(), StoreError> {
    let changed = in_tx!(tx, connection => {
        sqlx::query("DELETE FROM role_bindings WHERE id = $1")
            .bind(id)
            .execute(connection)
            .await?
            .rows_affected()
    });
    audited(tx, changed, audit).await
}
