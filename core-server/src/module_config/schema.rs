//! What a module version says about its configuration: its defaults, the
//! JSON Schema documents must meet, and which properties are secrets.

use plinth_api::registry::v1::ModuleManifest;
use registry_server::manifest::{config_validator, json};
use serde_json::{Map, Value};

use super::document::escape;

/// The schema keyword that marks a property secret.
pub const SECRET_KEYWORD: &str = "x-plinth-secret";

/// Violations shown per document validated; the rest are counted by the
/// error itself.
const MAX_REPORTED: usize = 20;

/// One module version's configuration rules.
pub struct ConfigSchema {
    pub defaults: Map<String, Value>,
    validator: Option<jsonschema::Validator>,
    /// Paths (object keys from the root) of the secret properties.
    secrets: Vec<Vec<String>>,
}

/// A value that breaks the schema: its JSON Pointer and the rule, masked
/// (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    pub pointer: String,
    pub description: String,
}

impl ConfigSchema {
    /// From a manifest registration accepted (so its schema compiles; one
    /// that no longer does accepts nothing but the empty document).
    pub fn of(manifest: &ModuleManifest) -> ConfigSchema {
        let defaults = match manifest.config_defaults.as_ref().map(json::object) {
            Some(Value::Object(defaults)) => defaults,
            _ => Map::new(),
        };
        let schema = manifest.config_schema.as_ref().map(json::object);
        let mut secrets = Vec::new();
        if let Some(schema) = &schema {
            secret_paths(schema, &mut Vec::new(), &mut secrets);
        }
        ConfigSchema {
            defaults,
            validator: schema.as_ref().and_then(config_validator),
            secrets,
        }
    }

    /// Where `document` breaks the schema; a module without a schema takes
    /// only the empty document.
    pub fn violations(&self, document: &Value) -> Vec<SchemaViolation> {
        match &self.validator {
            Some(validator) => validator
                .iter_errors(document)
                .take(MAX_REPORTED)
                .map(|error| SchemaViolation {
                    pointer: error.instance_path().to_string(),
                    description: error.masked().to_string(),
                })
                .collect(),
            None => match document.as_object() {
                Some(object) if object.is_empty() => Vec::new(),
                _ => vec![SchemaViolation {
                    pointer: String::new(),
                    description: "the module takes no configuration".to_owned(),
                }],
            },
        }
    }

    /// The secret properties present in `layer`, each with its JSON Pointer.
    pub fn secrets_in<'a>(
        &'a self,
        layer: &Map<String, Value>,
    ) -> impl Iterator<Item = (String, &'a [String])> {
        self.secrets.iter().filter_map(move |path| {
            let (first, rest) = path.split_first()?;
            let mut current = layer.get(first)?;
            for key in rest {
                current = current.get(key)?;
            }
            let pointer = path.iter().map(|key| format!("/{}", escape(key))).collect();
            Some((pointer, path.as_slice()))
        })
    }
}

/// Collects the paths of properties marked secret, through nested
/// `properties`.
fn secret_paths(schema: &Value, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, property) in properties {
        path.push(key.clone());
        if property.get(SECRET_KEYWORD).and_then(Value::as_bool) == Some(true) {
            found.push(path.clone());
        } else {
            secret_paths(property, path, found);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema_of(schema: Value, defaults: Value) -> ConfigSchema {
        let (Value::Object(schema), Value::Object(defaults)) = (schema, defaults) else {
            panic!("objects")
        };
        ConfigSchema::of(&ModuleManifest {
            config_schema: Some(json::to_struct(schema)),
            config_defaults: Some(json::to_struct(defaults)),
            ..ModuleManifest::default()
        })
    }

    #[test]
    fn secrets_are_found_through_nested_properties() {
        let schema = schema_of(
            json!({"type": "object", "properties": {
                "api_key": {"type": "string", "x-plinth-secret": true},
                "smtp": {"type": "object", "properties": {
                    "host": {"type": "string"},
                    "password": {"type": "string", "x-plinth-secret": true}
                }}
            }}),
            json!({}),
        );
        let layer = json!({"smtp": {"host": "mail", "password": "p"}});
        let found: Vec<String> = schema
            .secrets_in(layer.as_object().unwrap())
            .map(|(pointer, _)| pointer)
            .collect();
        assert_eq!(found, ["/smtp/password"]);
    }

    #[test]
    fn violations_name_pointers_and_never_the_value() {
        let schema = schema_of(
            json!({"type": "object", "properties": {
                "limits": {"type": "object", "properties": {"max": {"type": "integer", "maximum": 10}}}
            }}),
            json!({}),
        );
        let violations = schema.violations(&json!({"limits": {"max": 123456789}}));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].pointer, "/limits/max");
        assert!(!violations[0].description.contains("123456789"));
    }

    #[test]
    fn a_module_without_a_schema_takes_only_the_empty_document() {
        let schema = ConfigSchema::of(&ModuleManifest::default());
        assert!(schema.violations(&json!({})).is_empty());
        assert_eq!(schema.violations(&json!({"a": 1})).len(), 1);
    }
}
