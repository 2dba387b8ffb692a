//! Module identity from client certificates: a URI SAN
//! `spiffe://plinth/module/<module id>`.

use x509_parser::{extensions::GeneralName, prelude::FromDer};

pub const MODULE_URI_PREFIX: &str = "spiffe://plinth/module/";

/// The module a (verified) DER certificate names, if it names one.
pub fn module_of(certificate_der: &[u8]) -> Option<String> {
    let (_, certificate) =
        x509_parser::certificate::X509Certificate::from_der(certificate_der).ok()?;
    let alternative_names = certificate.subject_alternative_name().ok()??;
    alternative_names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(MODULE_URI_PREFIX),
            _ => None,
        })
        .filter(|module| !module.is_empty())
        .map(str::to_owned)
}
