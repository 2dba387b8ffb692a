//! The module catalog: versions registered from manifests (with the
//! permissions they declare, in one transaction) under the rules the
//! catalog adds to a manifest's own, their lifecycle, and reading modules
//! and versions.

mod lifecycle;
mod register;

use std::sync::Arc;

use plinth_api::{prost::Message, registry::v1::ModuleManifest};
use plinth_platform::{
    access::{Access, Scope},
    error::ApiError,
    identity::{Principal, PrincipalKind},
    invalidation::Invalidator,
    permission::catalog::MODULE_MANAGE,
    store::{
        Store,
        modules::{ModuleFilter, ModuleRecord, ModuleVersionRecord, VersionCursor},
    },
};

pub use lifecycle::ModuleChanges;
pub use register::Registered;

/// A module with the manifest of its current version.
pub struct ModuleView {
    pub module: ModuleRecord,
    pub manifest: ModuleManifest,
}

pub struct Catalog {
    store: Store,
    access: Access,
    invalidator: Arc<Invalidator>,
}

impl Catalog {
    pub fn new(store: Store, access: Access, invalidator: Arc<Invalidator>) -> Catalog {
        Catalog {
            store,
            access,
            invalidator,
        }
    }

    /// A module key acts for its own module only (publishing its versions,
    /// running its instances); others need `plinth:module:manage`.
    pub(crate) async fn may_act_for(
        &self,
        principal: &Principal,
        module_id: &str,
    ) -> Result<(), ApiError> {
        match principal.module_id() {
            Some(own) if own == module_id => Ok(()),
            Some(_) => Err(ApiError::NamespaceViolation {
                module_id: module_id.to_owned(),
            }),
            None => self.require_manage(principal).await,
        }
    }

    /// A registered version of a module not deleted.
    pub(crate) async fn registered_version(
        &self,
        module_id: &str,
        version: &str,
    ) -> Result<ModuleVersionRecord, ApiError> {
        let module_exists = self
            .store
            .modules
            .module(module_id)
            .await?
            .is_some_and(|module| module.deleted_at.is_none());
        let version = match module_exists {
            true => self.store.modules.version(module_id, version).await?,
            false => None,
        };
        version.ok_or(ApiError::NotFound {
            resource_type: "module version",
        })
    }

    /// Managing the catalog needs `plinth:module:manage` platform-wide.
    async fn require_manage(&self, principal: &Principal) -> Result<(), ApiError> {
        self.access
            .require(principal, MODULE_MANAGE, Scope::platform())
            .await
    }

    /// A module (not deleted) with its current version's manifest.
    pub async fn module(
        &self,
        principal: &Principal,
        module_id: &str,
    ) -> Result<ModuleView, ApiError> {
        authenticated(principal)?;
        let module = self.current(module_id).await?;
        let current = module
            .active_version
            .as_deref()
            .unwrap_or(&module.latest_version);
        let version = self
            .store
            .modules
            .version(module_id, current)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "module version",
            })?;
        Ok(ModuleView {
            manifest: decode(&version)?,
            module,
        })
    }

    /// A page of a module's versions, newest registration first, and
    /// whether more follow.
    pub async fn versions(
        &self,
        principal: &Principal,
        module_id: &str,
        before: Option<VersionCursor>,
        size: i64,
    ) -> Result<(Vec<(ModuleVersionRecord, ModuleManifest)>, bool), ApiError> {
        self.module(principal, module_id).await?;
        let mut rows = self
            .store
            .modules
            .list_versions(module_id, before, size + 1)
            .await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let versions = rows
            .into_iter()
            .map(|version| decode(&version).map(|manifest| (version, manifest)))
            .collect::<Result<_, _>>()?;
        Ok((versions, more))
    }

    /// A page of modules (not deleted) by id, and whether more follow.
    pub async fn list(
        &self,
        principal: &Principal,
        filter: ModuleFilter,
        size: i64,
    ) -> Result<(Vec<ModuleRecord>, bool), ApiError> {
        authenticated(principal)?;
        let mut rows = self.store.modules.list_modules(&filter, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        Ok((rows, more))
    }
}

fn decode(version: &ModuleVersionRecord) -> Result<ModuleManifest, ApiError> {
    ModuleManifest::decode(version.manifest.as_slice())
        .map_err(|error| ApiError::Internal(Box::new(error)))
}

pub(crate) fn authenticated(principal: &Principal) -> Result<(), ApiError> {
    if principal.kind() == PrincipalKind::Anonymous {
        return Err(ApiError::Unauthenticated);
    }
    Ok(())
}
