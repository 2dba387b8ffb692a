//! `core-server`: serve (the default), migrate, print the configuration, or
//! make dev certificates. Flags go before or after the subcommand.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plinth_platform::{
    config::{Config, ConfigArgs},
    identity::certificate::CertificateIdentity,
    server,
};

/// Plinth core server: Auth, Rbac, Tenant and Audit, with the module registry.
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
    /// Serve gRPC (the default)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Print the effective configuration (defaults, file, environment, flags) as TOML
    Config,
    /// Certificates
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make or extend a dev CA in a directory: a server certificate for
    /// localhost and client certificates for modules and operators
    Dev {
        /// Directory of the CA (created, or reused when it holds ca.pem and ca.key)
        #[arg(long)]
        out: PathBuf,
        /// A module to issue a client certificate for (repeatable)
        #[arg(long = "module", value_parser = parse_name)]
        modules: Vec<String>,
        /// An operator to issue a client certificate for (repeatable; a new CA
        /// gets `operator`)
        #[arg(long = "operator", value_parser = parse_name)]
        operators: Vec<String>,
    },
}

/// Names become file names and URI SANs: `^[a-z][a-z0-9_-]{1,62}$`.
fn parse_name(name: &str) -> Result<String, String> {
    let bytes = name.as_bytes();
    let well_formed = (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if well_formed {
        Ok(name.to_owned())
    } else {
        Err("must match ^[a-z][a-z0-9_-]{1,62}$".to_owned())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            server::init_process(&config)?;
            let listener = server::bind(&config).await?;
            core_server::run(config, listener, server::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = core_server::open_store(&config).await?;
            println!("migrations applied ({:?})", store.backend());
        }
        Command::Config => print!("{}", config.to_toml()),
        Command::Certs {
            command:
                CertsCommand::Dev {
                    out,
                    modules,
                    operators,
                },
        } => {
            let clients: Vec<CertificateIdentity> = modules
                .into_iter()
                .map(CertificateIdentity::Module)
                .chain(operators.into_iter().map(CertificateIdentity::Operator))
                .collect();
            let written = plinth_platform::certs::write_dev_certificates(&out, &clients)
                .with_context(|| format!("writing certificates to {}", out.display()))?;
            for path in written {
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
