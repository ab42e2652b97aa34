//! What a run or replay did, in one document: printed as a summary, serialised for `--json`,
//! and turned into ledger rows.

use serde::Serialize;

use crate::bronze::IngestReport;
use crate::gold::GoldReport;
use crate::ledger::{RunStatus, Trigger};
use crate::silver::{PartitionStatus, SilverReport};

/// A table-level failure that prevented a table from being processed at all.
#[derive(Debug, Clone, Serialize)]
pub struct TableError {
    pub table: String,
    pub error: String,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub trigger: Trigger,
    pub command: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: String,
    pub bronze: Vec<IngestReport>,
    pub silver: Vec<SilverReport>,
    pub gold: Vec<GoldReport>,
    pub errors: Vec<TableError>,
}

impl RunReport {
    /// Every partition outcome with its zone and table.
    pub fn partitions(
        &self,
    ) -> impl Iterator<Item = (&'static str, &str, &crate::silver::PartitionOutcome)> {
        let s = self.silver.iter().flat_map(|r| {
            r.partitions
                .iter()
                .map(move |p| ("silver", r.table.as_str(), p))
        });
        let g = self.gold.iter().flat_map(|r| {
            r.partitions
                .iter()
                .map(move |p| ("gold", r.table.as_str(), p))
        });
        s.chain(g)
    }

    /// Partitions failed or blocked, plus failed bronze batches and table errors.
    pub fn failures(&self) -> usize {
        self.partitions()
            .filter(|(_, _, p)| !p.status.promoted())
            .count()
            + self.bronze.iter().map(|b| b.failed.len()).sum::<usize>()
            + self.errors.len()
    }

    pub(crate) fn compute_status(&mut self) {
        let warn = self
            .partitions()
            .any(|(_, _, p)| p.status == PartitionStatus::Warn);
        self.status = if self.failures() > 0 {
            RunStatus::Failed
        } else if warn {
            RunStatus::Warn
        } else {
            RunStatus::Ok
        };
    }

    /// 0 all good (warnings included), 1 something failed.
    pub fn exit_code(&self) -> i32 {
        if self.failures() > 0 { 1 } else { 0 }
    }
}
