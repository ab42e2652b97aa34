//! A silver contract as a document: its columns with the source field each reads, their types
//! and rules in words, the partitioning, key and expectations. The ledger keeps one per contract
//! version (`_karat/contracts`), so the schema view can diff today's contract against the one
//! before it; the dashboard's contract pane shows it.

use serde::{Deserialize, Serialize};

use crate::config::{Column, SilverSpec};

/// One contract column, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractColumn {
    pub name: String,
    /// The field read from the bronze record (the column's name unless `source_field` renames).
    pub source_field: String,
    pub ty: String,
    pub nullable: bool,
    /// `normalize [trim]`, `min 0`, `one_of [EUR, USD]`, …
    pub rules: Vec<String>,
}

impl ContractColumn {
    pub fn of(c: &Column) -> ContractColumn {
        ContractColumn {
            name: c.name.clone(),
            source_field: c.source_field.clone(),
            ty: c.ty.to_string(),
            nullable: c.nullable,
            rules: rules_of(c),
        }
    }

    /// `int64 not null`, `string`.
    pub fn type_text(&self) -> String {
        format!(
            "{}{}",
            self.ty,
            if self.nullable { "" } else { " not null" }
        )
    }
}

/// A column's rules in words.
fn rules_of(c: &Column) -> Vec<String> {
    let mut rules = Vec::new();
    if !c.normalize.is_empty() {
        rules.push(format!("normalize {:?}", c.normalize).to_lowercase());
    }
    if let Some(m) = &c.min {
        rules.push(format!("min {}", m.display));
    }
    if let Some(m) = &c.max {
        rules.push(format!("max {}", m.display));
    }
    if let Some(v) = &c.one_of {
        let values: Vec<&str> = v.iter().map(|l| l.display.as_str()).collect();
        rules.push(format!("one_of [{}]", values.join(", ")));
    }
    if let Some(r) = &c.regex {
        rules.push(format!("regex /{r}/"));
    }
    if let Some(n) = c.max_length {
        rules.push(format!("max_length {n}"));
    }
    if let Some(m) = c.mask {
        rules.push(format!("mask {m:?}").to_lowercase());
    }
    rules
}

/// One version of a silver table's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractDoc {
    pub table: String,
    /// [`crate::silver::contract::fingerprint`] of the spec.
    pub fingerprint: String,
    pub partition_by: String,
    pub key: Vec<String>,
    /// Window dedup: `<time> in <window>s windows`, how the key's `_dedup_window` is cut
    /// (None: no window dedup, or a document recorded before this was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<String>,
    pub columns: Vec<ContractColumn>,
    /// `name: sql (on fail)`.
    pub expectations: Vec<String>,
}

impl ContractDoc {
    pub fn of(table: &str, spec: &SilverSpec) -> ContractDoc {
        ContractDoc {
            table: table.to_string(),
            fingerprint: super::contract::fingerprint(spec),
            partition_by: spec.partition_by.clone(),
            key: spec.key.clone(),
            dedup: spec
                .dedup
                .as_ref()
                .map(|d| format!("{} in {}µs windows", d.time, d.window.as_micros())),
            columns: spec.columns.iter().map(ContractColumn::of).collect(),
            expectations: spec
                .expectations
                .iter()
                .map(|e| format!("{}: {} ({:?})", e.name, e.sql, e.on_fail))
                .collect(),
        }
    }

    pub fn column(&self, name: &str) -> Option<&ContractColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The contract as the lines the contract pane and `karat schema` print.
    pub fn text(&self) -> Vec<String> {
        let mut out = vec![format!(
            "partition_by {}{}",
            self.partition_by,
            if self.key.is_empty() {
                String::new()
            } else {
                format!(", key [{}]", self.key.join(", "))
            }
        )];
        for c in &self.columns {
            let renamed = if c.source_field == c.name {
                String::new()
            } else {
                format!(" ← {}", c.source_field)
            };
            out.push(format!(
                "{}{renamed}: {}  {}",
                c.name,
                c.type_text(),
                c.rules.join("; ")
            ));
        }
        out.extend(self.expectations.iter().map(|e| format!("expect {e}")));
        out
    }
}
