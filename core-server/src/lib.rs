//! Plinth core: Auth, Rbac, Tenant (with the config resolver) and Audit, with
//! the module registry mounted in the same process.
#![forbid(unsafe_code)]

mod audit;
mod auth;
mod enablement;
mod grpc;
mod listing;
mod module_config;
mod rbac;
pub mod seed;
mod templates;
mod tenant;

pub use audit::export_chain;
/// Signing keys, for tools that mint tokens the way the server does.
pub use auth::signing::{KeyEncryptionKey, SigningKeys};

use std::{future::Future, path::Path, sync::Arc};

use plinth_api::{
    audit::v1::audit_service_server::AuditServiceServer,
    auth::v1::auth_service_server::AuthServiceServer,
    rbac::v1::rbac_service_server::RbacServiceServer,
};
use plinth_platform::{access, permission::catalog as permissions};
use plinth_platform::{
    config::Config,
    identity::api_keys::{IssuedApiKey, bootstrap_operator_key},
    node::Node,
    server::{self, ServiceSet},
    store::Store,
};
use tokio::net::TcpListener;

/// The file in the data directory that receives the first operator key.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap-api-key";

/// Calls that also serve callers without credentials.
const ANONYMOUS_METHODS: &[&str] = &[
    "/plinth.auth.v1.AuthService/Login",
    "/plinth.auth.v1.AuthService/Refresh",
    "/plinth.auth.v1.AuthService/Logout",
    "/plinth.auth.v1.AuthService/GetJwks",
    "/plinth.tenant.v1.TenantService/Signup",
];

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] plinth_platform::store::StoreError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    KeyEncryptionKey(#[from] auth::signing::KeyEncryptionKeyError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("declaring the core permissions: {0}")]
    Declare(#[from] plinth_platform::error::ApiError),
}

/// Opens (and migrates) the store, makes the first operator key if there is
/// none, and serves every core service plus the registry until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let store = open_store(&config).await?;
    let encryption = KeyEncryptionKey::load(&config, &store).await?;
    let node = Node::start(config, store).await?;
    if let Some(issued) = bootstrap_operator_key(&node.store).await? {
        announce_bootstrap_key(&node.config.data_dir, &issued)?;
    }
    let services = core_services(&node, encryption).await?;
    tracing::info!(address = ?listener.local_addr().ok(), backend = ?node.store.backend(), "core-server serving");
    node.serve(services, ANONYMOUS_METHODS, listener, shutdown)
        .await?;
    Ok(())
}

/// The domain behind each core service, wired to the node's parts.
async fn core_services(
    node: &Node,
    encryption: KeyEncryptionKey,
) -> Result<ServiceSet, StartError> {
    let encryption = Arc::new(encryption);
    let config = &node.config;
    let store = &node.store;
    let invalidator = &node.invalidator;
    let signing_keys = Arc::new(SigningKeys::new(
        store.clone(),
        encryption.clone(),
        node.tokens.clone(),
        invalidator.clone(),
    ));
    invalidator.register(signing_keys.clone());
    let grants = rbac::grants::Grants::new(store.clone(), node.metrics.cache("rbac_grants"));
    invalidator.register(grants.clone());
    let enablement = plinth_platform::enablement::Enablement::new(
        store.clone(),
        node.metrics.cache("enablement"),
    );
    invalidator.register(enablement.clone());
    let access = access::Access::new(store.clone(), grants.clone(), enablement.clone());
    let audit = audit::Audit::new(store.clone(), access.clone(), enablement.clone());
    let tails = audit::Tails::start(
        store.clone(),
        access.clone(),
        enablement.clone(),
        invalidator.clone(),
        node.draining(),
    );
    if let Some(redis) = &node.redis {
        audit::EventStream::start(store.clone(), redis.clone(), node.draining());
    }
    let declarations = Arc::new(rbac::Declarations::new(store.clone()));
    declarations.declare_core().await?;
    let rbac = rbac::Rbac::new(
        store.clone(),
        access.clone(),
        grants,
        declarations,
        invalidator.clone(),
    );
    let passwords = auth::passwords::Passwords::new(config.password_hashing_concurrency);
    let users = auth::users::Users::new(
        store.clone(),
        access.clone(),
        passwords.clone(),
        invalidator.clone(),
    );
    let sessions = auth::sessions::Sessions::new(
        store.clone(),
        access.clone(),
        passwords.clone(),
        signing_keys,
        invalidator.clone(),
        auth::throttle::LoginThrottles::new(config, node.redis.as_ref()),
        config,
    );
    let keys = auth::api_keys::KeyAdmin::new(store.clone(), access.clone(), invalidator.clone());
    let catalog = enablement::catalog::Catalog::new(store.clone());
    invalidator.register(catalog.clone());
    let parts = enablement::ModuleParts {
        store: store.clone(),
        access: access.clone(),
        catalog,
        cache: enablement,
        invalidator: invalidator.clone(),
        encryption,
    };
    let callbacks = enablement::Callbacks::new(store.clone(), config);
    let outbox = enablement::Outbox::start(&parts, callbacks.clone());
    let enablements = enablement::Enablements::new(&parts, callbacks, outbox);
    let templates = templates::Templates::new(
        store.clone(),
        access.clone(),
        parts.catalog.clone(),
        enablements.clone(),
    );
    let tenants = tenant::Tenants::new(
        store.clone(),
        access.clone(),
        passwords,
        invalidator.clone(),
        tenant::OpenSignup {
            allowed: config.open_signup(),
            per_peer: auth::throttle::Throttle::configured(
                tenant::FREE_SIGNUPS_PER_PEER,
                "signup:peer",
                node.redis.as_ref(),
            ),
        },
        tenant::Modules {
            enablements: enablements.clone(),
            templates: templates.clone(),
        },
    );
    let configs = module_config::ModuleConfigs::new(&parts, node.metrics.cache("module_config"));
    let config_watches = module_config::ConfigWatches::start(configs.clone(), node.draining());
    let limit = config.max_message_bytes;
    let mut services = ServiceSet::default();
    services
        .add(
            AuthServiceServer::new(grpc::AuthApi {
                users,
                sessions,
                keys,
            })
            .max_decoding_message_size(limit),
        )
        .add(RbacServiceServer::new(grpc::RbacApi { rbac }).max_decoding_message_size(limit))
        .add(grpc::tenant_service(
            grpc::TenantApi {
                tenants,
                enablements,
                configs,
                config_watches,
                templates,
            },
            limit,
        ))
        .add(
            AuditServiceServer::new(grpc::AuditApi { audit, tails })
                .max_decoding_message_size(limit),
        );
    registry_server::add_services(&mut services, node, access);
    Ok(services)
}

/// Creates the data directory (owner only) and opens the migrated store.
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    create_data_dir(&config.data_dir)?;
    Ok(Store::open(&config.database_url(), config.database_max_connections).await?)
}

fn create_data_dir(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StartError::DataDir {
            path: path.to_owned(),
            source,
        })
}

/// Writes the first operator key to a 0600 file and prints it, once.
fn announce_bootstrap_key(data_dir: &Path, issued: &IssuedApiKey) -> Result<(), StartError> {
    let path = data_dir.join(BOOTSTRAP_KEY_FILE);
    plinth_platform::write_private(&path, issued.secret.as_bytes()).map_err(|source| {
        StartError::DataDir {
            path: path.clone(),
            source,
        }
    })?;
    println!(
        "created the bootstrap operator API key (shown once, also in {}):\n{}",
        path.display(),
        issued.secret
    );
    Ok(())
}
