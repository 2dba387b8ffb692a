//! The Python and TypeScript clients as modules use them: the test command
//! installs the Python package into `target/python` and builds the
//! TypeScript one, and each runs its script against a real core over mTLS.

use std::{path::PathBuf, process::Command};

use plinth_tests::{MutualTls, module_key, prepared, repository, run_to_success};

/// Runs `program script` with the server's address and a certificate and
/// key of module "inventory", and fails with its output unless it succeeds.
async fn run_against_mutual_tls(program: PathBuf, script: PathBuf) {
    let server = MutualTls::start().await;
    let key = module_key(&server.sandbox, "inventory").await;
    let pair = server.ca.module_certificate("inventory").unwrap();
    let (certificate, private_key) = server.client_files("inventory", &pair);
    let address = server.sandbox.address;
    let mut command = Command::new(program);
    command
        .arg(script)
        .current_dir(repository())
        .env("PLINTH_TARGET", address.to_string())
        .env("PLINTH_URL", format!("https://{address}"))
        .env("PLINTH_CA", server.ca_file())
        .env("PLINTH_CERTIFICATE", certificate)
        .env("PLINTH_PRIVATE_KEY", private_key)
        .env("PLINTH_API_KEY", key);
    run_to_success(command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_calls_over_mtls_and_reads_refusals_with_their_reasons() {
    run_against_mutual_tls(
        prepared("target/python/bin/python"),
        prepared("clients/python/tests/over_mtls.py"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_calls_over_mtls_and_reads_refusals_with_their_reasons() {
    prepared("clients/typescript/dist/index.js");
    run_against_mutual_tls(
        PathBuf::from("node"),
        prepared("clients/typescript/test/over-mtls.mjs"),
    )
    .await;
}
