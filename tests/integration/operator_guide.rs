//! docs/operators.md, run: every `sh` block in order, in one shell, against
//! a fresh core-server process, so the guide cannot rot.

use std::process::Command;

use plinth_tests::{
    bench::ServerProcess, core_server_binary, prepared, repository, run_to_success,
};

/// The guide's `sh` blocks, in order, as one script.
fn command_blocks(guide: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in guide.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_block_runs_against_a_fresh_server() {
    let guide = std::fs::read_to_string(repository().join("docs/operators.md")).unwrap();
    let blocks = command_blocks(&guide);
    assert!(blocks.len() >= 10, "the guide's blocks were not found");
    let tools = prepared("target/python/bin");
    let data = tempfile::tempdir().unwrap();
    let address = plinth_tests::bench::free_address().unwrap();
    let mut server = Command::new(core_server_binary());
    server
        .env("PLINTH_LISTEN", address.to_string())
        .env("PLINTH_DATA_DIR", data.path())
        .env("RUST_LOG", "error");
    let _server = ServerProcess::start(server, address).await.unwrap();

    let binaries = core_server_binary().parent().unwrap().to_owned();
    let path = std::env::join_paths([tools, binaries].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    // -x: the output shows which command of the guide failed.
    let script = format!("set -euxo pipefail\n{}", blocks.concat());
    let mut shell = Command::new("bash");
    shell
        .args(["-c", &script])
        .current_dir(repository())
        .env("PATH", path)
        .env("PLINTH_LISTEN", address.to_string())
        .env("PLINTH_DATA_DIR", data.path());
    run_to_success(shell).await;
}
