//! The key-encryption key that seals token signing keys: replicas of one
//! database share it, and a server that could not open the stored signing
//! keys refuses to start with a clear message instead of failing logins.

use plinth_platform::config::{Config, Secret};
use plinth_tests::{Backend, Sandbox, random_key_encryption_key};
use tokio::net::TcpListener;

use crate::tokens::{sign_up, tokens};

/// Runs a server with `config` and returns why it would not start.
async fn start_error(config: Config) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        core_server::run(config, listener, std::future::pending()),
    )
    .await
    .expect("a misconfigured server stops at once");
    outcome
        .expect_err("the server refused to start")
        .to_string()
}

/// A sandbox whose signing key exists (a login made one).
async fn sandbox_with_a_signing_key(backend: Backend) -> Sandbox {
    let sandbox = Sandbox::start(backend).await;
    sign_up(&sandbox, "acme").await;
    tokens(&sandbox, "acme", "admin@acme.example").await;
    sandbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_postgresql_without_a_key_encryption_key_refuses_to_start() {
    let sandbox = sandbox_with_a_signing_key(Backend::Postgres).await;
    let config = Config {
        key_encryption_key: None,
        ..sandbox.config.clone()
    };

    let error = start_error(config).await;

    assert!(
        error.contains("key_encryption_key must be configured"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_key_encryption_key_refuses_to_start() {
    let sandbox = sandbox_with_a_signing_key(Backend::Postgres).await;
    let config = Config {
        key_encryption_key: Some(Secret::new(random_key_encryption_key())),
        ..sandbox.config.clone()
    };

    let error = start_error(config).await;

    assert!(
        error.contains("does not open the stored signing keys"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_with_the_same_key_serves_logins() {
    let first = sandbox_with_a_signing_key(Backend::Postgres).await;
    let second = first.replica().await;

    tokens(&second, "acme", "admin@acme.example").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_does_not_generate_a_new_key_over_stored_signing_keys() {
    let sandbox =
        Sandbox::start_with(Backend::Sqlite, |config| config.key_encryption_key = None).await;
    sign_up(&sandbox, "acme").await;
    tokens(&sandbox, "acme", "admin@acme.example").await;
    let config = sandbox.config.clone();
    let _database_outlives_the_server = sandbox.database.clone();
    sandbox.stop().await;
    let key_file = config.data_dir.join("key-encryption-key");
    assert!(key_file.exists(), "the embedded default generated its key");
    std::fs::remove_file(&key_file).unwrap();

    let error = start_error(config).await;

    assert!(error.contains("is missing"), "{error}");
    assert!(!key_file.exists(), "no new key was generated");
}
