//! Reading one JSON record without building a tree: the top-level fields of an object as
//! borrowed raw values (serde_json does the parsing), and the JSON type of a raw value.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level fields of a JSON object, borrowed from the line, in order.
#[derive(Debug, Default)]
pub struct Fields<'a>(pub Vec<(&'a str, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// Parses a line that must be a JSON object. Keys containing escapes fall back to an owned
    /// parse by the caller (see [`parse_object`]).
    fn parse_borrowed(line: &'a str) -> serde_json::Result<Fields<'a>> {
        serde_json::from_str(line)
    }

    /// The raw value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((k, v)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Outcome of reading a line as a record.
pub enum Parsed<'a> {
    /// A JSON object, fields borrowed.
    Object(Fields<'a>),
    /// A JSON object whose keys need unescaping: fields owned.
    OwnedObject(serde_json::Map<String, serde_json::Value>),
    /// Not a JSON object: the reason.
    Invalid(String),
}

/// Parses a line as a JSON object.
pub fn parse_object(line: &str) -> Parsed<'_> {
    match Fields::parse_borrowed(line) {
        Ok(f) => Parsed::Object(f),
        Err(_) => match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(m)) => Parsed::OwnedObject(m),
            Ok(other) => Parsed::Invalid(format!(
                "record is a JSON {}, not an object",
                kind_of_value(&other)
            )),
            Err(e) => Parsed::Invalid(format!("invalid JSON: {e}")),
        },
    }
}

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

impl JsonKind {
    pub const ALL: [JsonKind; 6] = [
        JsonKind::String,
        JsonKind::Number,
        JsonKind::Boolean,
        JsonKind::Null,
        JsonKind::Object,
        JsonKind::Array,
    ];

    /// Its name: string, number, boolean, null, object, array.
    pub fn name(self) -> &'static str {
        match self {
            JsonKind::String => "string",
            JsonKind::Number => "number",
            JsonKind::Boolean => "boolean",
            JsonKind::Null => "null",
            JsonKind::Object => "object",
            JsonKind::Array => "array",
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The JSON type of a raw value.
pub fn kind_of_raw(v: &RawValue) -> JsonKind {
    match v.get().as_bytes().first() {
        Some(b'"') => JsonKind::String,
        Some(b'{') => JsonKind::Object,
        Some(b'[') => JsonKind::Array,
        Some(b't') | Some(b'f') => JsonKind::Boolean,
        Some(b'n') => JsonKind::Null,
        _ => JsonKind::Number,
    }
}

/// The JSON type of a value.
pub fn kind_of_value(v: &serde_json::Value) -> JsonKind {
    match v {
        serde_json::Value::String(_) => JsonKind::String,
        serde_json::Value::Object(_) => JsonKind::Object,
        serde_json::Value::Array(_) => JsonKind::Array,
        serde_json::Value::Bool(_) => JsonKind::Boolean,
        serde_json::Value::Null => JsonKind::Null,
        serde_json::Value::Number(_) => JsonKind::Number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_kinds() {
        let Parsed::Object(f) = parse_object(r#"{"a":1,"b":"x","c":null,"d":[1]}"#) else {
            panic!("expected object")
        };
        assert_eq!(f.0.len(), 4);
        assert_eq!(kind_of_raw(f.get("a").unwrap()), JsonKind::Number);
        assert_eq!(kind_of_raw(f.get("b").unwrap()), JsonKind::String);
        assert_eq!(kind_of_raw(f.get("c").unwrap()), JsonKind::Null);
        assert_eq!(kind_of_raw(f.get("d").unwrap()), JsonKind::Array);
        assert!(matches!(parse_object("{\"a\":1"), Parsed::Invalid(_)));
        assert!(matches!(parse_object("[1]"), Parsed::Invalid(m) if m.contains("array")));
        let Parsed::Object(f) = parse_object(r#"{"id":7,"x":1,"id":9}"#) else {
            panic!("expected object")
        };
        assert_eq!(f.get("id").unwrap().get(), "7", "the first of repeats");
        assert!(matches!(
            parse_object(r#"{"a\"b":1}"#),
            Parsed::OwnedObject(_)
        ));
    }
}
