//! Roles: a DAG per tenant, each role granting permissions directly and
//! through its ancestors. Nobody creates or changes a role that grants
//! more than they hold; system roles keep their grants.

use plinth_api::registry::v1::ManifestRole;
use plinth_platform::{
    clock,
    error::ApiError,
    identity::Principal,
    store::{
        StoreError, Tx,
        rbac::{self, RoleBinding, RoleRecord, TENANT_ADMIN_ROLE},
        tenants::TenantRecord,
    },
};
use uuid::Uuid;

use super::{MAX_ROLES_PER_TENANT, Rbac, graph::RoleGraph, rbac_event};
use crate::{
    access::Scope,
    listing::PageRequest,
    permissions::{ROLE_CREATE, ROLE_DELETE, ROLE_READ, ROLE_UPDATE},
    tenant::lock_writable,
};

#[derive(Debug, Clone)]
pub struct NewRole {
    pub tenant_id: Uuid,
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// Valid grants, deduplicated.
    pub permissions: Vec<String>,
    pub parent_role_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct RoleChanges {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub parent_role_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone)]
pub struct RoleUpdate {
    pub id: Uuid,
    pub changes: RoleChanges,
    pub etag: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RoleKey {
    Id(Uuid),
    Key { tenant_id: Uuid, key: String },
}

#[derive(Debug, Clone)]
pub struct RoleListing {
    pub tenant_id: Uuid,
    pub page: PageRequest,
}

/// The tenant's roles as the writer's transaction sees them, and the grants
/// `role_id` would hold through them; used by binding too.
pub(super) async fn grants_of_role(
    tx: &mut Tx,
    tenant_id: Uuid,
    role_id: Uuid,
) -> Result<(RoleRecord, Vec<String>), ApiError> {
    let roles = rbac::tenant_roles(tx, tenant_id).await?;
    let graph = RoleGraph::of(&roles);
    let grants = graph
        .inherited_grants(role_id)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let role = roles
        .iter()
        .find(|role| role.id == role_id)
        .cloned()
        .ok_or(ApiError::NotFound {
            resource_type: "role",
        })?;
    Ok((role, grants))
}

fn role_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict => ApiError::AlreadyExists {
            resource_type: "role",
            field: "key",
        },
        other => other.into(),
    }
}

fn new_etag() -> String {
    Uuid::now_v7().simple().to_string()
}

/// Gives a new tenant its tenant-admin system role and, when it starts
/// with one, binds its first admin to it (permanently, tenant-wide), in the
/// transaction that creates the tenant.
pub async fn seed_tenant(
    tx: &mut Tx,
    principal: &Principal,
    tenant: &TenantRecord,
    first_admin: Option<Uuid>,
) -> Result<(), ApiError> {
    let role = RoleRecord {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        key: TENANT_ADMIN_ROLE.to_owned(),
        display_name: "Tenant administrator".to_owned(),
        description: "Holds every permission in the tenant.".to_owned(),
        system: true,
        permissions: vec!["*".to_owned()],
        parent_role_ids: Vec::new(),
        etag: new_etag(),
        created_at: tenant.created_at,
        updated_at: tenant.created_at,
    };
    let event = rbac_event(principal, "rbac.role.created", "role", role.id, tenant.id)
        .with_details(role_details(&role));
    rbac::insert_role(tx, &role, event).await?;
    if let Some(user_id) = first_admin {
        let binding = RoleBinding {
            id: Uuid::now_v7(),
            tenant_id: tenant.id,
            user_id,
            role_id: role.id,
            company_id: None,
            created_at: tenant.created_at,
            expires_at: None,
        };
        let event = rbac_event(
            principal,
            "rbac.role.bound",
            "role_binding",
            binding.id,
            tenant.id,
        )
        .with_details(serde_json::json!({
            "user_id": user_id,
            "role_id": role.id,
            "role_key": role.key,
        }));
        rbac::bind(tx, &binding, event).await?;
    }
    rbac::bump_version(tx, tenant.id).await?;
    Ok(())
}

/// Creates the roles a module suggests (its manifest's default roles) that
/// the tenant has no role of the same key for, in the transaction that
/// first enables the module there, as far as the tenant's role limit
/// allows; the tenant's new RBAC version when any was created.
pub async fn seed_module_roles(
    tx: &mut Tx,
    principal: &Principal,
    tenant_id: Uuid,
    suggested: &[ManifestRole],
) -> Result<Option<i64>, ApiError> {
    let existing = rbac::tenant_roles(tx, tenant_id).await?;
    let mut room = MAX_ROLES_PER_TENANT.saturating_sub(existing.len());
    let mut created = false;
    let now = clock::now();
    for suggestion in suggested {
        if room == 0 || existing.iter().any(|role| role.key == suggestion.key) {
            continue;
        }
        let mut permissions = suggestion.grants.clone();
        permissions.sort_unstable();
        permissions.dedup();
        let role = RoleRecord {
            id: Uuid::now_v7(),
            tenant_id,
            key: suggestion.key.clone(),
            display_name: suggestion.display_name.clone(),
            description: suggestion.description.clone(),
            system: false,
            permissions,
            parent_role_ids: Vec::new(),
            etag: new_etag(),
            created_at: now,
            updated_at: now,
        };
        let event = rbac_event(principal, "rbac.role.created", "role", role.id, tenant_id)
            .with_details(role_details(&role));
        rbac::insert_role(tx, &role, event).await?;
        room -= 1;
        created = true;
    }
    if !created {
        return Ok(None);
    }
    Ok(Some(rbac::bump_version(tx, tenant_id).await?))
}

fn role_details(role: &RoleRecord) -> serde_json::Value {
    serde_json::json!({
        "key": role.key,
        "display_name": role.display_name,
        "permissions": role.permissions,
        "parent_role_ids": role.parent_role_ids,
        "system": role.system,
    })
}

impl Rbac {
    pub async fn create_role(
        &self,
        principal: &Principal,
        new: NewRole,
    ) -> Result<(RoleRecord, String), ApiError> {
        let scope = Scope::tenant(new.tenant_id);
        self.access
            .require_visible(principal, ROLE_CREATE, scope, "tenant")
            .await?;
        self.declarations.ensure_grantable(&new.permissions).await?;
        let held = self.access.held(principal, scope).await?;
        let now = clock::now();
        let role = RoleRecord {
            id: Uuid::now_v7(),
            tenant_id: new.tenant_id,
            key: new.key,
            display_name: new.display_name,
            description: new.description,
            system: false,
            permissions: new.permissions,
            parent_role_ids: new.parent_role_ids,
            etag: new_etag(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, role.tenant_id).await?;
        let roles = rbac::tenant_roles(&mut tx, role.tenant_id).await?;
        if roles.len() >= MAX_ROLES_PER_TENANT {
            return Err(ApiError::FailedPrecondition {
                resource_type: "tenant",
                state: format!("at its limit of {MAX_ROLES_PER_TENANT} roles"),
            });
        }
        let mut graph = RoleGraph::of(&roles);
        graph.place(&role)?;
        held.forbid_escalation(graph.inherited_grants(role.id).into_iter())?;
        let event = rbac_event(
            principal,
            "rbac.role.created",
            "role",
            role.id,
            role.tenant_id,
        )
        .with_details(role_details(&role));
        rbac::insert_role(&mut tx, &role, event)
            .await
            .map_err(role_taken)?;
        let version = rbac::bump_version(&mut tx, role.tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(role.tenant_id, version).await;
        Ok((role, token))
    }

    pub async fn get_role(
        &self,
        principal: &Principal,
        key: RoleKey,
    ) -> Result<RoleRecord, ApiError> {
        let found = match &key {
            RoleKey::Id(id) => self.store.rbac.role(*id).await?,
            RoleKey::Key { tenant_id, key } => self.store.rbac.role_by_key(*tenant_id, key).await?,
        };
        let role = found.ok_or(ApiError::NotFound {
            resource_type: "role",
        })?;
        self.access
            .require_visible(principal, ROLE_READ, Scope::tenant(role.tenant_id), "role")
            .await?;
        Ok(role)
    }

    pub async fn list_roles(
        &self,
        principal: &Principal,
        listing: RoleListing,
    ) -> Result<(Vec<RoleRecord>, String), ApiError> {
        let RoleListing { tenant_id, page } = listing;
        self.access
            .require_visible(principal, ROLE_READ, Scope::tenant(tenant_id), "tenant")
            .await?;
        let roles: Vec<RoleRecord> = self
            .store
            .rbac
            .tenant_roles(tenant_id)
            .await?
            .into_iter()
            .filter(|role| page.after.is_none_or(|after| role.id > after))
            .take(page.size as usize + 1)
            .collect();
        Ok(page.finish(roles, |role| role.id))
    }

    pub async fn update_role(
        &self,
        principal: &Principal,
        update: RoleUpdate,
    ) -> Result<(RoleRecord, String), ApiError> {
        let RoleUpdate { id, changes, etag } = update;
        let current = self.visible_role(principal, id, ROLE_UPDATE).await?;
        let grants_change = changes.permissions.is_some() || changes.parent_role_ids.is_some();
        if current.system && grants_change {
            return Err(ApiError::SystemRole {
                role_key: current.key,
            });
        }
        if let Some(permissions) = &changes.permissions {
            self.declarations.ensure_grantable(permissions).await?;
        }
        let tenant_id = current.tenant_id;
        let held = self
            .access
            .held(principal, Scope::tenant(tenant_id))
            .await?;
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, tenant_id).await?;
        let roles = rbac::tenant_roles(&mut tx, tenant_id).await?;
        let mut role =
            roles
                .iter()
                .find(|role| role.id == id)
                .cloned()
                .ok_or(ApiError::NotFound {
                    resource_type: "role",
                })?;
        if let Some(expected) = etag
            && expected != role.etag
        {
            return Err(ApiError::EtagMismatch {
                resource_type: "role",
                current_etag: role.etag,
            });
        }
        if let Some(display_name) = changes.display_name {
            role.display_name = display_name;
        }
        if let Some(description) = changes.description {
            role.description = description;
        }
        if let Some(permissions) = changes.permissions {
            role.permissions = permissions;
        }
        if let Some(parent_role_ids) = changes.parent_role_ids {
            role.parent_role_ids = parent_role_ids;
        }
        role.etag = new_etag();
        role.updated_at = clock::now();
        let mut graph = RoleGraph::of(&roles);
        graph.place(&role)?;
        if grants_change {
            held.forbid_escalation(graph.inherited_grants(role.id).into_iter())?;
        }
        let event = rbac_event(principal, "rbac.role.updated", "role", id, tenant_id)
            .with_details(role_details(&role));
        rbac::update_role(&mut tx, &role, event).await?;
        let version = rbac::bump_version(&mut tx, tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(tenant_id, version).await;
        Ok((role, token))
    }

    pub async fn delete_role(&self, principal: &Principal, id: Uuid) -> Result<String, ApiError> {
        let role = self.visible_role(principal, id, ROLE_DELETE).await?;
        if role.system {
            return Err(ApiError::SystemRole { role_key: role.key });
        }
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, role.tenant_id).await?;
        let event = rbac_event(principal, "rbac.role.deleted", "role", id, role.tenant_id)
            .with_details(role_details(&role));
        rbac::delete_role(&mut tx, id, event).await?;
        let version = rbac::bump_version(&mut tx, role.tenant_id).await?;
        tx.commit().await?;
        Ok(self.committed(role.tenant_id, version).await)
    }

    /// A role the caller may act on with `permission`; NOT_FOUND otherwise,
    /// whether it exists in another tenant or nowhere.
    async fn visible_role(
        &self,
        principal: &Principal,
        id: Uuid,
        permission: crate::permissions::Permission,
    ) -> Result<RoleRecord, ApiError> {
        let role = self.store.rbac.role(id).await?.ok_or(ApiError::NotFound {
            resource_type: "role",
        })?;
        self.access
            .require_visible(principal, permission, Scope::tenant(role.tenant_id), "role")
            .await?;
        Ok(role)
    }
}
