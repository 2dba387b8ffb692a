//! `registry-server`: the module registry on its own, against the store that
//! `core-server` migrated.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use plinth_platform::{
    config::{Config, ConfigArgs},
    identity::{api_keys::ApiKeys, layer::IdentityLayer, tokens::TokenVerifier},
    invalidation::Invalidator,
    server::{self, ServiceSet},
    store::Store,
    telemetry,
};

/// Plinth module registry.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    telemetry::init(config.log_format);
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider is already installed"))?;
    let store = Store::connect(&config.database_url(), config.database_max_connections)
        .await
        .context("connecting to the database")?;
    let api_keys = Arc::new(ApiKeys::new(store.api_keys.clone()));
    let tokens = Arc::new(TokenVerifier::new(config.token_settings(), store.clone()));
    // Revocations made through core-server reach this replica's caches too.
    let _invalidator = Invalidator::connect(
        api_keys.clone(),
        tokens.clone(),
        config.redis_url.as_deref(),
        &config.redis_prefix,
    )
    .await
    .context("connecting to redis")?;
    let mut services = ServiceSet::default();
    registry_server::add_services(&mut services, &config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %config.listen, "registry-server serving");
    server::serve(
        &config,
        store,
        IdentityLayer::new(api_keys, tokens, &[]),
        services,
        listener,
        server::shutdown_signal(),
    )
    .await?;
    Ok(())
}
