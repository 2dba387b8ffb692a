//! `registry-server`: the module registry on its own, against the store that
//! `core-server` migrated; `registry-server manifest validate FILE` checks a
//! manifest offline.

use std::process::ExitCode;

use clap::{Arg, Args, Command, FromArgMatches};
use plinth_platform::{
    config::{Config, ConfigArgs},
    server,
};
use registry_server::manifest;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let command = ConfigArgs::augment_args(Command::new("registry-server"))
        .version(env!("CARGO_PKG_VERSION"))
        .about("Plinth module registry: catalog, versions, running instances and discovery")
        .subcommand(
            Command::new("manifest")
                .about("Module manifests, offline")
                .subcommand_required(true)
                .subcommand(
                    Command::new("validate")
                        .about(
                            "Checks a manifest file (YAML or JSON); exits 1 when it breaks rules",
                        )
                        .arg(Arg::new("file").required(true).help("The manifest file")),
                ),
        );
    let matches = command.get_matches();
    if let Some(("manifest", manifest_command)) = matches.subcommand()
        && let Some(("validate", validate)) = manifest_command.subcommand()
    {
        let file = validate
            .get_one::<String>("file")
            .expect("clap requires the file");
        return validate_file(file);
    }
    let flags = ConfigArgs::from_arg_matches(&matches)?;
    let config = Config::load(&flags)?;
    server::init_process(&config)?;
    let listener = server::bind(&config).await?;
    registry_server::run(config, listener, server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints each broken rule as `field: description`.
fn validate_file(file: &str) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)?;
    let manifest = match manifest::document::parse(&text) {
        Ok(manifest) => manifest,
        Err(error) => {
            eprintln!("{file}: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let violations = manifest::violations(&manifest);
    if violations.is_empty() {
        println!(
            "{file}: valid manifest of {} {}",
            manifest.id, manifest.version
        );
        return Ok(ExitCode::SUCCESS);
    }
    for violation in &violations {
        println!("{}: {}", violation.field, violation.description);
    }
    Ok(ExitCode::from(1))
}
