//! `registry-server`: the module registry on its own, against the store that
//! `core-server` migrated.

use clap::Parser;
use plinth_platform::{
    config::{Config, ConfigArgs},
    server,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(&ConfigArgs::parse())?;
    server::init_process(&config)?;
    let listener = server::bind(&config).await?;
    registry_server::run(config, listener, server::shutdown_signal()).await?;
    Ok(())
}
