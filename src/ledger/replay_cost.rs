//! What replays cost (M6, the replay budget's other half): for every replay run, the records and
//! bronze bytes it reprocessed and the seconds it took, summed per calendar month (UTC) for the
//! Overview. Bytes are the bronze batches the replay re-read, from their manifests.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::Ledger;
use super::records::{RunRecord, Trigger};
use crate::config::Config;
use crate::error::KaratResult;
use crate::lake::Lake;

/// One replay's cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayCost {
    pub run_id: String,
    pub command: String,
    pub started_at: String,
    /// `2026-11`.
    pub month: String,
    pub records: i64,
    pub bytes: u64,
    pub seconds: f64,
}

/// The replays of one month, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonthCost {
    pub month: String,
    pub replays: usize,
    pub records: i64,
    pub bytes: u64,
    pub seconds: f64,
}

impl MonthCost {
    /// `2026-11: 3 replay(s), 12000 records, 4.1 MiB, 12 s`.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} replay(s), {} records, {:.1} MiB, {:.0} s",
            self.month,
            self.replays,
            self.records,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.seconds
        )
    }
}

fn seconds_between(from: &str, to: &str) -> f64 {
    match (
        chrono::DateTime::parse_from_rfc3339(from),
        chrono::DateTime::parse_from_rfc3339(to),
    ) {
        (Ok(a), Ok(b)) => ((b - a).num_milliseconds() as f64 / 1000.0).max(0.0),
        _ => 0.0,
    }
}

/// Every replay's cost, oldest first: `runs` from the ledger, bytes from the batches each one
/// re-processed and their manifests.
pub async fn costs(
    config: &Config,
    lake: &Lake,
    runs: &[RunRecord],
) -> KaratResult<Vec<ReplayCost>> {
    let replays: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::Replay)
        .collect();
    if replays.is_empty() {
        return Ok(Vec::new());
    }
    let ledger = Ledger::new(lake);
    let mut bytes_of: HashMap<String, u64> = HashMap::new();
    let mut sources: HashSet<&str> = HashSet::new();
    // each batch once per run, however many silver tables read its source
    let mut read: HashSet<(String, String)> = HashSet::new();
    for t in &config.tables {
        let Some(spec) = t.silver() else { continue };
        if sources.insert(spec.from.as_str()) {
            for m in crate::bronze::manifest::list(lake, &spec.from).await? {
                bytes_of.insert(m.batch_id, m.bytes_in);
            }
        }
        for b in ledger.batch_history(&t.name).await? {
            read.insert((b.run_id, b.batch_id));
        }
    }
    let mut read_by: HashMap<String, u64> = HashMap::new();
    for (run, batch) in read {
        *read_by.entry(run).or_default() += bytes_of.get(&batch).copied().unwrap_or(0);
    }
    Ok(replays
        .into_iter()
        .map(|r| ReplayCost {
            run_id: r.run_id.clone(),
            command: r.command.clone(),
            started_at: r.started_at.clone(),
            month: r.started_at.chars().take(7).collect(),
            records: r.rows_in,
            bytes: read_by.get(&r.run_id).copied().unwrap_or(0),
            seconds: seconds_between(&r.started_at, &r.finished_at),
        })
        .collect())
}

/// Costs summed per month, newest month first.
pub fn per_month(costs: &[ReplayCost]) -> Vec<MonthCost> {
    let mut months: BTreeMap<&str, MonthCost> = BTreeMap::new();
    for c in costs {
        let m = months.entry(c.month.as_str()).or_insert_with(|| MonthCost {
            month: c.month.clone(),
            ..MonthCost::default()
        });
        m.replays += 1;
        m.records += c.records;
        m.bytes += c.bytes;
        m.seconds += c.seconds;
    }
    months.into_values().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(month: &str, records: i64, bytes: u64) -> ReplayCost {
        ReplayCost {
            run_id: format!("r-{month}-{records}"),
            command: "karat replay orders --partition 2026-03-28".into(),
            started_at: format!("{month}-02T00:00:00Z"),
            month: month.into(),
            records,
            bytes,
            seconds: 1.5,
        }
    }

    #[test]
    fn months_sum_their_replays_newest_first() {
        let m = per_month(&[
            cost("2026-10", 5, 100),
            cost("2026-11", 7, 1 << 20),
            cost("2026-11", 3, 1 << 20),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].month.as_str(), m[0].replays, m[0].records, m[0].bytes),
            ("2026-11", 2, 10, 2 << 20)
        );
        assert_eq!(
            m[0].describe(),
            "2026-11: 2 replay(s), 10 records, 2.0 MiB, 3 s"
        );
        assert_eq!(m[1].records, 5);
        assert_eq!(
            seconds_between("2026-11-01T00:00:00Z", "2026-11-01T00:00:02.5Z"),
            2.5
        );
    }
}
