//! The seed's service level indicators, computed from the ledger alone over a trailing window:
//! M1 ingest success rate (per source), M2 freshness (per table), M3 schema compliance (valid /
//! total records), M4 duplicate rate, M5 job failure rate, M6 replay/backfill cost (records
//! reprocessed per replay), M7 completeness (the newest partition's volume against the trailing
//! 14-partition mean, as a z-score; warn beyond 3) and M8 the dead-letter rate per rule. The
//! Overview shows them; `karat serve` exports them as metrics.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::records::{RunRecord, RunStatus, StepRecord, Trigger};
use super::status::StatusReport;
use crate::config::Zone;
use crate::silver::PartitionStatus;

/// How far back the rates look.
pub const WINDOW_DAYS: i64 = 7;
/// Partitions the completeness baseline averages.
pub const BASELINE_PARTITIONS: usize = 14;
/// |z| beyond this is a volume anomaly.
pub const ANOMALY_Z: f64 = 3.0;

/// M7 for one table: the newest partition against the ones before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completeness {
    pub partition: String,
    /// Records that arrived for it (valid or not; replays not counted again).
    pub records: i64,
    /// Mean and standard deviation of the (up to) 14 partitions before it.
    pub mean: f64,
    pub stddev: f64,
    pub z: f64,
    pub anomaly: bool,
}

/// The indicators of one table (bronze: a source).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSli {
    pub zone: Zone,
    pub table: String,
    /// M1 (bronze): batches landed / batches attempted.
    pub ingest_success: Option<f64>,
    /// M2: age of the newest promoted partition, seconds.
    pub freshness_seconds: Option<i64>,
    /// M3 (silver): valid / total records processed.
    pub schema_compliance: Option<f64>,
    /// M4 (silver): records superseded by a newer version of their key / total.
    pub duplicate_rate: Option<f64>,
    /// M7 (silver).
    pub completeness: Option<Completeness>,
    /// M8 (silver): dead letters per rule / total records.
    pub dead_letter_rate: BTreeMap<String, f64>,
}

/// Every indicator, over the window ending at `at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slis {
    pub at: String,
    pub window_days: i64,
    pub tables: Vec<TableSli>,
    /// M5: failed runs / runs.
    pub job_failure_rate: Option<f64>,
    /// M6: records reprocessed per replay, and in all.
    pub replay_records_per_run: Option<f64>,
    pub replay_records: i64,
}

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn within(at: &str, since: DateTime<Utc>) -> bool {
    at.parse::<DateTime<Utc>>().is_ok_and(|t| t >= since)
}

/// Computes every indicator from the ledger's runs and steps and the status report.
pub fn compute(
    status: &StatusReport,
    runs: &[RunRecord],
    steps: &[StepRecord],
    now: DateTime<Utc>,
) -> Slis {
    let since = now - chrono::Duration::days(WINDOW_DAYS);
    let recent: Vec<&StepRecord> = steps
        .iter()
        .filter(|s| within(&s.finished_at, since))
        .collect();
    let tables = status
        .tables
        .iter()
        .map(|t| {
            let mine: Vec<&StepRecord> = recent
                .iter()
                .copied()
                .filter(|s| s.zone == t.zone && s.table == t.name)
                .collect();
            table_sli(t.zone, &t.name, t.age_seconds, &mine, steps)
        })
        .collect();
    let recent_runs: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| {
            within(&r.started_at, since)
                && !matches!(r.trigger, Trigger::Maintain | Trigger::Verify)
        })
        .collect();
    let failed = recent_runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count() as i64;
    let replays: Vec<&&RunRecord> = recent_runs
        .iter()
        .filter(|r| r.trigger == Trigger::Replay)
        .collect();
    let replay_records: i64 = replays.iter().map(|r| r.rows_in).sum();
    Slis {
        at: now.to_rfc3339(),
        window_days: WINDOW_DAYS,
        tables,
        job_failure_rate: ratio(failed, recent_runs.len() as i64),
        replay_records_per_run: ratio(replay_records, replays.len() as i64),
        replay_records,
    }
}

fn table_sli(
    zone: Zone,
    table: &str,
    age: Option<i64>,
    recent: &[&StepRecord],
    all: &[StepRecord],
) -> TableSli {
    let mut sli = TableSli {
        zone,
        table: table.to_string(),
        ingest_success: None,
        freshness_seconds: age,
        schema_compliance: None,
        duplicate_rate: None,
        completeness: None,
        dead_letter_rate: BTreeMap::new(),
    };
    match zone {
        Zone::Bronze => {
            let ok = recent
                .iter()
                .filter(|s| s.status != PartitionStatus::Failed)
                .count();
            sli.ingest_success = ratio(ok as i64, recent.len() as i64);
        }
        Zone::Silver => {
            let total: i64 = recent.iter().map(|s| s.rows_in).sum();
            let dead: i64 = recent.iter().map(|s| s.dead).sum();
            let dups: i64 = recent.iter().map(|s| s.duplicates).sum();
            sli.schema_compliance = ratio(total - dead, total);
            sli.duplicate_rate = ratio(dups, total);
            let mut by_rule: BTreeMap<String, i64> = BTreeMap::new();
            for s in recent {
                for (rule, n) in s.dead_by_rule_map() {
                    *by_rule.entry(rule).or_default() += n;
                }
            }
            if total > 0 {
                sli.dead_letter_rate = by_rule
                    .into_iter()
                    .map(|(r, n)| (r, n as f64 / total as f64))
                    .collect();
            }
            sli.completeness = completeness(table, all);
        }
        Zone::Gold => {}
    }
    sli
}

/// Records that arrived per partition of silver `table` (replays not counted again), and the
/// newest partition's z-score against the (up to) 14 before it; `None` with fewer than 3.
fn completeness(table: &str, steps: &[StepRecord]) -> Option<Completeness> {
    let mut per: BTreeMap<&str, i64> = BTreeMap::new();
    for s in steps
        .iter()
        .filter(|s| s.zone == Zone::Silver && s.table == table && s.trigger != Trigger::Replay)
    {
        *per.entry(s.partition.as_str()).or_default() += s.rows_in;
    }
    let (newest, records) = per.iter().next_back().map(|(p, n)| (p.to_string(), *n))?;
    let before: Vec<f64> = per
        .values()
        .rev()
        .skip(1)
        .take(BASELINE_PARTITIONS)
        .map(|n| *n as f64)
        .collect();
    if before.len() < 3 {
        return None;
    }
    let mean = before.iter().sum::<f64>() / before.len() as f64;
    let var = before.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (before.len() - 1) as f64;
    let stddev = var.sqrt();
    let z = if stddev > 0.0 {
        (records as f64 - mean) / stddev
    } else if (records as f64 - mean).abs() < f64::EPSILON {
        0.0
    } else {
        // a constant history and a different count: as far off as it gets, signed
        (records as f64 - mean).signum() * f64::from(u16::MAX)
    };
    Some(Completeness {
        partition: newest,
        records,
        mean,
        stddev,
        z,
        anomaly: z.abs() > ANOMALY_Z,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(partition: &str, rows_in: i64, dead: i64, trigger: Trigger) -> StepRecord {
        StepRecord {
            run_id: "r".into(),
            trigger,
            zone: Zone::Silver,
            table: "orders".into(),
            partition: partition.into(),
            status: PartitionStatus::Ok,
            started_at: "2026-11-23T00:00:00Z".into(),
            finished_at: "2026-11-23T00:00:01Z".into(),
            rows_in,
            rows_out: rows_in - dead,
            dead,
            duplicates: 0,
            messages: None,
            dead_by_rule: (dead > 0).then(|| format!("{{\"currency.one_of\":{dead}}}")),
            schema_fingerprint: None,
            delta_version: None,
        }
    }

    #[test]
    fn a_day_with_a_third_of_its_volume_is_an_anomaly_and_a_replay_does_not_count() {
        let mut steps: Vec<StepRecord> = (1..=14)
            .map(|d| {
                step(
                    &format!("2026-03-{d:02}"),
                    1000 + (d % 3) * 10,
                    0,
                    Trigger::Cli,
                )
            })
            .collect();
        steps.push(step("2026-03-15", 330, 30, Trigger::Cli));
        steps.push(step("2026-03-15", 330, 30, Trigger::Replay));
        let c = completeness("orders", &steps).unwrap();
        assert_eq!(c.partition, "2026-03-15");
        assert_eq!(c.records, 330, "the replay's records are not new arrivals");
        assert!(c.z < -3.0 && c.anomaly, "{c:?}");
        steps.push(step("2026-03-16", 1010, 0, Trigger::Cli));
        let c = completeness("orders", &steps).unwrap();
        assert!(!c.anomaly, "{c:?}");
        let sli = table_sli(
            Zone::Silver,
            "orders",
            None,
            &steps.iter().collect::<Vec<_>>(),
            &steps,
        );
        let compliance = sli.schema_compliance.unwrap();
        assert!(compliance < 1.0 && compliance > 0.99, "{compliance}");
        assert!(sli.dead_letter_rate["currency.one_of"] > 0.0);
    }
}
