//! Email addresses as account keys: parsed as RFC 5322 addr-specs (by the
//! `email_address` crate), normalised to Unicode NFKC, lower case and
//! trimmed, so that every variant of one address is one account
//! (throttling included).

use email_address::{EmailAddress, Options};
use unicode_normalization::UnicodeNormalization;

pub const MAX_BYTES: usize = 254;

/// The normalised address, or why it is not one.
pub fn normalize(email: &str) -> Result<String, &'static str> {
    // Refused before normalising, so oversized input costs nothing.
    if email.len() > 4 * MAX_BYTES {
        return Err("must be at most 254 bytes");
    }
    let normalized = normalize_prefix(email);
    if normalized.is_empty() {
        return Err("is required");
    }
    if normalized.len() > MAX_BYTES {
        return Err("must be at most 254 bytes");
    }
    let options = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    let parsed = EmailAddress::parse_with_options(&normalized, options)
        .map_err(|_| "must be an email address")?;
    // Quoted local parts may hold spaces and controls: not for account keys.
    if parsed
        .as_str()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err("must be an email address");
    }
    Ok(normalized)
}

/// A search prefix normalised like the addresses it is matched against.
pub fn normalize_prefix(prefix: &str) -> String {
    prefix
        .trim()
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_width_and_space_variants_are_one_address() {
        let canonical = normalize("ada@example.com").unwrap();
        for variant in [
            "  Ada@Example.COM ",
            "ＡＤＡ@example.com",
            "ada@EXAMPLE.com",
        ] {
            assert_eq!(normalize(variant).unwrap(), canonical, "{variant:?}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for email in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "a@b@example.com",
            "\"a b\"@example.com",
            "ada@[127.0.0.1]",
            "Ada <ada@example.com>",
            "ada@exa mple.com",
            "ada..lovelace@example.com",
        ] {
            assert!(normalize(email).is_err(), "{email:?}");
        }
    }

    #[test]
    fn addresses_longer_than_254_bytes_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(normalize(&long), Err("must be at most 254 bytes"));
    }
}
