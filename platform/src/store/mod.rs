//! Storage: one narrow trait per aggregate, implemented once in SQL for both
//! backends (PostgreSQL for production, SQLite for the embedded default).
//!
//! Each aggregate module writes its SQL a single time inside a macro that is
//! instantiated for `SqlStore<Postgres>` and `SqlStore<Sqlite>`, so the two
//! backends cannot drift apart. Every mutation takes the audit event that
//! records it and writes both in one transaction (see [`audit_log`]).

mod api_keys;
pub mod audit_log;
pub mod sessions;
pub mod signing_keys;
pub mod tenants;
pub mod users;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    Database, Pool, Postgres, Sqlite,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use api_keys::{ApiKeyFilter, ApiKeyRecord, ApiKeyStore};
pub use audit_log::AuditLog;
pub use sessions::SessionStore;
pub use signing_keys::SigningKeyStore;
pub use tenants::TenantStore;
pub use users::UserStore;

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

/// Why a store call failed, classified so callers never see SQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflicts with an existing row")]
    Conflict,
    #[error("refers to a missing row")]
    MissingReference,
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
                ErrorKind::ForeignKeyViolation => StoreError::MissingReference,
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

/// A SQL backend: the pool plus how to open a write transaction on it.
struct SqlStore<DB: Database> {
    pool: Pool<DB>,
}

/// The backend-specific parts the shared SQL needs.
trait Dialect: Database {
    /// Opens write transactions. SQLite takes its write lock up front so that
    /// concurrent writers queue on `busy_timeout` instead of failing to upgrade.
    const BEGIN_WRITE: &'static str;
}

impl Dialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
}

impl Dialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
}

impl<DB: Dialect> SqlStore<DB> {
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
        Ok(self.pool.begin_with(DB::BEGIN_WRITE).await?)
    }
}

/// The schema and liveness of the database.
#[async_trait::async_trait]
trait StoreAdmin: Send + Sync {
    async fn migrate(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
}

macro_rules! impl_store_admin {
    ($db:ty, $migrator:expr) => {
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
        }
    };
}
impl_store_admin!(Postgres, POSTGRES_MIGRATIONS);
impl_store_admin!(Sqlite, SQLITE_MIGRATIONS);

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
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub signing_keys: Arc<dyn SigningKeyStore>,
    admin: Arc<dyn StoreAdmin>,
    backend: Backend,
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
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
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
            + UserStore
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
            users: sql.clone(),
            sessions: sql.clone(),
            signing_keys: sql.clone(),
            admin: sql,
            backend,
        }
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.admin.migrate().await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.admin.ping().await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}
