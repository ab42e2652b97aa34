//! `karat diff`: what changed in a table between two of its Delta versions — the schema, then the
//! rows matched by key: only before, only after, changed, and per column the share of matched
//! rows that agree, with sample rows (SQLMesh's `table_diff` is the model). The versions are
//! given, or a replay's own: the version before it and the one it wrote, from
//! `_karat/versions`. Everything is computed by DataFusion over the two versions (Delta time
//! travel), nothing held in memory but the counts and the samples.

use deltalake::arrow::array::Array;
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::lake::{Lake, delta, layout};
use crate::ledger::Ledger;
use crate::pipeline::Plan;
use crate::silver::contract::ident;

/// Sample rows shown per category.
pub const SAMPLES: usize = 5;

/// Which two versions to compare.
#[derive(Debug, Clone, PartialEq)]
pub enum Versions {
    /// `after` (default: the latest) against `before` (default: the version before `after`).
    Given {
        before: Option<i64>,
        after: Option<i64>,
    },
    /// The version a replay replaced and the one it wrote.
    Replay(String),
}

/// One side of the diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// `None`: the table did not exist yet.
    pub version: Option<i64>,
    pub rows: u64,
}

/// A column whose presence or type changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnChange {
    pub column: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// How often a column agrees between matched rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnMatch {
    pub column: String,
    pub equal: u64,
    pub matched: u64,
}

impl ColumnMatch {
    pub fn rate(&self) -> f64 {
        if self.matched == 0 {
            1.0
        } else {
            self.equal as f64 / self.matched as f64
        }
    }
}

/// The diff of one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDiff {
    pub table: String,
    /// The columns rows are matched on (empty: whole rows).
    pub key: Vec<String>,
    pub before: Side,
    pub after: Side,
    pub schema: Vec<ColumnChange>,
    pub only_before: u64,
    pub only_after: u64,
    /// Rows matched by key in both versions, and those of them whose values differ.
    pub matched: u64,
    pub changed: u64,
    pub columns: Vec<ColumnMatch>,
    /// `key=value, …` of a few rows of each kind.
    pub sample_only_before: Vec<String>,
    pub sample_only_after: Vec<String>,
    /// `key=value, …: column before → after; …`.
    pub sample_changed: Vec<String>,
    /// Why rows were compared whole although a key was asked for.
    pub note: Option<String>,
}

impl TableDiff {
    /// One line: `silver/orders: 808 only after, 0 only before, 0 changed (11035 → 11843 rows)`.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} only after, {} only before, {} changed ({} → {} rows)",
            self.table,
            self.only_after,
            self.only_before,
            self.changed,
            self.before.rows,
            self.after.rows
        )
    }

    /// The report as text, one line per finding.
    pub fn lines(&self) -> Vec<String> {
        let v = |s: &Side| {
            s.version
                .map(|v| format!("version {v}"))
                .unwrap_or_else(|| "no table".into())
        };
        let mut out = vec![format!(
            "{}: {} ({} rows) → {} ({} rows), matched on {}",
            self.table,
            v(&self.before),
            self.before.rows,
            v(&self.after),
            self.after.rows,
            if self.key.is_empty() {
                "whole rows".to_string()
            } else {
                self.key.join(", ")
            }
        )];
        if let Some(n) = &self.note {
            out.push(format!("  note: {n}"));
        }
        for c in &self.schema {
            out.push(format!(
                "  schema {}: {} → {}",
                c.column,
                c.before.as_deref().unwrap_or("-"),
                c.after.as_deref().unwrap_or("-")
            ));
        }
        out.push(format!(
            "  only before {} · only after {} · matched {} · changed {}",
            self.only_before, self.only_after, self.matched, self.changed
        ));
        for c in self.columns.iter().filter(|c| c.equal < c.matched) {
            out.push(format!(
                "  column {}: {:.1}% match ({} of {} differ)",
                c.column,
                c.rate() * 100.0,
                c.matched - c.equal,
                c.matched
            ));
        }
        for (what, rows) in [
            ("only before", &self.sample_only_before),
            ("only after", &self.sample_only_after),
            ("changed", &self.sample_changed),
        ] {
            for r in rows {
                out.push(format!("  {what}: {r}"));
            }
        }
        out
    }
}

/// The folder and default key of table `name` (`--key` replaces the key).
fn target(plan: &Plan, name: &str) -> KaratResult<(String, Vec<String>, Zone)> {
    let t = plan.config.table_or_err(name)?;
    let key = t.silver().map(|s| s.key.clone()).unwrap_or_default();
    Ok((layout::table(t.zone, name), key, t.zone))
}

/// The two versions to compare.
async fn resolve(
    lake: &Lake,
    folder: &str,
    v: &Versions,
) -> KaratResult<(Option<i64>, Option<i64>)> {
    match v {
        Versions::Given { before, after } => {
            let latest = delta::open(&lake.url_of(folder), folder)
                .await?
                .and_then(|t| t.version())
                .and_then(|v| i64::try_from(v).ok());
            let after = after.or(latest);
            let before = before.or(after.and_then(|a| (a > 0).then_some(a - 1)));
            Ok((before, after))
        }
        Versions::Replay(run_id) => {
            let versions = Ledger::new(lake).versions(run_id).await?;
            let r = versions.iter().find(|r| r.table == folder).ok_or_else(|| {
                KaratError::Usage(format!(
                    "run {run_id} recorded no version of {folder}: not a run that wrote it"
                ))
            })?;
            Ok((r.before, r.after))
        }
    }
}

/// Diffs `table` between two versions, matching rows on `key` (default: the silver table's key,
/// or for gold its date, text and boolean output columns).
pub async fn diff(
    plan: &Plan,
    lake: &Lake,
    table: &str,
    key: &[String],
    versions: &Versions,
) -> KaratResult<TableDiff> {
    let (folder, silver_key, zone) = target(plan, table)?;
    let (before, after) = resolve(lake, &folder, versions).await?;
    let ctx = delta::session();
    let url = lake.url_of(&folder);
    let have_before = delta::register_at(&ctx, "b", &url, &folder, before).await?;
    let have_after = delta::register_at(&ctx, "a", &url, &folder, after).await?;
    let (sb, sa) = (
        schema_of(&ctx, "b", have_before).await?,
        schema_of(&ctx, "a", have_after).await?,
    );
    let key = pick_key(&folder, key, &silver_key, zone, &sa, &sb)?;
    let mut d = TableDiff {
        table: folder.clone(),
        key: key.clone(),
        before: Side {
            version: before.filter(|_| have_before),
            rows: 0,
        },
        after: Side {
            version: after.filter(|_| have_after),
            rows: 0,
        },
        schema: schema_changes(&sb, &sa),
        only_before: 0,
        only_after: 0,
        matched: 0,
        changed: 0,
        columns: Vec::new(),
        sample_only_before: Vec::new(),
        sample_only_after: Vec::new(),
        sample_changed: Vec::new(),
        note: None,
    };
    let q = Queries {
        ctx: &ctx,
        folder: &folder,
    };
    d.before.rows = if have_before {
        q.count("SELECT COUNT(*) FROM b").await?
    } else {
        0
    };
    d.after.rows = if have_after {
        q.count("SELECT COUNT(*) FROM a").await?
    } else {
        0
    };
    if !(have_before && have_after) {
        d.only_before = d.before.rows;
        d.only_after = d.after.rows;
        return Ok(d);
    }
    let identifies = key.is_empty() || (q.unique("b", &key).await? && q.unique("a", &key).await?);
    if !identifies {
        d.note = Some(format!(
            "{} does not identify a row: compared whole rows",
            key.join(", ")
        ));
        d.key.clear();
    }
    if d.key.is_empty() {
        whole_rows(&q, &mut d, &sb, &sa).await?;
    } else {
        let common = common_columns(&sb, &sa, &d.key);
        by_key(&q, &mut d, &sb, &sa, &common).await?;
    }
    Ok(d)
}

/// The diff of every silver and gold table a run (a replay) wrote.
pub async fn of_run(plan: &Plan, lake: &Lake, run_id: &str) -> KaratResult<Vec<TableDiff>> {
    let written: Vec<String> = Ledger::new(lake)
        .versions(run_id)
        .await?
        .into_iter()
        .map(|v| v.table)
        .collect();
    let mut out = Vec::new();
    for t in &plan.config.tables {
        if written.contains(&layout::table(t.zone, &t.name)) {
            let v = Versions::Replay(run_id.to_string());
            out.push(diff(plan, lake, &t.name, &[], &v).await?);
        }
    }
    Ok(out)
}

/// The key: `--key`, else the silver key, else gold's dimension-like columns (dates, text,
/// booleans); every key column must exist on both sides.
fn pick_key(
    table: &str,
    given: &[String],
    silver_key: &[String],
    zone: Zone,
    after: &Schema,
    before: &Schema,
) -> KaratResult<Vec<String>> {
    // a column of a side that exists (a missing side has no columns to lack)
    let on_both = |k: &str| {
        [after, before]
            .iter()
            .all(|s| s.fields().is_empty() || s.field_with_name(k).is_ok())
    };
    let key: Vec<String> = if !given.is_empty() {
        given.to_vec()
    } else if !silver_key.is_empty() {
        silver_key.to_vec()
    } else if zone == Zone::Gold {
        let dims = if after.fields().is_empty() {
            before
        } else {
            after
        };
        dims.fields()
            .iter()
            .filter(|f| {
                matches!(
                    f.data_type(),
                    DataType::Date32
                        | DataType::Utf8
                        | DataType::Utf8View
                        | DataType::LargeUtf8
                        | DataType::Boolean
                )
            })
            .map(|f| f.name().clone())
            .filter(|c| on_both(c))
            .collect()
    } else {
        Vec::new()
    };
    if let Some(k) = key.iter().find(|k| !on_both(k)) {
        return Err(KaratError::Usage(format!(
            "diff {table}: key column {k} is not a column of both versions"
        )));
    }
    Ok(key)
}

async fn schema_of(ctx: &SessionContext, name: &str, exists: bool) -> KaratResult<Schema> {
    if exists {
        delta::schema_of(ctx, name, name).await
    } else {
        Ok(Schema::empty())
    }
}

/// Columns added, removed or retyped.
fn schema_changes(before: &Schema, after: &Schema) -> Vec<ColumnChange> {
    let mut out = Vec::new();
    if before.fields().is_empty() || after.fields().is_empty() {
        return out;
    }
    for f in before.fields() {
        match after.field_with_name(f.name()) {
            Err(_) => out.push(ColumnChange {
                column: f.name().clone(),
                before: Some(f.data_type().to_string()),
                after: None,
            }),
            Ok(g) if g.data_type() != f.data_type() => out.push(ColumnChange {
                column: f.name().clone(),
                before: Some(f.data_type().to_string()),
                after: Some(g.data_type().to_string()),
            }),
            Ok(_) => {}
        }
    }
    for g in after.fields() {
        if before.field_with_name(g.name()).is_err() {
            out.push(ColumnChange {
                column: g.name().clone(),
                before: None,
                after: Some(g.data_type().to_string()),
            });
        }
    }
    out
}

/// Non-key columns on both sides.
fn common_columns(before: &Schema, after: &Schema, key: &[String]) -> Vec<String> {
    after
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|c| !key.contains(c) && before.field_with_name(c).is_ok())
        .collect()
}

/// The queries of one diff.
struct Queries<'a> {
    ctx: &'a SessionContext,
    folder: &'a str,
}

impl Queries<'_> {
    /// Whether `key` identifies the rows of `table`.
    async fn unique(&self, table: &str, key: &[String]) -> KaratResult<bool> {
        let cols: Vec<String> = key.iter().map(|k| ident(k)).collect();
        let cols = cols.join(", ");
        let dups = self
            .count(&format!(
                "SELECT COUNT(*) FROM (SELECT {cols} FROM {table} GROUP BY {cols} HAVING COUNT(*) > 1)"
            ))
            .await?;
        Ok(dups == 0)
    }

    async fn count(&self, sql: &str) -> KaratResult<u64> {
        let b = delta::query(self.ctx, sql, &format!("diffing {}", self.folder)).await?;
        Ok(delta::first_u64(&b).unwrap_or(0))
    }

    /// Every row of the first column of `sql`, as text.
    async fn texts(&self, sql: &str) -> KaratResult<Vec<String>> {
        let batches = delta::query(self.ctx, sql, &format!("diffing {}", self.folder)).await?;
        let mut out = Vec::new();
        for b in &batches {
            let col = delta::utf8(b.column(0));
            out.extend((0..col.len()).map(|i| col.value(i).to_string()));
        }
        Ok(out)
    }
}

/// `concat_ws` of `k=v` for `cols` of `side`.
fn render(side: &str, cols: &[String], schema: &Schema) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "'{}=' || COALESCE({}, 'null')",
                c.replace('\'', "''"),
                delta::shown(side, c, schema)
            )
        })
        .collect();
    format!("concat_ws(', ', {})", parts.join(", "))
}

/// Rows matched on the key: only-before / only-after, per-column agreement, samples.
async fn by_key(
    q: &Queries<'_>,
    d: &mut TableDiff,
    sb: &Schema,
    sa: &Schema,
    common: &[String],
) -> KaratResult<()> {
    let m = Matching::new(&d.key, sb, sa, common);
    d.only_before = q
        .count(&format!("SELECT COUNT(*) {}", m.missing("b", "a")))
        .await?;
    d.only_after = q
        .count(&format!("SELECT COUNT(*) {}", m.missing("a", "b")))
        .await?;
    column_matches(q, d, &m).await?;
    let key_of = |side: &str, s: &Schema| render(side, &d.key, s);
    let sample = |side: &str, s: &Schema, other: &str| {
        format!(
            "SELECT {} {} LIMIT {SAMPLES}",
            key_of(side, s),
            m.missing(side, other)
        )
    };
    d.sample_only_before = q.texts(&sample("b", sb, "a")).await?;
    d.sample_only_after = q.texts(&sample("a", sa, "b")).await?;
    if d.changed > 0 {
        let what: Vec<String> = common
            .iter()
            .map(|c| {
                format!(
                    "CASE WHEN {} THEN NULL ELSE '{}: ' || COALESCE({}, 'null') || ' → ' || COALESCE({}, 'null') END",
                    m.same(c),
                    c.replace('\'', "''"),
                    delta::shown("b", c, sb),
                    delta::shown("a", c, sa)
                )
            })
            .collect();
        d.sample_changed = q
            .texts(&format!(
                "SELECT {} || ': ' || concat_ws('; ', {}) FROM b JOIN a ON {} WHERE {} LIMIT {SAMPLES}",
                key_of("a", sa),
                what.join(", "),
                m.on,
                m.differs()
            ))
            .await?;
    }
    Ok(())
}

/// How rows of the two versions are matched (on the key, NULLs matching NULLs) and compared.
struct Matching<'a> {
    on: String,
    sb: &'a Schema,
    sa: &'a Schema,
    common: &'a [String],
}

impl<'a> Matching<'a> {
    fn new(key: &[String], sb: &'a Schema, sa: &'a Schema, common: &'a [String]) -> Self {
        let on: Vec<String> = key
            .iter()
            .map(|k| format!("(b.{c} IS NOT DISTINCT FROM a.{c})", c = ident(k)))
            .collect();
        Matching {
            on: on.join(" AND "),
            sb,
            sa,
            common,
        }
    }

    /// `FROM from WHERE` no row of `other` has its key.
    fn missing(&self, from: &str, other: &str) -> String {
        format!(
            "FROM {from} WHERE NOT EXISTS (SELECT 1 FROM {other} WHERE {})",
            self.on
        )
    }

    /// Column `c` agrees between the matched rows.
    fn same(&self, c: &str) -> String {
        format!(
            "({} IS NOT DISTINCT FROM {})",
            delta::comparable("b", c, self.sb, self.sa),
            delta::comparable("a", c, self.sa, self.sa)
        )
    }

    /// Some column disagrees.
    fn differs(&self) -> String {
        if self.common.is_empty() {
            return "FALSE".into();
        }
        let parts: Vec<String> = self
            .common
            .iter()
            .map(|c| format!("NOT {}", self.same(c)))
            .collect();
        parts.join(" OR ")
    }
}

/// Matched rows, per-column agreement and changed rows, in one pass over the join.
async fn column_matches(q: &Queries<'_>, d: &mut TableDiff, m: &Matching<'_>) -> KaratResult<()> {
    let mut sums = vec!["COUNT(*)".to_string()];
    sums.extend(
        m.common
            .iter()
            .map(|c| format!("SUM(CASE WHEN {} THEN 1 ELSE 0 END)", m.same(c))),
    );
    sums.push(format!("SUM(CASE WHEN {} THEN 1 ELSE 0 END)", m.differs()));
    let sql = format!("SELECT {} FROM b JOIN a ON {}", sums.join(", "), m.on);
    let batches = delta::query(q.ctx, &sql, &format!("diffing {}", q.folder)).await?;
    let value = |i: usize| {
        batches
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| {
                let c = deltalake::arrow::compute::cast(b.column(i), &DataType::Int64).ok()?;
                use deltalake::arrow::array::AsArray;
                let c = c.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
                Some(if c.is_null(0) {
                    0
                } else {
                    c.value(0).max(0) as u64
                })
            })
            .unwrap_or(0)
    };
    d.matched = value(0);
    d.columns = m
        .common
        .iter()
        .enumerate()
        .map(|(i, c)| ColumnMatch {
            column: c.clone(),
            equal: value(i + 1),
            matched: d.matched,
        })
        .collect();
    d.changed = value(m.common.len() + 1);
    Ok(())
}

/// Without a key: rows only on one side, as multisets of whole rows (common columns).
async fn whole_rows(
    q: &Queries<'_>,
    d: &mut TableDiff,
    sb: &Schema,
    sa: &Schema,
) -> KaratResult<()> {
    let cols = common_columns(sb, sa, &[]);
    let what = format!("diffing {}", q.folder);
    d.only_before = delta::count_except_all(q.ctx, ("b", sb), ("a", sa), &cols, sa, &what).await?;
    d.only_after = delta::count_except_all(q.ctx, ("a", sa), ("b", sb), &cols, sa, &what).await?;
    d.matched = d.after.rows.saturating_sub(d.only_after);
    Ok(())
}
