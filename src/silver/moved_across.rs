//! Keys that moved between silver partitions during a run in which some partition failed:
//! every gold day such a key entered or left is blocked if any of them is.
//!
//! Gold counts a key where it was before the run in a day that stays blocked (keeping what it
//! last published) and where it is now in a day that is recomputed. A key that moved from day
//! `s` to day `e` is therefore counted once only when `s` and `e` are both blocked or both
//! recomputed: `s` blocked and `e` recomputed counts it twice, the other way round nowhere.
//! Within one update, [`super::update`] blocks the days where a key changed when it changed in
//! a failed partition. A run applies many new batches in groups (`[defaults]
//! silver_group_records`), and a group cannot know what a later group fails, nor where a later
//! group moves its keys; and a day blocked for one key may be where another key moved from.
//! So the changed rows of keys that left a partition are kept here group by group (only in runs
//! of several groups, or from a group that failed something), and once the last group is
//! written, every key that touched a blocked partition blocks all the partitions it touched,
//! until nothing more is blocked. The run hands those rows to gold as rows of failed
//! partitions.
//!
//! Partitions are silver's: for a gold table partitioned like silver the days blocked are
//! exactly these; otherwise the rows handed over block the gold partitions they feed.

use std::collections::{BTreeSet, HashMap, HashSet};

use deltalake::arrow::array::{Array, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{filter_record_batch, not};
use deltalake::arrow::row::{OwnedRow, RowConverter, SortField};

use super::contract::Contract;
use super::keyset::KeySet;
use super::{Changed, PartitionOutcome};
use crate::error::{KaratError, KaratResult};

/// What a run's groups moved, and which silver partitions they blocked.
pub struct MovedAcross {
    /// Whether every group is kept (a run of several groups); else only a group that failed
    /// something.
    every_group: bool,
    /// Changed rows (silver schema) of keys that may have moved.
    rows: Vec<RecordBatch>,
    /// Partitions failed, or handed to gold as failed, so far.
    blocked: BTreeSet<String>,
}

impl MovedAcross {
    /// For a run applying its batches in `groups` groups.
    pub fn new(groups: usize) -> MovedAcross {
        MovedAcross {
            every_group: groups > 1,
            rows: Vec::new(),
            blocked: BTreeSet::new(),
        }
    }

    /// Notes one group's update: what it `changed` and its partitions' `outcomes`. Kept are
    /// the changed rows of keys that left a partition or changed in a failed one (when the
    /// update told the rows that entered from those that left; else every changed row):
    /// a key that moved has a row that left.
    pub fn keep(
        &mut self,
        contract: &Contract,
        changed: &Changed,
        outcomes: &[PartitionOutcome],
    ) -> KaratResult<()> {
        let failed = outcomes.iter().filter(|o| !o.status.promoted());
        self.blocked.extend(failed.map(|o| o.partition.clone()));
        for b in &changed.failed {
            self.blocked.extend(labels(contract, b)?);
        }
        let wanted = self.every_group || !self.blocked.is_empty();
        if contract.key_indexes.is_empty() || !wanted {
            return Ok(());
        }
        let all = changed.promoted.iter().chain(&changed.failed);
        let all: Vec<&RecordBatch> = all.filter(|b| b.num_rows() > 0).collect();
        let Some(signed) = &changed.signed else {
            // rows not told apart (a re-merge of whole partitions): those of keys met in
            // more than one partition
            let keys = Keys::of(contract, &all)?;
            self.rows
                .extend(keys.select(contract, &all, &keys.moved())?);
            return Ok(());
        };
        let seeds: Vec<RecordBatch> = signed
            .left
            .iter()
            .chain(&changed.failed)
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        if seeds.is_empty() {
            return Ok(());
        }
        let set =
            KeySet::new(&super::store::key_names(contract), &seeds).map_err(arrow(contract))?;
        for b in all {
            let of_seeds =
                not(&set.absent(b).map_err(arrow(contract))?).map_err(arrow(contract))?;
            let rows = filter_record_batch(b, &of_seeds).map_err(arrow(contract))?;
            if rows.num_rows() > 0 {
                self.rows.push(rows);
            }
        }
        Ok(())
    }

    /// The kept rows of every key that touched a blocked partition, once blocking spreads
    /// through the keys as far as it goes: to be handed to gold as rows of failed partitions.
    pub fn blocking(self, contract: &Contract) -> KaratResult<Vec<RecordBatch>> {
        if self.rows.is_empty() || self.blocked.is_empty() {
            return Ok(Vec::new());
        }
        let batches: Vec<&RecordBatch> = self.rows.iter().collect();
        let keys = Keys::of(contract, &batches)?;
        keys.select(contract, &batches, &keys.spread(&self.blocked))
    }
}

/// Every row's key and partition, batch by batch.
struct Keys {
    rows: Vec<Vec<OwnedRow>>,
    /// The partitions met, numbered.
    labels: Vec<String>,
    /// Per key, the partitions (numbers) it has rows in.
    partitions: HashMap<OwnedRow, Vec<u32>>,
}

impl Keys {
    fn of(contract: &Contract, batches: &[&RecordBatch]) -> KaratResult<Keys> {
        let fields = contract
            .key_indexes
            .iter()
            .map(|i| SortField::new(contract.silver_schema.field(*i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(arrow(contract))?;
        let mut keys = Keys {
            rows: Vec::new(),
            labels: Vec::new(),
            partitions: HashMap::new(),
        };
        let mut numbers: HashMap<String, u32> = HashMap::new();
        for b in batches {
            let cols: Vec<_> = contract
                .key_indexes
                .iter()
                .map(|i| b.column(*i).clone())
                .collect();
            let converted = converter.convert_columns(&cols).map_err(arrow(contract))?;
            let owned: Vec<OwnedRow> = converted.iter().map(|r| r.owned()).collect();
            for (k, label) in owned.iter().zip(labels(contract, b)?) {
                let n = *numbers.entry(label).or_insert_with_key(|l| {
                    keys.labels.push(l.clone());
                    keys.labels.len() as u32 - 1
                });
                let ps = keys.partitions.entry(k.clone()).or_default();
                if !ps.contains(&n) {
                    ps.push(n);
                }
            }
            keys.rows.push(owned);
        }
        Ok(keys)
    }

    /// The keys with rows in more than one partition.
    fn moved(&self) -> HashSet<&OwnedRow> {
        let several = self.partitions.iter().filter(|(_, ps)| ps.len() > 1);
        several.map(|(k, _)| k).collect()
    }

    /// The keys that touched a partition of `blocked`, as blocking spreads: each such key
    /// blocks every partition it touched.
    fn spread(&self, blocked: &BTreeSet<String>) -> HashSet<&OwnedRow> {
        let mut out: Vec<bool> = self.labels.iter().map(|l| blocked.contains(l)).collect();
        let mut blocking = HashSet::new();
        loop {
            let before = blocking.len();
            for (k, ps) in &self.partitions {
                if !blocking.contains(k) && ps.iter().any(|p| out[*p as usize]) {
                    ps.iter().for_each(|p| out[*p as usize] = true);
                    blocking.insert(k);
                }
            }
            if blocking.len() == before {
                return blocking;
            }
        }
    }

    /// The rows of `batches` (those these keys were read from) whose key is in `set`.
    fn select(
        &self,
        contract: &Contract,
        batches: &[&RecordBatch],
        set: &HashSet<&OwnedRow>,
    ) -> KaratResult<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (b, keys) in batches.iter().zip(&self.rows) {
            let mask: BooleanArray = keys.iter().map(|k| Some(set.contains(k))).collect();
            let rows = filter_record_batch(b, &mask).map_err(arrow(contract))?;
            if rows.num_rows() > 0 {
                out.push(rows);
            }
        }
        Ok(out)
    }
}

/// The partition label of every row of `b` (a row without one has none).
fn labels(contract: &Contract, b: &RecordBatch) -> KaratResult<Vec<String>> {
    let labels = super::labels::of(b.column(contract.partition_index)).map_err(arrow(contract))?;
    Ok((0..labels.len())
        .map(|i| match labels.is_valid(i) {
            true => labels.value(i).to_string(),
            false => String::new(),
        })
        .collect())
}

fn arrow(contract: &Contract) -> impl Fn(deltalake::arrow::error::ArrowError) -> KaratError + '_ {
    move |e| {
        KaratError::arrow(
            format!("table {}: keys moved between partitions", contract.table),
            e,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(touched: &[(&str, &[&str])]) -> Keys {
        let converter = RowConverter::new(vec![SortField::new(
            deltalake::arrow::datatypes::DataType::Utf8,
        )])
        .unwrap();
        let mut keys = Keys {
            rows: Vec::new(),
            labels: Vec::new(),
            partitions: HashMap::new(),
        };
        for (k, ps) in touched {
            let col: deltalake::arrow::array::ArrayRef =
                std::sync::Arc::new(deltalake::arrow::array::StringArray::from(vec![*k]));
            let row = converter.convert_columns(&[col]).unwrap().row(0).owned();
            let mut numbers = Vec::new();
            for p in *ps {
                let n = match keys.labels.iter().position(|l| l == p) {
                    Some(n) => n,
                    None => {
                        keys.labels.push(p.to_string());
                        keys.labels.len() - 1
                    }
                };
                numbers.push(n as u32);
            }
            keys.partitions.insert(row, numbers);
        }
        keys
    }

    fn blocked(p: &str) -> BTreeSet<String> {
        BTreeSet::from([p.to_string()])
    }

    #[test]
    fn blocking_spreads_through_the_keys_that_share_a_partition() {
        // k1 moved 27 → 28, k2 moved 28 → 29, k3 moved 30 → 31, k4 stayed in 27
        let k = keys(&[
            ("k1", &["27", "28"]),
            ("k2", &["28", "29"]),
            ("k3", &["30", "31"]),
            ("k4", &["27"]),
        ]);
        assert_eq!(k.moved().len(), 3);
        assert_eq!(
            k.spread(&blocked("27")).len(),
            3,
            "k1, then k2 through 28; k4"
        );
        assert_eq!(k.spread(&blocked("29")).len(), 2, "k2, then k1 through 28");
        assert_eq!(k.spread(&blocked("31")).len(), 1);
        assert!(k.spread(&blocked("01")).is_empty());
    }
}
