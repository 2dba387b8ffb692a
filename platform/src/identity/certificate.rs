//! Identity from client certificates: a URI SAN
//! `spiffe://plinth/module/<module id>` for modules, or
//! `spiffe://plinth/operator/<name>` for operators.

use x509_parser::{extensions::GeneralName, prelude::FromDer};

pub const MODULE_URI_PREFIX: &str = "spiffe://plinth/module/";
pub const OPERATOR_URI_PREFIX: &str = "spiffe://plinth/operator/";

/// What a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateIdentity {
    Module(String),
    Operator(String),
}

impl CertificateIdentity {
    /// The module named, for module certificates.
    pub fn module(&self) -> Option<&str> {
        match self {
            CertificateIdentity::Module(module) => Some(module),
            CertificateIdentity::Operator(_) => None,
        }
    }

    /// The module's or operator's name.
    pub fn name(&self) -> &str {
        match self {
            CertificateIdentity::Module(name) | CertificateIdentity::Operator(name) => name,
        }
    }

    /// From a (verified) DER certificate, if it names a module or operator.
    pub fn of_certificate(certificate_der: &[u8]) -> Option<CertificateIdentity> {
        let (_, certificate) =
            x509_parser::certificate::X509Certificate::from_der(certificate_der).ok()?;
        let alternative_names = certificate.subject_alternative_name().ok()??;
        alternative_names
            .value
            .general_names
            .iter()
            .find_map(|name| match name {
                GeneralName::URI(uri) => CertificateIdentity::of_uri(uri),
                _ => None,
            })
    }

    fn of_uri(uri: &str) -> Option<CertificateIdentity> {
        let named = |prefix: &str| {
            uri.strip_prefix(prefix)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        };
        named(MODULE_URI_PREFIX)
            .map(CertificateIdentity::Module)
            .or_else(|| named(OPERATOR_URI_PREFIX).map(CertificateIdentity::Operator))
    }

    /// The URI SAN that names this identity.
    pub fn uri(&self) -> String {
        match self {
            CertificateIdentity::Module(module) => format!("{MODULE_URI_PREFIX}{module}"),
            CertificateIdentity::Operator(name) => format!("{OPERATOR_URI_PREFIX}{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_and_operator_uris_are_told_apart() {
        for identity in [
            CertificateIdentity::Module("finance".to_owned()),
            CertificateIdentity::Operator("ops".to_owned()),
        ] {
            assert_eq!(CertificateIdentity::of_uri(&identity.uri()), Some(identity));
        }
        assert_eq!(CertificateIdentity::of_uri("spiffe://plinth/module/"), None);
        assert_eq!(
            CertificateIdentity::of_uri("spiffe://elsewhere/module/x"),
            None
        );
    }
}
