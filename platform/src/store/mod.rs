//! Storage: one narrow trait per aggregate, implemented once in SQL for both
//! backends (PostgreSQL for production, SQLite for the embedded default).
//!
//! Each aggregate module writes its SQL a single time: reads inside a macro
//! instantiated for `SqlStore<Postgres>` and `SqlStore<Sqlite>`, writes as
//! functions over a [`Tx`] whose body [`in_tx!`] compiles for both, so the two
//! backends cannot drift apart. Every write takes the audit event that
//! records it and appends it in the same transaction (see [`audit_log`]);
//! several writes, of several aggregates, compose in one [`Tx`].

pub mod api_keys;
pub mod audit_log;
pub mod companies;
pub mod instances;
pub mod module_callbacks;
pub mod module_configs;
pub mod modules;
pub mod permissions;
pub mod rbac;
pub mod sessions;
pub mod signing_keys;
pub mod templates;
pub mod tenant_modules;
pub mod tenants;
mod tx;
pub mod users;

use std::{str::FromStr, sync::Arc, time::Duration};

use tokio::sync::{Semaphore, watch};

use sqlx::{
    Database, Pool, Postgres, Sqlite,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use api_keys::{ApiKeyFilter, ApiKeyRecord, ApiKeyStore};
pub use audit_log::AuditLog;
pub use companies::CompanyStore;
pub use instances::InstanceStore;
pub use module_callbacks::CallbackStore;
pub use module_configs::ModuleConfigStore;
pub use modules::ModuleStore;
pub use permissions::PermissionStore;
pub use rbac::RbacStore;
pub use sessions::SessionStore;
pub use signing_keys::SigningKeyStore;
pub use templates::TemplateStore;
pub use tenant_modules::TenantModuleStore;
pub use tenants::TenantStore;
pub use tx::{Tx, TxConnection};
pub use users::UserStore;

pub(crate) use tx::in_tx;
use tx::{audited, audited_row};

/// A keyset page: rows after `after` (ids are UUIDv7, so creation order),
/// at most `limit` of them.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub after: Option<uuid::Uuid>,
    pub limit: i64,
}

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a caller waits for a pooled connection before the store reports
/// itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a SQLite writer waits for the one before it.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A kind of row that other rows refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Tenant,
    Company,
    User,
    Role,
    Session,
    /// A reference the database did not name (SQLite reports none).
    Unnamed,
}

impl Reference {
    /// The `resource_type` the API reports for a missing row of this kind.
    pub fn resource_type(self) -> &'static str {
        match self {
            Reference::Tenant => "tenant",
            Reference::Company => "company",
            Reference::User => "user",
            Reference::Role => "role",
            Reference::Session => "session",
            Reference::Unnamed => "resource",
        }
    }

    /// From a PostgreSQL foreign-key constraint name (`<table>_<column>_fkey`).
    fn of_constraint(constraint: &str) -> Reference {
        let column = constraint.strip_suffix("_fkey").unwrap_or(constraint);
        [
            ("tenant_id", Reference::Tenant),
            ("company_id", Reference::Company),
            ("user_id", Reference::User),
            ("role_id", Reference::Role),
            ("session_id", Reference::Session),
        ]
        .into_iter()
        .find_map(|(suffix, reference)| column.ends_with(suffix).then_some(reference))
        .unwrap_or(Reference::Unnamed)
    }
}

/// Why a store call failed, classified so callers never see SQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflicts with an existing row")]
    Conflict,
    #[error("refers to a missing {}", .0.resource_type())]
    MissingReference(Reference),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(database_error) => match database_error.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict,
                ErrorKind::ForeignKeyViolation => StoreError::MissingReference(
                    database_error
                        .constraint()
                        .map_or(Reference::Unnamed, Reference::of_constraint),
                ),
                _ => StoreError::Internal(Box::new(error)),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            _ => StoreError::Internal(Box::new(error)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Internal(Box::new(error))
    }
}

/// An enum stored as lowercase text: its variants, their texts, and the
/// conversion that reading a row uses (an unknown text is corrupt data).
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::store::StoreError;

            fn try_from(text: String) -> Result<$name, $crate::store::StoreError> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| {
                        $crate::store::StoreError::Internal(
                            format!(concat!("unknown ", stringify!($name), " {:?}"), text).into(),
                        )
                    })
            }
        }
    };
}
use stored_enum;

/// A SQL backend's pool.
struct SqlStore<DB: Database> {
    pool: Pool<DB>,
}

/// What a tenant has a limited number of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRows {
    Users,
    Companies,
}

/// How many the tenant has, for its limits (lock the tenant first, see
/// [`tenants::lock`], so that the count holds until commit).
pub async fn count_in_tenant(
    tx: &mut Tx,
    rows: TenantRows,
    tenant_id: uuid::Uuid,
) -> Result<i64, StoreError> {
    let sql = match rows {
        TenantRows::Users => "SELECT COUNT(*) FROM users WHERE tenant_id = $1",
        TenantRows::Companies => "SELECT COUNT(*) FROM companies WHERE tenant_id = $1",
    };
    Ok(in_tx!(tx, connection => {
        sqlx::query_scalar(sql).bind(tenant_id).fetch_one(connection).await?
    }))
}

/// The schema and liveness of the database, and its write transactions.
#[async_trait::async_trait]
trait StoreAdmin: Send + Sync {
    async fn migrate(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn begin(&self) -> Result<TxConnection, StoreError>;
    fn connections(&self) -> Connections;
}

/// The database pool's connections now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

macro_rules! impl_store_admin {
    ($db:ident, $migrator:expr, $begin:literal) => {
        #[async_trait::async_trait]
        impl StoreAdmin for SqlStore<$db> {
            async fn migrate(&self) -> Result<(), StoreError> {
                $migrator
                    .run(&self.pool)
                    .await
                    .map_err(|error| StoreError::Internal(Box::new(error)))
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn begin(&self) -> Result<TxConnection, StoreError> {
                Ok(TxConnection::$db(self.pool.begin_with($begin).await?))
            }

            fn connections(&self) -> Connections {
                let (size, idle) = (self.pool.size(), self.pool.num_idle() as u32);
                Connections {
                    idle,
                    in_use: size.saturating_sub(idle),
                    max: self.pool.options().get_max_connections(),
                }
            }
        }

        impl SqlStore<$db> {
            /// The row `sql` selects by its one parameter, if any.
            async fn row_where<Row, Key>(
                &self,
                sql: &'static str,
                key: Key,
            ) -> Result<Option<Row>, StoreError>
            where
                Row: for<'r> sqlx::FromRow<'r, <$db as Database>::Row> + Send + Unpin,
                Key: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send,
            {
                Ok(sqlx::query_as(sql)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}
impl_store_admin!(Postgres, POSTGRES_MIGRATIONS, "BEGIN");
// SQLite takes its write lock up front, so concurrent writers queue on
// `busy_timeout` instead of failing to upgrade a read lock.
impl_store_admin!(Sqlite, SQLITE_MIGRATIONS, "BEGIN IMMEDIATE");

/// Which database holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Every aggregate's store over one backend.
#[derive(Clone)]
pub struct Store {
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub audit: Arc<dyn AuditLog>,
    pub tenants: Arc<dyn TenantStore>,
    pub companies: Arc<dyn CompanyStore>,
    pub users: Arc<dyn UserStore>,
    pub rbac: Arc<dyn RbacStore>,
    pub permissions: Arc<dyn PermissionStore>,
    pub modules: Arc<dyn ModuleStore>,
    pub instances: Arc<dyn InstanceStore>,
    pub tenant_modules: Arc<dyn TenantModuleStore>,
    pub module_configs: Arc<dyn ModuleConfigStore>,
    pub callbacks: Arc<dyn CallbackStore>,
    pub templates: Arc<dyn TemplateStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub signing_keys: Arc<dyn SigningKeyStore>,
    admin: Arc<dyn StoreAdmin>,
    backend: Backend,
    audit_news: Arc<watch::Sender<i64>>,
    /// SQLite takes one writer at a time: queueing them here, in order,
    /// beats each polling the database's lock with growing sleeps.
    sqlite_writer: Option<Arc<Semaphore>>,
}

impl Store {
    /// Connects to `postgres://…` or `sqlite://path` and applies pending
    /// migrations.
    pub async fn open(database_url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let store = Store::connect(database_url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (for `core-server migrate` and health).
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Store, StoreError> {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(database_url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            Ok(Store::from_sql(SqlStore { pool }, Backend::Postgres))
        } else if database_url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(database_url)?
                .create_if_missing(true)
                .foreign_keys(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            // A local file does not drop connections: the ping before each
            // acquire would only double the cost of every query.
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Ok(Store::from_sql(SqlStore { pool }, Backend::Sqlite))
        } else {
            Err(StoreError::Internal(
                "database url must start with postgres:// or sqlite:".into(),
            ))
        }
    }

    fn from_sql<DB: Database>(sql: SqlStore<DB>, backend: Backend) -> Store
    where
        SqlStore<DB>: ApiKeyStore
            + AuditLog
            + TenantStore
            + CompanyStore
            + UserStore
            + RbacStore
            + PermissionStore
            + ModuleStore
            + InstanceStore
            + TenantModuleStore
            + ModuleConfigStore
            + CallbackStore
            + TemplateStore
            + SessionStore
            + SigningKeyStore
            + StoreAdmin
            + 'static,
    {
        let sql = Arc::new(sql);
        Store {
            api_keys: sql.clone(),
            audit: sql.clone(),
            tenants: sql.clone(),
            companies: sql.clone(),
            users: sql.clone(),
            rbac: sql.clone(),
            permissions: sql.clone(),
            modules: sql.clone(),
            instances: sql.clone(),
            tenant_modules: sql.clone(),
            module_configs: sql.clone(),
            callbacks: sql.clone(),
            templates: sql.clone(),
            sessions: sql.clone(),
            signing_keys: sql.clone(),
            admin: sql,
            backend,
            audit_news: Arc::new(watch::channel(0).0),
            sqlite_writer: (backend == Backend::Sqlite).then(|| Arc::new(Semaphore::new(1))),
        }
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.admin.migrate().await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.admin.ping().await
    }

    /// Opens a write transaction for the writers of any aggregate.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let writer = match &self.sqlite_writer {
            // As long as SQLite's own busy timeout would have waited; then
            // the answer of a pool with no connection to give.
            Some(writer) => {
                let queued =
                    tokio::time::timeout(SQLITE_BUSY_TIMEOUT, writer.clone().acquire_owned()).await;
                match queued {
                    Ok(Ok(permit)) => Some(permit),
                    Ok(Err(_)) | Err(_) => {
                        return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut));
                    }
                }
            }
            None => None,
        };
        Ok(Tx::new(
            self.admin.begin().await?,
            self.audit_news.clone(),
            writer,
        ))
    }

    /// The last audit feed position this replica committed; changes on
    /// each commit that appended audit events.
    pub fn audit_news(&self) -> watch::Receiver<i64> {
        self.audit_news.subscribe()
    }

    /// The database pool's connections now.
    pub fn connections(&self) -> Connections {
        self.admin.connections()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}
