//! The Redis event stream: every committed event in its tenant's stream, in
//! chain order, with ids that are the chain's sequences; events a killed
//! server committed but never published are published after it restarts.

use std::time::{Duration, Instant};

use plinth_api::{
    audit::v1::{EventInput, VerifyChainRequest, verify_chain_request},
    auth::v1::CreateApiKeyRequest,
};
use plinth_tests::{
    Backend, Clients, Credentials, Sandbox, TestDatabase, TestRedis, bench::ServerProcess,
    core_server_binary, random_key_encryption_key,
};
use redis::AsyncCommands;
use tonic::transport::Endpoint;

use super::{in_tenant, input, query_all, record, setup};

crate::on_both_backends!(
    every_committed_event_reaches_its_tenant_stream_in_chain_order,
    a_killed_server_publishes_what_it_committed_once_it_is_back,
);

const WAIT: Duration = Duration::from_secs(15);

/// The stream's entries as (id, action, event line).
async fn entries(redis: &TestRedis, chain: &str) -> Vec<(String, String, serde_json::Value)> {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:audit:{chain}", redis.prefix);
    let reply: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    reply
        .into_iter()
        .map(|(id, fields)| {
            let text = |name: &str| -> String {
                fields
                    .chunks(2)
                    .find(|pair| pair[0] == name)
                    .map(|pair| pair[1].clone())
                    .unwrap_or_default()
            };
            let event = serde_json::from_str(&text("event")).unwrap();
            (id, text("action"), event)
        })
        .collect()
}

/// Waits until the stream holds at least `count` entries.
async fn published(
    redis: &TestRedis,
    chain: &str,
    count: usize,
) -> Vec<(String, String, serde_json::Value)> {
    let started = Instant::now();
    loop {
        let entries = entries(redis, chain).await;
        if entries.len() >= count {
            return entries;
        }
        assert!(
            started.elapsed() < WAIT,
            "{} of {count} entries published",
            entries.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_sequence(clients: &mut Clients, tenant_id: &str) -> i64 {
    clients
        .audit
        .verify_chain(VerifyChainRequest {
            chain: Some(verify_chain_request::Chain::TenantId(tenant_id.to_owned())),
            ..VerifyChainRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .last_sequence
}

async fn every_committed_event_reaches_its_tenant_stream_in_chain_order(backend: Backend) {
    let redis = TestRedis::new();
    let sandbox = Sandbox::start_with(backend, |config| redis.configure(config)).await;
    let mut setup = setup(sandbox).await;
    record(
        &mut setup.finance,
        &setup.acme.id,
        vec![
            input("finance.invoice.created"),
            input("finance.invoice.sent"),
        ],
    )
    .await
    .unwrap();
    let last = last_sequence(&mut setup.acme.admin.clients, &setup.acme.id).await;

    let entries = published(&redis, &setup.acme.id, last as usize).await;

    let chain = query_all(&mut setup.acme.admin.clients, in_tenant(&setup.acme.id))
        .await
        .unwrap();
    assert_eq!(entries.len(), chain.len());
    for ((id, action, line), event) in entries.iter().zip(&chain) {
        assert_eq!(id, &format!("{}-0", event.sequence));
        assert_eq!(action, &event.action);
        assert_eq!(line["hash"], hex(&event.hash));
        assert_eq!(line["previous_hash"], hex(&event.previous_hash));
        assert_eq!(line["chain"], setup.acme.id);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A core-server process on `database` and `redis`, with its data in
/// `directory`.
async fn server_process(
    database: &TestDatabase,
    redis: &TestRedis,
    directory: &std::path::Path,
    key_encryption_key: &str,
) -> ServerProcess {
    let address = plinth_tests::bench::free_address().unwrap();
    let mut command =
        plinth_tests::bench::core_server_command(&core_server_binary(), address, directory);
    command
        .args(["--database-url", &database.url])
        .args(["--redis-url", &redis.url, "--redis-prefix", &redis.prefix])
        .env("PLINTH_KEY_ENCRYPTION_KEY", key_encryption_key)
        .env("RUST_LOG", "error");
    ServerProcess::start(command, address).await.unwrap().0
}

async fn clients_of(server: &ServerProcess, key: &str) -> Clients {
    let channel = Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients::over(channel, Credentials::api_key(key))
}

async fn a_killed_server_publishes_what_it_committed_once_it_is_back(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let redis = TestRedis::new();
    let directory = tempfile::tempdir().unwrap();
    let key_encryption_key = random_key_encryption_key();
    let server = server_process(&database, &redis, directory.path(), &key_encryption_key).await;
    let operator_key =
        std::fs::read_to_string(directory.path().join(core_server::BOOTSTRAP_KEY_FILE)).unwrap();
    let mut operator = clients_of(&server, &operator_key).await;
    let tenant_id = operator.create_tenant("acme").await;
    crate::registry::register(&mut operator, crate::modules::module("finance", &[]))
        .await
        .unwrap();
    operator
        .registry
        .activate_module(plinth_api::registry::v1::ActivateModuleRequest {
            module_id: "finance".to_owned(),
            version: String::new(),
        })
        .await
        .unwrap();
    crate::modules::enable(&mut operator, &tenant_id, &["finance"], false)
        .await
        .unwrap();
    let finance_key = operator
        .auth
        .create_api_key(CreateApiKeyRequest {
            name: "finance".to_owned(),
            module_id: "finance".to_owned(),
            ..CreateApiKeyRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let before = last_sequence(&mut operator, &tenant_id).await;
    published(&redis, &tenant_id, before as usize).await;
    // The stream's key taken by a value of another type: publishing fails
    // until it is cleared, so what follows stays committed but unpublished.
    let mut connection = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:audit:{tenant_id}", redis.prefix);
    let () = connection.del(&key).await.unwrap();
    let () = connection.set(&key, "blocked").await.unwrap();
    let mut finance = clients_of(&server, &finance_key).await;
    let events: Vec<EventInput> = (0..5)
        .map(|number| EventInput {
            resource_id: number.to_string(),
            ..input("finance.invoice.created")
        })
        .collect();
    let recorded = record(&mut finance, &tenant_id, events).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocked: String = connection.get(&key).await.unwrap();
    assert_eq!(blocked, "blocked", "nothing was published");

    drop(server);
    let () = connection.del(&key).await.unwrap();
    let _restarted = server_process(&database, &redis, directory.path(), &key_encryption_key).await;

    let entries = published(&redis, &tenant_id, recorded.len()).await;
    let ids: Vec<&str> = entries.iter().map(|(id, _, _)| id.as_str()).collect();
    let expected: Vec<String> = recorded
        .iter()
        .map(|event| format!("{}-0", event.sequence))
        .collect();
    assert_eq!(ids, expected, "each recorded event once, in chain order");
    for ((_, _, line), event) in entries.iter().zip(&recorded) {
        assert_eq!(line["hash"], hex(&event.hash));
    }
}
