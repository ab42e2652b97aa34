//! Keys that left a promoted silver partition in one group of a run's batches and ended the
//! run in a partition that failed its gate, decided by a later group.
//!
//! Within one update, [`super::update`] hands gold the rows that left a partition for a
//! failed one as rows of failed partitions, so that the gold day they left stays blocked
//! (keeping what it last published) instead of being recomputed without them while the day
//! they moved to is blocked: counted nowhere. A run applies many new batches in groups
//! (`[defaults] silver_group_records`), and a group cannot know that a partition it promoted
//! will fail in a later one: once the last group is written, the rows that left a partition
//! in an earlier group and whose key is now in a failed partition are found here, for the run
//! to hand to gold in the same way.
//!
//! What a group's update cannot tell apart (a replay's re-merge of whole partitions, whose
//! rows are not signed as entered or left) is not kept: see the README's silver semantics.

use std::collections::BTreeSet;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::{filter_record_batch, not};

use super::contract::Contract;
use super::keyset::KeySet;
use super::store::{self, Store};
use super::{Changed, SilverReport};
use crate::error::{KaratError, KaratResult};
use crate::lake::Lake;

/// The rows each group of a run's updates moved out of promoted partitions.
#[derive(Debug, Default)]
pub struct MovedAcross {
    groups: usize,
    left: Vec<RecordBatch>,
}

impl MovedAcross {
    /// Keeps what one group's update `changed` moved out of promoted partitions (few rows:
    /// versions a newer one replaced in another partition).
    pub fn keep(&mut self, changed: &Changed) {
        self.groups += 1;
        if let Some(signed) = &changed.signed {
            let rows = signed.left.iter().filter(|b| b.num_rows() > 0).cloned();
            self.left.extend(rows);
        }
    }

    /// The kept rows whose key is, after the run's last group, in a partition `report` says
    /// failed (none when the run had one group: its update saw every outcome).
    pub async fn now_failed(
        self,
        lake: &Lake,
        contract: &std::sync::Arc<Contract>,
        report: &SilverReport,
    ) -> KaratResult<Vec<RecordBatch>> {
        let failed: BTreeSet<String> = report
            .partitions
            .iter()
            .filter(|o| !o.status.promoted())
            .map(|o| o.partition.clone())
            .collect();
        if self.groups < 2 || self.left.is_empty() || failed.is_empty() {
            return Ok(Vec::new());
        }
        let store = Store::open(lake, contract.clone()).await?;
        let there = store.rows_of_keys(&failed, &self.left).await?;
        if there.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let err = |e| {
            KaratError::arrow(
                format!(
                    "table {}: keys moved into failed partitions",
                    contract.table
                ),
                e,
            )
        };
        let keys = KeySet::new(&store::key_names(contract), &there).map_err(err)?;
        let mut out = Vec::new();
        for b in &self.left {
            let moved = not(&keys.absent(b).map_err(err)?).map_err(err)?;
            let rows = filter_record_batch(b, &moved).map_err(err)?;
            if rows.num_rows() > 0 {
                out.push(rows);
            }
        }
        Ok(out)
    }
}
