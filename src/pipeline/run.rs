//! One run of the pipeline: ingest sources into bronze, rebuild the silver partitions that new
//! batches touch (late rows included), recompute the gold partitions they feed, stop promotion
//! below anything that failed, and record every step in the ledger.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{SecondsFormat, Utc};

use crate::bronze::{self, manifest};
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use crate::gold::{self, Scope, WHOLE_TABLE};
use crate::lake::Lake;
use crate::ledger::{BatchRecord, DriftRecord, Ledger, RunRecord, StepRecord};
use crate::silver::{self, PartitionOutcome};

use super::plan::Plan;
use super::report::{RunReport, TableError};

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Cli,
    Schedule,
    Replay,
    Dashboard,
    Demo,
    Bench,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Replay => "replay",
            Trigger::Dashboard => "dashboard",
            Trigger::Demo => "demo",
            Trigger::Bench => "bench",
        }
    }
}

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

/// How a silver table is rebuilt in a run.
#[derive(Debug, Clone)]
pub(crate) enum SilverMode {
    /// New bronze batches, plus the older batches that feed the partitions they touch.
    New,
    /// Exactly these partitions, from every batch that feeds them (a replay). With
    /// `include_new`, batches not yet indexed are read too (but not indexed).
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
    promoted: BTreeSet<String>,
    failed: BTreeMap<String, String>,
    error: Option<String>,
}

pub(crate) async fn execute(
    plan: &Plan,
    lake: &Lake,
    trigger: Trigger,
    command: &str,
    work: Work,
    events: &Events,
) -> KaratResult<RunReport> {
    let cfg = &plan.config;
    let ledger = Ledger::new(lake);
    let run_id = uuid::Uuid::now_v7().to_string();
    let started_at = now();
    let mut report = RunReport {
        run_id: run_id.clone(),
        trigger: trigger.as_str().into(),
        command: command.to_string(),
        status: "ok".into(),
        started_at: started_at.clone(),
        finished_at: String::new(),
        bronze: Vec::new(),
        silver: Vec::new(),
        gold: Vec::new(),
        errors: Vec::new(),
    };
    let mut steps: Vec<StepRecord> = Vec::new();
    let step = |zone: &str,
                table: &str,
                o: &PartitionOutcome,
                started: &str,
                fp: Option<String>| StepRecord {
        run_id: run_id.clone(),
        trigger: trigger.as_str().into(),
        zone: zone.into(),
        table: table.into(),
        partition: o.partition.clone(),
        status: o.status.as_str().into(),
        started_at: started.into(),
        finished_at: now(),
        rows_in: o.rows_in as i64,
        rows_out: o.rows_out as i64,
        dead: o.dead as i64,
        duplicates: o.duplicates as i64,
        messages: if o.messages.is_empty() {
            None
        } else {
            Some(o.messages.join("\n"))
        },
        dead_by_rule: if o.dead_by_rule.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&o.dead_by_rule.iter().cloned().collect::<BTreeMap<_, _>>())
                    .expect("map serialises"),
            )
        },
        schema_fingerprint: fp,
        delta_version: o.delta_version,
    };

    // a step that is not a partition outcome: a bronze batch, or a table-level failure
    #[allow(clippy::too_many_arguments)]
    let unit_step = |zone: &str,
                     table: &str,
                     partition: &str,
                     status: &str,
                     started: &str,
                     rows: i64,
                     message: String,
                     fp: Option<String>| StepRecord {
        run_id: run_id.clone(),
        trigger: trigger.as_str().into(),
        zone: zone.into(),
        table: table.into(),
        partition: partition.into(),
        status: status.into(),
        started_at: started.into(),
        finished_at: now(),
        rows_in: rows,
        rows_out: rows,
        dead: 0,
        duplicates: 0,
        messages: Some(message),
        dead_by_rule: None,
        schema_fingerprint: fp,
        delta_version: None,
    };

    // bronze
    let mut drift_rows = Vec::new();
    for source in &work.sources {
        let src = cfg
            .source(source)
            .ok_or_else(|| KaratError::Usage(format!("unknown source {source}")))?;
        let t0 = now();
        match bronze::ingest(lake, src, events).await {
            Ok(r) => {
                for m in &r.new_batches {
                    steps.push(unit_step(
                        "bronze",
                        source,
                        &m.batch_id,
                        "ok",
                        &t0,
                        m.records as i64,
                        format!("{} ({} invalid line(s) kept raw)", m.origin, m.invalid),
                        Some(m.schema_fingerprint()),
                    ));
                }
                for f in &r.failed {
                    steps.push(unit_step(
                        "bronze",
                        source,
                        &f.origin,
                        "failed",
                        &t0,
                        0,
                        f.error.clone(),
                        None,
                    ));
                }
                for d in &r.drift {
                    drift_rows.push(DriftRecord {
                        source: d.source.clone(),
                        batch_id: d.batch_id.clone(),
                        previous_batch_id: d.previous_batch_id.clone(),
                        ingested_at: d.ingested_at.clone(),
                        added: serde_json::to_string(&d.diff.added).expect("serialises"),
                        removed: serde_json::to_string(&d.diff.removed).expect("serialises"),
                        changed: serde_json::to_string(&d.diff.changed).expect("serialises"),
                        run_id: run_id.clone(),
                    });
                }
                report.bronze.push(r);
            }
            Err(e) => report.errors.push(TableError {
                table: source.clone(),
                error: e.to_string(),
            }),
        }
    }

    // silver
    let mut upstream: BTreeMap<String, Upstream> = BTreeMap::new();
    let mut index_rows = Vec::new();
    for (table, mode) in &work.silver {
        let t0 = now();
        let res = silver_table(plan, lake, &ledger, table, mode, &run_id, events).await;
        let up = upstream.entry(table.clone()).or_default();
        match res {
            Ok((r, new_index)) => {
                let fp = Some(crate::schema::contract_fingerprint(
                    &plan.contracts[table].silver_schema,
                ));
                for o in &r.partitions {
                    steps.push(step("silver", table, o, &t0, fp.clone()));
                    if o.status.promoted() {
                        up.promoted.insert(o.partition.clone());
                    } else {
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
                index_rows.extend(new_index.into_iter().map(|(b, p, n)| BatchRecord {
                    table: table.clone(),
                    batch_id: b,
                    partition: p,
                    rows: n as i64,
                    run_id: run_id.clone(),
                }));
                report.silver.push(r);
            }
            Err(e) => {
                up.error = Some(format!("upstream silver {table} failed: {e}"));
                steps.push(unit_step(
                    "silver",
                    table,
                    WHOLE_TABLE,
                    "failed",
                    &t0,
                    0,
                    e.to_string(),
                    None,
                ));
                report.errors.push(TableError {
                    table: table.clone(),
                    error: e.to_string(),
                });
            }
        }
    }

    // gold, in dependency order
    for g in &plan.gold {
        let forced = work.gold_forced.get(&g.name);
        let inputs: Vec<&Upstream> = g.inputs.iter().filter_map(|i| upstream.get(i)).collect();
        let changed = inputs
            .iter()
            .any(|u| !u.promoted.is_empty() || !u.failed.is_empty() || u.error.is_some());
        if !changed && forced.is_none() {
            continue;
        }
        let mut blocked: BTreeMap<String, String> = BTreeMap::new();
        for u in &inputs {
            if let Some(e) = &u.error {
                blocked.insert(WHOLE_TABLE.into(), e.clone());
            }
            for (p, why) in &u.failed {
                if g.incremental {
                    blocked.insert(p.clone(), why.clone());
                } else {
                    blocked
                        .entry(WHOLE_TABLE.into())
                        .or_insert_with(|| why.clone());
                }
            }
        }
        let scope = if !g.incremental {
            Scope::Full
        } else {
            let mut ps: BTreeSet<String> = inputs
                .iter()
                .flat_map(|u| u.promoted.iter().cloned())
                .collect();
            ps.extend(blocked.keys().filter(|k| *k != WHOLE_TABLE).cloned());
            match forced {
                Some(Some(f)) => ps.extend(f.iter().cloned()),
                Some(None) => {
                    // whole-table replay of an incremental gold: every partition upstream has
                    ps.extend(known_partitions(plan, &ledger, &g.inputs).await?);
                }
                None => {}
            }
            Scope::Partitions(ps)
        };
        let t0 = now();
        let up = upstream.entry(g.name.clone()).or_default();
        if blocked.contains_key(WHOLE_TABLE) && g.incremental {
            // a table-level upstream error blocks every partition in scope
            let why = blocked[WHOLE_TABLE].clone();
            if let Scope::Partitions(ps) = &scope {
                for p in ps {
                    blocked.entry(p.clone()).or_insert_with(|| why.clone());
                }
            }
        }
        match gold::process(lake, cfg, g, scope, &blocked, &run_id, events).await {
            Ok(r) => {
                for o in &r.partitions {
                    steps.push(step(
                        "gold",
                        &g.name,
                        o,
                        &t0,
                        Some(crate::schema::contract_fingerprint(&g.schema)),
                    ));
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
                report.gold.push(r);
            }
            Err(e) => {
                up.error = Some(format!("upstream gold {} failed: {e}", g.name));
                steps.push(unit_step(
                    "gold",
                    &g.name,
                    WHOLE_TABLE,
                    "failed",
                    &t0,
                    0,
                    e.to_string(),
                    None,
                ));
                report.errors.push(TableError {
                    table: g.name.clone(),
                    error: e.to_string(),
                });
            }
        }
    }

    // ledger
    report.finished_at = now();
    report.compute_status();
    ledger.append_batches(&index_rows).await?;
    ledger.append_drift(&drift_rows).await?;
    ledger.append_steps(&steps).await?;
    let rows_in: u64 = report
        .silver
        .iter()
        .flat_map(|s| s.partitions.iter())
        .map(|p| p.rows_in)
        .sum();
    let dead: u64 = report
        .silver
        .iter()
        .flat_map(|s| s.partitions.iter())
        .map(|p| p.dead)
        .sum();
    ledger
        .append_run(&RunRecord {
            run_id: run_id.clone(),
            trigger: trigger.as_str().into(),
            status: report.status.clone(),
            started_at,
            finished_at: report.finished_at.clone(),
            command: command.to_string(),
            error: if report.errors.is_empty() {
                None
            } else {
                Some(
                    report
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.table, e.error))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            },
            rows_in: rows_in as i64,
            dead: dead as i64,
            partitions_failed: report
                .partitions()
                .filter(|(_, _, p)| !p.status.promoted())
                .count() as i64,
        })
        .await?;
    Ok(report)
}

/// Every partition the given upstream tables have, from the batch index (silver) and the
/// ledger (gold).
async fn known_partitions(
    plan: &Plan,
    ledger: &Ledger,
    inputs: &[String],
) -> KaratResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let steps = ledger.steps().await?;
    for i in inputs {
        if plan.contracts.contains_key(i) {
            out.extend(ledger.batches(i).await?.into_iter().map(|b| b.partition));
        } else {
            out.extend(
                steps
                    .iter()
                    .filter(|s| &s.table == i && s.partition != WHOLE_TABLE)
                    .map(|s| s.partition.clone()),
            );
        }
    }
    Ok(out)
}

/// Rebuilds one silver table; returns its report and the new batch-index rows.
async fn silver_table(
    plan: &Plan,
    lake: &Lake,
    ledger: &Ledger,
    table: &str,
    mode: &SilverMode,
    run_id: &str,
    events: &Events,
) -> KaratResult<(silver::SilverReport, Vec<(String, String, u64)>)> {
    let contract = plan
        .contracts
        .get(table)
        .cloned()
        .ok_or_else(|| KaratError::Usage(format!("{table} is not a silver table")))?;
    let manifests = manifest::list(lake, &contract.spec.from).await?;
    let index = ledger.batches(table).await?;
    let indexed: BTreeSet<&str> = index.iter().map(|b| b.batch_id.as_str()).collect();
    let by_id = |ids: &BTreeSet<String>| -> Vec<bronze::Manifest> {
        manifests
            .iter()
            .filter(|m| ids.contains(&m.batch_id))
            .cloned()
            .collect()
    };
    match mode {
        SilverMode::New => {
            let new: Vec<bronze::Manifest> = manifests
                .iter()
                .filter(|m| !indexed.contains(m.batch_id.as_str()))
                .cloned()
                .collect();
            if new.is_empty() {
                return Ok((
                    silver::SilverReport {
                        table: table.into(),
                        partitions: vec![],
                        batch_partitions: vec![],
                        silver_version: None,
                        dead_letter_version: None,
                    },
                    vec![],
                ));
            }
            // new batches are processed in groups of bounded size, so memory follows the group,
            // not the backlog; a partition touched again by a later group is rebuilt from every
            // batch that feeds it (the index plus the groups before)
            let mut seen: Vec<(String, String, u64)> = index
                .iter()
                .map(|b| (b.batch_id.clone(), b.partition.clone(), b.rows as u64))
                .collect();
            let mut new_index = Vec::new();
            let mut report = silver::SilverReport {
                table: table.into(),
                partitions: vec![],
                batch_partitions: vec![],
                silver_version: None,
                dead_letter_version: None,
            };
            for group in group_batches(new) {
                let ids: BTreeSet<String> = group.iter().map(|m| m.batch_id.clone()).collect();
                let mut collected =
                    silver::collect(lake, contract.clone(), group, None, run_id, events).await?;
                let touched = collected.partitions();
                let older: BTreeSet<String> = seen
                    .iter()
                    .filter(|(b, p, _)| touched.contains(p) && !ids.contains(b))
                    .map(|(b, _, _)| b.clone())
                    .collect();
                new_index.extend(collected.batch_partitions.iter().cloned());
                seen.extend(collected.batch_partitions.iter().cloned());
                if !older.is_empty() {
                    let more = silver::collect(
                        lake,
                        contract.clone(),
                        by_id(&older),
                        Some(&touched),
                        run_id,
                        events,
                    )
                    .await?;
                    collected.merge(more);
                }
                let r = silver::finish(
                    lake,
                    contract.clone(),
                    collected,
                    &BTreeSet::new(),
                    run_id,
                    events,
                )
                .await?;
                // a later rebuild of a partition supersedes an earlier one
                report
                    .partitions
                    .retain(|o| !r.partitions.iter().any(|n| n.partition == o.partition));
                report.partitions.extend(r.partitions);
                report.batch_partitions.extend(r.batch_partitions);
                report.silver_version = r.silver_version.or(report.silver_version);
                report.dead_letter_version = r.dead_letter_version.or(report.dead_letter_version);
            }
            report
                .partitions
                .sort_by(|a, b| a.partition.cmp(&b.partition));
            Ok((report, new_index))
        }
        SilverMode::Partitions {
            partitions,
            include_new,
        } => {
            let mut ids: BTreeSet<String> = index
                .iter()
                .filter(|b| partitions.contains(&b.partition))
                .map(|b| b.batch_id.clone())
                .collect();
            if *include_new {
                ids.extend(
                    manifests
                        .iter()
                        .filter(|m| !indexed.contains(m.batch_id.as_str()))
                        .map(|m| m.batch_id.clone()),
                );
            }
            let collected = silver::collect(
                lake,
                contract.clone(),
                by_id(&ids),
                Some(partitions),
                run_id,
                events,
            )
            .await?;
            let r = silver::finish(lake, contract, collected, partitions, run_id, events).await?;
            Ok((r, vec![]))
        }
    }
}

/// New batches are rebuilt in groups of at most this many records (at least one batch each).
pub const SILVER_GROUP_RECORDS: u64 = 1_500_000;

/// Splits batches (oldest first) into groups of bounded record count.
fn group_batches(batches: Vec<bronze::Manifest>) -> Vec<Vec<bronze::Manifest>> {
    let mut groups: Vec<Vec<bronze::Manifest>> = Vec::new();
    let mut rows = 0u64;
    for m in batches {
        match groups.last_mut() {
            Some(g) if rows + m.records <= SILVER_GROUP_RECORDS => {
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
        bronze::Manifest {
            batch_id: id.into(),
            source: "s".into(),
            sha256: String::new(),
            ingest_date: "2026-01-01".into(),
            ingested_at: String::new(),
            origin: String::new(),
            object: String::new(),
            bytes_in: 0,
            records,
            invalid: 0,
            blank: 0,
            schema: Default::default(),
        }
    }

    #[test]
    fn groups_are_bounded_and_keep_order() {
        let g = group_batches(vec![
            m("a", 1_000_000),
            m("b", 400_000),
            m("c", 200_000),
            m("d", 2_000_000),
            m("e", 1),
        ]);
        let ids: Vec<Vec<&str>> = g
            .iter()
            .map(|g| g.iter().map(|m| m.batch_id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]);
    }
}
