//! The `core-server` binary as operators run it: its command line, its
//! configuration layers, and its memory over many logins.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use plinth_api::{
    auth::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    tenant::v1::{SignupRequest, tenant_service_client::TenantServiceClient},
};

const BINARY: &str = env!("CARGO_BIN_EXE_core-server");

fn core_server(args: &[&str], environment: &[(&str, &str)], directory: &Path) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(environment.iter().copied())
        .current_dir(directory)
        .output()
        .expect("core-server runs")
}

fn text(output: &Output) -> String {
    assert!(
        output.status.success(),
        "core-server failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn flags_work_after_the_subcommand() {
    let directory = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/other.db", directory.path().display());

    let output = core_server(
        &["migrate", "--database-url", &database],
        &[],
        directory.path(),
    );

    assert!(text(&output).contains("migrations applied"));
    assert!(directory.path().join("other.db").exists());
}

#[test]
fn help_describes_every_flag() {
    let directory = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["migrate", "--help"],
        &["certs", "dev", "--help"],
    ] {
        let help = text(&core_server(args, &[], directory.path()));
        let lines: Vec<&str> = help.lines().map(str::trim).collect();
        let mut flags = 0;
        for (index, line) in lines.iter().enumerate() {
            if !line.starts_with("--") {
                continue;
            }
            flags += 1;
            // The description follows on the line, or on the next one (not
            // just the `[env: …]` that clap adds by itself).
            let describes = |text: &str| !text.is_empty() && !text.starts_with(['-', '[']);
            let same_line = line
                .split("  ")
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .nth(1)
                .is_some_and(describes);
            let next_line = lines.get(index + 1).is_some_and(|next| describes(next));
            assert!(same_line || next_line, "{args:?}: undescribed flag: {line}");
        }
        assert!(flags >= 3, "{args:?}: {help}");
    }
}

/// Where a TLS key comes from in one combination.
#[derive(Clone, Copy, Debug)]
enum Layer {
    Unset,
    File,
    Environment,
    Flag,
}

#[test]
fn every_tls_key_merges_on_its_own_across_file_environment_and_flags() {
    use Layer::*;
    let directory = tempfile::tempdir().unwrap();
    let keys = ["certificate", "private_key", "client_ca"];
    let layers = [File, Environment, Flag];
    for certificate in layers {
        for private_key in layers {
            for client_ca in [Unset, File, Environment, Flag] {
                let combination = [certificate, private_key, client_ca];
                let mut file = String::from("[tls]\n");
                let mut environment = Vec::new();
                let mut flags = vec!["config".to_owned()];
                for (key, layer) in keys.iter().zip(combination) {
                    let path = format!("/{layer:?}/{key}");
                    match layer {
                        Unset => {}
                        File => file.push_str(&format!("{key} = \"{path}\"\n")),
                        Environment => {
                            environment.push((format!("PLINTH_TLS_{}", key.to_uppercase()), path))
                        }
                        Flag => flags.extend([format!("--tls-{}", key.replace('_', "-")), path]),
                    }
                }
                let file_path = directory.path().join("plinth.toml");
                std::fs::write(&file_path, file).unwrap();
                environment.push(("PLINTH_CONFIG".to_owned(), file_path.display().to_string()));
                let environment: Vec<(&str, &str)> = environment
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

                let printed = text(&core_server(&flags, &environment, directory.path()));

                for (key, layer) in keys.iter().zip(combination) {
                    let line = format!("{key} = \"/{layer:?}/{key}\"");
                    match layer {
                        Unset => assert!(
                            !printed.contains(&format!("{key} =")),
                            "{combination:?}: {printed}"
                        ),
                        _ => assert!(printed.contains(&line), "{combination:?}: {printed}"),
                    }
                }
            }
        }
    }
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("plinth.toml");
    std::fs::write(&file, "max_call_seconds = 5\nrefresh_token_days = 7\n").unwrap();
    let file = file.display().to_string();
    let environment = [
        ("PLINTH_CONFIG", file.as_str()),
        ("PLINTH_MAX_CALL_SECONDS", "6"),
        ("PLINTH_ACCESS_TOKEN_SECONDS", "600"),
    ];

    let printed = text(&core_server(
        &["config", "--max-call-seconds", "7"],
        &environment,
        directory.path(),
    ));

    assert!(printed.contains("max_call_seconds = 7"), "{printed}");
    assert!(printed.contains("access_token_seconds = 600"), "{printed}");
    assert!(printed.contains("refresh_token_days = 7"), "{printed}");
}

/// A served core-server, killed when dropped.
struct Served {
    process: Child,
    address: String,
    data: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn serve() -> Served {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let process = Command::new(BINARY)
        .args(["--listen", &address, "--data-dir"])
        .arg(data.path())
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Owned at once, so that a panic below still kills it.
    let served = Served {
        process,
        address,
        data,
    };
    // The listener is bound before the store opens; a fresh data directory
    // gets its bootstrap key just before the server serves.
    let bootstrap_key = served.data.path().join("bootstrap-api-key");
    for _ in 0..200 {
        if bootstrap_key.exists()
            && tokio::net::TcpStream::connect(&served.address)
                .await
                .is_ok()
        {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("core-server did not start");
}

fn resident_mebibytes(process: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.id())).unwrap();
    let kibibytes: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kibibytes / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_over_many_logins() {
    let served = serve().await;
    let endpoint = format!("http://{}", served.address);
    let operator_key =
        std::fs::read_to_string(served.data.path().join("bootstrap-api-key")).unwrap();
    let mut request = tonic::Request::new(SignupRequest {
        tenant_code: "acme".to_owned(),
        tenant_name: "Acme".to_owned(),
        admin_email: "wile@acme.example".to_owned(),
        admin_display_name: "Wile".to_owned(),
        admin_password: "rocket skates and anvils".to_owned(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-api-key", operator_key.parse().unwrap());
    TenantServiceClient::connect(endpoint.clone())
        .await
        .unwrap()
        .signup(request)
        .await
        .unwrap();
    let before = resident_mebibytes(&served.process);

    let logins: Vec<_> = (0..4)
        .map(|_| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mut auth = AuthServiceClient::connect(endpoint).await.unwrap();
                for _ in 0..25 {
                    auth.login(LoginRequest {
                        tenant_code: "acme".to_owned(),
                        email: "wile@acme.example".to_owned(),
                        password: "rocket skates and anvils".to_owned(),
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for login in logins {
        login.await.unwrap();
    }
    let after = resident_mebibytes(&served.process);

    eprintln!("resident memory: {before} MiB before, {after} MiB after 100 logins");
    assert!(
        after < 96,
        "{after} MiB after 100 logins (was {before} MiB)"
    );
}
