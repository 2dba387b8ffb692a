//! Development certificates: a CA (kept, with its key, so that later runs
//! add to it), a server certificate for the loopback names, and client
//! certificates that name a module or an operator in a URI SAN. Every
//! certificate has a bounded validity.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::identity::certificate::CertificateIdentity;

/// How long a dev CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 365;
/// How long dev server and client certificates are valid.
pub const LEAF_VALIDITY_DAYS: i64 = 90;

const CA_CERTIFICATE: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER: &str = "server";

/// A certificate and its private key, PEM encoded.
pub struct PemPair {
    pub certificate: String,
    pub private_key: String,
}

/// A dev CA that signs server and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    key_pem: String,
}

impl DevCa {
    pub fn generate(common_name: &str) -> Result<DevCa, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let certificate_pem = params.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            certificate_pem,
            key_pem,
        })
    }

    /// A CA written by an earlier run.
    pub fn load(certificate_pem: &str, key_pem: &str) -> Result<DevCa, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(DevCa {
            issuer: Issuer::from_ca_cert_pem(certificate_pem, key)?,
            certificate_pem: certificate_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A server certificate for localhost, 127.0.0.1 and ::1; it also
    /// authenticates the server as a client, as when the core probes module
    /// instances over mTLS.
    pub fn server_certificate(&self) -> Result<PemPair, rcgen::Error> {
        let mut params = CertificateParams::new([
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        params.distinguished_name = distinguished_name("plinth server");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// A client certificate naming `identity` in its URI SAN.
    pub fn client_certificate(
        &self,
        identity: &CertificateIdentity,
    ) -> Result<PemPair, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(identity.name());
        params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate naming `module`.
    pub fn module_certificate(&self, module: &str) -> Result<PemPair, rcgen::Error> {
        self.client_certificate(&CertificateIdentity::Module(module.to_owned()))
    }

    fn sign(&self, mut params: CertificateParams) -> Result<PemPair, rcgen::Error> {
        set_validity(&mut params, LEAF_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(PemPair {
            certificate: certificate.pem(),
            private_key: key.serialize_pem(),
        })
    }
}

/// Valid from yesterday (clock skew) for `days` days.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let ymd = |date: chrono::NaiveDate| {
        rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8)
    };
    let today = Utc::now().date_naive();
    params.not_before = ymd(today - chrono::Duration::days(1));
    params.not_after = ymd(today + chrono::Duration::days(days));
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Ensures `out_dir` holds a dev CA (`ca.pem`, `ca.key`) and a server
/// certificate (`server.pem`, `server.key`), reusing those already there,
/// and writes `<name>.pem`/`<name>.key` for each client identity. A new CA
/// also gets an operator certificate (`operator.pem`), so an operator is
/// never locked out of an mTLS server. Keys are mode 0600. Returns the files
/// written.
pub fn write_dev_certificates(
    out_dir: &Path,
    clients: &[CertificateIdentity],
) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    let ca_certificate = out_dir.join(CA_CERTIFICATE);
    let ca_key = out_dir.join(CA_KEY);
    let mut clients = clients.to_vec();
    let ca = if ca_certificate.exists() {
        DevCa::load(
            &fs::read_to_string(&ca_certificate)?,
            &fs::read_to_string(&ca_key)?,
        )
        .map_err(io::Error::other)?
    } else {
        let ca = DevCa::generate("plinth dev ca").map_err(io::Error::other)?;
        fs::write(&ca_certificate, ca.certificate_pem())?;
        crate::files::write_private(&ca_key, ca.key_pem.as_bytes())?;
        written.extend([ca_certificate, ca_key]);
        if !clients
            .iter()
            .any(|client| matches!(client, CertificateIdentity::Operator(_)))
        {
            clients.push(CertificateIdentity::Operator("operator".to_owned()));
        }
        ca
    };
    if !out_dir.join(format!("{SERVER}.pem")).exists() {
        let server = ca.server_certificate().map_err(io::Error::other)?;
        written.extend(write_pair(out_dir, SERVER, &server)?);
    }
    for client in &clients {
        let pair = ca.client_certificate(client).map_err(io::Error::other)?;
        written.extend(write_pair(out_dir, client.name(), &pair)?);
    }
    Ok(written)
}

fn write_pair(out_dir: &Path, name: &str, pair: &PemPair) -> io::Result<[PathBuf; 2]> {
    let certificate = out_dir.join(format!("{name}.pem"));
    let key = out_dir.join(format!("{name}.key"));
    fs::write(&certificate, &pair.certificate)?;
    crate::files::write_private(&key, pair.private_key.as_bytes())?;
    Ok([certificate, key])
}
