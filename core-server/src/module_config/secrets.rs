//! Secret configuration values at rest: sealed with the key-encryption key
//! in place of the value, as `{"$plinth_sealed": "<base64>"}`, bound to
//! the layer and the property (so a sealed value copied elsewhere does not
//! open); opened wherever a layer is read. Callers cannot write that key.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::schema::ConfigSchema;
use crate::auth::signing::KeyEncryptionKey;

/// The key of a sealed value's object.
pub const SEALED_KEY: &str = "$plinth_sealed";

/// What audit details show in place of a secret value.
pub const REDACTED: &str = "[redacted]";

/// Where a layer lives: what sealing binds its values to.
#[derive(Debug, Clone, Copy)]
pub struct LayerKey<'a> {
    pub tenant_id: Uuid,
    pub module_id: &'a str,
    pub company_id: Option<Uuid>,
}

impl LayerKey<'_> {
    fn associated(&self, pointer: &str) -> String {
        format!(
            "config:{}:{}:{}:{pointer}",
            self.tenant_id,
            self.module_id,
            self.company_id.map(|id| id.to_string()).unwrap_or_default()
        )
    }
}

/// Whether a caller's document uses the reserved key anywhere.
pub fn uses_reserved_key(value: &Value) -> bool {
    match value {
        Value::Object(object) => {
            object.contains_key(SEALED_KEY) || object.values().any(uses_reserved_key)
        }
        Value::Array(values) => values.iter().any(uses_reserved_key),
        _ => false,
    }
}

/// The layer with each secret value the schema marks replaced by what
/// `replace` makes of it (given its pointer).
pub fn replace_secrets(
    schema: &ConfigSchema,
    layer: &Map<String, Value>,
    mut replace: impl FnMut(&str, &Value) -> Value,
) -> Map<String, Value> {
    let mut replaced = layer.clone();
    for (pointer, path) in schema.secrets_in(layer) {
        if let Some(value) = value_at(&mut replaced, path) {
            *value = replace(&pointer, value);
        }
    }
    replaced
}

fn value_at<'a>(object: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let value = object.get_mut(first)?;
    match rest {
        [] => Some(value),
        _ => value_at(value.as_object_mut()?, rest),
    }
}

/// The layer as stored: its secret values sealed.
pub fn seal(
    encryption: &KeyEncryptionKey,
    schema: &ConfigSchema,
    key: LayerKey<'_>,
    layer: &Map<String, Value>,
) -> Map<String, Value> {
    replace_secrets(schema, layer, |pointer, value| {
        let sealed = encryption.seal(&key.associated(pointer), value.to_string().as_bytes());
        Value::Object(Map::from_iter([(
            SEALED_KEY.to_owned(),
            Value::String(STANDARD.encode(sealed)),
        )]))
    })
}

/// A stored layer with its sealed values opened; `None` when one does not
/// open (the wrong key, or a value moved).
pub fn open(
    encryption: &KeyEncryptionKey,
    key: LayerKey<'_>,
    mut layer: Map<String, Value>,
) -> Option<Map<String, Value>> {
    let mut pointer = String::new();
    for (name, value) in layer.iter_mut() {
        open_value(encryption, key, &mut pointer, name, value)?;
    }
    Some(layer)
}

fn open_value(
    encryption: &KeyEncryptionKey,
    key: LayerKey<'_>,
    pointer: &mut String,
    name: &str,
    value: &mut Value,
) -> Option<()> {
    let length = pointer.len();
    pointer.push('/');
    pointer.push_str(&super::document::escape(name));
    if let Value::Object(object) = value {
        if let Some(Value::String(sealed)) = object.get(SEALED_KEY) {
            let sealed = STANDARD.decode(sealed).ok()?;
            let plaintext = encryption.open(&key.associated(pointer), &sealed)?;
            *value = serde_json::from_slice(&plaintext).ok()?;
        } else {
            for (child_name, child) in object.iter_mut() {
                open_value(encryption, key, pointer, child_name, child)?;
            }
        }
    }
    pointer.truncate(length);
    Some(())
}
