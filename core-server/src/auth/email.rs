//! Email addresses as account keys: Unicode NFKC, lower case, trimmed, so
//! that every variant of one address is one account (throttling included).

use unicode_normalization::UnicodeNormalization;

pub const MAX_BYTES: usize = 254;

/// The normalised address, or why it is not one.
pub fn normalize(email: &str) -> Result<String, &'static str> {
    let normalized = normalize_prefix(email);
    if normalized.is_empty() {
        return Err("is required");
    }
    if normalized.len() > MAX_BYTES {
        return Err("must be at most 254 bytes");
    }
    let Some((local, domain)) = normalized.rsplit_once('@') else {
        return Err("must be an email address");
    };
    let well_formed = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !normalized
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if !well_formed {
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
        ] {
            assert!(normalize(email).is_err(), "{email:?}");
        }
    }
}
