//! Getting rows out of karat: reading a silver table's dead letters with filters (for
//! `karat dead-letters` and the dashboard) and writing them as NDJSON. (Screens as SVG belong
//! to the dashboard: `tui::svg`.)

use std::collections::BTreeMap;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::error::{KaratError, KaratResult};
use crate::lake::{Lake, delta, layout};

/// One dead-letter row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    pub partition: String,
    pub run_id: String,
    pub rules: Vec<String>,
    pub reasons: Vec<String>,
    pub raw: String,
    pub batch_id: String,
    pub source: String,
    pub file: String,
    pub line: i64,
    pub ingested_at: String,
}

/// Filters for reading dead letters.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub partition: Option<String>,
    /// Substring of a reason or rule (case-insensitive).
    pub reason: Option<String>,
    /// Exactly this rule among the failed ones (e.g. `currency.one_of`).
    pub rule: Option<String>,
    pub limit: Option<usize>,
    pub offset: usize,
}

impl DeadLetterQuery {
    /// A page of rows of a partition (or all) for the dashboard's filter: `rule:<id>` selects
    /// one rule exactly, any other text is a reason substring.
    pub fn page(
        partition: Option<String>,
        filter: Option<String>,
        offset: usize,
        limit: usize,
    ) -> DeadLetterQuery {
        let (rule, reason) = match filter {
            Some(f) if f.starts_with("rule:") => (Some(f["rule:".len()..].to_string()), None),
            other => (None, other),
        };
        DeadLetterQuery {
            partition,
            reason,
            rule,
            limit: Some(limit),
            offset,
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads dead letters of `table`, ordered by partition, file and line.
pub async fn dead_letters(
    lake: &Lake,
    table: &str,
    q: &DeadLetterQuery,
) -> KaratResult<Vec<DeadLetter>> {
    let ctx = delta::session();
    if !delta::register(&ctx, "d", &lake.url_of(&layout::dead_letters(table))).await? {
        return Ok(Vec::new());
    }
    let mut filters = Vec::new();
    if let Some(p) = &q.partition {
        filters.push(format!("partition = {}", quote(p)));
    }
    if let Some(r) = &q.rule {
        filters.push(format!("array_has(rules, {})", quote(r)));
    }
    if let Some(r) = &q.reason {
        let pat = quote(&format!("%{}%", r.to_lowercase()));
        filters.push(format!(
            "(lower(array_to_string(reasons, '\n')) LIKE {pat} OR lower(array_to_string(rules, '\n')) LIKE {pat})"
        ));
    }
    let wh = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let limit = q.limit.map(|l| format!("LIMIT {l}")).unwrap_or_default();
    let sql = format!(
        "SELECT partition, run_id, rules, reasons, raw, batch_id, source, file, line, CAST(ingested_at AS VARCHAR) AS ingested_at \
         FROM d {wh} ORDER BY partition, file, line, batch_id {limit} OFFSET {}",
        q.offset
    );
    let batches = delta::query(&ctx, &sql, &format!("dead letters of {table}")).await?;
    Ok(batches.iter().flat_map(rows).collect())
}

fn rows(b: &RecordBatch) -> Vec<DeadLetter> {
    let s = |i: usize| delta::utf8(b.column(i));
    let (part, run, raw, batch, source, file, at) = (s(0), s(1), s(4), s(5), s(6), s(7), s(9));
    let list = |i: usize, r: usize| -> Vec<String> {
        let l = delta::utf8_list(b.column(i));
        if l.is_null(r) {
            return vec![];
        }
        let v = l.value(r);
        let v = v.as_string::<i32>();
        (0..v.len()).map(|j| v.value(j).to_string()).collect()
    };
    let line = b
        .column(8)
        .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
    let get = |a: &deltalake::arrow::array::StringArray, r: usize| {
        if a.is_valid(r) {
            a.value(r).to_string()
        } else {
            String::new()
        }
    };
    (0..b.num_rows())
        .map(|r| DeadLetter {
            partition: get(&part, r),
            run_id: get(&run, r),
            rules: list(2, r),
            reasons: list(3, r),
            raw: get(&raw, r),
            batch_id: get(&batch, r),
            source: get(&source, r),
            file: get(&file, r),
            line: if line.is_valid(r) { line.value(r) } else { 0 },
            ingested_at: get(&at, r),
        })
        .collect()
}

/// Counts of dead letters per rule for a table (optionally one partition), largest first.
/// A session with `table`'s dead letters registered as `d`, and the `WHERE` clause that scopes
/// them to `partition`; `None` when the table has no dead letters yet.
async fn dead_letters_of(
    lake: &Lake,
    table: &str,
    partition: Option<&str>,
) -> KaratResult<Option<(SessionContext, String)>> {
    let ctx = delta::session();
    if !delta::register(&ctx, "d", &lake.url_of(&layout::dead_letters(table))).await? {
        return Ok(None);
    }
    let wh = partition
        .map(|p| format!("WHERE partition = {}", quote(p)))
        .unwrap_or_default();
    Ok(Some((ctx, wh)))
}

/// A table's dead letters (of one partition) summarised: rows per rule, most first, and each
/// rule's most frequent offending values (at most `per_rule`), from one session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSummary {
    pub counts: Vec<(String, i64)>,
    pub values: BTreeMap<String, Vec<(String, i64)>>,
}

pub async fn rule_summary(
    lake: &Lake,
    table: &str,
    partition: Option<&str>,
    per_rule: usize,
) -> KaratResult<RuleSummary> {
    let Some((ctx, wh)) = dead_letters_of(lake, table, partition).await? else {
        return Ok(RuleSummary::default());
    };
    Ok(RuleSummary {
        counts: reason_counts(&ctx, &wh, table).await?,
        values: offending_values(&ctx, &wh, table, per_rule).await?,
    })
}

/// Rows per rule, most first.
async fn reason_counts(
    ctx: &SessionContext,
    wh: &str,
    table: &str,
) -> KaratResult<Vec<(String, i64)>> {
    let sql = format!(
        "SELECT r, COUNT(*) AS n FROM (SELECT unnest(rules) AS r FROM d {wh}) GROUP BY r ORDER BY n DESC, r"
    );
    let batches = delta::query(ctx, &sql, &format!("dead-letter reasons of {table}")).await?;
    let mut out = Vec::new();
    for b in &batches {
        let r = delta::utf8(b.column(0));
        let n = b
            .column(1)
            .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            out.push((r.value(i).to_string(), n.value(i)));
        }
    }
    Ok(out)
}

/// The offending values of each rule, most frequent first (at most `per_rule` per rule): the
/// value each reason quotes (`currency: unknown value "usd "` → `"usd "`), as the reason shows
/// it (masked columns masked). Answers "which values broke the contract" in one look.
async fn offending_values(
    ctx: &SessionContext,
    wh: &str,
    table: &str,
    per_rule: usize,
) -> KaratResult<BTreeMap<String, Vec<(String, i64)>>> {
    // rules and reasons are parallel lists: unnested together they stay paired
    let sql = format!(
        "SELECT r, s, COUNT(*) AS n FROM (SELECT unnest(rules) AS r, unnest(reasons) AS s FROM d {wh}) \
         GROUP BY r, s ORDER BY n DESC, r, s LIMIT 10000"
    );
    let batches = delta::query(ctx, &sql, &format!("offending values of {table}")).await?;
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for b in &batches {
        let (r, s) = (delta::utf8(b.column(0)), delta::utf8(b.column(1)));
        let n = b
            .column(2)
            .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            if let Some(v) = quoted_value(s.value(i)) {
                *counts
                    .entry(r.value(i).to_string())
                    .or_default()
                    .entry(v)
                    .or_default() += n.value(i);
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|(rule, values)| {
            let mut values: Vec<(String, i64)> = values.into_iter().collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            values.truncate(per_rule);
            (rule, values)
        })
        .collect())
}

/// The value a reason quotes: its first JSON string literal, or `null`.
pub fn quoted_value(reason: &str) -> Option<String> {
    let at = reason.find('"');
    let null = [": null ", "got null", "value null "]
        .iter()
        .filter_map(|p| reason.find(p))
        .min();
    match (at, null) {
        (Some(q), n) if n.is_none_or(|n| q < n) => {
            let mut it = serde_json::Deserializer::from_str(&reason[q..]).into_iter::<String>();
            let v = it.next()?.ok()?;
            Some(serde_json::Value::String(v).to_string())
        }
        (_, Some(_)) => Some("null".into()),
        _ => None,
    }
}

/// Rows read per page when streaming every matching dead letter.
const EXPORT_PAGE: usize = 10_000;

/// Writes every dead letter matching `q` (its limit and offset ignored) as NDJSON to a local
/// file, a page at a time: memory holds one page, never the whole table. Returns the rows
/// written.
pub async fn export_all(
    lake: &Lake,
    table: &str,
    q: &DeadLetterQuery,
    path: &std::path::Path,
) -> KaratResult<u64> {
    use std::io::Write;
    let f = std::fs::File::create(path).map_err(|e| KaratError::io(path, e))?;
    let mut w = std::io::BufWriter::new(f);
    let mut page = DeadLetterQuery {
        limit: Some(EXPORT_PAGE),
        offset: 0,
        ..q.clone()
    };
    loop {
        let rows = dead_letters(lake, table, &page).await?;
        write_rows(&mut w, &rows, path)?;
        page.offset += rows.len();
        if rows.len() < EXPORT_PAGE {
            break;
        }
    }
    w.flush().map_err(|e| KaratError::io(path, e))?;
    Ok(page.offset as u64)
}

fn write_rows(
    w: &mut impl std::io::Write,
    rows: &[DeadLetter],
    path: &std::path::Path,
) -> KaratResult<()> {
    for r in rows {
        serde_json::to_writer(&mut *w, r)
            .map_err(|e| KaratError::Other(format!("{}: {e}", path.display())))?;
        w.write_all(b"\n").map_err(|e| KaratError::io(path, e))?;
    }
    Ok(())
}

/// Writes dead letters as NDJSON to a local file.
pub fn write_ndjson(path: &std::path::Path, rows: &[DeadLetter]) -> KaratResult<()> {
    use std::io::Write;
    let f = std::fs::File::create(path).map_err(|e| KaratError::io(path, e))?;
    let mut w = std::io::BufWriter::new(f);
    write_rows(&mut w, rows, path)?;
    w.flush().map_err(|e| KaratError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::quoted_value;

    #[test]
    fn the_offending_value_is_the_quoted_one() {
        let v = |s: &str| quoted_value(s);
        assert_eq!(
            v(r#"currency: unknown value "usd " (expected one of USD, EUR, GBP)"#).as_deref(),
            Some(r#""usd ""#)
        );
        assert_eq!(
            v(r#"amount: "-42.76" is below min 0"#).as_deref(),
            Some(r#""-42.76""#)
        );
        assert_eq!(
            v(r#"quantity: expected int64, got "th\"ree""#).as_deref(),
            Some(r#""th\"ree""#)
        );
        assert_eq!(
            v("status: unknown value null (expected one of a, b)").as_deref(),
            Some("null")
        );
        assert_eq!(v("expectation big failed: amount < 10"), None);
    }
}
