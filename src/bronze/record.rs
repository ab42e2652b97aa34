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

    /// [`Fields::get`], looking first at position `hint` (where the field was in the previous
    /// record: lines of one source nearly always list their fields in the same order), and
    /// updating it.
    pub fn get_hinted(&self, name: &str, hint: &mut usize) -> Option<&'a RawValue> {
        // the first of repeated keys counts, as in `get`
        if let Some((k, v)) = self.0.get(*hint)
            && *k == name
            && !self.0[..*hint].iter().any(|(k, _)| *k == name)
        {
            return Some(*v);
        }
        let at = self.0.iter().position(|(k, _)| *k == name)?;
        *hint = at;
        Some(self.0[at].1)
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

/// JSON type name of a raw value: string, number, boolean, null, object, array.
pub fn kind_of_raw(v: &RawValue) -> &'static str {
    match v.get().as_bytes().first() {
        Some(b'"') => "string",
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b't') | Some(b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// JSON type name of a value.
pub fn kind_of_value(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::String(_) => "string",
        serde_json::Value::Object(_) => "object",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Null => "null",
        serde_json::Value::Number(_) => "number",
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
        assert_eq!(kind_of_raw(f.get("a").unwrap()), "number");
        assert_eq!(kind_of_raw(f.get("b").unwrap()), "string");
        assert_eq!(kind_of_raw(f.get("c").unwrap()), "null");
        assert_eq!(kind_of_raw(f.get("d").unwrap()), "array");
        assert!(matches!(parse_object("{\"a\":1"), Parsed::Invalid(_)));
        assert!(matches!(parse_object("[1]"), Parsed::Invalid(m) if m.contains("array")));
        let Parsed::Object(f) = parse_object(r#"{"id":7,"x":1,"id":9}"#) else {
            panic!("expected object")
        };
        let mut hint = 2;
        assert_eq!(
            f.get_hinted("id", &mut hint).unwrap().get(),
            "7",
            "the first of repeats"
        );
        assert!(matches!(
            parse_object(r#"{"a\"b":1}"#),
            Parsed::OwnedObject(_)
        ));
    }
}
