//! The quality gate of a silver partition: what it holds after an update (silver rows, dead
//! letters, superseded versions), its reject rate against `max_reject_rate` — a property of
//! the partition, so a later run's few good rows cannot turn a bad day green — and the
//! `fail` / `warn` expectations the processed rows broke. A failed partition keeps its rows in silver (silver is the contract, applied)
//! but stops the gold partitions it feeds.

use std::collections::BTreeMap;

use super::collect::Collected;
use super::contract::Contract;
use super::store::PartitionCounts;

/// Final state of a partition in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionStatus {
    Ok,
    /// Written, with warnings.
    Warn,
    /// A blocking check failed: what it feeds is not promoted.
    Failed,
    /// Not promoted because something upstream failed.
    Blocked,
}

impl PartitionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PartitionStatus::Ok => "ok",
            PartitionStatus::Warn => "warn",
            PartitionStatus::Failed => "failed",
            PartitionStatus::Blocked => "blocked",
        }
    }

    pub fn promoted(&self) -> bool {
        matches!(self, PartitionStatus::Ok | PartitionStatus::Warn)
    }

    /// How bad, for choosing one status to stand for several: failed worst.
    pub fn severity(&self) -> u8 {
        match self {
            PartitionStatus::Ok => 0,
            PartitionStatus::Warn => 1,
            PartitionStatus::Blocked => 2,
            PartitionStatus::Failed => 3,
        }
    }
}

/// What happened to one partition of a silver (or gold) table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionOutcome {
    pub partition: String,
    pub status: PartitionStatus,
    /// Records of the processed batches that belong here.
    pub rows_in: u64,
    /// Of those, rows now in silver (gold: rows written).
    pub rows_out: u64,
    pub dead: u64,
    /// Of those, rows superseded by a newer version of their key.
    pub duplicates: u64,
    /// Why it failed, and warnings.
    pub messages: Vec<String>,
    /// Dead-letter counts by rule, largest first.
    pub dead_by_rule: Vec<(String, u64)>,
    /// Delta version of the table after this partition was written (None: not written).
    pub delta_version: Option<i64>,
}

impl PartitionOutcome {
    /// Takes the state after a later update in the same run, keeping the worst status.
    pub fn absorb(&mut self, later: PartitionOutcome) {
        self.rows_in = later.rows_in;
        self.rows_out = later.rows_out;
        self.dead = later.dead;
        self.duplicates = later.duplicates;
        let rank = |s: PartitionStatus| match s {
            PartitionStatus::Ok => 0,
            PartitionStatus::Warn => 1,
            PartitionStatus::Blocked => 2,
            PartitionStatus::Failed => 3,
        };
        if rank(later.status) > rank(self.status) {
            self.status = later.status;
        }
        self.messages.extend(later.messages);
        self.dead_by_rule = later.dead_by_rule;
        self.delta_version = later.delta_version.or(self.delta_version);
    }
}

/// Outcomes for `partitions`, from what each holds now (`counts`, read back from the Delta
/// tables after the update) and the expectations the processed rows failed.
pub fn outcomes(
    contract: &Contract,
    collected: &Collected,
    counts: &BTreeMap<String, PartitionCounts>,
) -> Vec<PartitionOutcome> {
    counts
        .iter()
        .map(|(p, c)| {
            let mut o = PartitionOutcome {
                partition: p.clone(),
                status: PartitionStatus::Ok,
                rows_in: c.silver + c.dead + c.superseded,
                rows_out: c.silver,
                dead: c.dead,
                duplicates: c.superseded,
                messages: Vec::new(),
                dead_by_rule: c.by_rule.clone(),
                delta_version: None,
            };
            judge(contract, collected, &mut o);
            o
        })
        .collect()
}

/// Applies the gate to one partition.
fn judge(contract: &Contract, collected: &Collected, o: &mut PartitionOutcome) {
    let p = &o.partition;
    for (i, e) in contract.expectations.iter().enumerate() {
        if let Some(n) = collected.failed.get(&(p.clone(), i)) {
            o.status = PartitionStatus::Failed;
            o.messages.push(format!(
                "expectation {} failed on {n} row(s): {} (on_fail = fail)",
                e.name, e.sql
            ));
        }
    }
    let rate = if o.rows_in == 0 {
        0.0
    } else {
        o.dead as f64 / o.rows_in as f64
    };
    let max = contract.spec.max_reject_rate;
    if rate > max {
        o.status = PartitionStatus::Failed;
        let top = o
            .dead_by_rule
            .first()
            .map(|(r, n)| format!("; top rule {r}: {n}"))
            .unwrap_or_default();
        o.messages.push(format!(
            "reject rate {:.1}% ({} of {} rows) exceeds max_reject_rate {:.1}%{top}",
            rate * 100.0,
            o.dead,
            o.rows_in,
            max * 100.0
        ));
    }
    for (i, e) in contract.expectations.iter().enumerate() {
        if let Some(n) = collected.warned.get(&(p.clone(), i)) {
            o.messages.push(format!(
                "warning: expectation {} failed on {n} row(s): {}",
                e.name, e.sql
            ));
            if o.status == PartitionStatus::Ok {
                o.status = PartitionStatus::Warn;
            }
        }
    }
}
