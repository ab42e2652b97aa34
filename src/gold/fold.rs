//! Folding a run's changed silver rows into an aggregate gold table, instead of recomputing its
//! partitions from the whole of silver.
//!
//! A gold query that groups one silver table's rows and adds them up (`SUM` of an exact number
//! the contract never lets be null, `COUNT`, and a `COUNT(*)` among them) changes by exactly
//! what entered and what left silver: a partition's new rows are its stored rows, plus the
//! query over the rows that entered, minus the query over the rows that left, added up by
//! group; a group whose row count comes to zero is gone. A normal run's merge knows both sets
//! of rows exactly ([`crate::silver::Signed`]), so a daily run's gold costs what changed, not
//! what silver holds. Anything else (`AVG`, `MIN`, a float `SUM`, a join, `HAVING`) is
//! recomputed from silver, as before.
//!
//! Folding is right only while the gold table holds exactly the query over silver as it was
//! before the run. The [`Baseline`] says when it does: saved after each gold write, it names
//! the gold version and the input versions it reflects, and the partitions left stale (blocked
//! or failed, so not written). `karat maintain` carries it over its compactions. Any other
//! write to gold or silver (a crash between commits, `karat restore`, a writer outside karat)
//! makes a version differ: the run then recomputes the table from silver, which starts a new
//! baseline — whole, but for the partitions fed by silver partitions that failed in that run,
//! which stay blocked (`Start::first_baseline` in [`super`]).

use std::collections::{BTreeMap, BTreeSet};

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use deltalake::datafusion::common::tree_node::TreeNode;
use deltalake::datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Volatility};
use serde::{Deserialize, Serialize};

use crate::error::{KaratError, KaratResult};
use crate::lake::{Lake, delta, layout, stats};
use crate::silver::contract::ident;
use crate::silver::store::date_list;

/// How a gold table's rows add up, read off its query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fold {
    /// Output columns the query groups by (its partition column among them).
    pub groups: Vec<String>,
    /// Output columns that add up: the SUMs and COUNTs.
    pub sums: Vec<String>,
    /// The output column counting each group's rows (a `COUNT(*)`).
    pub rows: String,
    /// The silver table the query reads.
    pub input: String,
    /// Its columns the query SUMs, which must hold no null ([`rows`] checks).
    pub summed: Vec<String>,
}

/// What one aggregate of the query is.
enum Measure {
    /// `COUNT(*)`.
    Rows,
    /// A COUNT of values, which adds up.
    Adds,
    /// The SUM of a column that holds no null, which adds up.
    Sum(String),
}

/// How gold table `name`'s query `plan` over `inputs` adds up, or why it does not: it must
/// be partitioned by a date (`incremental`) and read one silver table.
pub fn of_table(
    config: &crate::config::Config,
    name: &str,
    inputs: &[String],
    plan: &LogicalPlan,
    incremental: bool,
) -> Result<Fold, String> {
    let table = config.table(name).and_then(|t| t.gold());
    if table.is_some_and(|g| g.scd2.is_some()) {
        return Err("it is an SCD2 table".into());
    }
    if !incremental {
        return Err("it is not partitioned by a date".into());
    }
    let [input] = inputs else {
        return Err("it does not read exactly one table".into());
    };
    let Some(spec) = config.table(input).and_then(|t| t.silver()) else {
        return Err(format!("its input {input} is not a silver table"));
    };
    let never_null = spec
        .columns
        .iter()
        .filter(|c| !c.nullable)
        .map(|c| c.name.clone())
        .collect();
    let fold = of(plan, &never_null)?;
    Ok(Fold {
        input: input.clone(),
        ..fold
    })
}

/// How `plan` (a gold query reading one silver table, whose columns `never_null` the contract
/// keeps from being null) adds up, or why it does not.
pub fn of(plan: &LogicalPlan, never_null: &BTreeSet<String>) -> Result<Fold, String> {
    let plan = match plan {
        LogicalPlan::Sort(s) => s.input.as_ref(),
        p => p,
    };
    let LogicalPlan::Projection(p) = plan else {
        return Err("its result is not a grouped SELECT".into());
    };
    let LogicalPlan::Aggregate(a) = p.input.as_ref() else {
        return Err("it does not GROUP BY its rows (or filters the groups with HAVING)".into());
    };
    rows_only(&a.input)?;
    if a.group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err("it groups by GROUPING SETS, ROLLUP or CUBE".into());
    }
    if let Some(e) = a.group_expr.iter().find(|e| !row_local(e)) {
        return Err(format!(
            "it groups by {e}, which is not a function of the row alone"
        ));
    }
    let n_groups = a.group_expr.len();
    let mut selected_groups = BTreeSet::new();
    let mut fold = Fold::default();
    for (expr, field) in p.expr.iter().zip(p.schema.fields()) {
        let name = field.name().clone();
        let Expr::Column(c) = bare(expr) else {
            return Err(format!("its column {name} is computed after grouping"));
        };
        let at = a
            .schema
            .index_of_column(&c)
            .map_err(|_| format!("its column {name} is not a group or an aggregate"))?;
        if at < n_groups {
            selected_groups.insert(at);
            fold.groups.push(name);
            continue;
        }
        if !exact(field.data_type()) {
            return Err(format!("its column {name} is not an exact number"));
        }
        let m = measure(&a.aggr_expr[at - n_groups], &a.input, never_null)?;
        match m {
            Measure::Rows if fold.rows.is_empty() => fold.rows = name.clone(),
            Measure::Sum(column) => fold.summed.push(column),
            _ => {}
        }
        fold.sums.push(name);
    }
    if selected_groups.len() < n_groups {
        return Err("it groups by a column it does not select".into());
    }
    if fold.rows.is_empty() {
        return Err("it has no COUNT(*) to tell when a group is gone".into());
    }
    Ok(fold)
}

/// Whether `expr` depends on its row alone: no subquery, and no function that may answer
/// differently another time (`now()`, `current_date`, `random()`), whose result over the
/// rows that leave would not be what it was when they entered.
fn row_local(expr: &Expr) -> bool {
    let elsewhere = expr.exists(|e| {
        Ok(match e {
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) => true,
            Expr::ScalarFunction(f) => f.func.signature().volatility != Volatility::Immutable,
            _ => false,
        })
    });
    !elsewhere.unwrap_or(true)
}

/// Below the grouping, only filters of the row alone and aliases over one table: each input
/// row feeds one group, the same one whenever it is asked, and a column keeps its table's name
/// (what the contract says of it).
fn rows_only(plan: &LogicalPlan) -> Result<(), String> {
    match plan {
        LogicalPlan::TableScan(_) => Ok(()),
        LogicalPlan::Filter(f) if row_local(&f.predicate) => rows_only(&f.input),
        LogicalPlan::SubqueryAlias(s) => rows_only(&s.input),
        other => Err(format!(
            "it reads its rows through {} (only filters of the row over one table fold)",
            other.display()
        )),
    }
}

/// What the aggregate `expr` (over `input`) is, if it adds up.
fn measure(
    expr: &Expr,
    input: &LogicalPlan,
    never_null: &BTreeSet<String>,
) -> Result<Measure, String> {
    let Expr::AggregateFunction(f) = bare(expr) else {
        return Err(format!("{expr} is not an aggregate"));
    };
    let params = &f.params;
    if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
        return Err(format!("{expr} is DISTINCT, filtered or ordered"));
    }
    if let Some(arg) = params.args.iter().find(|a| !row_local(a)) {
        return Err(format!(
            "{expr} reads {arg}, not a function of the row alone"
        ));
    }
    match (f.func.name(), params.args.as_slice()) {
        ("count", [Expr::Literal(v, _)]) if !v.is_null() => Ok(Measure::Rows),
        ("count", [_]) => Ok(Measure::Adds),
        ("sum", [Expr::Column(c)]) if never_null.contains(&c.name) => {
            let ty = Expr::Column(c.clone())
                .get_type(input.schema())
                .map_err(|e| e.to_string())?;
            if exact(&ty) {
                Ok(Measure::Sum(c.name.clone()))
            } else {
                Err(format!(
                    "{expr} adds up floating-point numbers, not exactly"
                ))
            }
        }
        ("sum", _) => Err(format!(
            "{expr} is not the SUM of a column its contract keeps from being null"
        )),
        (other, _) => Err(format!("{other}() does not add up (SUM and COUNT do)")),
    }
}

/// `expr` without its aliases (`COUNT(*) AS n` is planned with two).
fn bare(expr: &Expr) -> Expr {
    let mut e = expr.clone();
    while let Expr::Alias(a) = e {
        e = *a.expr;
    }
    e
}

/// Integers and decimals: their sums add and subtract exactly.
fn exact(ty: &DataType) -> bool {
    ty.is_integer() || matches!(ty, DataType::Decimal128(..) | DataType::Decimal256(..))
}

/// The gold query over the rows that entered silver (`plus`) and over those that left
/// (`minus`), in the gold table's schema.
#[derive(Debug, Clone, Default)]
pub struct Partials {
    pub plus: Vec<RecordBatch>,
    pub minus: Vec<RecordBatch>,
}

impl Partials {
    /// Adds a later update's partials.
    pub fn absorb(&mut self, later: Partials) {
        self.plus.extend(later.plus);
        self.minus.extend(later.minus);
    }

    /// The values of partition column `pcol` these rows hold: the partitions they feed (None
    /// when they cannot be read so, or a row has none: no partition's recompute yields it).
    pub fn partitions(&self, pcol: &str) -> Option<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for b in self.plus.iter().chain(&self.minus) {
            let text = deltalake::arrow::compute::cast(b.column_by_name(pcol)?, &DataType::Utf8);
            let text = text.ok()?;
            if text.null_count() > 0 {
                return None;
            }
            out.extend(text.as_string::<i32>().iter().flatten().map(str::to_string));
        }
        Some(out)
    }

    /// The gold query `sql` of table `name` (output `schema`) over the rows of its input
    /// `input` that `entered` and that `left` silver.
    pub async fn of(
        name: &str,
        sql: &str,
        schema: &SchemaRef,
        input: &str,
        entered: &[RecordBatch],
        left: &[RecordBatch],
    ) -> KaratResult<Partials> {
        Ok(Partials {
            plus: over(name, sql, schema, input, entered).await?,
            minus: over(name, sql, schema, input, left).await?,
        })
    }
}

/// The query `sql` with its input `input` replaced by `rows`.
async fn over(
    name: &str,
    sql: &str,
    schema: &SchemaRef,
    input: &str,
    rows: &[RecordBatch],
) -> KaratResult<Vec<RecordBatch>> {
    let rows: Vec<RecordBatch> = rows.iter().filter(|b| b.num_rows() > 0).cloned().collect();
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let context = format!("gold table {name}: folding changed rows of {input}");
    let ctx = delta::session();
    super::register_rows(&ctx, input, first.schema(), rows, &context)?;
    conformed(delta::query(&ctx, sql, &context).await?, schema, &context)
}

/// `batches` cast onto `schema`.
fn conformed(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    context: &str,
) -> KaratResult<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| delta::conform(b, schema))
        .collect::<Result<_, _>>()
        .map_err(|e| KaratError::arrow(context.to_string(), e))
}

/// The new rows of gold `partitions` (of partition column `pcol`): their `stored` rows with
/// `partials` added up by group, without the groups left with no row.
pub async fn combine(
    name: &str,
    fold: &Fold,
    schema: &SchemaRef,
    pcol: &str,
    partitions: &[String],
    stored: Vec<RecordBatch>,
    partials: &Partials,
) -> KaratResult<Vec<RecordBatch>> {
    let context = format!("gold table {name}: folding the run's changes into its partitions");
    let ctx = delta::session();
    for (t, rows) in [
        ("stored", stored),
        ("plus", partials.plus.clone()),
        ("minus", partials.minus.clone()),
    ] {
        super::register_rows(&ctx, t, schema.clone(), rows, &context)?;
    }
    // every column in schema order, the measures as `measure` makes them of their name
    let columns = |measure: fn(&str) -> String| -> String {
        let column = |f: &str| match fold.sums.iter().any(|s| s == f) {
            true => format!("{} AS {}", measure(&ident(f)), ident(f)),
            false => ident(f),
        };
        let all: Vec<String> = schema.fields().iter().map(|f| column(f.name())).collect();
        all.join(", ")
    };
    let negated = columns(|c| format!("-{c}"));
    let out = columns(|c| format!("SUM({c})"));
    let groups: Vec<String> = fold.groups.iter().map(|g| ident(g)).collect();
    let q = format!(
        "SELECT {} FROM (SELECT * FROM stored UNION ALL SELECT * FROM plus UNION ALL SELECT {} \
         FROM minus) AS f WHERE {} IN ({}) GROUP BY {} HAVING SUM({}) <> 0",
        out,
        negated,
        ident(pcol),
        date_list(partitions),
        groups.join(", "),
        ident(&fold.rows),
    );
    let folded = conformed(delta::query(&ctx, &q, &context).await?, schema, &context)?;
    for b in &folded {
        let rows = b
            .column_by_name(&fold.rows)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| KaratError::Other(format!("{context}: {} is no count", fold.rows)))?;
        if rows.iter().any(|n| n.is_some_and(|n| n < 0)) {
            return Err(KaratError::Other(format!(
                "{context}: a group would hold fewer than no rows: the table did not hold \
                 what {} says",
                layout::gold_baseline(name)
            )));
        }
    }
    Ok(folded)
}

/// The stored rows of gold table `name`'s `partitions`, in its `schema`.
pub async fn stored(
    lake: &Lake,
    name: &str,
    schema: &SchemaRef,
    pcol: &str,
    partitions: &[String],
) -> KaratResult<Vec<RecordBatch>> {
    let ctx = delta::session();
    let url = lake.url_of(&layout::table(crate::config::Zone::Gold, name));
    if !delta::register(&ctx, "g", &url).await? {
        return Ok(Vec::new());
    }
    let q = format!(
        "SELECT * FROM g WHERE {} IN ({})",
        ident(pcol),
        date_list(partitions)
    );
    let context = format!("gold table {name}: its stored rows");
    conformed(delta::query(&ctx, &q, &context).await?, schema, &context)
}

/// What a run brings to fold its changes into a gold table whose query folds.
#[derive(Debug, Clone)]
pub struct Folding {
    /// Its inputs' versions before the run (None: no table yet).
    pub before: BTreeMap<String, Option<i64>>,
    /// The query over the rows that entered and left its inputs (None: not told apart, or a
    /// replay forces its partitions).
    pub partials: Option<Partials>,
}

/// New rows of gold partitions, and which of them were folded.
#[derive(Debug, Default)]
pub struct Folded {
    pub rows: Vec<RecordBatch>,
    /// The partitions whose rows were folded (the others were recomputed: stale).
    pub partitions: Vec<String>,
}

/// The new rows of gold partitions `wanted`: the run's `partials` folded into their stored
/// rows, and, for those the `baseline` has stale, the query `sql` over silver.
#[allow(clippy::too_many_arguments)]
pub async fn rows(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    name: &str,
    fold: &Fold,
    schema: &SchemaRef,
    pcol: &str,
    wanted: &[String],
    baseline: &Baseline,
    partials: &Partials,
    sql: &str,
) -> KaratResult<Folded> {
    let (stale, fresh): (Vec<String>, Vec<String>) = wanted
        .iter()
        .cloned()
        .partition(|p| baseline.stale.contains(p));
    let mut out = Vec::new();
    if !fresh.is_empty() {
        sums_without_nulls(lake, fold).await?;
        let stored = stored(lake, name, schema, pcol, &fresh).await?;
        out.extend(combine(name, fold, schema, pcol, &fresh, stored, partials).await?);
    }
    if !stale.is_empty() {
        let q = super::only_partitions(sql, pcol, &stale);
        out.extend(delta::query(ctx, &q, &format!("gold table {name}")).await?);
    }
    Ok(Folded {
        rows: out,
        partitions: fresh,
    })
}

/// Fails unless silver holds no null in the columns `fold` SUMs. Their contract says
/// `nullable = false`, but rows processed under an earlier contract may still hold one (until a
/// replay), and the SUM of a group of nulls is null, not the 0 a fold would make of it.
async fn sums_without_nulls(lake: &Lake, fold: &Fold) -> KaratResult<()> {
    if fold.summed.is_empty() {
        return Ok(());
    }
    let folder = layout::table(crate::config::Zone::Silver, &fold.input);
    let nulls = stats::nulls_of(&lake.url_of(&folder), &folder, &fold.summed).await?;
    let input = &fold.input;
    for c in &fold.summed {
        match nulls.get(c) {
            Some(0) => {}
            Some(n) => {
                return Err(KaratError::Other(format!(
                    "silver table {input}: column {c} holds {n} null(s), kept from before its \
                     contract said nullable = false (a replay applies it)"
                )));
            }
            None => {
                return Err(KaratError::Other(format!(
                    "silver table {input}: the Delta statistics do not count column {c}'s nulls"
                )));
            }
        }
    }
    Ok(())
}

/// The partitions a gold write leaves stale, when its baseline holds after it: a whole
/// recompute that replaced the table holds from scratch; a recompute of some partitions keeps
/// the partitions `held` stale before (none when it covers every partition), less those it
/// wrote, plus those it could not (`wanted` but not `passing`, and the `blocked` ones). None:
/// the write cannot vouch for the table.
pub fn stale_after(
    whole: bool,
    replaced_all: bool,
    held: Option<&BTreeSet<String>>,
    wanted: &[String],
    passing: &[String],
    blocked: &BTreeMap<String, String>,
) -> Option<BTreeSet<String>> {
    if whole {
        return replaced_all.then(BTreeSet::new);
    }
    let mut stale = held?.clone();
    for p in passing {
        stale.remove(p);
    }
    stale.extend(wanted.iter().filter(|w| !passing.contains(w)).cloned());
    stale.extend(
        blocked
            .keys()
            .filter(|p| p.as_str() != super::WHOLE_TABLE)
            .cloned(),
    );
    Some(stale)
}

/// The current version of each of `inputs` (by name, in `config`'s zones).
async fn versions_now(
    lake: &Lake,
    config: &crate::config::Config,
    inputs: &[String],
) -> KaratResult<BTreeMap<String, Option<i64>>> {
    let mut out = BTreeMap::new();
    for i in inputs {
        let zone = config
            .table(i)
            .map(|t| t.zone)
            .unwrap_or(crate::config::Zone::Silver);
        let folder = layout::table(zone, i);
        out.insert(
            i.clone(),
            delta::latest_version(&lake.url_of(&folder), &folder).await?,
        );
    }
    Ok(out)
}

/// What a gold table holds: exactly its query `query` over its inputs at `inputs` (by table;
/// None: no table yet), at gold version `gold_version`, but in the `stale` partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub gold_version: Option<i64>,
    pub query: String,
    pub inputs: BTreeMap<String, Option<i64>>,
    pub stale: BTreeSet<String>,
}

impl Baseline {
    /// `plan`'s baseline, if it still holds: the gold table is at its version, its query is
    /// the same, and its inputs were at theirs `before` the run. One that cannot be read does
    /// not hold.
    pub async fn holding(
        lake: &Lake,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
        before: &BTreeMap<String, Option<i64>>,
    ) -> Option<Baseline> {
        let b = Baseline::stored(lake, plan).await?;
        let gold = gold_version(lake, &plan.name).await.ok()?;
        b.held_at(config, plan, gold, before).then_some(b)
    }

    /// `plan`'s saved baseline; None when there is none, or it cannot be read.
    pub(super) async fn stored(lake: &Lake, plan: &super::GoldPlan) -> Option<Baseline> {
        let path = layout::gold_baseline(&plan.name);
        let bytes = lake.get_opt(&path).await.ok()??;
        serde_json::from_slice::<Baseline>(&bytes).ok()
    }

    /// Whether the baseline vouches for `plan`'s table at version `gold` with its inputs at
    /// `inputs`, under its query as it is now.
    fn held_at(
        &self,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
        gold: Option<i64>,
        inputs: &BTreeMap<String, Option<i64>>,
    ) -> bool {
        self.gold_version == gold && self.query == query(config, plan) && &self.inputs == inputs
    }

    /// Saves what `plan`'s table holds after a run, with its inputs as they are now, when
    /// the run can vouch for it (`stale`, from [`stale_after`]). One that cannot be saved is
    /// noted: the next run then recomputes the table from silver.
    pub async fn keep(
        lake: &Lake,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
        stale: Option<BTreeSet<String>>,
        events: &crate::events::Events,
    ) {
        let Some(stale) = stale else {
            return;
        };
        if let Err(e) = Baseline::save(lake, config, plan, stale).await {
            events.note(format!(
                "gold {}: saving what it holds in {}: {e}",
                plan.name,
                layout::gold_baseline(&plan.name)
            ));
        }
    }

    /// Carries `plan`'s baseline over a run that changed none of its inputs' rows (their
    /// versions may still move: a commit of dead letters only, a compaction).
    pub async fn carry(
        lake: &Lake,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
        before: &BTreeMap<String, Option<i64>>,
        events: &crate::events::Events,
    ) {
        let Some(held) = Baseline::holding(lake, config, plan, before).await else {
            return;
        };
        if versions_now(lake, config, &plan.inputs).await.ok().as_ref() != Some(&held.inputs) {
            Baseline::keep(lake, config, plan, Some(held.stale), events).await;
        }
    }

    /// The versions `plan`'s table and its inputs are at now, to carry its baseline over
    /// commits that change no rows ([`Baseline::carry_over`]).
    pub async fn versions_of(
        lake: &Lake,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
    ) -> KaratResult<Versions> {
        Ok(Versions {
            gold: gold_version(lake, &plan.name).await?,
            inputs: versions_now(lake, config, &plan.inputs).await?,
        })
    }

    /// Carries `plan`'s baseline, if it held at `before`, over the commits made since, which
    /// changed no row of the table or its inputs (`karat maintain`'s compactions): otherwise
    /// the next run would recompute the table whole.
    pub async fn carry_over(
        lake: &Lake,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
        before: &Versions,
        events: &crate::events::Events,
    ) {
        let Some(b) = Baseline::stored(lake, plan).await else {
            return;
        };
        if b.held_at(config, plan, before.gold, &before.inputs) {
            Baseline::keep(lake, config, plan, Some(b.stale), events).await;
        }
    }

    /// Saves the baseline of `plan`'s table as it is now, with `stale` partitions.
    async fn save(
        lake: &Lake,
        config: &crate::config::Config,
        plan: &super::GoldPlan,
        stale: BTreeSet<String>,
    ) -> KaratResult<()> {
        let b = Baseline {
            gold_version: gold_version(lake, &plan.name).await?,
            query: query(config, plan).to_string(),
            inputs: versions_now(lake, config, &plan.inputs).await?,
            stale,
        };
        let path = layout::gold_baseline(&plan.name);
        let bytes = serde_json::to_vec(&b).map_err(|e| {
            KaratError::Other(format!("gold table {}: writing {path}: {e}", plan.name))
        })?;
        lake.put(&path, bytes.into()).await
    }
}

/// The versions of a gold table and of its inputs (by table; None: no table yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Versions {
    pub gold: Option<i64>,
    pub inputs: BTreeMap<String, Option<i64>>,
}

/// The SQL of `plan`'s table.
pub(super) fn query<'a>(config: &'a crate::config::Config, plan: &super::GoldPlan) -> &'a str {
    config
        .table(&plan.name)
        .and_then(|t| t.gold())
        .map(|g| g.sql.as_str())
        .unwrap_or_default()
}

/// The current version of gold table `name` (None: no table yet).
async fn gold_version(lake: &Lake, name: &str) -> KaratResult<Option<i64>> {
    let folder = layout::table(crate::config::Zone::Gold, name);
    delta::latest_version(&lake.url_of(&folder), &folder).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use std::sync::Arc;

    async fn fold_of(sql: &str) -> Result<Fold, String> {
        let ctx = delta::session();
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Date32, true),
            Field::new("currency", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new("price", DataType::Float64, true),
            Field::new("note", DataType::Int64, true),
        ]));
        let t = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table("orders", Arc::new(t)).unwrap();
        let df = ctx.sql(sql).await.unwrap();
        let never_null = ["day", "currency", "amount", "price"]
            .map(String::from)
            .into();
        of(df.logical_plan(), &never_null)
    }

    #[tokio::test]
    async fn sums_and_counts_of_one_table_grouped_fold() {
        let f = fold_of(
            "SELECT day, currency, SUM(amount) AS revenue, COUNT(*) AS orders, COUNT(note) AS noted \
             FROM orders WHERE currency <> 'XXX' GROUP BY day, currency ORDER BY day",
        )
        .await
        .unwrap();
        assert_eq!(f.groups, ["day", "currency"]);
        assert_eq!(f.sums, ["revenue", "orders", "noted"]);
        assert_eq!(f.rows, "orders");
    }

    #[tokio::test]
    async fn what_does_not_add_up_exactly_does_not_fold() {
        for (sql, why) in [
            (
                "SELECT day, SUM(amount) AS r FROM orders GROUP BY day",
                "no COUNT(*)",
            ),
            (
                "SELECT day, AVG(amount) AS r, COUNT(*) AS n FROM orders GROUP BY day",
                "avg() does not add up",
            ),
            (
                "SELECT day, MIN(note) AS r, COUNT(*) AS n FROM orders GROUP BY day",
                "min() does not add up",
            ),
            (
                "SELECT day, SUM(note) AS r, COUNT(*) AS n FROM orders GROUP BY day",
                "keeps from being null",
            ),
            (
                "SELECT day, COUNT(*) AS n FROM orders GROUP BY day HAVING COUNT(*) > 1",
                "HAVING",
            ),
            (
                "SELECT day, COUNT(DISTINCT currency) AS n, COUNT(*) AS c FROM orders GROUP BY day",
                "DISTINCT",
            ),
            (
                "SELECT day, COUNT(*) + 1 AS n FROM orders GROUP BY day",
                "computed after grouping",
            ),
            (
                "SELECT a.day, COUNT(*) AS n FROM orders a JOIN orders b ON a.day = b.day GROUP BY a.day",
                "over one table fold",
            ),
            (
                "SELECT day, SUM(amount) AS r, COUNT(*) AS n FROM orders GROUP BY day, currency",
                "does not select",
            ),
            (
                "SELECT day, COUNT(*) AS n FROM orders WHERE day >= current_date GROUP BY day",
                "of the row over one table",
            ),
            (
                "SELECT day, COUNT(*) AS n FROM orders WHERE random() < 0.5 GROUP BY day",
                "of the row over one table",
            ),
            (
                "SELECT day, SUM(amount) AS r, COUNT(*) AS n FROM (SELECT day, note AS amount FROM orders) o GROUP BY day",
                "of the row over one table",
            ),
            ("SELECT day, currency FROM orders", "does not group by"),
        ] {
            let got = fold_of(sql).await;
            assert!(
                matches!(&got, Err(e) if e.to_lowercase().contains(&why.to_lowercase())),
                "{sql}: {got:?}"
            );
        }
        // a float sum is refused for what it is, even over a column never null
        let got =
            fold_of("SELECT day, SUM(price) AS p, COUNT(*) AS n FROM orders GROUP BY day").await;
        assert!(
            matches!(&got, Err(e) if e.contains("not an exact") || e.contains("floating")),
            "{got:?}"
        );
    }
}
