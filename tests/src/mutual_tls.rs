//! A server that requires client certificates from a dev CA made at test
//! time, with the PEM files clients in other languages read.

use std::path::{Path, PathBuf};

use plinth_platform::{
    certs::{DevCa, PemPair},
    identity::certificate::CertificateIdentity,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{Backend, Clients, Credentials, Sandbox, tls_config};

pub struct MutualTls {
    pub sandbox: Sandbox,
    pub ca: DevCa,
    pub ca_pem: String,
    directory: tempfile::TempDir,
}

impl MutualTls {
    /// A server on SQLite requiring client certificates from its dev CA.
    pub async fn start() -> MutualTls {
        crate::install_crypto_provider();
        let ca = DevCa::generate("test ca").unwrap();
        let server = ca.server_certificate().unwrap();
        let directory = tempfile::tempdir().unwrap();
        let tls = tls_config(
            write(directory.path(), "server.pem", &server.certificate),
            write(directory.path(), "server.key", &server.private_key),
            Some(write(directory.path(), "ca.pem", ca.certificate_pem())),
        );
        let sandbox = Sandbox::start_with(Backend::Sqlite, |config| config.tls = tls).await;
        MutualTls {
            sandbox,
            ca_pem: ca.certificate_pem().to_owned(),
            ca,
            directory,
        }
    }

    /// Clients with the bootstrap operator key and an operator certificate.
    pub async fn operator(&self) -> Clients {
        let channel = self
            .channel_to(&format!("https://{}", self.sandbox.address))
            .await;
        Clients::over(channel, Credentials::api_key(&self.sandbox.operator_key))
    }

    /// A channel to `url` (a server with a certificate of the CA for
    /// localhost), presenting an operator certificate.
    pub async fn channel_to(&self, url: &str) -> Channel {
        let pair = self
            .ca
            .client_certificate(&CertificateIdentity::Operator("ops".to_owned()))
            .unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(pair.certificate, pair.private_key));
        Endpoint::from_shared(url.to_owned())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// The CA's certificate, as a PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.directory.path().join("ca.pem")
    }

    /// `pair` as PEM files named after `name`: (certificate, private key).
    pub fn client_files(&self, name: &str, pair: &PemPair) -> (PathBuf, PathBuf) {
        (
            write(
                self.directory.path(),
                &format!("{name}.pem"),
                &pair.certificate,
            ),
            write(
                self.directory.path(),
                &format!("{name}.key"),
                &pair.private_key,
            ),
        )
    }
}

fn write(directory: &Path, name: &str, contents: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
