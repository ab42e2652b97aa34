//! Undo of a replay. Every run records the Delta version of each of the lake's tables before
//! and after it (`_karat/versions`); `karat restore --run <replay id>` returns the tables that
//! replay rewrote to their versions before it (Delta RESTORE) and records, as a run of its own,
//! that the partitions and batches it touched are back as they were. It refuses when a later
//! run has written those tables since: undoing that too is not what was asked.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::error::{KaratError, KaratResult};
use crate::lake::lease;
use crate::lake::{Lake, delta};
use crate::ledger::status::latest_partition_states;
use crate::ledger::{BatchRecord, Ledger, RunRecord, StepRecord, VersionRecord};
use crate::silver::PartitionStatus;

use super::plan::Plan;

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub run_id: String,
    /// The replay undone.
    pub restored_run: String,
    /// (table folder, version the replay left, version restored).
    pub tables: Vec<(String, i64, i64)>,
    /// Partitions whose state is back to before the replay.
    pub partitions: usize,
}

/// The current version of every table a run of `plan` can write (`None`: not created yet).
pub(crate) async fn table_versions(
    plan: &Plan,
    lake: &Lake,
) -> KaratResult<BTreeMap<String, Option<i64>>> {
    let mut out = BTreeMap::new();
    for f in plan.data_tables() {
        let v = version_of(lake, &f).await?;
        out.insert(f, v);
    }
    Ok(out)
}

async fn version_of(lake: &Lake, folder: &str) -> KaratResult<Option<i64>> {
    delta::latest_version(&lake.url_of(folder), folder).await
}

/// The records of a run's versions, from the versions before and after it.
pub(crate) fn version_records(
    run_id: &str,
    before: &BTreeMap<String, Option<i64>>,
    after: &BTreeMap<String, Option<i64>>,
) -> Vec<VersionRecord> {
    after
        .iter()
        .map(|(table, a)| VersionRecord {
            run_id: run_id.to_string(),
            table: table.clone(),
            before: before.get(table).copied().flatten(),
            after: *a,
        })
        .collect()
}

/// Restores the tables replay `run_id` rewrote to their versions before it.
pub async fn restore(plan: &Plan, lake: &Lake, run_id: &str) -> KaratResult<RestoreReport> {
    let command = format!("karat restore --run {run_id}");
    lease::holding(
        lake,
        &command,
        restore_holding(plan, lake, run_id, &command),
    )
    .await
}

async fn restore_holding(
    plan: &Plan,
    lake: &Lake,
    run_id: &str,
    command: &str,
) -> KaratResult<RestoreReport> {
    let ledger = Ledger::new(lake);
    let replay = the_replay(&ledger, run_id).await?;
    let changed = changed_tables(lake, &ledger, run_id).await?;
    let started_at = now();
    let restore_id = uuid::Uuid::now_v7().to_string();
    let mut tables = Vec::new();
    let mut versions = Vec::new();
    for (folder, after, before) in &changed {
        let restored = delta::restore(&lake.url_of(folder), folder, *before).await?;
        tables.push((folder.clone(), *after, *before));
        versions.push(VersionRecord {
            run_id: restore_id.clone(),
            table: folder.clone(),
            before: Some(*after),
            after: Some(restored),
        });
    }
    let steps = restored_steps(&ledger, &replay, &restore_id).await?;
    let batches = restored_batches(plan, &ledger, &replay, &restore_id).await?;
    ledger.append_steps(&steps).await?;
    ledger.append_batches(&batches).await?;
    ledger.append_versions(&versions).await?;
    ledger
        .append_run(&RunRecord::operation(
            &restore_id,
            crate::ledger::Trigger::Restore,
            &started_at,
            command,
        ))
        .await?;
    Ok(RestoreReport {
        run_id: restore_id,
        restored_run: run_id.to_string(),
        tables,
        partitions: steps.len(),
    })
}

/// The replay `run_id`, or why it cannot be restored.
async fn the_replay(ledger: &Ledger, run_id: &str) -> KaratResult<RunRecord> {
    let runs = ledger.runs().await?;
    let Some(run) = runs.iter().find(|r| r.run_id == run_id) else {
        let replays: Vec<&str> = runs
            .iter()
            .rev()
            .filter(|r| r.trigger == crate::ledger::Trigger::Replay)
            .take(5)
            .map(|r| r.run_id.as_str())
            .collect();
        return Err(KaratError::Usage(format!(
            "no run {run_id}; latest replays: {}",
            if replays.is_empty() {
                "none".to_string()
            } else {
                replays.join(", ")
            }
        )));
    };
    if run.trigger != crate::ledger::Trigger::Replay {
        return Err(KaratError::Usage(format!(
            "run {run_id} is a {} run ({}); restore undoes replays",
            run.trigger, run.command
        )));
    }
    Ok(run.clone())
}

/// (table folder, version the replay left, version before it) of every table the replay
/// rewrote, checked to be untouched since.
async fn changed_tables(
    lake: &Lake,
    ledger: &Ledger,
    run_id: &str,
) -> KaratResult<Vec<(String, i64, i64)>> {
    let versions = ledger.versions(run_id).await?;
    if versions.is_empty() {
        return Err(KaratError::Usage(format!(
            "run {run_id} recorded no table versions (it ran before karat recorded them), so it \
             cannot be restored"
        )));
    }
    let mut out = Vec::new();
    for v in versions.iter().filter(|v| v.before != v.after) {
        let (Some(before), Some(after)) = (v.before, v.after) else {
            return Err(KaratError::Usage(format!(
                "{} did not exist before run {run_id}: there is no version to restore",
                v.table
            )));
        };
        let now = version_of(lake, &v.table).await?;
        if now != Some(after) {
            return Err(KaratError::Usage(format!(
                "{} is at version {} but run {run_id} left it at {after}: a later run wrote it, \
                 and restoring would undo that too",
                v.table,
                now.map_or_else(|| "none".into(), |n| n.to_string())
            )));
        }
        out.push((v.table.clone(), after, before));
    }
    Ok(out)
}

/// For every partition the replay recorded, its state before the replay, as a step of the
/// restore (a partition the replay created is recorded empty).
async fn restored_steps(
    ledger: &Ledger,
    replay: &RunRecord,
    restore_id: &str,
) -> KaratResult<Vec<StepRecord>> {
    let steps = ledger.steps().await?;
    let earlier: Vec<StepRecord> = steps
        .iter()
        .filter(|s| s.run_id != replay.run_id && s.finished_at < replay.started_at)
        .cloned()
        .collect();
    let before = latest_partition_states(&earlier);
    let at = now();
    let mut out = Vec::new();
    for s in steps.iter().filter(|s| s.run_id == replay.run_id) {
        let key = (s.zone, s.table.clone(), s.partition.clone());
        let mut step = before.get(&key).cloned().unwrap_or_else(|| StepRecord {
            status: PartitionStatus::Ok,
            rows_in: 0,
            rows_out: 0,
            dead: 0,
            duplicates: 0,
            messages: Some("the partition did not exist before the replay".into()),
            dead_by_rule: None,
            ..s.clone()
        });
        step.run_id = restore_id.to_string();
        step.trigger = crate::ledger::Trigger::Restore;
        step.started_at = at.clone();
        step.finished_at = at.clone();
        let why = format!("restored to before replay {}", replay.run_id);
        step.messages = Some(match step.messages.take() {
            Some(m) if !m.is_empty() => format!("{m}\n{why}"),
            _ => why,
        });
        out.push(step);
    }
    Ok(out)
}

/// For every batch the replay re-processed, its processing record before the replay (the
/// contract it was processed with), as processed by the restore.
async fn restored_batches(
    plan: &Plan,
    ledger: &Ledger,
    replay: &RunRecord,
    restore_id: &str,
) -> KaratResult<Vec<BatchRecord>> {
    let at = now();
    let mut out = Vec::new();
    for table in plan.contracts.keys() {
        let history = ledger.batch_history(table).await?;
        for b in history.iter().filter(|b| b.run_id == replay.run_id) {
            let prior = history
                .iter()
                .filter(|p| p.batch_id == b.batch_id && p.processed_at < replay.started_at)
                .max_by(|x, y| x.processed_at.cmp(&y.processed_at));
            if let Some(p) = prior {
                out.push(BatchRecord {
                    run_id: restore_id.to_string(),
                    processed_at: at.clone(),
                    ..p.clone()
                });
            }
        }
    }
    Ok(out)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}
