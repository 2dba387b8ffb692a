//! The module catalog: modules, their immutable versions (each manifest
//! kept as the encoded `ModuleManifest`, with its digest) and the
//! dependencies each version declares, which the catalog's graph checks
//! read.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::{SqlStore, StoreError, Tx, in_tx, stored_enum};
use crate::audit::AuditDraft;

stored_enum! {
    /// Whether tenants can get a module.
    pub enum ModuleStatus {
        Inactive => "inactive",
        Active => "active",
    }
}

/// A module of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModuleRecord {
    pub module_id: String,
    pub display_name: String,
    pub description: String,
    /// A slug, or empty.
    pub category: String,
    #[sqlx(try_from = "String")]
    pub status: ModuleStatus,
    /// The version tenants get; `None` until a version is activated.
    pub active_version: Option<String>,
    /// The highest registered version (by semver precedence).
    pub latest_version: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set by a (soft) delete; a deleted module is out of every listing.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One registered version of a module.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModuleVersionRecord {
    pub module_id: String,
    pub version: String,
    /// The `ModuleManifest` message, protobuf-encoded.
    pub manifest: Vec<u8>,
    /// SHA-256 (hex) of `manifest`: the same version with another digest is
    /// another manifest, which immutability refuses.
    pub digest: String,
    pub registered_at: DateTime<Utc>,
}

/// A dependency a module version declares.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DependencyRecord {
    pub module_id: String,
    pub version: String,
    pub depends_on: String,
    /// A semver requirement.
    pub requirement: String,
    pub optional: bool,
}

/// Optional filters of a module listing, and where the page starts.
#[derive(Debug, Clone, Default)]
pub struct ModuleFilter {
    pub status: Option<ModuleStatus>,
    pub category: Option<String>,
    /// Matched, case-insensitively, inside the id, display name or
    /// description.
    pub text: Option<String>,
    /// Module ids after this one.
    pub after: Option<String>,
}

/// Where a page of versions starts: after this (registered_at, version).
pub type VersionCursor = (DateTime<Utc>, String);

/// Reads the catalog.
#[async_trait::async_trait]
pub trait ModuleStore: Send + Sync {
    /// A module, deleted or not.
    async fn module(&self, module_id: &str) -> Result<Option<ModuleRecord>, StoreError>;

    /// Modules not deleted, by id.
    async fn list_modules(
        &self,
        filter: &ModuleFilter,
        limit: i64,
    ) -> Result<Vec<ModuleRecord>, StoreError>;

    async fn version(
        &self,
        module_id: &str,
        version: &str,
    ) -> Result<Option<ModuleVersionRecord>, StoreError>;

    /// A module's versions, newest registration first.
    async fn list_versions(
        &self,
        module_id: &str,
        before: Option<VersionCursor>,
        limit: i64,
    ) -> Result<Vec<ModuleVersionRecord>, StoreError>;

    /// Every registered version number of a module not deleted.
    async fn version_numbers(&self, module_id: &str) -> Result<Vec<String>, StoreError>;

    /// What the current version (the active one, else the latest) of every
    /// module not deleted depends on: the graph the catalog keeps acyclic.
    async fn current_dependencies(&self) -> Result<Vec<DependencyRecord>, StoreError>;
}

macro_rules! module_columns {
    () => {
        "module_id, display_name, description, category, status, active_version, \
         latest_version, created_at, updated_at, deleted_at"
    };
}

macro_rules! version_columns {
    () => {
        "module_id, version, manifest, digest, registered_at"
    };
}

/// Writes a module: added when `first`, else every field but its id
/// replaced. The rows written.
async fn write_module(tx: &mut Tx, module: &ModuleRecord, first: bool) -> Result<u64, StoreError> {
    let sql = if first {
        concat!(
            "INSERT INTO modules (",
            module_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
    } else {
        "UPDATE modules SET display_name = $2, description = $3, category = $4, \
         status = $5, active_version = $6, latest_version = $7, created_at = $8, \
         updated_at = $9, deleted_at = $10 WHERE module_id = $1"
    };
    Ok(in_tx!(tx, connection => {
        sqlx::query(sql)
            .bind(&module.module_id)
            .bind(&module.display_name)
            .bind(&module.description)
            .bind(&module.category)
            .bind(module.status.as_str())
            .bind(&module.active_version)
            .bind(&module.latest_version)
            .bind(module.created_at)
            .bind(module.updated_at)
            .bind(module.deleted_at)
            .execute(connection)
            .await?
            .rows_affected()
    }))
}

/// Writes everything of an existing module but its id.
pub async fn update_module(
    tx: &mut Tx,
    module: &ModuleRecord,
    audit: AuditDraft,
) -> Result<(), StoreError> {
    let changed = write_module(tx, module, false).await?;
    super::audited(tx, changed, audit).await
}

/// Registers a version with its dependencies, and writes its module: added
/// when `first`, else updated (the latest version, maybe metadata). A
/// version already registered is a conflict: versions never change.
pub async fn register_version(
    tx: &mut Tx,
    module: &ModuleRecord,
    first: bool,
    version: &ModuleVersionRecord,
    dependencies: &[DependencyRecord],
    audit: AuditDraft,
) -> Result<(), StoreError> {
    write_module(tx, module, first).await?;
    in_tx!(tx, connection => {
        sqlx::query(concat!(
            "INSERT INTO module_versions (",
            version_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&version.module_id)
        .bind(&version.version)
        .bind(&version.manifest)
        .bind(&version.digest)
        .bind(version.registered_at)
        .execute(&mut *connection)
        .await?;
        for dependency in dependencies {
            sqlx::query(
                "INSERT INTO module_dependencies \
                 (module_id, version, depends_on, requirement, optional) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&dependency.module_id)
            .bind(&dependency.version)
            .bind(&dependency.depends_on)
            .bind(&dependency.requirement)
            .bind(dependency.optional)
            .execute(&mut *connection)
            .await?;
        }
    });
    super::audit_log::append(tx, audit).await?;
    Ok(())
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards escaped
/// (with `\`).
fn containing(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for character in text.to_lowercase().chars() {
        if matches!(character, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

macro_rules! impl_module_store {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl ModuleStore for SqlStore<$db> {
            async fn module(&self, module_id: &str) -> Result<Option<ModuleRecord>, StoreError> {
                self.row_where(
                    concat!("SELECT ", module_columns!(), " FROM modules WHERE module_id = $1"),
                    module_id,
                )
                .await
            }

            async fn list_modules(
                &self,
                filter: &ModuleFilter,
                limit: i64,
            ) -> Result<Vec<ModuleRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    module_columns!(),
                    " FROM modules WHERE deleted_at IS NULL \
                     AND ($1 IS NULL OR status = $1) AND ($2 IS NULL OR category = $2) \
                     AND ($3 IS NULL OR lower(module_id) LIKE $3 ESCAPE '\\' \
                          OR lower(display_name) LIKE $3 ESCAPE '\\' \
                          OR lower(description) LIKE $3 ESCAPE '\\') \
                     AND ($4 IS NULL OR module_id > $4) ORDER BY module_id LIMIT $5"
                ))
                .bind(filter.status.map(ModuleStatus::as_str))
                .bind(&filter.category)
                .bind(filter.text.as_deref().map(containing))
                .bind(&filter.after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn version(
                &self,
                module_id: &str,
                version: &str,
            ) -> Result<Option<ModuleVersionRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    version_columns!(),
                    " FROM module_versions WHERE module_id = $1 AND version = $2"
                ))
                .bind(module_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_versions(
                &self,
                module_id: &str,
                before: Option<VersionCursor>,
                limit: i64,
            ) -> Result<Vec<ModuleVersionRecord>, StoreError> {
                let (before_time, before_version) = before.unzip();
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    version_columns!(),
                    " FROM module_versions WHERE module_id = $1 \
                     AND ($2 IS NULL OR registered_at < $2 \
                          OR (registered_at = $2 AND version < $3)) \
                     ORDER BY registered_at DESC, version DESC LIMIT $4"
                ))
                .bind(module_id)
                .bind(before_time)
                .bind(before_version)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn version_numbers(&self, module_id: &str) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT v.version FROM module_versions v \
                     JOIN modules m ON m.module_id = v.module_id \
                     WHERE v.module_id = $1 AND m.deleted_at IS NULL ORDER BY v.version",
                )
                .bind(module_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn current_dependencies(&self) -> Result<Vec<DependencyRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT d.module_id, d.version, d.depends_on, d.requirement, d.optional \
                     FROM module_dependencies d JOIN modules m ON m.module_id = d.module_id \
                     AND d.version = COALESCE(m.active_version, m.latest_version) \
                     WHERE m.deleted_at IS NULL ORDER BY d.module_id, d.depends_on",
                )
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
impl_module_store!(Postgres);
impl_module_store!(Sqlite);
