//! `registry-server`: the module registry on its own, against the store that
//! `core-server` migrated.

use anyhow::Context;
use clap::Parser;
use plinth_platform::{
    config::{Config, ConfigArgs},
    server, telemetry,
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    registry_server::run(config, listener, server::shutdown_signal()).await?;
    Ok(())
}
