//! One run of the pipeline: ingest sources into bronze, apply new bronze batches to silver (or
//! re-process the batches behind replayed partitions), check the per-batch accounting,
//! recompute the gold partitions the changed rows feed, stop promotion below anything that
//! failed, and record every step in the ledger.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{SecondsFormat, Utc};

use crate::bronze::{self, manifest};
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use crate::gold::{self, GoldPlan, Scope, WHOLE_TABLE};
use crate::lake::Lake;
use crate::ledger::status::latest_partition_states;
use crate::ledger::{
    BatchRecord, ContractRecord, DriftRecord, Ledger, RunRecord, StepRecord, Trigger,
};

use crate::silver::contract_doc::ContractDoc;
use crate::silver::key_check::KeyCheck;
use crate::silver::{self, PartitionOutcome, PartitionStatus, accounting};

use super::key_change;
use super::open_failures::{self, Open, OpenFailures};
use super::plan::Plan;
use super::report::{RunReport, TableError};

/// What `karat run` should do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub trigger: Trigger,
    /// Restrict to these tables (and what they need / feed). Empty: everything.
    pub tables: Vec<String>,
    /// Rebuild only these partitions of the selected silver tables.
    pub partitions: Vec<String>,
    /// The equivalent command line, for the ledger.
    pub command: String,
}

impl RunOptions {
    pub fn new(trigger: Trigger) -> RunOptions {
        RunOptions {
            trigger,
            tables: Vec::new(),
            partitions: Vec::new(),
            command: "karat run".into(),
        }
    }
}

/// How a silver table is brought up to date in one execution.
#[derive(Debug, Clone)]
pub(crate) enum SilverMode {
    /// Bronze batches this table has not processed yet.
    New,
    /// Every batch that contributed to these partitions, with the current contract (a
    /// replay); with `include_new`, unprocessed batches too.
    Partitions {
        partitions: BTreeSet<String>,
        include_new: bool,
    },
}

/// Work for one execution.
#[derive(Debug, Clone, Default)]
pub(crate) struct Work {
    pub sources: Vec<String>,
    pub silver: Vec<(String, SilverMode)>,
    /// Gold tables recomputed even without upstream changes (gold replays): partitions, or
    /// `None` for the whole table.
    pub gold_forced: BTreeMap<String, Option<BTreeSet<String>>>,
    /// An approved replay, and the tables → partitions it rewrites.
    pub approval: Option<(super::replay::Approval, BTreeMap<String, BTreeSet<String>>)>,
}

/// Runs the pipeline.
pub async fn run(
    plan: &Plan,
    lake: &Lake,
    opts: RunOptions,
    events: &Events,
) -> KaratResult<RunReport> {
    let cfg = &plan.config;
    for t in &opts.tables {
        cfg.table_or_err(t)?;
    }
    let selected: Vec<&crate::config::Table> = if opts.tables.is_empty() {
        cfg.tables.iter().collect()
    } else {
        cfg.tables
            .iter()
            .filter(|t| opts.tables.contains(&t.name))
            .collect()
    };
    let mut work = Work::default();
    let partitions: BTreeSet<String> = opts.partitions.iter().cloned().collect();
    for t in &selected {
        match t.zone {
            Zone::Silver => {
                let s = t.silver().expect("silver");
                if !work.sources.contains(&s.from) {
                    work.sources.push(s.from.clone());
                }
                let mode = if partitions.is_empty() {
                    SilverMode::New
                } else {
                    SilverMode::Partitions {
                        partitions: partitions.clone(),
                        include_new: true,
                    }
                };
                work.silver.push((t.name.clone(), mode));
            }
            Zone::Gold if !opts.tables.is_empty() => {
                let scope = if partitions.is_empty() {
                    None
                } else {
                    Some(partitions.clone())
                };
                work.gold_forced.insert(t.name.clone(), scope);
            }
            _ => {}
        }
    }
    if opts.tables.is_empty() {
        // sources no silver table reads still land in bronze
        for s in &cfg.sources {
            if !work.sources.contains(&s.name) {
                work.sources.push(s.name.clone());
            }
        }
    }
    execute(plan, lake, opts.trigger, &opts.command, work, events).await
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Per upstream table, what this execution changed or broke.
#[derive(Debug, Default)]
struct Upstream {
    /// Silver: what the rows that entered or left the table feed.
    changed: Option<Changes>,
    /// Gold: partitions recomputed.
    promoted: BTreeSet<String>,
    failed: BTreeMap<String, String>,
    error: Option<String>,
}

/// A gold table's partitions left blocked by earlier runs.
#[derive(Default)]
struct LeftBlocked {
    /// Those to recompute, unless blocked now.
    recompute: Vec<String>,
    /// Those that stay blocked, and why.
    kept: BTreeMap<String, String>,
}

/// The rows that entered or left a silver table, kept as what gold and the accounting check
/// need of them, summarised after each group of batches: the rows themselves would hold a
/// whole run's silver rows in memory until gold runs.
#[derive(Debug, Default)]
struct Changes {
    /// Whether any row entered or left.
    any: bool,
    /// Their keys, checked against the table once its last group is written (None: the
    /// table has no key, or the check ran).
    keys: Option<KeyCheck>,
    /// Keys held twice that the updates found themselves, checking the keys they wrote
    /// ([`silver::written_keys`]); those keys are not in `keys`.
    held_twice: Vec<String>,
    /// Their bronze batches (the accounting's batches to balance).
    batches: BTreeSet<String>,
    /// Per gold table reading the table: the partitions they feed, derived when they changed
    /// (the data as it was then, as the delta of a join requires).
    feeds: BTreeMap<String, gold::Affected>,
    /// Per gold table with an input that had no table yet when the rows changed: the rows,
    /// derived when the gold table runs (that input may be created later in the run).
    pending: BTreeMap<String, Vec<silver::Changed>>,
    /// Per gold table whose query folds ([`gold::fold`]): the query over the rows that entered
    /// and left, or why the run cannot fold (an update that could not tell them apart).
    folds: BTreeMap<String, Result<gold::fold::Partials, String>>,
}

impl Changes {
    async fn add(
        &mut self,
        plan: &Plan,
        lake: &Lake,
        contract: &std::sync::Arc<silver::Contract>,
        changed: silver::Changed,
        held_twice: Option<Vec<String>>,
    ) -> KaratResult<()> {
        let checked = held_twice.is_some();
        self.held_twice.extend(held_twice.into_iter().flatten());
        if changed.is_empty() {
            return Ok(());
        }
        self.any = true;
        let rows: Vec<_> = changed
            .promoted
            .iter()
            .chain(&changed.failed)
            .cloned()
            .collect();
        for b in &rows {
            let ids = crate::lake::delta::utf8(b.column_by_name("_batch_id").expect("provenance"));
            // a batch's rows come in runs: one lookup per run, not per row
            let mut last = None;
            for id in ids.iter().flatten() {
                if last != Some(id) && !self.batches.contains(id) {
                    self.batches.insert(id.to_string());
                }
                last = Some(id);
            }
        }
        let table = &contract.table;
        let folded = self.fold(plan, table, changed.signed.as_ref()).await;
        // rows of failed partitions are few: they are derived when gold runs, against the
        // other inputs as the run leaves them (what they block must not be promoted)
        let failed = silver::Changed {
            promoted: Vec::new(),
            failed: changed.failed,
            signed: None,
        };
        let promoted = silver::Changed {
            promoted: changed.promoted,
            failed: Vec::new(),
            signed: None,
        };
        let one = BTreeMap::from([(table.clone(), promoted)]);
        let feeds = async {
            let mut feeds = Vec::new();
            for g in plan.gold.iter().filter(|g| g.inputs.contains(table)) {
                if !failed.is_empty() {
                    self.pending
                        .entry(g.name.clone())
                        .or_default()
                        .push(failed.clone());
                }
                if let Some(parts) = folded.get(&g.name) {
                    // the partitions a folded change feeds are those its partials hold
                    let fed = gold::Affected {
                        recompute: parts.clone(),
                        ..gold::Affected::default()
                    };
                    feeds.push((g.name.clone(), fed));
                    continue;
                }
                if !others_exist(plan, lake, g, table).await? {
                    self.pending
                        .entry(g.name.clone())
                        .or_default()
                        .push(one[table].clone());
                    continue;
                }
                let fed = gold::affected(lake, &plan.config, g, &one)
                    .await
                    .unwrap_or_else(|e| gold::Affected {
                        whole: Some(format!(
                            "the partitions changes of {table} feed could not be derived: {e}"
                        )),
                        ..gold::Affected::default()
                    });
                feeds.push((g.name.clone(), fed));
            }
            Ok(feeds)
        };
        if let Some(keys) = self.keys.as_mut().filter(|_| !checked) {
            keys.add(&rows)
                .map_err(|e| KaratError::arrow(format!("changed keys of {table}"), e))?;
        }
        for (gold, fed) in feeds.await? {
            self.feeds.entry(gold).or_default().absorb(fed);
        }
        Ok(())
    }

    /// Rows of keys of `table` that moved between partitions and touched one blocked in this
    /// run ([`silver::moved_across`]): handed to the gold tables reading it as rows of failed
    /// partitions, so that every day they touched stays blocked.
    fn block_moved(
        &mut self,
        plan: &Plan,
        table: &String,
        rows: Vec<deltalake::arrow::array::RecordBatch>,
    ) {
        if rows.is_empty() {
            return;
        }
        let failed = silver::Changed {
            promoted: Vec::new(),
            failed: rows,
            signed: None,
        };
        for g in plan.gold.iter().filter(|g| g.inputs.contains(table)) {
            self.pending
                .entry(g.name.clone())
                .or_default()
                .push(failed.clone());
        }
    }

    /// Folds the rows of `table` that entered and left into the partials of each gold table
    /// that folds them; a gold table whose rows were not told apart (or whose partials could
    /// not be computed) is recomputed from silver instead. Returns, per gold table folded,
    /// the partitions these rows feed.
    async fn fold(
        &mut self,
        plan: &Plan,
        table: &str,
        signed: Option<&silver::Signed>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut fed = BTreeMap::new();
        let reads = |g: &&GoldPlan| g.fold.is_ok() && g.inputs.iter().any(|i| i == table);
        for g in plan.gold.iter().filter(reads) {
            let entry = self
                .folds
                .entry(g.name.clone())
                .or_insert_with(|| Ok(gold::fold::Partials::default()));
            let Ok(sofar) = entry.as_mut() else {
                continue;
            };
            let sql = plan
                .config
                .table(&g.name)
                .and_then(|t| t.gold())
                .map(|t| &t.sql);
            let partials = match (signed, sql) {
                (Some(s), Some(sql)) => {
                    gold::fold::Partials::of(&g.name, sql, &g.schema, table, &s.entered, &s.left)
                        .await
                        .map_err(|e| e.to_string())
                }
                _ => Err(format!("an update of {table} re-merged whole partitions")),
            };
            let pcol = plan
                .config
                .table(&g.name)
                .and_then(|t| t.gold()?.partition_by.clone());
            match (partials, pcol) {
                (Ok(p), Some(pcol)) => {
                    if let Some(parts) = p.partitions(&pcol) {
                        fed.insert(g.name.clone(), parts);
                    }
                    sofar.absorb(p);
                }
                (Ok(_), None) => *entry = Err("it is not partitioned".into()),
                (Err(why), _) => *entry = Err(why),
            }
        }
        fed
    }
}

/// Whether every input of `g` but `table` has a Delta table yet.
async fn others_exist(plan: &Plan, lake: &Lake, g: &GoldPlan, table: &str) -> KaratResult<bool> {
    for other in g.inputs.iter().filter(|i| *i != table) {
        let zone = plan
            .config
            .table(other)
            .map(|t| t.zone)
            .unwrap_or(Zone::Silver);
        let url = lake.url_of(&crate::lake::layout::table(zone, other));
        if crate::lake::delta::open(&url, other).await?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Upstream {
    fn touched(&self) -> bool {
        self.changed.as_ref().is_some_and(|c| c.any)
            || !self.promoted.is_empty()
            || !self.failed.is_empty()
            || self.error.is_some()
    }
}

/// One execution in progress: what it did so far and what the ledger will record.
struct Execution<'a> {
    plan: &'a Plan,
    lake: &'a Lake,
    ledger: Ledger,
    trigger: Trigger,
    events: &'a Events,
    report: RunReport,
    steps: Vec<StepRecord>,
    drift: Vec<DriftRecord>,
    processed: Vec<BatchRecord>,
    upstream: BTreeMap<String, Upstream>,
    /// Every data table's version before the run, by folder.
    before: BTreeMap<String, Option<i64>>,
    /// Partitions failed or blocked now, read when a gold table first recomputes.
    open: Option<OpenFailures>,
}

/// Runs `work` holding the lake's writer lease: bronze, then silver, then gold in dependency
/// order, then the ledger.
pub(crate) async fn execute(
    plan: &Plan,
    lake: &Lake,
    trigger: Trigger,
    command: &str,
    work: Work,
    events: &Events,
) -> KaratResult<RunReport> {
    let work = execute_holding(plan, lake, trigger, command, work, events);
    crate::lake::lease::holding(lake, command, work).await
}

/// [`execute`] with the writer lease held.
async fn execute_holding(
    plan: &Plan,
    lake: &Lake,
    trigger: Trigger,
    command: &str,
    work: Work,
    events: &Events,
) -> KaratResult<RunReport> {
    let mut clock = crate::timings::Clock::new(command.to_string(), events);
    let versions_before = super::restore::table_versions(plan, lake).await?;
    let mut x = Execution::new(plan, lake, trigger, command, events);
    x.before = versions_before.clone();
    if let Some((approval, scope)) = &work.approval {
        x.record_approval(approval, scope).await?;
    }
    clock.lap("table versions");
    for source in &work.sources {
        x.bronze(source).await?;
        clock.lap(&format!("bronze {source}"));
    }
    for (table, mode) in &work.silver {
        x.silver(table, mode).await;
        clock.lap(&format!("silver {table} with its accounting"));
    }
    for g in &plan.gold {
        x.gold(g, work.gold_forced.get(&g.name)).await?;
        clock.lap(&format!("gold {}", g.name));
    }
    let report = x.record(&versions_before).await;
    clock.lap("ledger");
    report
}

impl<'a> Execution<'a> {
    /// Records the approval of this replay under the lease it holds, before anything is written.
    async fn record_approval(
        &self,
        approval: &super::replay::Approval,
        scope: &BTreeMap<String, BTreeSet<String>>,
    ) -> KaratResult<()> {
        let lease = crate::lake::lease::current(self.lake).await?;
        let record = crate::ledger::records::ApprovalRecord {
            at: now(),
            user: approval.user.clone(),
            host: crate::lake::lease::hostname(),
            command: self.report.command.clone(),
            lease_id: lease.map(|l| l.id).unwrap_or_default(),
            records: approval.records.map(|r| r as i64),
            budget: approval.budget.map(|b| b as i64),
            scope: serde_json::to_string(scope).expect("a map of strings serialises"),
        };
        self.ledger.append_approval(&record).await
    }

    fn new(
        plan: &'a Plan,
        lake: &'a Lake,
        trigger: Trigger,
        command: &str,
        events: &'a Events,
    ) -> Execution<'a> {
        Execution {
            plan,
            lake,
            ledger: Ledger::new(lake),
            trigger,
            events,
            report: RunReport {
                run_id: uuid::Uuid::now_v7().to_string(),
                trigger,
                command: command.to_string(),
                status: crate::ledger::RunStatus::Ok,
                started_at: now(),
                finished_at: String::new(),
                bronze: Vec::new(),
                silver: Vec::new(),
                gold: Vec::new(),
                errors: Vec::new(),
            },
            steps: Vec::new(),
            drift: Vec::new(),
            processed: Vec::new(),
            upstream: BTreeMap::new(),
            before: BTreeMap::new(),
            open: None,
        }
    }

    /// The ledger step of a partition outcome.
    fn step(
        &self,
        zone: Zone,
        table: &str,
        o: &PartitionOutcome,
        started: &str,
        fp: Option<String>,
    ) -> StepRecord {
        StepRecord {
            run_id: self.report.run_id.clone(),
            trigger: self.trigger,
            zone,
            table: table.into(),
            partition: o.partition.clone(),
            status: o.status,
            started_at: started.into(),
            finished_at: now(),
            rows_in: o.rows_in as i64,
            rows_out: o.rows_out as i64,
            dead: o.dead as i64,
            duplicates: o.duplicates as i64,
            messages: (!o.messages.is_empty()).then(|| o.messages.join("\n")),
            dead_by_rule: (!o.dead_by_rule.is_empty()).then(|| {
                serde_json::to_string(&o.dead_by_rule.iter().cloned().collect::<BTreeMap<_, _>>())
                    .expect("map serialises")
            }),
            schema_fingerprint: fp,
            delta_version: o.delta_version,
        }
    }

    /// The ledger step of a unit that is not a partition: a bronze batch or a table failure.
    fn unit_step(&self, zone: Zone, table: &str, unit: Unit, started: &str) -> StepRecord {
        StepRecord {
            run_id: self.report.run_id.clone(),
            trigger: self.trigger,
            zone,
            table: table.into(),
            partition: unit.name,
            status: unit.status,
            started_at: started.into(),
            finished_at: now(),
            rows_in: unit.rows,
            rows_out: unit.rows,
            dead: 0,
            duplicates: 0,
            messages: Some(unit.message),
            dead_by_rule: None,
            schema_fingerprint: unit.fingerprint,
            delta_version: None,
        }
    }

    /// Records a table that could not be processed at all.
    fn table_failed(&mut self, zone: Zone, table: &str, started: &str, e: &KaratError) {
        let step = self.unit_step(
            zone,
            table,
            Unit {
                name: WHOLE_TABLE.into(),
                status: PartitionStatus::Failed,
                rows: 0,
                message: e.to_string(),
                fingerprint: None,
            },
            started,
        );
        self.steps.push(step);
        self.upstream.entry(table.to_string()).or_default().error =
            Some(format!("upstream {zone} {table} failed: {e}"));
        self.report.errors.push(TableError {
            table: table.to_string(),
            error: e.to_string(),
        });
    }

    /// Ingests one source into bronze.
    async fn bronze(&mut self, source: &str) -> KaratResult<()> {
        let src = self
            .plan
            .config
            .source(source)
            .ok_or_else(|| KaratError::Usage(format!("unknown source {source}")))?;
        let t0 = now();
        let mut r = match bronze::ingest(self.lake, src, self.events).await {
            Ok(r) => r,
            Err(e) => {
                self.report.errors.push(TableError {
                    table: source.to_string(),
                    error: e.to_string(),
                });
                return Ok(());
            }
        };
        // a bronze unit is its origin (file or URL): a later success of the same origin resolves
        // its earlier failure
        for m in &r.new_batches {
            let unit = Unit {
                name: m.origin.clone(),
                status: PartitionStatus::Ok,
                rows: m.records as i64,
                message: format!(
                    "batch {} ({} invalid line(s) kept raw)",
                    m.batch_id, m.invalid
                ),
                fingerprint: Some(m.schema_fingerprint()),
            };
            let step = self.unit_step(Zone::Bronze, source, unit, &t0);
            self.steps.push(step);
        }
        for f in &r.failed {
            let unit = Unit {
                name: f.origin.clone(),
                status: PartitionStatus::Failed,
                rows: 0,
                message: f.error.clone(),
                fingerprint: None,
            };
            let step = self.unit_step(Zone::Bronze, source, unit, &t0);
            self.steps.push(step);
        }
        self.still_quarantined(source, &mut r).await?;
        for d in &r.drift {
            self.drift.push(DriftRecord {
                source: d.source.clone(),
                batch_id: d.batch_id.clone(),
                previous_batch_id: d.previous_batch_id.clone(),
                ingested_at: d.ingested_at.clone(),
                added: serde_json::to_string(&d.diff.added).expect("serialises"),
                removed: serde_json::to_string(&d.diff.removed).expect("serialises"),
                changed: serde_json::to_string(&d.diff.changed).expect("serialises"),
                run_id: self.report.run_id.clone(),
            });
        }
        self.report.bronze.push(r);
        Ok(())
    }

    /// A unit quarantined earlier (the same bytes failed) stays a failure of every run until
    /// its bytes change or someone acknowledges it (`karat ack`). Its failure is in the ledger
    /// already (the step that quarantined it), so nothing is recorded again; the run counts it.
    async fn still_quarantined(
        &mut self,
        source: &str,
        r: &mut bronze::IngestReport,
    ) -> KaratResult<()> {
        if r.quarantined.is_empty() {
            return Ok(());
        }
        let latest = latest_partition_states(&self.ledger.steps().await?);
        for q in &r.quarantined {
            let key = (Zone::Bronze, source.to_string(), q.origin.clone());
            if latest
                .get(&key)
                .is_none_or(|s| s.trigger != crate::ledger::Trigger::Ack)
            {
                r.failed.push(q.clone());
            }
        }
        Ok(())
    }

    /// Brings one silver table up to date and checks its accounting.
    async fn silver(&mut self, table: &str, mode: &SilverMode) {
        let t0 = now();
        let res = silver_table(
            self.plan,
            self.lake,
            &self.ledger,
            table,
            mode,
            &self.report.run_id,
            self.events,
        )
        .await;
        let (r, mut changes) = match res {
            Ok(r) => r,
            Err(e) => return self.table_failed(Zone::Silver, table, &t0, &e),
        };
        let fp = Some(crate::schema::contract_fingerprint(
            &self.plan.contracts[table].silver_schema,
        ));
        let mut up = Upstream::default();
        for o in &r.partitions {
            let step = self.step(Zone::Silver, table, o, &t0, fp.clone());
            self.steps.push(step);
            if !o.status.promoted() {
                up.failed.insert(
                    o.partition.clone(),
                    format!(
                        "upstream silver {table} partition {} {}",
                        o.partition,
                        o.status.as_str()
                    ),
                );
            }
        }
        let processed_at = now();
        self.processed.extend(r.batches.iter().map(|b| BatchRecord {
            table: table.to_string(),
            batch_id: b.clone(),
            contract: r.contract.clone(),
            run_id: self.report.run_id.clone(),
            processed_at: processed_at.clone(),
        }));
        let checked = self.check_accounting(table, &r, &mut changes).await;
        up.changed = Some(changes);
        self.upstream.insert(table.to_string(), up);
        if let Err(e) = checked {
            self.table_failed(Zone::Silver, table, &t0, &e);
        }
        self.report.silver.push(r);
    }

    /// The invariant after a silver update, from the Delta tables and the manifests: every
    /// batch the update touched balances, and no changed key is held twice.
    async fn check_accounting(
        &self,
        table: &str,
        r: &silver::SilverReport,
        changes: &mut Changes,
    ) -> KaratResult<()> {
        let contract = &self.plan.contracts[table];
        let mut batches: BTreeSet<String> = r.batches.iter().cloned().collect();
        batches.extend(changes.batches.iter().cloned());
        if batches.is_empty() {
            return Ok(());
        }
        let manifests: Vec<bronze::Manifest> = manifest::list(self.lake, &contract.spec.from)
            .await?
            .into_iter()
            .filter(|m| batches.contains(&m.batch_id))
            .collect();
        let keys = changes.keys.take();
        let duplicates = async {
            match keys {
                Some(keys) => accounting::duplicates_of(self.lake, contract, keys).await,
                None => Ok(Vec::new()),
            }
        };
        let (mut balance, mut duplicates) = tokio::try_join!(
            accounting::balance(
                self.lake,
                contract,
                &manifests,
                accounting::KeysChecked::ByCaller
            ),
            duplicates
        )?;
        duplicates.extend(std::mem::take(&mut changes.held_twice));
        duplicates.sort();
        duplicates.dedup();
        duplicates.truncate(crate::silver::key_check::SHOWN);
        balance.duplicate_keys = duplicates;
        match balance.errors().into_iter().next() {
            None => Ok(()),
            Some(first) => {
                for e in balance.errors().iter().skip(1) {
                    self.events.note(e.to_string());
                }
                Err(first)
            }
        }
    }

    /// Recomputes one gold table where its inputs changed (or when forced).
    async fn gold(
        &mut self,
        g: &GoldPlan,
        forced: Option<&Option<BTreeSet<String>>>,
    ) -> KaratResult<()> {
        let inputs: Vec<&Upstream> = g
            .inputs
            .iter()
            .filter_map(|i| self.upstream.get(i))
            .collect();
        if forced.is_none() && !inputs.iter().any(|u| u.touched()) {
            if let Some(f) = self.folding(g, forced) {
                let config = &self.plan.config;
                gold::fold::Baseline::carry(self.lake, config, g, &f.before, self.events).await;
            }
            return Ok(());
        }
        if self.open.is_none() {
            let mut steps = self.ledger.steps().await?;
            steps.extend(self.steps.iter().cloned());
            self.open = Some(OpenFailures::of_steps(&steps));
        }
        let (scope, blocked, whole) = self.gold_scope(g, forced).await?;
        let mut failed = inputs_failed(g, &self.upstream);
        for (input, ps) in self.open_inputs(g) {
            let this_run = failed.entry(input).or_default();
            for (p, open) in ps {
                this_run.entry(p).or_insert(open.why);
            }
        }
        let t0 = now();
        let res = gold::process(
            self.lake,
            &self.plan.config,
            g,
            gold::Work {
                scope,
                blocked: &blocked,
                folding: self.folding(g, forced),
                failed,
            },
            &self.report.run_id,
            self.events,
        )
        .await;
        let mut r = match res {
            Ok(r) => r,
            Err(e) => {
                self.table_failed(Zone::Gold, &g.name, &t0, &e);
                return Ok(());
            }
        };
        // said only of a table written: one blocked whole says why itself
        if let Some(why) = whole.filter(|_| r.version.is_some()) {
            self.events
                .note(format!("gold {}: recomputed whole: {why}", g.name));
            for o in &mut r.partitions {
                o.messages.push(format!("recomputed whole: {why}"));
            }
        }
        let fp = Some(crate::schema::contract_fingerprint(&g.schema));
        let mut up = Upstream::default();
        for o in &r.partitions {
            let step = self.step(Zone::Gold, &g.name, o, &t0, fp.clone());
            self.steps.push(step);
            if o.status.promoted() {
                up.promoted.insert(o.partition.clone());
            } else {
                up.failed.insert(
                    o.partition.clone(),
                    format!(
                        "upstream gold {} partition {} {}",
                        g.name,
                        o.partition,
                        o.status.as_str()
                    ),
                );
            }
        }
        self.upstream.insert(g.name.clone(), up);
        self.report.gold.push(r);
        Ok(())
    }

    /// What folding this run's changes into gold table `g` needs (None: its query does not
    /// fold): its inputs' versions before the run, and the query over the rows that entered
    /// and left them (None when not told apart, or when a replay forces its partitions).
    fn folding(
        &self,
        g: &GoldPlan,
        forced: Option<&Option<BTreeSet<String>>>,
    ) -> Option<gold::Folding> {
        g.fold.as_ref().ok()?;
        let zone = |i: &str| {
            self.plan
                .config
                .table(i)
                .map(|t| t.zone)
                .unwrap_or(Zone::Silver)
        };
        let before = g
            .inputs
            .iter()
            .map(|i| {
                let folder = crate::lake::layout::table(zone(i), i);
                (i.clone(), self.before.get(&folder).copied().flatten())
            })
            .collect();
        let mut partials = forced.is_none().then(gold::fold::Partials::default);
        for i in &g.inputs {
            let Some(changes) = self.upstream.get(i).and_then(|u| u.changed.as_ref()) else {
                continue;
            };
            match (changes.folds.get(&g.name), partials.as_mut()) {
                (Some(Ok(p)), Some(all)) => all.absorb(p.clone()),
                (Some(Err(why)), Some(_)) => {
                    let note = format!("gold {}: recomputed from its inputs: {why}", g.name);
                    self.events.note(note);
                    partials = None;
                }
                _ => {}
            }
        }
        Some(gold::Folding { before, partials })
    }

    /// What of a gold table to recompute and what to block, derived from the changed rows of
    /// its inputs; the third value says why the whole table is recomputed, if it is.
    async fn gold_scope(
        &self,
        g: &GoldPlan,
        forced: Option<&Option<BTreeSet<String>>>,
    ) -> KaratResult<(Scope, BTreeMap<String, String>, Option<String>)> {
        let mut blocked: BTreeMap<String, String> = BTreeMap::new();
        let mut failed_why: Option<String> = None;
        let mut gold_changed: Option<String> = None;
        let mut derived = gold::Affected::default();
        for name in &g.inputs {
            let Some(u) = self.upstream.get(name) else {
                continue;
            };
            if let Some(e) = &u.error {
                blocked.insert(WHOLE_TABLE.into(), e.clone());
            }
            if let Some(why) = u.failed.values().next() {
                failed_why.get_or_insert_with(|| why.clone());
            }
            match &u.changed {
                Some(c) => {
                    if let Some(fed) = c.feeds.get(&g.name) {
                        derived.absorb(fed.clone());
                    }
                    for rows in c.pending.get(&g.name).into_iter().flatten() {
                        let one = BTreeMap::from([(name.clone(), rows.clone())]);
                        derived
                            .absorb(gold::affected(self.lake, &self.plan.config, g, &one).await?);
                    }
                }
                // an input that errored blocks the whole table (above): recomputed whole, it
                // stops before computing anything, and keeps no fold baseline
                None if u.touched() => {
                    gold_changed = Some(match &u.error {
                        Some(_) => format!("its input {name} failed"),
                        None => format!("its input gold {name} changed"),
                    })
                }
                None => {}
            }
        }
        let open = self.open_inputs(g);
        let fed = open_failures::fed(self.lake, &self.plan.config, g, &open, self.events).await;
        if let Some(f) = &fed {
            failed_why.get_or_insert_with(|| f.why.clone());
        }
        let left = self.left_blocked(g, &open);
        // why the partitions cannot be derived at all, if they cannot (no changed rows needed)
        let never = gold::affected(self.lake, &self.plan.config, g, &BTreeMap::new()).await?;
        derived.absorb(never);
        // a whole recompute that failed or was blocked (rows without a partition value, an
        // error) is retried whole: a recompute of some partitions would not see what failed
        // it, and would heal it
        let own = self.open.as_ref().map(|o| o.of_table(&g.name, None));
        let failed_whole = own
            .and_then(|o| o.get(WHOLE_TABLE).cloned())
            .map(|o| format!("its last whole recompute was {}", o.status.as_str()));
        let whole = match (forced, gold_changed) {
            (Some(None), _) => Some("a replay of the whole table".to_string()),
            (_, Some(why)) => Some(why),
            _ => derived.whole.clone().or(failed_whole),
        };
        if whole.is_some() || !g.incremental {
            let kept = left.kept.into_values().next();
            if let Some(why) = failed_why.or(kept) {
                blocked.entry(WHOLE_TABLE.into()).or_insert(why);
            }
            return Ok((Scope::Full, blocked, whole.filter(|_| g.incremental)));
        }
        let why = failed_why.unwrap_or_else(|| "upstream partition failed".into());
        for p in &derived.blocked {
            blocked.insert(p.clone(), why.clone());
        }
        let mut ps = derived.recompute.clone();
        ps.extend(derived.blocked.iter().cloned());
        if let Some(Some(f)) = forced {
            ps.extend(f.iter().cloned());
        }
        if let Some(f) = fed {
            for p in f.partitions {
                blocked.entry(p.clone()).or_insert_with(|| f.why.clone());
                if p != WHOLE_TABLE {
                    ps.insert(p);
                }
            }
        }
        for (p, why) in left.kept {
            blocked.entry(p).or_insert(why);
        }
        ps.extend(
            left.recompute
                .into_iter()
                .filter(|p| !blocked.contains_key(p)),
        );
        if let Some(why) = blocked.get(WHOLE_TABLE).cloned() {
            for p in &ps {
                blocked.entry(p.clone()).or_insert_with(|| why.clone());
            }
        }
        Ok((Scope::Partitions(ps), blocked, None))
    }

    /// The open partitions ([`OpenFailures`]) of `g`'s inputs, but those this run promoted.
    /// The partitions of `g` left blocked by earlier runs: those kept blocked by a partition
    /// of its inputs still `open` ([`open_failures::still_blocked`]), and the others, to
    /// recompute once nothing blocks them.
    fn left_blocked(
        &self,
        g: &GoldPlan,
        open: &BTreeMap<String, BTreeMap<String, Open>>,
    ) -> LeftBlocked {
        let Some(all) = &self.open else {
            return LeftBlocked::default();
        };
        let left = all.left_blocked(&g.name);
        let kept = open_failures::still_blocked(&left, open);
        let recompute = left.into_keys().filter(|p| !kept.contains_key(p)).collect();
        LeftBlocked { recompute, kept }
    }

    fn open_inputs(&self, g: &GoldPlan) -> BTreeMap<String, BTreeMap<String, Open>> {
        let Some(open) = &self.open else {
            return BTreeMap::new();
        };
        open.of_inputs(g, |i| self.upstream.get(i).map(|u| &u.promoted))
    }

    /// Writes the ledger: drift, steps, processed batches, the tables' versions before and
    /// after (what `karat restore` returns to), then the run.
    async fn record(
        mut self,
        versions_before: &BTreeMap<String, Option<i64>>,
    ) -> KaratResult<RunReport> {
        let report = &mut self.report;
        report.finished_at = now();
        report.compute_status();
        // every data table is written by now: its versions, read before the first ledger
        // write so that a failed read leaves no steps without their run
        let after = super::restore::table_versions(self.plan, self.lake).await?;
        let versions = super::restore::version_records(&report.run_id, versions_before, &after);
        let contracts = self.new_contract_versions().await?;
        let report = &mut self.report;
        // steps before the processed batches: a crash in between leaves the batches to be
        // processed again (idempotent), never a failed gate without its step
        self.ledger.append_drift(&self.drift).await?;
        self.ledger.append_steps(&self.steps).await?;
        self.ledger.append_contracts(&contracts).await?;
        self.ledger.append_batches(&self.processed).await?;
        self.ledger.append_versions(&versions).await?;
        let silver = report.silver.iter().flat_map(|s| s.partitions.iter());
        let rows_in: u64 = silver.clone().map(|p| p.rows_in).sum();
        let dead: u64 = silver.map(|p| p.dead).sum();
        let error = (!report.errors.is_empty()).then(|| {
            report
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.table, e.error))
                .collect::<Vec<_>>()
                .join("\n")
        });
        self.ledger
            .append_run(&RunRecord {
                run_id: report.run_id.clone(),
                trigger: report.trigger,
                status: report.status,
                started_at: report.started_at.clone(),
                finished_at: report.finished_at.clone(),
                command: report.command.clone(),
                error,
                rows_in: rows_in as i64,
                dead: dead as i64,
                partitions_failed: report
                    .partitions()
                    .filter(|(_, _, p)| !p.status.promoted())
                    .count() as i64,
            })
            .await?;
        Ok(self.report)
    }
}

impl Execution<'_> {
    /// The contracts this run used that differ from the latest version the ledger holds of
    /// their table (a table's first run records its first version).
    async fn new_contract_versions(&self) -> KaratResult<Vec<ContractRecord>> {
        if self.report.silver.is_empty() {
            return Ok(Vec::new());
        }
        let mut latest: BTreeMap<String, String> = BTreeMap::new();
        for c in self.ledger.contracts().await? {
            latest.insert(c.table, c.fingerprint);
        }
        let mut out = Vec::new();
        for r in &self.report.silver {
            let spec = &self.plan.contracts[&r.table].spec;
            let doc = ContractDoc::of(&r.table, spec);
            if latest.get(&r.table) == Some(&doc.fingerprint) {
                continue;
            }
            out.push(ContractRecord {
                table: r.table.clone(),
                fingerprint: doc.fingerprint.clone(),
                doc: serde_json::to_string(&doc).expect("a contract document serialises"),
                run_id: self.report.run_id.clone(),
                recorded_at: now(),
            });
        }
        Ok(out)
    }
}

/// Per input of `g`, its partitions that failed in this run, and why.
fn inputs_failed(
    g: &GoldPlan,
    upstream: &BTreeMap<String, Upstream>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    g.inputs
        .iter()
        .filter_map(|i| Some((i.clone(), upstream.get(i)?.failed.clone())))
        .filter(|(_, failed)| !failed.is_empty())
        .collect()
}

/// A ledger unit that is not a partition outcome.
struct Unit {
    name: String,
    status: PartitionStatus,
    rows: i64,
    message: String,
    fingerprint: Option<String>,
}

/// The processed batches (of `manifests`) whose records no longer balance: a replay
/// interrupted between silver's commit and the dead letters' may have left one in neither
/// table (its rows gone from one, not yet in the other), and so among no partition's
/// contributors. A replay re-processes them too, wherever their rows belong.
async fn unbalanced(
    lake: &Lake,
    contract: &std::sync::Arc<silver::Contract>,
    manifests: &[bronze::Manifest],
    processed: &BTreeSet<String>,
) -> KaratResult<BTreeSet<String>> {
    let done: Vec<bronze::Manifest> = manifests
        .iter()
        .filter(|m| processed.contains(&m.batch_id))
        .cloned()
        .collect();
    let keys = accounting::KeysChecked::ByCaller;
    let balance = accounting::balance(lake, contract, &done, keys).await?;
    Ok(balance
        .batches
        .into_iter()
        .filter(|b| !b.balanced())
        .map(|b| b.batch_id)
        .collect())
}

/// Refuses a normal run of `contract`'s table when its key may repeat among the rows of the
/// batches it processed (`records`, of `manifests`) under an earlier key ([`key_change`]).
async fn refuse_a_key_that_may_repeat(
    lake: &Lake,
    ledger: &Ledger,
    contract: &std::sync::Arc<silver::Contract>,
    records: &[crate::ledger::BatchRecord],
    manifests: &[bronze::Manifest],
) -> KaratResult<()> {
    let table = &contract.table;
    let key = &ContractDoc::of(table, &contract.spec);
    // every batch under today's contract (the usual run): nothing to read
    if key.key.is_empty() || records.iter().all(|r| r.contract == key.fingerprint) {
        return Ok(());
    }
    let contracts = ledger.contracts().await?;
    let Some(r) = key_change::repeating(table, key, records, &contracts, manifests) else {
        return Ok(());
    };
    let store = silver::store::Store::open(lake, contract.clone()).await?;
    let partitions = store.partitions().await?;
    Err(key_change::refusal(table, key, &r, &partitions))
}

/// Brings one silver table up to date: new batches in bounded groups, or a replay of the
/// batches that contributed to some partitions (and of those left unbalanced).
async fn silver_table(
    plan: &Plan,
    lake: &Lake,
    ledger: &Ledger,
    table: &str,
    mode: &SilverMode,
    run_id: &str,
    events: &Events,
) -> KaratResult<(silver::SilverReport, Changes)> {
    let contract = plan
        .contracts
        .get(table)
        .cloned()
        .ok_or_else(|| KaratError::Usage(format!("{table} is not a silver table")))?;
    let manifests = manifest::list(lake, &contract.spec.from).await?;
    let records = ledger.batches(table).await?;
    // a run with new batches (`run --partition` too), not a replay of stored ones alone
    if matches!(
        mode,
        SilverMode::New
            | SilverMode::Partitions {
                include_new: true,
                ..
            }
    ) {
        refuse_a_key_that_may_repeat(lake, ledger, &contract, &records, &manifests).await?;
    }
    let processed: BTreeSet<String> = records.into_iter().map(|b| b.batch_id).collect();
    let new: Vec<bronze::Manifest> = manifests
        .iter()
        .filter(|m| !processed.contains(&m.batch_id))
        .cloned()
        .collect();
    let mut report = silver::SilverReport::empty(table, &contract.fingerprint);
    let (batches, targets) = match mode {
        SilverMode::New => (new, BTreeSet::new()),
        SilverMode::Partitions {
            partitions,
            include_new,
        } => {
            let store = silver::store::Store::open(lake, contract.clone()).await?;
            let mut ids = store.contributors(partitions).await?;
            ids.extend(unbalanced(lake, &contract, &manifests, &processed).await?);
            let mut batches: Vec<bronze::Manifest> = manifests
                .iter()
                .filter(|m| ids.contains(&m.batch_id))
                .cloned()
                .collect();
            if *include_new {
                batches.extend(new);
            }
            (batches, partitions.clone())
        }
    };
    let mut changes = Changes {
        keys: KeyCheck::new(&contract)?,
        ..Changes::default()
    };
    if batches.is_empty() && targets.is_empty() {
        return Ok((report, changes));
    }
    // bounded memory: new batches are applied in groups, each one an update of its own
    let mut groups = group_batches(batches, plan.config.silver_group_records);
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    let last = groups.len() - 1;
    let mut clock = crate::timings::Clock::new(format!("silver {table}"), events);
    let mut moved = silver::moved_across::MovedAcross::new(groups.len());
    for (i, group) in groups.into_iter().enumerate() {
        let t = if i == last {
            targets.clone()
        } else {
            BTreeSet::new()
        };
        let mut r = silver::update(lake, contract.clone(), group, &t, run_id, events).await?;
        clock.lap("update");
        let changed = std::mem::take(&mut r.changed);
        let held_twice = r.keys_held_twice.take();
        moved.keep(&contract, &changed, &r.partitions)?;
        changes
            .add(plan, lake, &contract, changed, held_twice)
            .await?;
        clock.lap("changed keys");
        report.absorb(r);
    }
    let moved = moved.blocking(&contract)?;
    changes.block_moved(plan, &contract.table, moved);
    Ok((report, changes))
}

/// Splits batches (oldest first) into groups of at most `limit` records (`[defaults]
/// silver_group_records`; at least one batch each).
fn group_batches(batches: Vec<bronze::Manifest>, limit: u64) -> Vec<Vec<bronze::Manifest>> {
    let mut groups: Vec<Vec<bronze::Manifest>> = Vec::new();
    let mut rows = 0u64;
    for m in batches {
        match groups.last_mut() {
            Some(g) if rows + m.records <= limit => {
                rows += m.records;
                g.push(m);
            }
            _ => {
                rows = m.records;
                groups.push(vec![m]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, records: u64) -> bronze::Manifest {
        bronze::Manifest::example(id, records)
    }

    #[test]
    fn groups_are_bounded_and_keep_order() {
        let g = group_batches(
            vec![
                m("a", 1_000_000),
                m("b", 400_000),
                m("c", 200_000),
                m("d", 2_000_000),
                m("e", 1),
            ],
            1_000_000,
        );
        let ids: Vec<Vec<&str>> = g
            .iter()
            .map(|g| g.iter().map(|m| m.batch_id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a"], vec!["b", "c"], vec!["d"], vec!["e"]]);
    }
}
