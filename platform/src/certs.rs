//! Development certificates: a CA, a server certificate for the loopback
//! names, and client certificates that name a module in a URI SAN.

use std::{fs, io, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::identity::certificate::MODULE_URI_PREFIX;

/// A certificate and its private key, PEM encoded.
pub struct PemPair {
    pub certificate: String,
    pub private_key: String,
}

/// A dev CA that signs server and module client certificates.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl DevCa {
    pub fn generate(common_name: &str) -> Result<DevCa, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer })
    }

    pub fn certificate_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for localhost, 127.0.0.1 and ::1.
    pub fn server_certificate(&self) -> Result<PemPair, rcgen::Error> {
        let mut params = CertificateParams::new([
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        params.distinguished_name = distinguished_name("plinth server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate naming `module` as `spiffe://plinth/module/<module>`.
    pub fn module_certificate(&self, module: &str) -> Result<PemPair, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(module);
        params.subject_alt_names = vec![SanType::URI(
            format!("{MODULE_URI_PREFIX}{module}").try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<PemPair, rcgen::Error> {
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(PemPair {
            certificate: certificate.pem(),
            private_key: key.serialize_pem(),
        })
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `ca.pem`, `server.pem`/`server.key` and
/// `<module>.pem`/`<module>.key` into `out_dir`; keys are mode 0600.
pub fn write_dev_certificates(out_dir: &Path, module: &str) -> io::Result<()> {
    let ca = DevCa::generate("plinth dev ca").map_err(io::Error::other)?;
    let server = ca.server_certificate().map_err(io::Error::other)?;
    let client = ca.module_certificate(module).map_err(io::Error::other)?;
    fs::create_dir_all(out_dir)?;
    fs::write(out_dir.join("ca.pem"), ca.certificate_pem())?;
    fs::write(out_dir.join("server.pem"), server.certificate)?;
    crate::files::write_private(&out_dir.join("server.key"), server.private_key.as_bytes())?;
    fs::write(out_dir.join(format!("{module}.pem")), client.certificate)?;
    crate::files::write_private(
        &out_dir.join(format!("{module}.key")),
        client.private_key.as_bytes(),
    )?;
    Ok(())
}
