//! Replays: re-process, with the current contract, every bronze batch that contributed to the
//! chosen partitions (silver rows, dead letters or superseded versions of their keys), apply
//! the result wherever those rows now belong, then recompute the gold partitions the changed
//! rows feed. Afterwards the lake equals a from-scratch rebuild in which those batches use the
//! current contract, so replaying twice changes nothing. Targets: one or more partitions, a
//! date range, or everything currently failed.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use crate::gold::WHOLE_TABLE;
use crate::lake::Lake;
use crate::ledger::Ledger;
use crate::ledger::status::latest_partition_states;
use crate::silver::store::Store;

use super::plan::Plan;
use super::report::RunReport;
use super::run::{SilverMode, Work, execute};
use crate::ledger::Trigger;

/// What to replay.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    /// These partitions of a table.
    Partitions {
        table: String,
        partitions: Vec<String>,
    },
    /// Every known partition of a table from `from` to `to` inclusive (ISO dates compare as text).
    Range {
        table: String,
        from: String,
        to: String,
    },
    /// Every partition whose latest state is failed or blocked.
    Failed,
}

impl ReplayTarget {
    /// The equivalent command line.
    pub fn command(&self) -> String {
        match self {
            ReplayTarget::Partitions { table, partitions } => {
                let ps: Vec<String> = partitions
                    .iter()
                    .map(|p| format!("--partition {p}"))
                    .collect();
                format!("karat replay {table} {}", ps.join(" "))
            }
            ReplayTarget::Range { table, from, to } => {
                format!("karat replay {table} --from {from} --to {to}")
            }
            ReplayTarget::Failed => "karat replay --failed".into(),
        }
    }
}

/// Someone's approval of a replay (`--approve`, or the dashboard's typed confirmation): while it
/// runs, alerts on what it rewrites are suppressed (see [`crate::alert`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub user: String,
    /// Records its plan reprocesses, when the budget check computed them.
    pub records: Option<u64>,
    /// `[defaults] replay_budget_rows` when it was approved.
    pub budget: Option<u64>,
}

/// Replays the target and returns the run's report.
pub async fn replay(
    plan: &Plan,
    lake: &Lake,
    target: ReplayTarget,
    events: &Events,
) -> KaratResult<RunReport> {
    replay_approved(plan, lake, target, None, events).await
}

/// Refuses a replay whose plan would reprocess more records than `[defaults]
/// replay_budget_rows` (an approved replay is not asked).
pub async fn within_budget(plan: &Plan, lake: &Lake, target: &ReplayTarget) -> KaratResult<()> {
    let Some(budget) = plan.config.replay_budget_rows else {
        return Ok(());
    };
    let records = super::preview(plan, lake, target).await?.records();
    if records <= budget {
        return Ok(());
    }
    Err(KaratError::Usage(format!(
        "{} would reprocess {records} records, over [defaults] replay_budget_rows = {budget}: \
         see what it rewrites with --dry-run, then approve it (--approve, or type approve in the \
         dashboard)",
        target.command()
    )))
}

/// [`replay`], recording `approval` (if any) under the writer lease before it writes.
pub async fn replay_approved(
    plan: &Plan,
    lake: &Lake,
    target: ReplayTarget,
    approval: Option<Approval>,
    events: &Events,
) -> KaratResult<RunReport> {
    let wanted = resolve(plan, lake, &target).await?;
    let scope = approval.as_ref().map(|_| scope_of(plan, &wanted));
    let mut work = work_of(plan, lake, wanted).await?;
    work.approval = approval.zip(scope);
    execute(plan, lake, Trigger::Replay, &target.command(), work, events).await
}

/// What a replay of `wanted` rewrites: those partitions, and every gold table downstream of
/// them (`*`: gold partitions follow the rows, so any may change).
fn scope_of(
    plan: &Plan,
    wanted: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut scope = wanted.clone();
    for g in &plan.gold {
        if g.inputs.iter().any(|i| scope.contains_key(i)) {
            scope.entry(g.name.clone()).or_default().insert("*".into());
        }
    }
    scope
}

/// The partitions a target names, per table, checked against what the lake has.
pub(super) async fn resolve(
    plan: &Plan,
    lake: &Lake,
    target: &ReplayTarget,
) -> KaratResult<BTreeMap<String, BTreeSet<String>>> {
    let ledger = Ledger::new(lake);
    let cfg = &plan.config;
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match target {
        ReplayTarget::Partitions { table, partitions } => {
            let t = cfg.table_or_err(table)?;
            if partitions.is_empty() {
                return Err(KaratError::Usage(
                    "replay needs at least one --partition".into(),
                ));
            }
            // a typo must not replace a partition with nothing
            let known = known_partitions(plan, lake, &ledger, t.zone, table).await?;
            // `2026-3-7` names the partition 2026-03-07, unless a partition is literally named so
            let partitions: Vec<String> = partitions
                .iter()
                .map(|p| {
                    if known.contains(p) {
                        p.clone()
                    } else {
                        date_label(p)
                    }
                })
                .collect();
            if let Some(p) = partitions.iter().find(|p| !known.contains(*p)) {
                let recent: Vec<&str> = known.iter().rev().take(5).map(String::as_str).collect();
                return Err(KaratError::Usage(format!(
                    "table {table} has no partition {p}; most recent: {}",
                    if recent.is_empty() {
                        "none yet".to_string()
                    } else {
                        recent.join(", ")
                    }
                )));
            }
            wanted.insert(table.clone(), partitions.iter().cloned().collect());
        }
        ReplayTarget::Range { table, from, to } => {
            let t = cfg.table_or_err(table)?;
            let (from, to) = (date_label(from), date_label(to));
            if from > to {
                return Err(KaratError::Usage(format!(
                    "--from {from} is after --to {to}"
                )));
            }
            let known = known_partitions(plan, lake, &ledger, t.zone, table).await?;
            let ps: BTreeSet<String> = known
                .into_iter()
                .filter(|p| p.as_str() >= from.as_str() && p.as_str() <= to.as_str())
                .collect();
            if ps.is_empty() {
                return Err(KaratError::Usage(format!(
                    "table {table} has no known partitions between {from} and {to}"
                )));
            }
            wanted.insert(table.clone(), ps);
        }
        ReplayTarget::Failed => {
            let steps = ledger.steps().await?;
            for ((zone, table, partition), s) in latest_partition_states(&steps) {
                if zone != Zone::Bronze && !s.status.promoted() && cfg.table(&table).is_some() {
                    wanted.entry(table).or_default().insert(partition);
                }
            }
        }
    }
    Ok(wanted)
}

/// A partition label as karat writes a date (`2026-3-7` is `2026-03-07`), so that partitions
/// match and ranges compare as dates; anything that is not a date is left as it is.
fn date_label(label: &str) -> String {
    chrono::NaiveDate::parse_from_str(label.trim(), "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| label.to_string())
}

/// The work that replays `wanted`: silver tables re-process the batches behind their
/// partitions, gold tables recompute theirs.
pub(super) async fn work_of(
    plan: &Plan,
    lake: &Lake,
    wanted: BTreeMap<String, BTreeSet<String>>,
) -> KaratResult<Work> {
    let cfg = &plan.config;
    let ledger = Ledger::new(lake);
    let mut work = Work::default();
    for (table, ps) in wanted {
        let t = cfg.table_or_err(&table)?;
        match t.zone {
            Zone::Silver => {
                if ps.contains(WHOLE_TABLE) {
                    let all = known_partitions(plan, lake, &ledger, Zone::Silver, &table).await?;
                    work.silver.push((
                        table,
                        SilverMode::Partitions {
                            partitions: all,
                            include_new: false,
                        },
                    ));
                } else {
                    work.silver.push((
                        table,
                        SilverMode::Partitions {
                            partitions: ps,
                            include_new: false,
                        },
                    ));
                }
            }
            _ => {
                let scope = if ps.contains(WHOLE_TABLE) {
                    None
                } else {
                    Some(ps)
                };
                work.gold_forced.insert(table, scope);
            }
        }
    }
    Ok(work)
}

/// Partitions a table has: those the ledger has outcomes of in its zone (a bronze source of
/// the same name has files as its partitions), and for silver those its rows and dead letters
/// are in (a partition an interrupted replay emptied is still known).
async fn known_partitions(
    plan: &Plan,
    lake: &Lake,
    ledger: &Ledger,
    zone: Zone,
    table: &str,
) -> KaratResult<BTreeSet<String>> {
    let mut known: BTreeSet<String> = ledger
        .steps()
        .await?
        .into_iter()
        .filter(|s| s.zone == zone && s.table == table && s.partition != WHOLE_TABLE)
        .map(|s| s.partition)
        .collect();
    if zone == Zone::Silver {
        let contract = plan
            .contracts
            .get(table)
            .cloned()
            .ok_or_else(|| KaratError::Usage(format!("{table} is not a silver table")))?;
        known.extend(Store::open(lake, contract).await?.partitions().await?);
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::date_label;

    #[test]
    fn dates_are_written_as_karat_writes_them_and_other_labels_are_kept() {
        assert_eq!(date_label("2026-3-7"), "2026-03-07");
        assert_eq!(date_label("2026-03-28"), "2026-03-28");
        assert_eq!(date_label(" 2026-12-1 "), "2026-12-01");
        // not a date: left for the "no partition" error to name
        assert_eq!(date_label("2026-02-30"), "2026-02-30");
        assert_eq!(date_label("FR"), "FR");
    }
}
