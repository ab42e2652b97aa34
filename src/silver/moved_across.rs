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

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;

use deltalake::arrow::array::{Array, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{filter_record_batch, not};
use deltalake::arrow::row::{OwnedRow, RowConverter, SortField};
use hashbrown::HashTable;

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
    /// the changed rows of keys met in more than one partition (a key updated in place blocks
    /// no other day).
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
        // a key that moved has a row that left a partition (when the update told them apart)
        let candidates = match &changed.signed {
            Some(signed) => {
                let seeds = signed.left.iter().chain(&changed.failed);
                let seeds: Vec<RecordBatch> = seeds.filter(|b| b.num_rows() > 0).cloned().collect();
                of_keys(contract, &seeds, &all)?
            }
            None => all.into_iter().cloned().collect(),
        };
        let candidates: Vec<&RecordBatch> = candidates.iter().collect();
        let keys = Keys::of(contract, &candidates)?;
        let moved = keys.moved();
        self.rows
            .extend(keys.select(contract, &candidates, &moved)?);
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
        let blocking = keys.spread(&self.blocked);
        keys.select(contract, &batches, &blocking)
    }
}

/// The rows of `batches` whose key is one of `seeds`' (none without seeds).
fn of_keys(
    contract: &Contract,
    seeds: &[RecordBatch],
    batches: &[&RecordBatch],
) -> KaratResult<Vec<RecordBatch>> {
    if seeds.is_empty() {
        return Ok(Vec::new());
    }
    let set = KeySet::new(&super::store::key_names(contract), seeds).map_err(arrow(contract))?;
    let mut out = Vec::new();
    for b in batches {
        let of_seeds = not(&set.absent(b).map_err(arrow(contract))?).map_err(arrow(contract))?;
        let rows = filter_record_batch(b, &of_seeds).map_err(arrow(contract))?;
        if rows.num_rows() > 0 {
            out.push(rows);
        }
    }
    Ok(out)
}

/// Every row's key (numbered) and partition, batch by batch.
struct Keys {
    /// Per batch, each row's key number.
    rows: Vec<Vec<u32>>,
    /// The partitions met, numbered.
    labels: Vec<String>,
    /// Per key number, the partitions (numbers) it has rows in.
    partitions: Vec<Vec<u32>>,
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
            partitions: Vec::new(),
        };
        let state = foldhash::fast::FixedState::with_seed(0);
        let mut seen: Vec<OwnedRow> = Vec::new();
        let mut table: HashTable<u32> = HashTable::new();
        let mut numbers: HashMap<String, u32> = HashMap::new();
        for b in batches {
            let cols: Vec<_> = contract
                .key_indexes
                .iter()
                .map(|i| b.column(*i).clone())
                .collect();
            let converted = converter.convert_columns(&cols).map_err(arrow(contract))?;
            let labels =
                super::labels::of(b.column(contract.partition_index)).map_err(arrow(contract))?;
            let mut of_rows = Vec::with_capacity(b.num_rows());
            for (i, row) in converted.iter().enumerate() {
                let label = if labels.is_valid(i) {
                    labels.value(i)
                } else {
                    ""
                };
                let p = match numbers.get(label) {
                    Some(p) => *p,
                    None => {
                        keys.labels.push(label.to_string());
                        numbers.insert(label.to_string(), keys.labels.len() as u32 - 1);
                        keys.labels.len() as u32 - 1
                    }
                };
                let hash = state.hash_one(row.as_ref());
                let at = |k: &u32| seen[*k as usize].row() == row;
                let k = match table.find(hash, at) {
                    Some(k) => *k,
                    None => {
                        let k = seen.len() as u32;
                        seen.push(row.owned());
                        keys.partitions.push(Vec::new());
                        let rehash = |k: &u32| state.hash_one(seen[*k as usize].row().as_ref());
                        table.insert_unique(hash, k, rehash);
                        k
                    }
                };
                let ps = &mut keys.partitions[k as usize];
                if !ps.contains(&p) {
                    ps.push(p);
                }
                of_rows.push(k);
            }
            keys.rows.push(of_rows);
        }
        Ok(keys)
    }

    /// Per key number, whether it has rows in more than one partition.
    fn moved(&self) -> Vec<bool> {
        self.partitions.iter().map(|ps| ps.len() > 1).collect()
    }

    /// Per key number, whether it touched a partition of `blocked`, as blocking spreads: each
    /// such key blocks every partition it touched (day by day, each key and day once).
    fn spread(&self, blocked: &BTreeSet<String>) -> Vec<bool> {
        let mut by_day: Vec<Vec<u32>> = vec![Vec::new(); self.labels.len()];
        for (k, ps) in self.partitions.iter().enumerate() {
            ps.iter().for_each(|p| by_day[*p as usize].push(k as u32));
        }
        let mut day_done: Vec<bool> = self.labels.iter().map(|l| blocked.contains(l)).collect();
        let mut todo: Vec<usize> = (0..self.labels.len()).filter(|d| day_done[*d]).collect();
        let mut blocking = vec![false; self.partitions.len()];
        while let Some(day) = todo.pop() {
            for k in &by_day[day] {
                if std::mem::replace(&mut blocking[*k as usize], true) {
                    continue;
                }
                for p in &self.partitions[*k as usize] {
                    if !std::mem::replace(&mut day_done[*p as usize], true) {
                        todo.push(*p as usize);
                    }
                }
            }
        }
        blocking
    }

    /// The rows of `batches` (those these keys were read from) whose key `set` flags.
    fn select(
        &self,
        contract: &Contract,
        batches: &[&RecordBatch],
        set: &[bool],
    ) -> KaratResult<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (b, keys) in batches.iter().zip(&self.rows) {
            let mask: BooleanArray = keys.iter().map(|k| Some(set[*k as usize])).collect();
            let rows = filter_record_batch(b, &mask).map_err(arrow(contract))?;
            if rows.num_rows() > 0 {
                out.push(rows);
            }
        }
        Ok(out)
    }
}

/// The partition labels of the rows of `b`.
fn labels(contract: &Contract, b: &RecordBatch) -> KaratResult<BTreeSet<String>> {
    let labels = super::labels::of(b.column(contract.partition_index)).map_err(arrow(contract))?;
    let mut out = BTreeSet::new();
    for l in labels.iter().flatten() {
        if !out.contains(l) {
            out.insert(l.to_string());
        }
    }
    Ok(out)
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

    /// Keys k0, k1, … touching these partitions.
    fn keys(touched: &[&[&str]]) -> Keys {
        let mut keys = Keys {
            rows: Vec::new(),
            labels: Vec::new(),
            partitions: Vec::new(),
        };
        for ps in touched {
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
            keys.partitions.push(numbers);
        }
        keys
    }

    fn blocking(k: &Keys, day: &str) -> Vec<usize> {
        let flags = k.spread(&BTreeSet::from([day.to_string()]));
        (0..flags.len()).filter(|i| flags[*i]).collect()
    }

    #[test]
    fn blocking_spreads_through_the_keys_that_share_a_partition() {
        // k0 moved 27 → 28, k1 moved 28 → 29, k2 moved 30 → 31, k3 stayed in 27
        let k = keys(&[&["27", "28"], &["28", "29"], &["30", "31"], &["27"]]);
        assert_eq!(k.moved(), vec![true, true, true, false]);
        assert_eq!(
            blocking(&k, "27"),
            vec![0, 1, 3],
            "k0, then k1 through 28; k3"
        );
        assert_eq!(
            blocking(&k, "29"),
            vec![0, 1, 3],
            "k1, k0 through 28, k3 through 27"
        );
        assert_eq!(blocking(&k, "31"), vec![2]);
        assert!(blocking(&k, "01").is_empty());
    }

    #[test]
    fn a_long_chain_of_moves_is_followed_to_its_end() {
        let days: Vec<String> = (0..400).map(|d| format!("d{d:03}")).collect();
        let chain: Vec<[&str; 2]> = (0..399).map(|d| [&*days[d], &*days[d + 1]]).collect();
        let touched: Vec<&[&str]> = chain.iter().map(|c| c.as_slice()).collect();
        let k = keys(&touched);
        assert_eq!(blocking(&k, "d399").len(), 399);
    }
}
