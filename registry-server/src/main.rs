//! `registry-server`: the module registry on its own, against the store that
//! `core-server` migrated.

use clap::{Args, FromArgMatches};
use plinth_platform::{
    config::{Config, ConfigArgs},
    server,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = ConfigArgs::augment_args(clap::Command::new("registry-server"))
        .version(env!("CARGO_PKG_VERSION"))
        .about("Plinth module registry: catalog, versions, running instances and discovery");
    let flags = ConfigArgs::from_arg_matches(&command.get_matches())?;
    let config = Config::load(&flags)?;
    server::init_process(&config)?;
    let listener = server::bind(&config).await?;
    registry_server::run(config, listener, server::shutdown_signal()).await?;
    Ok(())
}
