//! The shapes of names and free text every API shares, so each server and
//! the offline manifest check apply the same rules.

/// The rule of a slug (codes, keys, tags, categories).
pub const SLUG_RULE: &str = "must match ^[a-z][a-z0-9-]{1,62}$";

/// The rule of a module id, which is also a permission namespace.
pub const MODULE_ID_RULE: &str = "must match ^[a-z][a-z0-9_]{1,62}$";

/// `^[a-z][a-z0-9-]{1,62}$`.
pub fn is_slug(value: &str) -> bool {
    is_name(value, b'-')
}

/// `^[a-z][a-z0-9_]{1,62}$`.
pub fn is_module_id(value: &str) -> bool {
    is_name(value, b'_')
}

fn is_name(value: &str, separator: u8) -> bool {
    let bytes = value.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == separator)
}

/// What is wrong with free text of at most `max_characters` (trimmed, no
/// control characters), if anything.
pub fn text_problem(value: &str, max_characters: usize) -> Option<String> {
    // Characters are at most 4 bytes: longer input is refused uncounted.
    if value.len() > 4 * max_characters || value.chars().count() > max_characters {
        return Some(format!("must be at most {max_characters} characters"));
    }
    value
        .chars()
        .any(char::is_control)
        .then(|| "must not contain control characters".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_module_ids_differ_only_in_their_separator() {
        assert!(is_slug("north-east") && !is_slug("north_east"));
        assert!(is_module_id("stock_count") && !is_module_id("stock-count"));
        for bad in ["", "a", "1abc", "Abc", "ab c", &"a".repeat(64)] {
            assert!(!is_slug(bad) && !is_module_id(bad), "{bad:?}");
        }
        assert!(is_slug(&"a".repeat(63)));
    }

    #[test]
    fn text_is_bounded_in_characters_and_refuses_control_characters() {
        assert_eq!(text_problem("żółw", 4), None);
        assert!(text_problem("żółwie", 4).is_some());
        assert!(text_problem("line\nbreak", 100).is_some());
    }
}
