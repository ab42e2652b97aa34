//! Schema drift between consecutive bronze batches of a source: fields added, removed, or whose
//! JSON type changed. Drift is recorded, never rejected.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The difference between two inferred schemas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaDiff {
    pub added: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
    /// (field, old type, new type)
    pub changed: Vec<(String, String, String)>,
}

impl SchemaDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line, e.g. `+coupon(string) ~amount(number→string)`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.added.iter().map(|(f, t)| format!("+{f}({t})")));
        parts.extend(self.removed.iter().map(|(f, t)| format!("-{f}({t})")));
        parts.extend(
            self.changed
                .iter()
                .map(|(f, a, b)| format!("~{f}({a}→{b})")),
        );
        parts.join(" ")
    }
}

/// Compares `old` with `new`. A field whose type only gained or lost `null` is not a change.
pub fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> SchemaDiff {
    let mut d = SchemaDiff::default();
    for (f, t) in new {
        match old.get(f) {
            None => d.added.push((f.clone(), t.clone())),
            Some(o) if o != t && o != "null" && t != "null" => {
                d.changed.push((f.clone(), o.clone(), t.clone()))
            }
            Some(_) => {}
        }
    }
    for (f, t) in old {
        if !new.contains_key(f) {
            d.removed.push((f.clone(), t.clone()));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_added_removed_changed() {
        let a: BTreeMap<_, _> = [("x", "number"), ("y", "string"), ("z", "null")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let b: BTreeMap<_, _> = [("x", "string"), ("w", "boolean"), ("z", "string")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let d = diff(&a, &b);
        assert_eq!(d.added, vec![("w".into(), "boolean".into())]);
        assert_eq!(d.removed, vec![("y".into(), "string".into())]);
        assert_eq!(
            d.changed,
            vec![("x".into(), "number".into(), "string".into())]
        );
        assert_eq!(d.summary(), "+w(boolean) -y(string) ~x(number→string)");
    }
}
