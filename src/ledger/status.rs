//! Answers from the ledger: per table and zone, freshness against its SLO, error rate per run
//! and over time, failed partitions and their reasons. Pure functions over ledger rows, so the
//! CLI and the dashboard compute the same thing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, Zone};

use super::{RunRecord, StepRecord, Trigger};

/// Freshness of a table against its SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    Ok,
    Warn,
    Error,
    /// Never written successfully.
    Never,
    /// No SLO declared.
    NoSlo,
}

impl Freshness {
    pub fn as_str(&self) -> &'static str {
        match self {
            Freshness::Ok => "ok",
            Freshness::Warn => "warn",
            Freshness::Error => "error",
            Freshness::Never => "never",
            Freshness::NoSlo => "no slo",
        }
    }
}

/// A duration in seconds as `45s`, `5m`, `3h`, `2d` (`never` for none).
pub fn human_age(secs: Option<i64>) -> String {
    match secs {
        None => "never".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

/// A partition whose latest state is not promoted.
#[derive(Debug, Clone, Serialize)]
pub struct FailedPartition {
    pub partition: String,
    pub status: String,
    pub run_id: String,
    pub at: String,
    pub messages: Vec<String>,
    pub rows_in: i64,
    pub dead: i64,
}

/// Status of one table (or source, in the bronze zone).
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub name: String,
    pub zone: Zone,
    pub owner: Option<String>,
    pub last_success: Option<String>,
    pub age_seconds: Option<i64>,
    pub freshness: Freshness,
    /// The newest partition the table has (by value), whatever its state.
    pub newest_partition: Option<String>,
    /// Why the data a consumer reads is stale whatever the write times say: the newest
    /// partition failed or is blocked.
    pub stale_because: Option<String>,
    pub warn_after_seconds: Option<u64>,
    pub error_after_seconds: Option<u64>,
    /// Rows currently held (sum of the latest promoted partitions).
    pub rows: i64,
    pub partitions_ok: usize,
    pub partitions_failed: usize,
    pub duplicates: i64,
    /// Dead-letter rows currently held.
    pub dead: i64,
    /// dead / rows in of the table's last run.
    pub error_rate_last: Option<f64>,
    /// dead / rows in per run that touched the table, oldest first.
    pub error_rate_history: Vec<f64>,
    pub last_status: Option<String>,
    pub failed: Vec<FailedPartition>,
}

/// The whole status document (`karat status`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub project: String,
    pub generated_at: String,
    pub last_run: Option<RunRecord>,
    pub tables: Vec<TableStatus>,
}

impl StatusReport {
    /// True when any table has failed partitions or is past its error SLO.
    pub fn unhealthy(&self) -> bool {
        self.tables
            .iter()
            .any(|t| !t.failed.is_empty() || t.freshness == Freshness::Error)
    }
}

/// The latest step per (zone, table, partition); a silver table-level failure (`*`) is gone once
/// a later step of the table succeeded.
pub fn latest_partition_states(
    steps: &[StepRecord],
) -> BTreeMap<(Zone, String, String), StepRecord> {
    let mut out: BTreeMap<(Zone, String, String), StepRecord> = BTreeMap::new();
    for s in steps {
        let k = (s.zone, s.table.clone(), s.partition.clone());
        match out.get(&k) {
            Some(prev) if prev.finished_at > s.finished_at => {}
            _ => {
                out.insert(k, s.clone());
            }
        }
    }
    // a silver table that could not be processed at all (`*`) is fine again once a later
    // step of that table succeeded
    let healed: Vec<(Zone, String, String)> = out
        .iter()
        .filter(|((z, t, p), st)| {
            *z == Zone::Silver
                && p == crate::gold::WHOLE_TABLE
                && out.iter().any(|((z2, t2, p2), later)| {
                    z2 == z
                        && t2 == t
                        && p2 != p
                        && later.status.promoted()
                        && later.finished_at > st.finished_at
                })
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in healed {
        out.remove(&k);
    }
    out
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Freshness by write time against the SLO.
fn freshness_of(
    age_seconds: Option<i64>,
    warn_after: Option<std::time::Duration>,
    error_after: Option<std::time::Duration>,
) -> Freshness {
    match (age_seconds, warn_after.is_some() || error_after.is_some()) {
        (None, _) => Freshness::Never,
        (Some(_), false) => Freshness::NoSlo,
        (Some(age), true) => {
            if error_after.is_some_and(|e| age as u64 > e.as_secs()) {
                Freshness::Error
            } else if warn_after.is_some_and(|w| age as u64 > w.as_secs()) {
                Freshness::Warn
            } else {
                Freshness::Ok
            }
        }
    }
}

/// Freshness by data: what the newest partition of a table is, and whether it is promoted.
struct DataFreshness {
    newest: Option<String>,
    /// When the newest promoted partition was last promoted.
    newest_promoted_at: Option<String>,
    stale_because: Option<String>,
}

type Latest = BTreeMap<(Zone, String, String), StepRecord>;

fn data_freshness(
    latest: &Latest,
    last_promoted: &Latest,
    zone: Zone,
    name: &str,
) -> DataFreshness {
    let mine = |m: &Latest| -> Vec<(String, StepRecord)> {
        m.iter()
            .filter(|((z, t, _), _)| *z == zone && t == name)
            .map(|((_, _, p), s)| (p.clone(), s.clone()))
            .collect()
    };
    let states = mine(latest);
    let newest = states.last().cloned();
    // a silver table-level failure (`*` beside dated partitions, cleared once the table
    // succeeds again) stops every partition; otherwise the newest partition tells
    let unpromoted = |e: &&(String, StepRecord)| !e.1.status.promoted();
    let whole = states
        .iter()
        .filter(|(p, _)| zone == Zone::Silver && p == crate::gold::WHOLE_TABLE && states.len() > 1)
        .find(unpromoted);
    let stale_because = whole.or(newest.as_ref().filter(unpromoted)).map(|(p, s)| {
        let why = s
            .messages
            .as_deref()
            .and_then(|m| m.lines().next())
            .unwrap_or_default();
        if p == crate::gold::WHOLE_TABLE {
            format!("the table {}: {why}", s.status.as_str())
        } else {
            format!("newest partition {p} {}: {why}", s.status.as_str())
        }
    });
    let newest_promoted_at = states
        .iter()
        .rev()
        .find(|(_, s)| s.status.promoted())
        .and_then(|(p, _)| {
            mine(last_promoted)
                .into_iter()
                .find(|(q, _)| q == p)
                .map(|(_, s)| s.finished_at)
        });
    DataFreshness {
        newest: newest.map(|(p, _)| p),
        newest_promoted_at,
        stale_because,
    }
}

/// Computes the status of every source and table at `now`.
pub fn compute(
    cfg: &Config,
    runs: &[RunRecord],
    steps: &[StepRecord],
    now: DateTime<Utc>,
) -> StatusReport {
    let latest = latest_partition_states(steps);
    let promoted: Vec<StepRecord> = steps
        .iter()
        .filter(|s| s.status.promoted())
        .cloned()
        .collect();
    let last_promoted = latest_partition_states(&promoted);
    let mut tables = Vec::new();
    let mut entries: Vec<(
        String,
        Zone,
        Option<String>,
        Option<crate::config::Freshness>,
    )> = cfg
        .sources
        .iter()
        .map(|s| (s.name.clone(), Zone::Bronze, s.owner.clone(), None))
        .collect();
    entries.extend(
        cfg.tables
            .iter()
            .map(|t| (t.name.clone(), t.zone, t.owner.clone(), t.freshness)),
    );
    for (name, zone, owner, slo) in entries {
        let mine: Vec<&StepRecord> = steps
            .iter()
            .filter(|s| s.zone == zone && s.table == name)
            .collect();
        let by_data =
            (zone != Zone::Bronze).then(|| data_freshness(&latest, &last_promoted, zone, &name));
        let last_success = match &by_data {
            // the consumer reads the newest complete partition: its age is the table's
            Some(d) if d.newest_promoted_at.is_some() => d.newest_promoted_at.clone(),
            _ => mine
                .iter()
                .filter(|s| s.status.promoted())
                .map(|s| s.finished_at.clone())
                .max(),
        };
        let age_seconds = last_success
            .as_deref()
            .and_then(parse)
            .map(|t| (now - t).num_seconds().max(0));
        let warn_after = slo.and_then(|f| f.warn_after);
        let error_after = slo.and_then(|f| f.error_after);
        let stale_because = by_data.as_ref().and_then(|d| d.stale_because.clone());
        let freshness = if stale_because.is_some() {
            Freshness::Error
        } else {
            freshness_of(age_seconds, warn_after, error_after)
        };
        let mut rows = 0;
        let mut dead = 0;
        let mut duplicates = 0;
        let mut ok = 0;
        let mut failed = Vec::new();
        for ((z, t, p), s) in &latest {
            if *z != zone || t != &name {
                continue;
            }
            dead += s.dead;
            // rows the table holds: the last promoted version of each partition
            if let Some(held) = last_promoted.get(&(*z, t.clone(), p.clone())) {
                rows += held.rows_out;
                duplicates += held.duplicates;
            }
            if s.status.promoted() {
                ok += 1;
            } else {
                failed.push(FailedPartition {
                    partition: p.clone(),
                    status: s.status.as_str().to_string(),
                    run_id: s.run_id.clone(),
                    at: s.finished_at.clone(),
                    messages: s
                        .messages
                        .clone()
                        .unwrap_or_default()
                        .lines()
                        .map(str::to_string)
                        .collect(),
                    rows_in: s.rows_in,
                    dead: s.dead,
                });
            }
        }
        // error rate per run
        let mut per_run: BTreeMap<&str, (String, i64, i64)> = BTreeMap::new();
        for s in &mine {
            let e = per_run
                .entry(s.run_id.as_str())
                .or_insert((s.finished_at.clone(), 0, 0));
            e.1 += s.rows_in;
            e.2 += s.dead;
            if s.finished_at > e.0 {
                e.0 = s.finished_at.clone();
            }
        }
        let mut hist: Vec<(String, f64)> = per_run
            .into_values()
            .filter(|(_, rin, _)| *rin > 0)
            .map(|(at, rin, d)| (at, d as f64 / rin as f64))
            .collect();
        hist.sort_by(|a, b| a.0.cmp(&b.0));
        // how the table's last run went: its worst step (steps of one run can share a time)
        let last_run = mine.iter().max_by(|a, b| a.finished_at.cmp(&b.finished_at));
        let last_status = last_run.and_then(|last| {
            mine.iter()
                .filter(|s| s.run_id == last.run_id)
                .max_by_key(|s| s.status.severity())
                .map(|s| s.status.as_str().to_string())
        });
        tables.push(TableStatus {
            name,
            zone,
            owner,
            last_success,
            age_seconds,
            freshness,
            newest_partition: by_data.and_then(|d| d.newest),
            stale_because,
            warn_after_seconds: warn_after.map(|d| d.as_secs()),
            error_after_seconds: error_after.map(|d| d.as_secs()),
            rows,
            partitions_ok: ok,
            partitions_failed: failed.len(),
            duplicates,
            dead,
            error_rate_last: hist.last().map(|h| h.1),
            error_rate_history: hist.into_iter().map(|h| h.1).collect(),
            last_status,
            failed,
        });
    }
    StatusReport {
        project: cfg.project.clone(),
        generated_at: now.to_rfc3339(),
        last_run: runs
            .iter()
            .rev()
            .find(|r| r.trigger != Trigger::Verify)
            .cloned(),
        tables,
    }
}

#[cfg(test)]
mod healing_tests {
    use super::*;
    use crate::silver::PartitionStatus;

    fn step(table: &str, partition: &str, status: PartitionStatus, at: &str) -> StepRecord {
        StepRecord::example(Zone::Silver, table, partition, status, at)
    }

    #[test]
    fn a_table_failure_clears_when_the_table_later_succeeds() {
        let failed = step(
            "orders",
            "*",
            PartitionStatus::Failed,
            "2026-01-01T00:00:00Z",
        );
        let later = step(
            "orders",
            "2026-01-01",
            PartitionStatus::Ok,
            "2026-01-02T00:00:00Z",
        );
        let other = step(
            "customers",
            "*",
            PartitionStatus::Failed,
            "2026-01-01T00:00:00Z",
        );
        let latest = latest_partition_states(&[failed.clone(), later, other]);
        assert!(!latest.contains_key(&(Zone::Silver, "orders".into(), "*".into())));
        assert!(latest.contains_key(&(Zone::Silver, "customers".into(), "*".into())));
        // an earlier success does not clear a later failure
        let earlier = step(
            "orders",
            "2025-12-31",
            PartitionStatus::Ok,
            "2025-12-31T00:00:00Z",
        );
        let latest = latest_partition_states(&[earlier, failed]);
        assert!(latest.contains_key(&(Zone::Silver, "orders".into(), "*".into())));
    }

    #[test]
    fn a_blocked_newest_partition_makes_the_table_stale_by_data() {
        let mut blocked = step(
            "daily",
            "2026-03-28",
            PartitionStatus::Blocked,
            "2026-03-28T01:00:00Z",
        );
        blocked.messages = Some("upstream silver orders partition 2026-03-28 failed".into());
        let steps = [
            step(
                "daily",
                "2026-03-27",
                PartitionStatus::Ok,
                "2026-03-27T01:00:00Z",
            ),
            blocked,
        ];
        let latest = latest_partition_states(&steps);
        let promoted = latest_partition_states(&steps[..1]);
        let d = data_freshness(&latest, &promoted, Zone::Silver, "daily");
        assert_eq!(d.newest.as_deref(), Some("2026-03-28"));
        assert_eq!(
            d.stale_because.as_deref(),
            Some(
                "newest partition 2026-03-28 blocked: upstream silver orders partition 2026-03-28 failed"
            )
        );
        // the age is that of the newest promoted partition
        assert_eq!(
            d.newest_promoted_at.as_deref(),
            Some("2026-03-27T01:00:00Z")
        );
        // once the newest partition is promoted the table is fresh by data again
        let healed = step(
            "daily",
            "2026-03-28",
            PartitionStatus::Ok,
            "2026-03-28T02:00:00Z",
        );
        let steps = [steps[0].clone(), steps[1].clone(), healed];
        let latest = latest_partition_states(&steps);
        let d = data_freshness(&latest, &latest, Zone::Silver, "daily");
        assert_eq!(d.stale_because, None);
        assert_eq!(
            d.newest_promoted_at.as_deref(),
            Some("2026-03-28T02:00:00Z")
        );
    }
}
