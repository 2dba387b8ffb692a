//! Configuration documents: JSON objects read within bounds, merged with
//! JSON Merge Patch (RFC 7396), and the provenance of each leaf of a
//! merged document. Key order survives (the maps keep insertion order), and
//! so do 64-bit integers.

use serde_json::{Map, Value};

/// Largest document, as JSON text.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: usize = 32;

/// A JSON object within [`MAX_DOCUMENT_BYTES`] and [`MAX_DEPTH`]; why not
/// otherwise (never echoing the text).
pub fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("must be at most {MAX_DOCUMENT_BYTES} bytes"));
    }
    // serde_json stops at 128 levels itself; what it accepts is measured.
    // Its errors into a `Value` name the problem and where, never the text.
    let value: Value =
        serde_json::from_str(text).map_err(|error| format!("must be a JSON object ({error})"))?;
    if depth(&value) > MAX_DEPTH {
        return Err(format!("must nest at most {MAX_DEPTH} levels deep"));
    }
    match value {
        Value::Object(object) => Ok(object),
        _ => Err("must be a JSON object".to_owned()),
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(object) => 1 + object.values().map(depth).max().unwrap_or(0),
        Value::Array(values) => 1 + values.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Applies `patch` to `target` (RFC 7396): objects merge key by key, null
/// deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Defaults, then each layer over them.
pub fn resolve<'a>(
    defaults: &Map<String, Value>,
    layers: impl IntoIterator<Item = &'a Map<String, Value>>,
) -> Value {
    let mut resolved = Value::Object(defaults.clone());
    for layer in layers {
        merge_patch(&mut resolved, &Value::Object(layer.clone()));
    }
    resolved
}

/// An RFC 6901 reference token: `~` as `~0`, `/` as `~1`.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Every leaf of `document` (a value that is not an object, or an empty
/// object) as a JSON Pointer, in document order, with the index (into
/// `layers`, from the lowest) of the highest layer that holds it; `None`
/// when none does (the leaf is a default).
pub fn provenance(
    document: &Value,
    layers: &[&Map<String, Value>],
) -> Vec<(String, Option<usize>)> {
    let mut leaves = Vec::new();
    walk(document, &mut Vec::new(), &mut |tokens| {
        let pointer: String = tokens
            .iter()
            .map(|token| format!("/{}", escape(token)))
            .collect();
        let source = layers.iter().rposition(|layer| holds(layer, tokens));
        leaves.push((pointer, source));
    });
    leaves
}

fn walk<'a>(value: &'a Value, tokens: &mut Vec<&'a str>, leaf: &mut impl FnMut(&[&str])) {
    match value {
        Value::Object(object) if !object.is_empty() => {
            for (key, child) in object {
                tokens.push(key);
                walk(child, tokens, leaf);
                tokens.pop();
            }
        }
        _ => leaf(tokens),
    }
}

/// Whether `layer` sets a (non-null) value at the path of `tokens`.
fn holds(layer: &Map<String, Value>, tokens: &[&str]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return false;
    };
    let mut current = match layer.get(*first) {
        Some(value) => value,
        None => return false,
    };
    for token in rest {
        match current.get(*token) {
            Some(value) => current = value,
            None => return false,
        }
    }
    !current.is_null()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396_appendix_a() {
        // The examples of RFC 7396, Appendix A.
        for (target, patch, result) in [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ] {
            let mut merged = target.clone();
            merge_patch(&mut merged, &patch);
            assert_eq!(merged, result, "{target} + {patch}");
        }
    }

    #[test]
    fn key_order_and_64_bit_integers_survive() {
        let text = r#"{"zeta":1,"alpha":{"y":18446744073709551615,"b":-9223372036854775808}}"#;
        let parsed = parse_object(text).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), text);
        let merged = resolve(&Map::new(), [&parsed]);
        assert_eq!(merged.to_string(), text);
    }

    #[test]
    fn a_patch_keeps_the_order_of_the_keys_it_merges_into() {
        let defaults = object(json!({"b": 1, "a": 2}));
        let layer = object(json!({"c": 3, "b": 4}));
        assert_eq!(
            resolve(&defaults, [&layer]).to_string(),
            r#"{"b":4,"a":2,"c":3}"#
        );
    }

    #[test]
    fn documents_beyond_their_bounds_are_refused_without_echoing_them() {
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        for (text, expected) in [
            ("[1]".to_owned(), "must be a JSON object"),
            ("\"secret\"".to_owned(), "must be a JSON object"),
            ("{\"a\":".to_owned(), "EOF while parsing"),
            ("{secret}".to_owned(), "key must be a string"),
            (format!("{{\"a\":{deep}}}"), "levels deep"),
            (
                format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_DOCUMENT_BYTES)),
                "bytes",
            ),
            ("{\"a\":1e400}".to_owned(), "number out of range"),
        ] {
            let error = parse_object(&text).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn provenance_names_the_highest_layer_holding_each_leaf() {
        let tenant = object(json!({"invoice": {"prefix": "T"}, "list": [1], "gone": null}));
        let company = object(json!({"invoice": {"digits": 6}, "a/b~": true}));
        let defaults =
            object(json!({"invoice": {"prefix": "D", "digits": 4}, "gone": 1, "empty": {}}));
        let resolved = resolve(&defaults, [&tenant, &company]);
        assert_eq!(
            provenance(&resolved, &[&tenant, &company]),
            [
                ("/invoice/prefix".to_owned(), Some(0)),
                ("/invoice/digits".to_owned(), Some(1)),
                ("/empty".to_owned(), None),
                ("/list".to_owned(), Some(0)),
                ("/a~1b~0".to_owned(), Some(1)),
            ]
        );
    }
}
