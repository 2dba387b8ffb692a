//! Declared permissions: each module declares those of its namespace, the
//! core declares `plinth:` at start-up. Checks and role grants may name only
//! what is declared, so typos surface. Declarations are never withdrawn,
//! so what this replica has seen declared stays true.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use foldhash::fast::RandomState;
use plinth_platform::{
    audit::{Actor, AuditDraft},
    clock,
    error::ApiError,
    identity::Principal,
    permission::{self, CORE_NAMESPACE, Grant, is_reserved_namespace},
    store::{
        Store,
        permissions::{self as declared, PermissionFilter, PermissionRecord},
    },
};

use super::Rbac;
use crate::{
    access::Scope,
    permissions::{self, PERMISSION_READ, PERMISSION_REGISTER},
};

/// Names (and wildcard prefixes) seen declared; past this many, forgotten.
const MAX_REMEMBERED: usize = 200_000;

/// A permission a module declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub name: String,
    pub description: String,
}

/// A page of declared permissions.
#[derive(Debug, Clone)]
pub struct PermissionListing {
    pub filter: PermissionFilter,
    pub size: i64,
}

/// What this replica knows to be declared.
pub struct Declarations {
    store: Store,
    seen: RwLock<HashSet<Arc<str>, RandomState>>,
}

impl Declarations {
    pub fn new(store: Store) -> Declarations {
        Declarations {
            store,
            seen: RwLock::default(),
        }
    }

    /// Declares the core's own permissions where they are missing or
    /// described otherwise (at start-up; replicas racing write the same).
    pub async fn declare_core(&self) -> Result<(), ApiError> {
        let filter = PermissionFilter {
            module_id: Some(CORE_NAMESPACE.to_owned()),
            ..PermissionFilter::default()
        };
        let stored = self
            .store
            .permissions
            .list_permissions(&filter, 10_000)
            .await?;
        let up_to_date = permissions::ALL.iter().all(|permission| {
            stored.iter().any(|record| {
                record.name == permission.name && record.description == permission.description
            })
        });
        if up_to_date {
            return Ok(());
        }
        let now = clock::now();
        let records: Vec<PermissionRecord> = permissions::ALL
            .iter()
            .map(|permission| PermissionRecord {
                name: permission.name.to_owned(),
                module_id: CORE_NAMESPACE.to_owned(),
                description: permission.description.to_owned(),
                created_at: now,
            })
            .collect();
        let event = declared_event(Actor::default(), "", CORE_NAMESPACE, &records);
        let mut tx = self.store.begin().await?;
        declared::declare(&mut tx, &records, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Refuses a permission (for a check) that no module declared.
    pub async fn ensure_declared(&self, permission: &str) -> Result<(), ApiError> {
        if self.remembers(permission) {
            return Ok(());
        }
        if self.store.permissions.is_declared(permission).await? {
            self.remember(permission);
            return Ok(());
        }
        Err(ApiError::UnknownPermission {
            permission: permission.to_owned(),
        })
    }

    /// Refuses role grants that name an undeclared permission, or a
    /// wildcard over a namespace (or resource) where nothing is declared.
    pub async fn ensure_grantable(&self, grants: &[String]) -> Result<(), ApiError> {
        for text in grants {
            match Grant::parse(text) {
                Ok(Grant::Permission(name)) => self.ensure_declared(name).await?,
                Ok(Grant::Prefix(prefix)) => {
                    if !self.remembers(prefix)
                        && !self.store.permissions.any_declared_under(prefix).await?
                    {
                        return Err(ApiError::UnknownPermission {
                            permission: text.clone(),
                        });
                    }
                    self.remember(prefix);
                }
                Ok(Grant::Everything) => {}
                Err(problem) => return Err(ApiError::invalid_field("permissions", problem)),
            }
        }
        Ok(())
    }

    fn remembers(&self, name: &str) -> bool {
        self.seen
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(name)
    }

    fn remember(&self, name: &str) {
        let mut seen = self
            .seen
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(Arc::from(name));
    }
}

fn declared_event(
    actor: Actor,
    request_id: &str,
    module_id: &str,
    records: &[PermissionRecord],
) -> AuditDraft {
    AuditDraft::new(actor, "rbac.permissions.declared", "module", module_id)
        .in_tenant(None)
        .with_request_id(request_id)
        .with_details(serde_json::json!({
            "permissions": records.iter().map(|record| &record.name).collect::<Vec<_>>(),
        }))
}

impl Rbac {
    /// Declares permissions of `module_id` (every name already checked to
    /// lie in its namespace).
    pub async fn register_permissions(
        &self,
        principal: &Principal,
        module_id: String,
        declarations: Vec<Declaration>,
    ) -> Result<Vec<PermissionRecord>, ApiError> {
        if is_reserved_namespace(&module_id) {
            return Err(ApiError::ReservedNamespace { module_id });
        }
        match principal.module_id() {
            Some(own) if own == module_id => {}
            Some(_) => return Err(ApiError::NamespaceViolation { module_id }),
            None => {
                self.access
                    .require(principal, PERMISSION_REGISTER, Scope::platform())
                    .await?;
            }
        }
        let now = clock::now();
        let records: Vec<PermissionRecord> = declarations
            .into_iter()
            .map(|declaration| PermissionRecord {
                name: declaration.name,
                module_id: module_id.clone(),
                description: declaration.description,
                created_at: now,
            })
            .collect();
        let event = declared_event(
            principal.actor(),
            &principal.request_id,
            &module_id,
            &records,
        );
        let mut tx = self.store.begin().await?;
        let stored = permission::declare(&mut tx, &module_id, &records, event).await?;
        tx.commit().await?;
        for record in &stored {
            self.declarations.remember(&record.name);
        }
        Ok(stored)
    }

    pub async fn list_permissions(
        &self,
        principal: &Principal,
        listing: PermissionListing,
    ) -> Result<(Vec<PermissionRecord>, Option<String>), ApiError> {
        self.access
            .require(
                principal,
                PERMISSION_READ,
                Scope::tenant_or_platform(principal.tenant_scope()),
            )
            .await?;
        let mut rows = self
            .store
            .permissions
            .list_permissions(&listing.filter, listing.size + 1)
            .await?;
        let more = rows.len() as i64 > listing.size;
        rows.truncate(listing.size as usize);
        let next = more
            .then(|| rows.last().map(|last| last.name.clone()))
            .flatten();
        Ok((rows, next))
    }
}
