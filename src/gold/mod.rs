//! Gold: SQL aggregates over silver and gold, run by DataFusion on the Delta tables and written
//! back as Delta. A partitioned gold table recomputes only the partitions fed by what changed
//! upstream (the query's output is filtered to them, and DataFusion pushes that filter down);
//! an unpartitioned one is recomputed whole. Checks over each partition's result gate promotion.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::datasource::MemTable;

use crate::config::{Config, Zone};
use crate::error::{KaratError, KaratResult};
use crate::events::{Event, Events, Stage};
use crate::lake::delta::{self, Replace};
use crate::lake::{Lake, layout};
use crate::silver::contract::ident;
use crate::silver::{PartitionOutcome, PartitionStatus};
pub use derive::{Affected, affected};
pub use fold::Folding;
pub use plan::{GoldPlan, check_sql};

pub mod columns;
pub mod derive;
pub mod fold;
pub mod plan;

/// Label of the single "partition" of an unpartitioned gold table.
pub const WHOLE_TABLE: &str = "*";

/// What recomputing a gold table did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GoldReport {
    pub table: String,
    pub partitions: Vec<PartitionOutcome>,
    pub version: Option<i64>,
    /// Partitions whose new rows were folded from the run's changes, not recomputed from
    /// the inputs ([`fold`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<String>,
}

/// Which part of a gold table to recompute.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Everything.
    Full,
    /// These partitions (dates), from upstream changes.
    Partitions(BTreeSet<String>),
}

/// The table's query: its `sql`; for an SCD2 table, over its silver table and (once any
/// version was superseded) the superseded versions, registered here.
async fn query_of(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    g: &crate::config::GoldSpec,
) -> KaratResult<String> {
    let Some(spec) = &g.scd2 else {
        return Ok(g.sql.clone());
    };
    let name = crate::config::scd2::history_table(&spec.from);
    let history = lake.url_of(&layout::superseded(&spec.from));
    Ok(spec.sql(delta::register(ctx, &name, &history).await?))
}

/// The gold query `sql` restricted to partitions `labels` of its (Date32, as gold tables
/// computed by partition are) partition column. Compared as dates, DataFusion pushes the filter
/// down to the inputs' scans, which then read only those partitions; compared as text (a cast
/// per row) every input row was read.
fn only_partitions(sql: &str, pcol: &str, labels: &[String]) -> String {
    format!(
        "SELECT * FROM ({sql}) AS q WHERE q.{} IN ({})",
        ident(pcol),
        crate::silver::store::date_list(labels)
    )
}

/// What of a gold table to recompute, and how.
pub struct Work<'a> {
    pub scope: Scope,
    /// Partitions (or [`WHOLE_TABLE`]) that must not be promoted, with the upstream failure
    /// that blocks them.
    pub blocked: &'a BTreeMap<String, String>,
    /// The run's changes to fold in, when the table's query folds ([`fold`]).
    pub folding: Option<Folding>,
    /// Per input, its partitions that failed in the run, and why.
    pub failed: BTreeMap<String, BTreeMap<String, String>>,
}

/// Registers `rows` (of `schema`) in `ctx` as the table `name`.
pub(crate) fn register_rows(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    name: &str,
    schema: deltalake::arrow::datatypes::SchemaRef,
    rows: Vec<RecordBatch>,
    context: &str,
) -> KaratResult<()> {
    ctx.register_table(name, rows_table(schema, rows, context)?)
        .map_err(|e| KaratError::sql(context.to_string(), e))?;
    Ok(())
}

/// `rows` (of `schema`) as a table to query.
pub(crate) fn rows_table(
    schema: deltalake::arrow::datatypes::SchemaRef,
    rows: Vec<RecordBatch>,
    context: &str,
) -> KaratResult<Arc<MemTable>> {
    MemTable::try_new(schema, vec![rows])
        .map(Arc::new)
        .map_err(|e| KaratError::sql(context.to_string(), e))
}

/// Recomputes `plan`'s table: `work`'s partitions, by folding the run's changes into them when
/// its baseline holds, from its inputs otherwise.
pub async fn process(
    lake: &Lake,
    config: &Config,
    plan: &GoldPlan,
    work: Work<'_>,
    run_id: &str,
    events: &Events,
) -> KaratResult<GoldReport> {
    let name = &plan.name;
    let g = config
        .table(name)
        .and_then(|t| t.gold())
        .expect("planned gold tables exist");
    events.send(Event::Started {
        stage: Stage::Gold,
        name: name.clone(),
        total: None,
    });
    let mut clock = crate::timings::Clock::new(format!("gold {name}"), events);
    let ctx = delta::session();
    if let Some(why) = register_inputs(lake, config, &ctx, plan).await? {
        let outcome = blocked_outcome(WHOLE_TABLE, &why);
        return Ok(finished_early(events, name, vec![outcome], false, why));
    }
    let base_sql = query_of(lake, &ctx, g).await?;
    let baseline = match (work.folding.as_ref(), &plan.fold) {
        (Some(f), Ok(_)) => fold::Baseline::holding(lake, config, plan, &f.before).await,
        _ => None,
    };
    let table = Table {
        lake,
        config,
        ctx: &ctx,
        plan,
        base_sql: &base_sql,
    };
    let start = Start::of(&table, &work, baseline.as_ref(), events).await?;
    clock.lap("inputs, baseline, scope");
    let recompute = Recompute {
        table,
        spec: g,
        folding: work.folding.as_ref(),
        baseline: baseline.as_ref(),
        run_id,
        events,
    };
    recompute.from(start, &mut clock).await
}

/// A recompute of one gold table once where it starts is known.
struct Recompute<'a> {
    table: Table<'a>,
    spec: &'a crate::config::GoldSpec,
    folding: Option<&'a Folding>,
    baseline: Option<&'a fold::Baseline>,
    run_id: &'a str,
    events: &'a Events,
}

impl Recompute<'_> {
    /// Why the recompute stops before computing anything, if it does: a whole-table recompute
    /// over failed upstream partitions would publish bad numbers; or no partition is wanted
    /// (then the fold's baseline is kept, with the partitions `held` stale and `blocked`).
    async fn stops(
        &self,
        target: &Target,
        held: Option<&BTreeSet<String>>,
        blocked: &BTreeMap<String, String>,
    ) -> Option<String> {
        if target.wanted.is_none() && !blocked.is_empty() {
            return Some("blocked by upstream failures".to_string());
        }
        if !matches!(&target.wanted, Some(w) if w.is_empty()) {
            return None;
        }
        if self.folding.is_some() {
            let Table {
                lake, config, plan, ..
            } = self.table;
            let stale = fold::stale_after(false, false, held, &[], &[], blocked);
            fold::Baseline::keep(lake, config, plan, stale, self.events).await;
        }
        Some("nothing to recompute".to_string())
    }

    /// Recomputes the partitions `start` covers (or says why none), checks and publishes
    /// them, and keeps the fold's baseline for the next run.
    async fn from(
        self,
        start: Start,
        clock: &mut crate::timings::Clock<'_>,
    ) -> KaratResult<GoldReport> {
        let Start {
            scope,
            blocked,
            held,
        } = start;
        let pcol = self
            .spec
            .partition_by
            .clone()
            .filter(|_| self.table.plan.incremental);
        let blocked = &blocked;
        let target = Target::of(&scope, pcol.as_deref(), blocked, self.table.base_sql);
        let mut outcomes = target.blocked_outcomes(&scope, blocked);
        if let Some(why) = self.stops(&target, held.as_ref(), blocked).await {
            let ok = outcomes.is_empty() && target.wanted.is_some();
            return Ok(finished_early(
                self.events,
                &self.table.plan.name,
                outcomes,
                ok,
                why,
            ));
        }
        let (t, g, events) = (self.table, self.spec, self.events);
        let partials = self.folding.and_then(|f| f.partials.as_ref());
        let folds = match (&pcol, self.baseline, partials, &t.plan.fold) {
            (Some(p), Some(b), Some(partials), Ok(f)) => Some((p.as_str(), b, partials, f)),
            _ => None,
        };
        let computed = compute(t.lake, t.ctx, t.plan, &target, folds, t.base_sql, events).await?;
        clock.lap("compute");
        let pcol = pcol.as_deref();
        let stored = match (pcol, &target.wanted) {
            (Some(p), None) => stored_partitions(t.lake, t.ctx, t.plan, p).await?,
            _ => BTreeSet::new(),
        };
        let mut checked =
            check_partitions(t.ctx, t.plan, g, pcol, &target, &computed, &stored).await?;
        outcomes.append(&mut checked.outcomes);
        clock.lap("check");
        let whole = target.wanted.is_none();
        let batches = computed.batches;
        let written = publish(
            t.lake,
            t.plan,
            g,
            pcol,
            whole,
            batches,
            &checked,
            self.run_id,
        )
        .await?;
        clock.lap("publish");
        for o in outcomes.iter_mut().filter(|o| o.status.promoted()) {
            o.delta_version = written.version.or(o.delta_version);
        }
        if self.folding.is_some() && computed.vouched {
            let wanted = target.wanted.unwrap_or_default();
            let whole = matches!(scope, Scope::Full);
            let passing = &checked.passing;
            let held = held.as_ref();
            let stale =
                fold::stale_after(whole, written.replaced_all, held, &wanted, passing, blocked);
            fold::Baseline::keep(t.lake, t.config, t.plan, stale, events).await;
            clock.lap("keep the fold's baseline");
        }
        let name = &t.plan.name;
        Ok(finished(
            events,
            name,
            outcomes,
            written.version,
            computed.folded,
        ))
    }
}

/// A gold table being recomputed: its plan and query, with its inputs registered in `ctx`.
#[derive(Clone, Copy)]
struct Table<'a> {
    lake: &'a Lake,
    config: &'a Config,
    ctx: &'a deltalake::datafusion::prelude::SessionContext,
    plan: &'a GoldPlan,
    base_sql: &'a str,
}

/// Where a recompute starts: what it covers and blocks, and the partitions of the table
/// left stale before it (None: the run cannot vouch for what the table held).
struct Start {
    scope: Scope,
    blocked: BTreeMap<String, String>,
    held: Option<BTreeSet<String>>,
}

impl Start {
    /// Where recomputing `table` for `work` starts: folding into `baseline` when it holds.
    async fn of(
        table: &Table<'_>,
        work: &Work<'_>,
        baseline: Option<&fold::Baseline>,
        events: &Events,
    ) -> KaratResult<Start> {
        let start = Start {
            scope: work.scope.clone(),
            blocked: work.blocked.clone(),
            held: baseline.map(|b| b.stale.clone()),
        };
        let normal = work.folding.as_ref().is_some_and(|f| f.partials.is_some());
        match baseline {
            None if normal => start.first_baseline(table, &work.failed, events).await,
            _ => Ok(start),
        }
    }

    /// A normal run (one with partials to fold) that finds no baseline to fold into
    /// recomputes the table whole once, to start one (a replay recomputes just its
    /// partitions). When upstream partitions `failed` in the run, that is every partition but
    /// the ones they feed (see [`around_failed`]), which stay blocked; otherwise, or when
    /// those cannot be told (noted), the whole table — unless partitions are blocked already.
    async fn first_baseline(
        self,
        table: &Table<'_>,
        failed: &BTreeMap<String, BTreeMap<String, String>>,
        events: &Events,
    ) -> KaratResult<Start> {
        let Scope::Partitions(_) = self.scope else {
            return Ok(self);
        };
        let from_scratch = Some(BTreeSet::new());
        let any_failed = failed.values().any(|ps| !ps.is_empty());
        if any_failed && !self.blocked.contains_key(WHOLE_TABLE) {
            match around_failed(table, failed, &self.blocked).await? {
                Around::Blocking { all, blocked } => {
                    return Ok(Start {
                        scope: Scope::Partitions(all),
                        blocked,
                        held: from_scratch,
                    });
                }
                Around::Whole(Some(why)) => events.note(format!(
                    "gold {}: recomputed without a baseline, though upstream partitions failed: \
                     {why}",
                    table.plan.name
                )),
                Around::Whole(None) => {}
            }
        }
        match self.blocked.is_empty() {
            true => Ok(Start {
                scope: Scope::Full,
                held: from_scratch,
                ..self
            }),
            false => self.all_but_blocked(table).await,
        }
    }

    /// With partitions blocked and no baseline: every partition of the table recomputed (the
    /// blocked ones not published), to start one, when the table is partitioned as configured
    /// (or not written yet); else the run's partitions only. Without this, a table added (or
    /// its query edited) while an upstream partition stays failed held only the partitions
    /// each run changed until that partition was fixed.
    async fn all_but_blocked(self, table: &Table<'_>) -> KaratResult<Start> {
        let Scope::Partitions(ps) = &self.scope else {
            return Ok(self);
        };
        let pcol = table
            .config
            .table(&table.plan.name)
            .and_then(|t| t.gold())
            .and_then(|g| g.partition_by.clone());
        let Some(pcol) = pcol else {
            return Ok(self);
        };
        if self.blocked.contains_key(WHOLE_TABLE)
            || stored_partitioned_by(table.lake, table.plan, &pcol).await? == Some(false)
        {
            return Ok(self);
        }
        let every = every_partition(table.lake, table.ctx, table.plan, &pcol, table.base_sql);
        let Some(mut all) = every.await? else {
            // rows without a partition value: whole, which stops while anything is blocked
            return Ok(Start {
                scope: Scope::Full,
                held: Some(BTreeSet::new()),
                ..self
            });
        };
        all.extend(ps.iter().cloned());
        all.extend(self.blocked.keys().cloned());
        Ok(Start {
            scope: Scope::Partitions(all),
            held: Some(BTreeSet::new()),
            ..self
        })
    }
}

/// How a recompute without a baseline goes around upstream partitions that failed.
enum Around {
    /// Every partition (`all`), but the `blocked` ones.
    Blocking {
        all: BTreeSet<String>,
        blocked: BTreeMap<String, String>,
    },
    /// As if none failed; why, when the partitions they feed cannot be told.
    Whole(Option<String>),
}

/// The partitions of `plan`'s table fed by the upstream partitions that `failed`, as silver
/// holds them now and as it held them when the table was last computed (a run interrupted
/// after silver's commit may have moved their rows already), added to `blocked`; and every
/// other partition, to recompute. Only for a table whose saved baseline has today's query and
/// that is stored partitioned as it is configured (else its partitions are not today's).
async fn around_failed(
    table: &Table<'_>,
    failed: &BTreeMap<String, BTreeMap<String, String>>,
    blocked: &BTreeMap<String, String>,
) -> KaratResult<Around> {
    let Table {
        lake,
        config,
        ctx,
        plan,
        base_sql,
    } = *table;
    let Some(stored) = fold::Baseline::stored(lake, plan).await else {
        return Ok(Around::Whole(None));
    };
    if stored.query != fold::query(config, plan) {
        return Ok(Around::Whole(Some("its query was edited".into())));
    }
    let pcol = config
        .table(&plan.name)
        .and_then(|t| t.gold())
        .and_then(|g| g.partition_by.clone());
    let Some(pcol) = pcol else {
        return Ok(Around::Whole(None));
    };
    match stored_partitioned_by(lake, plan, &pcol).await? {
        None => return Ok(Around::Whole(None)),
        Some(false) => {
            let why = format!("it is not stored partitioned by {pcol}");
            return Ok(Around::Whole(Some(why)));
        }
        Some(true) => {}
    }
    let partitions = failed
        .iter()
        .map(|(input, ps)| (input.clone(), ps.keys().cloned().collect()))
        .collect();
    let then = Some(&stored.inputs);
    let Some(fed) = derive::fed_by_failed(lake, config, plan, &partitions, then).await? else {
        let why = "the partitions they fed cannot be told (their rows as gold was computed are \
                   gone, or no longer read by its query)";
        return Ok(Around::Whole(Some(why.into())));
    };
    if fed.is_empty() && blocked.is_empty() {
        return Ok(Around::Whole(None));
    }
    let why = failed.values().flat_map(|ps| ps.values()).next();
    let why = why
        .cloned()
        .unwrap_or_else(|| "upstream partition failed".into());
    let mut blocked = blocked.clone();
    for p in fed {
        blocked.entry(p).or_insert_with(|| why.clone());
    }
    let Some(mut all) = every_partition(lake, ctx, plan, &pcol, base_sql).await? else {
        let why = "its query yields rows without a partition value".to_string();
        return Ok(Around::Whole(Some(why)));
    };
    all.extend(blocked.keys().cloned());
    Ok(Around::Blocking { all, blocked })
}

/// Whether `plan`'s Delta table is partitioned by `pcol` alone (None: no table yet).
async fn stored_partitioned_by(
    lake: &Lake,
    plan: &GoldPlan,
    pcol: &str,
) -> KaratResult<Option<bool>> {
    let folder = layout::table(Zone::Gold, &plan.name);
    let Some(table) = delta::open(&lake.url_of(&folder), &folder).await? else {
        return Ok(None);
    };
    let snapshot = table
        .snapshot()
        .map_err(|e| KaratError::delta(folder.clone(), e))?;
    Ok(Some(
        snapshot.metadata().partition_columns() == [pcol.to_string()].as_slice(),
    ))
}

/// Every partition of `plan`'s table: those it holds and those its query yields; None when
/// the query yields rows without a partition value, which only a whole recompute sees (and
/// fails on, see [`without_partition`]).
async fn every_partition(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    plan: &GoldPlan,
    pcol: &str,
    base_sql: &str,
) -> KaratResult<Option<BTreeSet<String>>> {
    let p = ident(pcol);
    let q = format!("SELECT DISTINCT CAST(q.{p} AS VARCHAR) FROM ({base_sql}) AS q");
    let context = format!("gold table {}: its partitions", plan.name);
    let yielded = distinct(ctx, &q, &context).await?;
    if yielded.null {
        return Ok(None);
    }
    let mut all = yielded.values;
    all.extend(stored_partitions(lake, ctx, plan, pcol).await?);
    Ok(Some(all))
}

/// The partitions (of column `pcol`) `plan`'s table holds; none when it has no table yet, or
/// is stored partitioned otherwise.
async fn stored_partitions(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    plan: &GoldPlan,
    pcol: &str,
) -> KaratResult<BTreeSet<String>> {
    if stored_partitioned_by(lake, plan, pcol).await? != Some(true) {
        return Ok(BTreeSet::new());
    }
    let url = lake.url_of(&layout::table(Zone::Gold, &plan.name));
    let _ = ctx.deregister_table("_karat_gold_now");
    if !delta::register(ctx, "_karat_gold_now", &url).await? {
        return Ok(BTreeSet::new());
    }
    let q = format!(
        "SELECT DISTINCT CAST({} AS VARCHAR) FROM _karat_gold_now",
        ident(pcol)
    );
    let context = format!("gold table {}: its partitions", plan.name);
    Ok(distinct(ctx, &q, &context).await?.values)
}

/// The values of one column.
struct Values {
    /// Those not null.
    values: BTreeSet<String>,
    /// Whether a null was among them.
    null: bool,
}

/// The values of the one column query `q` yields.
async fn distinct(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    q: &str,
    context: &str,
) -> KaratResult<Values> {
    let mut out = Values {
        values: BTreeSet::new(),
        null: false,
    };
    for b in delta::query(ctx, q, context).await? {
        let s = delta::utf8(b.column(0));
        out.null |= s.null_count() > 0;
        out.values.extend(
            (0..s.len())
                .filter(|i| s.is_valid(*i))
                .map(|i| s.value(i).to_string()),
        );
    }
    Ok(out)
}

/// Registers `plan`'s inputs in `ctx`; the reason the table cannot be computed when one has
/// no data yet.
async fn register_inputs(
    lake: &Lake,
    config: &Config,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    plan: &GoldPlan,
) -> KaratResult<Option<String>> {
    for input in &plan.inputs {
        let zone = config.table(input).map(|t| t.zone).unwrap_or(Zone::Silver);
        if !delta::register(ctx, input, &lake.url_of(&layout::table(zone, input))).await? {
            return Ok(Some(format!("upstream table {input} has no data yet")));
        }
    }
    Ok(None)
}

/// Which partitions a recompute computes (None: the whole table), and the query that does.
struct Target {
    wanted: Option<Vec<String>>,
    sql: String,
}

impl Target {
    /// `scope`'s partitions of partition column `pcol` but the `blocked` ones, by `base_sql`
    /// restricted to them; the whole table when unpartitioned or in full.
    fn of(
        scope: &Scope,
        pcol: Option<&str>,
        blocked: &BTreeMap<String, String>,
        base_sql: &str,
    ) -> Target {
        let (Scope::Partitions(ps), Some(p)) = (scope, pcol) else {
            return Target {
                wanted: None,
                sql: base_sql.to_string(),
            };
        };
        let ps: Vec<String> = ps
            .iter()
            .filter(|p| !blocked.contains_key(*p))
            .cloned()
            .collect();
        let sql = if ps.is_empty() {
            format!("SELECT * FROM ({base_sql}) AS q WHERE false")
        } else {
            only_partitions(base_sql, p, &ps)
        };
        Target {
            wanted: Some(ps),
            sql,
        }
    }

    /// The outcomes of the `blocked` partitions this recompute covers.
    fn blocked_outcomes(
        &self,
        scope: &Scope,
        blocked: &BTreeMap<String, String>,
    ) -> Vec<PartitionOutcome> {
        blocked
            .iter()
            .filter(|(p, _)| {
                *p == WHOLE_TABLE
                    || self.wanted.is_none()
                    || matches!(scope, Scope::Partitions(s) if s.contains(*p))
            })
            .map(|(p, why)| blocked_outcome(p, why))
            .collect()
    }
}

/// A gold table's new rows, and how they came about.
struct Computed {
    batches: Vec<RecordBatch>,
    /// Partitions folded from the run's changes ([`fold`]).
    folded: Vec<String>,
    /// False when folding failed and the rows were recomputed: the baseline is not vouched for.
    vouched: bool,
}

/// What folding a run's changes into a table takes: its partition column, its baseline, the
/// run's partial aggregates and the fold of its query.
type Folds<'a> = (
    &'a str,
    &'a fold::Baseline,
    &'a fold::Partials,
    &'a fold::Fold,
);

/// The new rows of `target`'s partitions: folded when `folds`, and folding succeeds; from
/// the inputs (its query) otherwise. Conformed to the table's planned schema.
async fn compute(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    plan: &GoldPlan,
    target: &Target,
    folds: Option<Folds<'_>>,
    base_sql: &str,
    events: &Events,
) -> KaratResult<Computed> {
    let name = &plan.name;
    let schema = &plan.schema;
    let mut computed = Computed {
        batches: Vec::new(),
        folded: Vec::new(),
        vouched: true,
    };
    let mut batches = None;
    if let (Some(w), Some((p, b, partials, f))) = (&target.wanted, folds) {
        match fold::rows(lake, ctx, name, f, schema, p, w, b, partials, base_sql).await {
            Ok(done) => {
                computed.folded = done.partitions;
                batches = Some(done.rows);
            }
            Err(e) => {
                events.note(format!("gold {name}: recomputed from its inputs: {e}"));
                computed.vouched = false;
            }
        }
    }
    let batches = match batches {
        Some(b) => b,
        None => delta::query(ctx, &target.sql, &format!("gold table {name}")).await?,
    };
    computed.batches = batches
        .into_iter()
        .map(|b| delta::conform(&b, schema))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            KaratError::arrow(
                format!("gold table {name}: result does not match its planned schema"),
                e,
            )
        })?;
    Ok(computed)
}

/// The new rows' partitions after the table's checks.
struct Checked {
    /// Rows per partition computed.
    partitions: BTreeMap<String, u64>,
    outcomes: Vec<PartitionOutcome>,
    /// Partitions that may be promoted.
    passing: Vec<String>,
}

/// Runs the table's checks over each partition of the `computed` rows. A partition (of a
/// partitioned table) recomputed without rows, wanted or `stored` (held by the table before a
/// whole recompute), is emptied: no input row feeds it any more (its rows moved to other
/// partitions, or left silver in a promoted step), so its old rows are removed, as a rebuild
/// would not hold them; checks judge rows published, and it has none. Kept, its rows were
/// counted twice next to the partition they moved to.
async fn check_partitions(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    plan: &GoldPlan,
    g: &crate::config::GoldSpec,
    pcol: Option<&str>,
    target: &Target,
    computed: &Computed,
    stored: &BTreeSet<String>,
) -> KaratResult<Checked> {
    let name = &plan.name;
    let schema = &plan.schema;
    let batches = &computed.batches;
    if let Some(p) = pcol
        && let Some(refused) = without_partition(name, schema, batches, p)?
    {
        return Ok(refused);
    }
    let mut partitions = partition_counts(name, schema, batches, pcol, target.wanted.as_deref())?;
    for p in stored {
        partitions.entry(p.clone()).or_insert(0);
    }
    let context = format!("gold table {name}");
    register_rows(ctx, "result", schema.clone(), batches.clone(), &context)?;
    let mut out = Checked {
        partitions: BTreeMap::new(),
        outcomes: Vec::new(),
        passing: Vec::new(),
    };
    for (part, rows) in &partitions {
        let outcome = match (pcol, rows) {
            (Some(_), 0) => emptied_outcome(part),
            _ => checked(ctx, name, g, pcol, part, *rows).await?,
        };
        if outcome.status.promoted() {
            out.passing.push(part.clone());
        }
        out.outcomes.push(outcome);
    }
    out.partitions = partitions;
    Ok(out)
}

/// What publishing a gold table's rows wrote.
struct Written {
    version: Option<i64>,
    /// Whether the commit replaced the whole table.
    replaced_all: bool,
}

/// Writes the partitions of `batches` that pass their checks (the whole table when `whole`
/// and all of them pass; an empty whole recompute empties it), in one commit.
#[allow(clippy::too_many_arguments)]
async fn publish(
    lake: &Lake,
    plan: &GoldPlan,
    g: &crate::config::GoldSpec,
    pcol: Option<&str>,
    whole: bool,
    batches: Vec<RecordBatch>,
    checked: &Checked,
    run_id: &str,
) -> KaratResult<Written> {
    let (passing, partitions) = (&checked.passing, &checked.partitions);
    let name = &plan.name;
    let schema = &plan.schema;
    let all_passing = whole && passing.len() == partitions.len();
    if passing.is_empty() && !(whole && partitions.is_empty()) {
        return Ok(Written {
            version: None,
            replaced_all: false,
        });
    }
    let (keep, replace) = match pcol {
        Some(p) => {
            let keep = passing_rows(name, schema, &batches, p, passing)?;
            let replace = match all_passing {
                true => Replace::All,
                false => Replace::Matching {
                    column: p.to_string(),
                    values: passing.clone(),
                },
            };
            (keep, replace)
        }
        None => (batches, Replace::All),
    };
    let replaced_all = matches!(replace, Replace::All);
    let p = pcol.or(g.partition_by.as_deref());
    let v = write_gold(lake, name, schema, keep, p, replace, run_id).await?;
    Ok(Written {
        version: Some(v),
        replaced_all,
    })
}

/// The report of a gold table computed, its `outcomes` sent as events.
fn finished(
    events: &Events,
    name: &str,
    outcomes: Vec<PartitionOutcome>,
    version: Option<i64>,
    folded: Vec<String>,
) -> GoldReport {
    for o in &outcomes {
        events.send(Event::Partition {
            table: name.to_string(),
            partition: o.partition.clone(),
            status: o.status.as_str().to_string(),
        });
    }
    let rows: u64 = outcomes.iter().map(|o| o.rows_out).sum();
    let failed = outcomes.iter().filter(|o| !o.status.promoted()).count();
    events.send(Event::Finished {
        stage: Stage::Gold,
        name: name.to_string(),
        rows,
        ok: failed == 0,
        detail: format!("{} partition(s), {failed} not promoted", outcomes.len()),
    });
    GoldReport {
        table: name.to_string(),
        partitions: outcomes,
        version,
        folded,
    }
}

/// Writes gold table `name`'s rows `keep` in one commit, replacing `replace`.
async fn write_gold(
    lake: &Lake,
    name: &str,
    schema: &deltalake::arrow::datatypes::SchemaRef,
    keep: Vec<RecordBatch>,
    partition_by: Option<&str>,
    replace: Replace,
    run_id: &str,
) -> KaratResult<i64> {
    let url = lake.url_of(&layout::table(Zone::Gold, name));
    let meta = vec![
        ("karat.run_id".to_string(), serde_json::json!(run_id)),
        (
            "karat.operation".to_string(),
            serde_json::json!("gold recompute"),
        ),
    ];
    let label = format!("gold.{name}");
    let v = delta::write(
        &url,
        &label,
        schema.clone(),
        keep,
        partition_by,
        replace,
        meta,
    )
    .await?;
    crate::lake::fault::after("gold.table");
    Ok(v)
}

/// The report of a gold table that stops before computing anything, with its `outcomes`.
fn finished_early(
    events: &Events,
    name: &str,
    outcomes: Vec<PartitionOutcome>,
    ok: bool,
    detail: String,
) -> GoldReport {
    events.send(Event::Finished {
        stage: Stage::Gold,
        name: name.to_string(),
        rows: 0,
        ok,
        detail,
    });
    GoldReport {
        table: name.to_string(),
        partitions: outcomes,
        version: None,
        folded: Vec::new(),
    }
}

/// Rows of gold table `name`'s new `batches` per partition (column `pcol`; unpartitioned:
/// [`WHOLE_TABLE`]), every `wanted` partition counted, with no row too.
fn partition_counts(
    name: &str,
    schema: &deltalake::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    pcol: Option<&str>,
    wanted: Option<&[String]>,
) -> KaratResult<BTreeMap<String, u64>> {
    let Some(p) = pcol else {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        return Ok(BTreeMap::from([(WHOLE_TABLE.to_string(), rows)]));
    };
    let err = |e| KaratError::arrow(format!("gold table {name}"), e);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in wanted.into_iter().flatten() {
        counts.insert(w.clone(), 0);
    }
    let idx = schema.index_of(p).map_err(err)?;
    for b in batches {
        let s = deltalake::arrow::compute::cast(b.column(idx), &DataType::Utf8).map_err(err)?;
        let s = s.as_string::<i32>();
        for i in (0..s.len()).filter(|i| s.is_valid(*i)) {
            *counts.entry(s.value(i).to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Partition `part` (of `rows` rows) of gold table `name`'s new rows (registered as `result`
/// in `ctx`) after the table's checks.
async fn checked(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    name: &str,
    g: &crate::config::GoldSpec,
    pcol: Option<&str>,
    part: &str,
    rows: u64,
) -> KaratResult<PartitionOutcome> {
    let mut status = PartitionStatus::Ok;
    let mut messages = Vec::new();
    let filter = match pcol {
        Some(p) => format!(
            " WHERE CAST({} AS VARCHAR) = '{}'",
            ident(p),
            part.replace('\'', "''")
        ),
        None => String::new(),
    };
    for c in &g.checks {
        let q = format!(
            "SELECT CAST(({}) AS BOOLEAN) AS ok FROM result{filter}",
            check_sql(&c.sql)
        );
        let out = delta::query(ctx, &q, &format!("gold table {name} check \"{}\"", c.name)).await?;
        let ok = out
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| {
                let a = b.column(0).as_boolean();
                a.is_valid(0) && a.value(0)
            })
            .unwrap_or(false);
        if ok {
            continue;
        }
        if c.blocking {
            status = PartitionStatus::Failed;
            messages.push(format!("check \"{}\" failed: {}", c.name, c.sql));
        } else {
            if status == PartitionStatus::Ok {
                status = PartitionStatus::Warn;
            }
            messages.push(format!("warning: check \"{}\" failed: {}", c.name, c.sql));
        }
    }
    Ok(PartitionOutcome {
        partition: part.to_string(),
        status,
        rows_in: rows,
        rows_out: if status.promoted() { rows } else { 0 },
        dead: 0,
        duplicates: 0,
        messages,
        dead_by_rule: vec![],
        delta_version: None,
    })
}

/// The rows of `batches` in the `passing` partitions (of column `pcol`).
fn passing_rows(
    name: &str,
    schema: &deltalake::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    pcol: &str,
    passing: &[String],
) -> KaratResult<Vec<RecordBatch>> {
    let err = |e| KaratError::arrow(format!("gold table {name}"), e);
    let idx = schema.index_of(pcol).map_err(err)?;
    let set: BTreeSet<&str> = passing.iter().map(String::as_str).collect();
    let mut keep = Vec::new();
    for b in batches {
        let s = deltalake::arrow::compute::cast(b.column(idx), &DataType::Utf8).map_err(err)?;
        let s = s.as_string::<i32>();
        let mask: deltalake::arrow::array::BooleanArray = (0..s.len())
            .map(|i| Some(s.is_valid(i) && set.contains(s.value(i))))
            .collect();
        keep.push(deltalake::arrow::compute::filter_record_batch(b, &mask).map_err(err)?);
    }
    Ok(keep)
}

/// The check of rows of gold table `name` without a value of its partition column `pcol`
/// (only a whole recompute yields them: a partition's is restricted to values): the table
/// fails whole, publishing nothing, since such rows would be dropped from its partitions
/// and counted as written; None when every row has one.
fn without_partition(
    name: &str,
    schema: &deltalake::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    pcol: &str,
) -> KaratResult<Option<Checked>> {
    let idx = schema
        .index_of(pcol)
        .map_err(|e| KaratError::arrow(format!("gold table {name}"), e))?;
    let nulls: usize = batches.iter().map(|b| b.column(idx).null_count()).sum();
    if nulls == 0 {
        return Ok(None);
    }
    let why = format!(
        "{nulls} row(s) its query yields have no {pcol}, its partition column: filter them out \
         (WHERE {pcol} IS NOT NULL) or give them one (COALESCE); nothing was published"
    );
    let mut outcome = blocked_outcome(WHOLE_TABLE, &why);
    outcome.status = PartitionStatus::Failed;
    outcome.rows_in = batches.iter().map(|b| b.num_rows() as u64).sum();
    Ok(Some(Checked {
        partitions: BTreeMap::from([(WHOLE_TABLE.to_string(), outcome.rows_in)]),
        outcomes: vec![outcome],
        passing: Vec::new(),
    }))
}

/// The outcome of partition `p`, recomputed without rows: emptied.
fn emptied_outcome(p: &str) -> PartitionOutcome {
    PartitionOutcome {
        partition: p.to_string(),
        status: PartitionStatus::Ok,
        rows_in: 0,
        rows_out: 0,
        dead: 0,
        duplicates: 0,
        messages: vec![
            "emptied: no input row feeds it any more (its rows moved to other partitions or \
             left silver); its old rows are removed"
                .to_string(),
        ],
        dead_by_rule: vec![],
        delta_version: None,
    }
}

fn blocked_outcome(p: &str, why: &str) -> PartitionOutcome {
    PartitionOutcome {
        partition: p.to_string(),
        status: PartitionStatus::Blocked,
        rows_in: 0,
        rows_out: 0,
        dead: 0,
        duplicates: 0,
        messages: vec![why.to_string()],
        dead_by_rule: vec![],
        delta_version: None,
    }
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Date32Array, Int64Array};
    use deltalake::arrow::datatypes::{Field, Schema};

    use super::*;

    /// Files the scan of `q` read, from EXPLAIN ANALYZE.
    async fn files_scanned(
        ctx: &deltalake::datafusion::prelude::SessionContext,
        q: &str,
    ) -> String {
        let out = delta::query(ctx, &format!("EXPLAIN ANALYZE {q}"), "explain")
            .await
            .unwrap();
        let plan = deltalake::arrow::util::pretty::pretty_format_batches(&out)
            .unwrap()
            .to_string();
        plan.split("count_files_scanned=")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no files scanned in {plan}"))
    }

    #[tokio::test]
    async fn recomputing_some_partitions_reads_only_those_partitions_of_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("t")).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Date32, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Date32Array::from(vec![20513, 20514, 20515])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let append = Replace::Append;
        delta::write(&url, "t", schema, vec![rows], Some("d"), append, vec![])
            .await
            .unwrap();
        let ctx = delta::session();
        assert!(delta::register(&ctx, "t", &url).await.unwrap());
        let sql = "SELECT d, SUM(n) AS n FROM t GROUP BY d";
        let day = ["2026-03-02".to_string()];
        let q = only_partitions(sql, "d", &day);
        assert_eq!(files_scanned(&ctx, &q).await, "1", "only that day is read");
        let out = delta::query(&ctx, &q, "gold").await.unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        // the filter as it was: a text cast per row, which reads every partition
        let as_text =
            format!("SELECT * FROM ({sql}) AS q WHERE CAST(q.d AS VARCHAR) IN ('2026-03-02')");
        assert_eq!(files_scanned(&ctx, &as_text).await, "3");
    }
}
