//! `core-server`: serve (the default), migrate, print the configuration,
//! export an audit chain, make dev certificates, or load a seed file into a
//! running server. Flags
//! go before or after the subcommand.

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
    /// Audit chains
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Certificates
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Load a seed file (catalog manifests and industry templates) into a
    /// running server, as an operator; loading it again changes nothing
    Seed {
        /// The seed file, e.g. core-server/seed/industries.yaml
        file: PathBuf,
        /// The server (plaintext); default: http:// and the configured listen address
        #[arg(long)]
        server: Option<String>,
        /// An operator API key; default: the bootstrap key in the data directory
        #[arg(long, env = "PLINTH_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write a chain to standard output as JSON lines (the export format the
    /// AuditEvent proto specifies), reading the configured database
    Export {
        /// The tenant whose chain to export
        #[arg(
            long,
            required_unless_present = "platform",
            conflicts_with = "platform"
        )]
        tenant: Option<uuid::Uuid>,
        /// Export the platform's own chain
        #[arg(long)]
        platform: bool,
        /// The first sequence to export
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
        from: i64,
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
        Command::Seed {
            file,
            server,
            api_key,
        } => {
            let server = server.unwrap_or_else(|| format!("http://{}", config.listen));
            let api_key = match api_key {
                Some(key) => key,
                None => {
                    let path = config.data_dir.join(core_server::BOOTSTRAP_KEY_FILE);
                    std::fs::read_to_string(&path).with_context(|| {
                        format!("reading {} (or pass --api-key)", path.display())
                    })?
                }
            };
            let channel = tonic::transport::Endpoint::from_shared(server.clone())?
                .connect()
                .await
                .with_context(|| format!("connecting to {server}"))?;
            let loaded = core_server::seed::load(&file, channel, &api_key).await?;
            println!(
                "{}: {} versions registered, {} modules activated, {} templates created, {} updated, {} unchanged",
                file.display(),
                loaded.versions_registered,
                loaded.modules_activated,
                loaded.templates_created,
                loaded.templates_updated,
                loaded.unchanged
            );
        }
        Command::Audit {
            command:
                AuditCommand::Export {
                    tenant,
                    platform: _,
                    from,
                },
        } => {
            let store = core_server::open_store(&config).await?;
            let chain_id = tenant.map_or_else(
                || plinth_platform::audit::PLATFORM_CHAIN.to_owned(),
                |tenant| tenant.to_string(),
            );
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let exported = core_server::export_chain(&store, &chain_id, from, &mut out).await?;
            std::io::Write::flush(&mut out)?;
            eprintln!("exported {exported} events of chain {chain_id}");
        }
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
