//! The three-way schema diff: a bronze batch's inferred schema vs the silver contract that reads
//! it vs the contract version before that one. One row per field, each with what differs and
//! the dead letters its column holds — the rows a difference explains. `source_field` renames
//! are resolved: a column reads its source field, not a field of its own name.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::ContractRecord;
use crate::silver::contract_doc::{ContractColumn, ContractDoc};

/// What one difference is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The contract reads a field this batch does not have.
    MissingInBronze,
    /// A bronze field no contract column reads (kept in bronze only).
    NotInContract,
    /// The column reads a bronze field of another name (`source_field`).
    Renamed {
        field: String,
    },
    /// Bronze values are text (or numbers) parsed into the contract's type, value by value.
    Cast {
        from: String,
        to: String,
    },
    /// Bronze values of this JSON type cannot become the contract's type.
    Mismatch {
        from: String,
        to: String,
    },
    /// The column is new since the previous contract.
    Added,
    /// The column was in the previous contract and is gone.
    Removed,
    TypeChanged {
        from: String,
        to: String,
    },
    SourceChanged {
        from: String,
        to: String,
    },
    RulesChanged {
        from: String,
        to: String,
    },
}

impl Finding {
    /// Does the difference make rows fail (rather than describe a change)?
    pub fn is_problem(&self) -> bool {
        matches!(self, Finding::MissingInBronze | Finding::Mismatch { .. })
    }

    pub fn text(&self) -> String {
        match self {
            Finding::MissingInBronze => "missing in this batch".into(),
            Finding::NotInContract => "not in the contract (kept in bronze only)".into(),
            Finding::Renamed { field } => format!("read from bronze field {field}"),
            Finding::Cast { from, to } => format!("cast {from} → {to}"),
            Finding::Mismatch { from, to } => format!("{from} cannot become {to}"),
            Finding::Added => "added since the previous contract".into(),
            Finding::Removed => "removed since the previous contract".into(),
            Finding::TypeChanged { from, to } => format!("type was {from}, now {to}"),
            Finding::SourceChanged { from, to } => format!("source field was {from}, now {to}"),
            Finding::RulesChanged { from, to } => format!("rules were [{from}], now [{to}]"),
        }
    }
}

/// One field across the three sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldRow {
    /// The contract column (`None`: a bronze field no column reads).
    pub column: Option<String>,
    /// The bronze field: the column's source field, or the unread field.
    pub field: String,
    /// Its JSON type in the batch (`None`: absent).
    pub bronze: Option<String>,
    /// The column's type in the current contract (`None`: not in it).
    pub contract: Option<String>,
    /// The column's type in the previous contract (`None`: not in it, or no previous version).
    pub previous: Option<String>,
    pub findings: Vec<Finding>,
    /// Dead letters whose failed rules name this column.
    pub dead_letters: i64,
}

/// The three-way diff of a table for one bronze batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreeWay {
    pub table: String,
    pub batch_id: String,
    pub contract: String,
    pub previous_contract: Option<String>,
    pub rows: Vec<FieldRow>,
}

impl ThreeWay {
    /// The diff as text: a header, then one line per field (`!` where rows fail, `~` where
    /// something changed, blank where all three sides agree).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{}: bronze batch {} vs contract {} vs {}",
            self.table,
            self.batch_id,
            self.contract,
            self.previous_contract
                .as_deref()
                .map(|p| format!("previous contract {p}"))
                .unwrap_or_else(|| "no previous contract version".into())
        )];
        out.push(format!(
            "  {:<24} {:<16} {:<24} {:<24} findings",
            "column ← field", "bronze", "contract", "previous"
        ));
        for r in &self.rows {
            let mark = if r.findings.iter().any(Finding::is_problem) {
                '!'
            } else if r.findings.is_empty() {
                ' '
            } else {
                '~'
            };
            let name = match &r.column {
                Some(c) if c != &r.field => format!("{c} ← {}", r.field),
                Some(c) => c.clone(),
                None => format!("· {}", r.field),
            };
            let mut findings: Vec<String> = r.findings.iter().map(Finding::text).collect();
            if r.dead_letters > 0 {
                findings.push(format!("{} dead letter(s) cite it", r.dead_letters));
            }
            let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
            out.push(format!(
                "{mark} {name:<24} {:<16} {:<24} {:<24} {}",
                side(&r.bronze),
                side(&r.contract),
                side(&r.previous),
                findings.join("; ")
            ));
        }
        out
    }
}

/// The contract version recorded before `current` (`records` oldest first): the latest one of
/// its table with another fingerprint.
pub fn previous_contract(records: &[ContractRecord], current: &ContractDoc) -> Option<ContractDoc> {
    records
        .iter()
        .rev()
        .filter(|r| r.table == current.table && r.fingerprint != current.fingerprint)
        .find_map(|r| serde_json::from_str(&r.doc).ok())
}

/// Dead letters per column from a rule → count map (`currency.one_of` counts for `currency`).
pub fn dead_by_column(dead_by_rule: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (rule, n) in dead_by_rule {
        let column = rule.split('.').next().unwrap_or("").to_string();
        *out.entry(column).or_default() += n;
    }
    out
}

/// How bronze values of the JSON type(s) `bronze` (`number|string`) meet a contract type: the
/// natural pairs (text for strings, dates and timestamps; numbers for numbers; booleans for
/// bool) say nothing, other castable ones are a cast, the rest a mismatch.
fn compat(bronze: &str, ty: &str) -> Option<Finding> {
    let target = ty.split('(').next().unwrap_or(ty);
    let mut cast = false;
    for kind in bronze.split('|') {
        match (kind, target) {
            ("null", _)
            | ("string", "string" | "date" | "timestamp")
            | ("number", "int64" | "float64" | "decimal")
            | ("boolean", "bool") => {}
            ("string", _) | ("number" | "boolean", "string") => cast = true,
            _ => {
                return Some(Finding::Mismatch {
                    from: bronze.into(),
                    to: ty.into(),
                });
            }
        }
    }
    cast.then(|| Finding::Cast {
        from: bronze.into(),
        to: ty.into(),
    })
}

/// What changed in a column between the previous contract and this one.
fn changes(now: &ContractColumn, before: &ContractColumn) -> Vec<Finding> {
    let mut out = Vec::new();
    if now.type_text() != before.type_text() {
        out.push(Finding::TypeChanged {
            from: before.type_text(),
            to: now.type_text(),
        });
    }
    if now.source_field != before.source_field {
        out.push(Finding::SourceChanged {
            from: before.source_field.clone(),
            to: now.source_field.clone(),
        });
    }
    if now.rules != before.rules {
        out.push(Finding::RulesChanged {
            from: before.rules.join("; "),
            to: now.rules.join("; "),
        });
    }
    out
}

/// A current column against the batch and the previous contract.
fn column_row(
    c: &ContractColumn,
    bronze: &BTreeMap<String, String>,
    previous: Option<&ContractDoc>,
) -> FieldRow {
    let b = bronze.get(&c.source_field).cloned();
    let mut findings = Vec::new();
    match &b {
        None => findings.push(Finding::MissingInBronze),
        Some(kind) => findings.extend(compat(kind, &c.ty)),
    }
    if c.source_field != c.name {
        findings.push(Finding::Renamed {
            field: c.source_field.clone(),
        });
    }
    let before = previous.and_then(|p| p.column(&c.name));
    match (previous, before) {
        (Some(_), None) => findings.push(Finding::Added),
        (_, Some(p)) => findings.extend(changes(c, p)),
        (None, None) => {}
    }
    FieldRow {
        column: Some(c.name.clone()),
        field: c.source_field.clone(),
        bronze: b,
        contract: Some(c.type_text()),
        previous: before.map(ContractColumn::type_text),
        findings,
        dead_letters: 0,
    }
}

/// Compares one batch's inferred `bronze` schema with `contract` and `previous`.
pub fn three_way(
    batch_id: &str,
    bronze: &BTreeMap<String, String>,
    contract: &ContractDoc,
    previous: Option<&ContractDoc>,
    dead_by_rule: &BTreeMap<String, i64>,
) -> ThreeWay {
    let mut rows: Vec<FieldRow> = contract
        .columns
        .iter()
        .map(|c| column_row(c, bronze, previous))
        .collect();
    for p in previous.map(|p| p.columns.as_slice()).unwrap_or_default() {
        if contract.column(&p.name).is_none() {
            rows.push(FieldRow {
                column: Some(p.name.clone()),
                field: p.source_field.clone(),
                bronze: bronze.get(&p.source_field).cloned(),
                contract: None,
                previous: Some(p.type_text()),
                findings: vec![Finding::Removed],
                dead_letters: 0,
            });
        }
    }
    for (field, kind) in bronze {
        if !contract.columns.iter().any(|c| &c.source_field == field) {
            rows.push(FieldRow {
                column: None,
                field: field.clone(),
                bronze: Some(kind.clone()),
                contract: None,
                previous: None,
                findings: vec![Finding::NotInContract],
                dead_letters: 0,
            });
        }
    }
    let dead = dead_by_column(dead_by_rule);
    for r in &mut rows {
        r.dead_letters = r
            .column
            .as_ref()
            .and_then(|c| dead.get(c))
            .copied()
            .unwrap_or(0);
    }
    ThreeWay {
        table: contract.table.clone(),
        batch_id: batch_id.to_string(),
        contract: contract.fingerprint.clone(),
        previous_contract: previous.map(|p| p.fingerprint.clone()),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, source: &str, ty: &str, rules: &[&str]) -> ContractColumn {
        ContractColumn {
            name: name.into(),
            source_field: source.into(),
            ty: ty.into(),
            nullable: true,
            rules: rules.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn doc(fp: &str, columns: Vec<ContractColumn>) -> ContractDoc {
        ContractDoc {
            table: "orders".into(),
            fingerprint: fp.into(),
            partition_by: "order_date".into(),
            key: vec!["order_id".into()],
            dedup: None,
            columns,
            expectations: vec![],
        }
    }

    fn row<'a>(t: &'a ThreeWay, field: &str) -> &'a FieldRow {
        t.rows.iter().find(|r| r.field == field).unwrap()
    }

    #[test]
    fn a_renamed_field_is_missing_before_the_fix_and_resolved_after() {
        let bronze: BTreeMap<String, String> = [
            ("order_id", "string"),
            ("orderDate", "string"),
            ("amount", "number|string"),
            ("paid", "boolean"),
        ]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
        let before = doc(
            "aaa",
            vec![
                col("order_id", "order_id", "string", &[]),
                col("order_date", "order_date", "date", &[]),
                col("amount", "amount", "float64", &["min 0"]),
                col("coupon", "coupon", "string", &[]),
            ],
        );
        let dead = BTreeMap::from([
            ("order_date.required".to_string(), 7),
            ("amount.type".to_string(), 2),
            ("amount.min".to_string(), 1),
        ]);
        let t = three_way("b1", &bronze, &before, None, &dead);
        assert_eq!(
            row(&t, "order_date").findings,
            vec![Finding::MissingInBronze]
        );
        assert_eq!(row(&t, "order_date").dead_letters, 7);
        assert_eq!(row(&t, "orderDate").findings, vec![Finding::NotInContract]);
        assert_eq!(row(&t, "amount").dead_letters, 3);
        assert!(matches!(
            row(&t, "amount").findings[0],
            Finding::Cast { .. }
        ));
        assert!(row(&t, "coupon").findings[0].is_problem());

        let mut after = before.clone();
        after.fingerprint = "bbb".into();
        after.columns[1].source_field = "orderDate".into();
        after.columns[2].rules = vec!["min 1".into()];
        after.columns.retain(|c| c.name != "coupon");
        after.columns.push(col("paid", "paid", "int64", &[]));
        let t = three_way("b1", &bronze, &after, Some(&before), &BTreeMap::new());
        let od = &row(&t, "orderDate");
        assert_eq!(od.column.as_deref(), Some("order_date"));
        assert!(od.findings.contains(&Finding::Renamed {
            field: "orderDate".into()
        }));
        assert!(od.findings.contains(&Finding::SourceChanged {
            from: "order_date".into(),
            to: "orderDate".into()
        }));
        assert!(!od.findings.iter().any(Finding::is_problem));
        assert!(
            row(&t, "amount")
                .findings
                .iter()
                .any(|f| matches!(f, Finding::RulesChanged { .. }))
        );
        assert_eq!(row(&t, "coupon").findings, vec![Finding::Removed]);
        let paid = row(&t, "paid");
        assert!(paid.findings.contains(&Finding::Added));
        assert!(paid.findings.contains(&Finding::Mismatch {
            from: "boolean".into(),
            to: "int64".into()
        }));
        assert_eq!(t.previous_contract.as_deref(), Some("aaa"));
    }
}
