//! `core-server`: serve (the default), migrate, or make dev certificates.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plinth_platform::{
    config::{Config, ConfigArgs},
    server, telemetry,
};

/// Plinth core server.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a dev CA, a server certificate for localhost and a client
    /// certificate for one module.
    Dev {
        #[arg(long)]
        out: PathBuf,
        /// The module the client certificate names.
        #[arg(long)]
        module: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    telemetry::init(config.log_format);
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider is already installed"))?;
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            core_server::run(config, listener, server::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = core_server::open_store(&config).await?;
            println!("migrations applied ({:?})", store.backend());
        }
        Command::Certs {
            command: CertsCommand::Dev { out, module },
        } => {
            plinth_platform::certs::write_dev_certificates(&out, &module)
                .with_context(|| format!("writing certificates to {}", out.display()))?;
            println!(
                "wrote ca.pem, server.pem, server.key, {module}.pem, {module}.key to {}",
                out.display()
            );
        }
    }
    Ok(())
}
