//! Load shedding under overload: the same load of logins (each hashes a
//! password, a few at a time, so that calls beyond those wait inside the
//! server) against a core-server with the default bound of calls in
//! progress, which the load stays under, and against one bounded below it,
//! which refuses the excess at once; the clients wait as RetryInfo asks
//! before trying again. The latency of the calls it accepts is what
//! shedding keeps bounded.

use std::path::Path;

use plinth_api::{
    auth::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    tenant::v1::{SignupRequest, tenant_service_client::TenantServiceClient},
};

use tonic_types::StatusExt;

use super::{
    Load, Measurement, ServerProcess, connect, core_server_command, free_address, measure,
};
use crate::Credentials;

/// The bound of the shedding server: well under the load's calls in flight.
pub const BOUND: u32 = 16;

const PASSWORD: &str = "a bench password of some length";

/// One server's answer to the load.
pub struct Shedding {
    pub measured: Measurement,
}

/// Logins under `load`, on a server without a bound the load reaches and on
/// one bounded at [`BOUND`].
pub async fn measure_both(core_server: &Path, load: Load) -> anyhow::Result<Vec<Shedding>> {
    let mut figures = Vec::new();
    for bound in [None, Some(BOUND)] {
        let directory = tempfile::tempdir()?;
        let address = free_address()?;
        let mut command = core_server_command(core_server, address, directory.path());
        if let Some(bound) = bound {
            command.args(["--max-concurrent-calls", &bound.to_string()]);
        }
        let (server, _) = ServerProcess::start(command, address).await?;
        let key = std::fs::read_to_string(directory.path().join(core_server::BOOTSTRAP_KEY_FILE))?;
        let channels = connect(address, load.connections).await?;
        TenantServiceClient::with_interceptor(
            channels[0].clone(),
            Credentials::api_key(key.trim()),
        )
        .signup(SignupRequest {
            tenant_code: "bench".to_owned(),
            tenant_name: "Bench".to_owned(),
            admin_email: "admin@bench.example".to_owned(),
            admin_display_name: "Admin".to_owned(),
            admin_password: PASSWORD.to_owned(),
            ..Default::default()
        })
        .await?;
        let name = match bound {
            Some(bound) => format!("Login, shedding past {bound} calls"),
            None => "Login, no bound reached".to_owned(),
        };
        let measured = measure(&name, &server, &channels, load, |channel| {
            let client = AuthServiceClient::new(channel);
            move || {
                let mut client = client.clone();
                async move {
                    let request = LoginRequest {
                        tenant_code: "bench".to_owned(),
                        email: "admin@bench.example".to_owned(),
                        password: PASSWORD.to_owned(),
                    };
                    let answer = client.login(request).await.map(drop);
                    // A well-behaved client waits as RetryInfo asks.
                    if let Err(status) = &answer
                        && let Some(delay) = status
                            .get_details_retry_info()
                            .and_then(|retry| retry.retry_delay)
                    {
                        tokio::time::sleep(delay).await;
                    }
                    answer
                }
            }
        })
        .await;
        figures.push(Shedding { measured });
    }
    Ok(figures)
}

pub fn report(figures: &[Shedding]) {
    println!("load shedding: logins with more in flight than the server hashes at once:");
    for Shedding { measured } in figures {
        let refused_per_second = measured.errors as f64 / measured.elapsed.as_secs_f64();
        println!(
            "  {}: accepted {:.0} calls/s, p50 {} us, p99 {} us; refused {:.0} calls/s (OVERLOADED)",
            measured.name,
            measured.calls_per_second(),
            measured.latency_micros(0.5),
            measured.latency_micros(0.99),
            refused_per_second,
        );
    }
}
