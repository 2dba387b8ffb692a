//! `google.protobuf.Struct` as JSON, both ways.

use plinth_api::prost_types::{ListValue, Struct, Value, value::Kind};

/// Largest integer a `Struct` number (an `f64`) holds exactly.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A `Struct` as a JSON object.
pub fn object(document: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        document
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), json(value)))
            .collect(),
    )
}

fn json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => number_json(*number),
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(json).collect())
        }
        Some(Kind::StructValue(document)) => object(document),
    }
}

/// Whole numbers come out as JSON integers; a number JSON cannot carry (NaN,
/// infinities) comes out as null, which schemas then refuse.
fn number_json(number: f64) -> serde_json::Value {
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT_INTEGER {
        serde_json::Value::from(number as i64)
    } else {
        serde_json::Number::from_f64(number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// A JSON object as a `Struct`.
pub fn to_struct(object: serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: object
            .into_iter()
            .map(|(key, value)| (key, to_value(value)))
            .collect(),
    }
}

fn to_value(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(values) => Kind::ListValue(ListValue {
            values: values.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(object) => Kind::StructValue(to_struct(object)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_survive_the_round_trip() {
        let document = serde_json::json!({
            "name": "acme", "limit": 10, "ratio": 0.5, "on": true, "none": null,
            "list": [1, "two", {"three": 3}],
        });
        let serde_json::Value::Object(object) = document.clone() else {
            unreachable!()
        };
        assert_eq!(self::object(&to_struct(object)), document);
    }

    #[test]
    fn numbers_json_cannot_carry_become_null() {
        assert_eq!(number_json(f64::NAN), serde_json::Value::Null);
        assert_eq!(number_json(1e300), serde_json::json!(1e300));
    }
}
