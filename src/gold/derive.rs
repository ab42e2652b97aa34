//! Which partitions of a gold table a change feeds, derived from the data: the gold query is
//! run with each changed input replaced by its changed rows (rows that entered or left silver),
//! and the partition values it yields are the partitions to recompute. Rows of failed silver
//! partitions yield the partitions to block. When the query cannot be restricted this way (see
//! [`super::plan::derivable`]) the whole table is recomputed, and the report says why.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::prelude::SessionContext;

use super::plan::GoldPlan;
use crate::config::{Config, Zone};
use crate::error::{KaratError, KaratResult};
use crate::lake::delta;
use crate::lake::{Lake, layout};
use crate::silver::Changed;
use crate::silver::contract::ident;

/// The gold partitions a change feeds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Affected {
    /// Partitions fed by promoted changes: recompute.
    pub recompute: BTreeSet<String>,
    /// Partitions fed by rows of failed silver partitions: do not promote.
    pub blocked: BTreeSet<String>,
    /// Set when the partitions cannot be derived: why the whole table is recomputed.
    pub whole: Option<String>,
}

impl Affected {
    /// Adds what a later change feeds.
    pub fn absorb(&mut self, later: Affected) {
        self.recompute.extend(later.recompute);
        self.blocked.extend(later.blocked);
        if self.whole.is_none() {
            self.whole = later.whole;
        }
    }
}

/// Derives the partitions of `plan`'s table fed by `changes` (per input table).
pub async fn affected(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    changes: &BTreeMap<String, Changed>,
) -> KaratResult<Affected> {
    let mut out = Affected::default();
    let table = config.table(&plan.name).expect("planned tables exist");
    let g = table.gold().expect("gold table");
    let Some(pcol) = g.partition_by.as_deref().filter(|_| plan.incremental) else {
        out.whole = Some("not partitioned by a date".into());
        return Ok(out);
    };
    if !plan.derivable {
        out.whole = Some(
            "its SQL (HAVING, window, LIMIT, subquery or self-join) hides which partitions a row feeds"
                .into(),
        );
        return Ok(out);
    }
    for (input, change) in changes.iter().filter(|(i, _)| plan.inputs.contains(i)) {
        for (rows, blocked) in [(&change.promoted, false), (&change.failed, true)] {
            if rows.iter().all(|b| b.num_rows() == 0) {
                continue;
            }
            let context = format!("gold table {}: changed rows of {input}", plan.name);
            let rows = changed_rows(rows, &context)?;
            let parts = match run_over(lake, config, plan, &g.sql, pcol, input, rows).await? {
                Fed::Partitions(parts) => parts,
                Fed::NoInput => {
                    out.whole = Some(format!("an input of {} has no data yet", plan.name));
                    return Ok(out);
                }
                Fed::NoPartitionValue => {
                    out.whole = Some(format!(
                        "the changed rows of {input} yield rows without {pcol}"
                    ));
                    return Ok(out);
                }
            };
            if blocked {
                out.blocked.extend(parts);
            } else {
                out.recompute.extend(parts);
            }
        }
    }
    Ok(out)
}

/// The partitions of `plan`'s table fed by the rows of upstream partitions that failed (per
/// input), as the inputs are now and, with `then` (their versions when the table was last
/// computed), as they were then: a failed partition whose rows already left (a run interrupted
/// after its silver commit) still blocks what it fed. The rows are read where they lie, not
/// held. None when they cannot be told: an input without partitions, another input not
/// created yet, or the earlier version gone (vacuumed) or no longer read by the query.
pub async fn fed_by_failed(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    failed: &BTreeMap<String, BTreeSet<String>>,
    then: Option<&BTreeMap<String, Option<i64>>>,
) -> KaratResult<Option<BTreeSet<String>>> {
    let g = config.table(&plan.name).and_then(|t| t.gold());
    let Some((sql, pcol)) = g.and_then(|g| Some((&g.sql, g.partition_by.as_deref()?))) else {
        return Ok(None);
    };
    let mut fed = BTreeSet::new();
    for (input, partitions) in failed.iter().filter(|(_, ps)| !ps.is_empty()) {
        let earlier = then.and_then(|v| v.get(input).copied().flatten());
        // now, and then when there was a version then
        let versions = std::iter::once(None).chain(earlier.map(Some));
        for at in versions {
            let view = match rows_of_partitions(lake, config, input, partitions, at).await {
                Ok(FailedRows::View(view)) => view,
                Ok(FailedRows::NoTable) => continue,
                Ok(FailedRows::Untold) => return Ok(None),
                Err(_) if at.is_some() => return Ok(None),
                Err(e) => return Err(e),
            };
            match run_over(lake, config, plan, sql, pcol, input, view).await {
                Ok(Fed::Partitions(parts)) => fed.extend(parts),
                Ok(Fed::NoInput | Fed::NoPartitionValue) => return Ok(None),
                Err(_) if at.is_some() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Some(fed))
}

/// What the rows of upstream partitions that failed in an earlier run (and are still failed)
/// feed in `plan`'s table, as they are now: its partitions, or [`super::WHOLE_TABLE`] for a
/// table without partitions whose query yields rows over them; none when their rows are gone
/// or the query drops them. None when it cannot be told (see [`fed_by_failed`]).
pub async fn fed_by_earlier_failed(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    failed: &BTreeMap<String, BTreeSet<String>>,
) -> KaratResult<Option<BTreeSet<String>>> {
    let Some(g) = config.table(&plan.name).and_then(|t| t.gold()) else {
        return Ok(None);
    };
    if g.partition_by.is_some() && plan.derivable {
        return fed_by_failed(lake, config, plan, failed, None).await;
    }
    // otherwise the whole table, if the failed rows are still there and feed it
    for (input, partitions) in failed.iter().filter(|(_, ps)| !ps.is_empty()) {
        let view = match rows_of_partitions(lake, config, input, partitions, None).await? {
            FailedRows::View(view) => view,
            FailedRows::NoTable => continue,
            FailedRows::Untold => return Ok(None),
        };
        match yields_rows(lake, config, plan, &g.sql, input, view).await? {
            Some(false) => {}
            Some(true) => return Ok(Some(BTreeSet::from([super::WHOLE_TABLE.to_string()]))),
            None => return Ok(None),
        }
    }
    Ok(Some(BTreeSet::new()))
}

/// Whether `partitions` are all dates (`%Y-%m-%d`), as [`rows_of_partitions`] names them in SQL.
fn all_dates(partitions: &BTreeSet<String>) -> bool {
    partitions
        .iter()
        .all(|p| chrono::NaiveDate::parse_from_str(p, "%Y-%m-%d").is_ok())
}

/// Whether `rows` (as `input`) hold any row and the gold query yields any over them (a query
/// not [`GoldPlan::derivable`] may yield nothing over them alone and still be fed by them: any
/// row is enough); None when another input does not exist yet.
async fn yields_rows(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    sql: &str,
    input: &str,
    rows: Arc<dyn TableProvider>,
) -> KaratResult<Option<bool>> {
    let context = format!(
        "gold table {}: what failed partitions of {input} feed",
        plan.name
    );
    let Some(ctx) = session_over(lake, config, plan, input, rows, &context).await? else {
        return Ok(None);
    };
    let mut queries = vec![format!("SELECT 1 FROM {} LIMIT 1", ident(input))];
    if plan.derivable {
        queries.push(format!("SELECT 1 FROM ({sql}) AS q LIMIT 1"));
    }
    for q in queries {
        let out = delta::query(&ctx, &q, &context).await?;
        if out.iter().all(|b| b.num_rows() == 0) {
            return Ok(Some(false));
        }
    }
    Ok(Some(true))
}

/// A session holding `plan`'s other inputs as they are and `rows` as `input`; None when
/// another input does not exist yet.
async fn session_over(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    input: &str,
    rows: Arc<dyn TableProvider>,
    context: &str,
) -> KaratResult<Option<SessionContext>> {
    let ctx = delta::session();
    for other in plan.inputs.iter().filter(|i| *i != input) {
        let zone = config.table(other).map(|t| t.zone).unwrap_or(Zone::Silver);
        if !delta::register(&ctx, other, &lake.url_of(&layout::table(zone, other))).await? {
            return Ok(None);
        }
    }
    ctx.register_table(input, rows)
        .map_err(|e| KaratError::sql(context.to_string(), e))?;
    Ok(Some(ctx))
}

/// Where the rows of failed partitions are.
enum FailedRows {
    /// A view over the table, restricted to them.
    View(Arc<dyn TableProvider>),
    /// Nowhere: the table does not exist (at that version).
    NoTable,
    /// Not told apart: the table is not partitioned, or a partition is the whole table.
    Untold,
}

/// The rows of table `input`'s `partitions` at version `at` (None: now).
async fn rows_of_partitions(
    lake: &Lake,
    config: &Config,
    input: &str,
    partitions: &BTreeSet<String>,
    at: Option<i64>,
) -> KaratResult<FailedRows> {
    let Some(table) = config.table(input) else {
        return Ok(FailedRows::Untold);
    };
    let Some(pcol) = table.partition_column() else {
        return Ok(FailedRows::Untold);
    };
    if partitions.contains(super::WHOLE_TABLE) || !all_dates(partitions) {
        return Ok(FailedRows::Untold);
    }
    let url = lake.url_of(&layout::table(table.zone, input));
    let label = format!("{} table {input}", table.zone);
    let ctx = delta::session();
    let registered = match at {
        None => delta::register(&ctx, "t", &url).await?,
        Some(_) => delta::register_at(&ctx, "t", &url, &label, at).await?,
    };
    if !registered {
        return Ok(FailedRows::NoTable);
    }
    let list = crate::silver::store::date_list(partitions);
    let q = format!("SELECT * FROM t WHERE {} IN ({list})", ident(pcol));
    let view = ctx
        .sql_with_options(&q, delta::read_only())
        .await
        .map_err(|e| KaratError::sql(format!("{label}: rows of failed partitions"), e))?
        .into_view();
    Ok(FailedRows::View(view))
}

/// Runs the gold query with `input` replaced by `rows` (changed rows, or a view of stored
/// ones): the distinct partition values it yields ([`Fed`]).
async fn run_over(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    sql: &str,
    pcol: &str,
    input: &str,
    rows: Arc<dyn TableProvider>,
) -> KaratResult<Fed> {
    let context = format!(
        "gold table {}: partitions fed by changed rows of {input}",
        plan.name
    );
    let Some(ctx) = session_over(lake, config, plan, input, rows, &context).await? else {
        return Ok(Fed::NoInput);
    };
    let q = format!(
        "SELECT DISTINCT CAST(q.{} AS VARCHAR) FROM ({sql}) AS q",
        ident(pcol)
    );
    let out = delta::query(&ctx, &q, &context).await?;
    let mut parts = BTreeSet::new();
    for b in &out {
        let s = delta::utf8(b.column(0));
        if s.null_count() > 0 {
            return Ok(Fed::NoPartitionValue);
        }
        parts.extend((0..s.len()).map(|i| s.value(i).to_string()));
    }
    Ok(Fed::Partitions(parts))
}

/// What the gold query yields over some rows.
enum Fed {
    /// The partitions they feed.
    Partitions(BTreeSet<String>),
    /// Nothing: another input does not exist yet.
    NoInput,
    /// Rows without a partition value, which no partition's recompute yields: the whole
    /// table is recomputed, which fails on them ([`super::without_partition`]).
    NoPartitionValue,
}

/// Changed rows (some non-empty) as a table.
fn changed_rows(rows: &[RecordBatch], context: &str) -> KaratResult<Arc<dyn TableProvider>> {
    let rows: Vec<RecordBatch> = rows.iter().filter(|b| b.num_rows() > 0).cloned().collect();
    Ok(super::rows_table(rows[0].schema(), rows, context)?)
}
