//! Connections from the core to module instances (health probes, lifecycle
//! callbacks): one lazily connected channel per endpoint, kept across
//! calls and re-established when it drops, over TLS with the core's own
//! certificate (trusting its client CA) for `https://` endpoints when the
//! core has one.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use plinth_platform::config::Config;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub struct InstanceChannels {
    tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl InstanceChannels {
    /// With the configured certificate; without one (or when it does not
    /// read) `https://` endpoints are reached without a client certificate.
    pub fn new(config: &Config) -> InstanceChannels {
        let tls = client_tls(config).unwrap_or_else(|error| {
            tracing::warn!(%error, "reaching https instances without a client certificate");
            None
        });
        InstanceChannels {
            tls,
            channels: Mutex::default(),
        }
    }

    /// The channel to `endpoint`; `None` when it is not a usable URL.
    pub fn channel(&self, endpoint: &str, connect_timeout: Duration) -> Option<Channel> {
        if let Some(channel) = lock(&self.channels).get(endpoint) {
            return Some(channel.clone());
        }
        let mut target = Endpoint::from_shared(endpoint.to_owned())
            .ok()?
            .connect_timeout(connect_timeout);
        if endpoint.starts_with("https://")
            && let Some(tls) = &self.tls
        {
            target = target.tls_config(tls.clone()).ok()?;
        }
        let channel = target.connect_lazy();
        lock(&self.channels).insert(endpoint.to_owned(), channel.clone());
        Some(channel)
    }

    /// Drops the channels of endpoints no longer wanted.
    pub fn retain(&self, mut wanted: impl FnMut(&str) -> bool) {
        lock(&self.channels).retain(|endpoint, _| wanted(endpoint));
    }
}

fn client_tls(config: &Config) -> std::io::Result<Option<ClientTlsConfig>> {
    let (Some(certificate), Some(private_key), Some(client_ca)) = (
        &config.tls.certificate,
        &config.tls.private_key,
        &config.tls.client_ca,
    ) else {
        return Ok(None);
    };
    Ok(Some(
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(client_ca)?))
            .identity(Identity::from_pem(
                std::fs::read(certificate)?,
                std::fs::read(private_key)?,
            )),
    ))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
