//! A normal run's merge for a keyed table: new batches against the keys already in silver.
//!
//! Only the key and provenance columns of the stored versions of the new keys are read and
//! merged; a partition that loses a version is rewritten by streaming its stored rows (all but
//! the keys that moved on) into one replace-where commit, so neither time spent merging nor
//! memory grows with the partitions' size. The result is the same as `rewrite`'s
//! (which reads whole partitions, and stays for replays and retries): the newest version of
//! each key is in silver, every other one superseded by it and stored under its partition.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{concat_batches, take_record_batch};
use deltalake::arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use super::contract::{Contract, SUPERSEDED_BY, WINNER_PARTITION};
use super::merge;
use super::store::{self, Removed, Store};
use super::written_keys::Scanned;
use crate::error::{KaratError, KaratResult};

/// What an incremental merge decided, ready to be written.
#[derive(Debug, Default)]
pub struct Incremental {
    /// New rows that win their key.
    pub added: Vec<RecordBatch>,
    /// Stored winners that lost, by key and place (their rows are in `changed`): removed
    /// from silver.
    pub removed: Removed,
    /// Silver partitions to rewrite (None: append `added`).
    pub silver_partitions: Option<BTreeSet<String>>,
    /// Superseded rows to write, and the winner partitions they replace (None: append).
    pub superseded: Vec<RecordBatch>,
    pub superseded_partitions: Option<BTreeSet<String>>,
    /// With `superseded_partitions`: the partitions keep their stored rows but these, which
    /// moved (None: `superseded` is their whole new content).
    pub superseded_moved: Option<store::SupersededInPlace>,
    /// Rows that entered or left silver.
    pub changed: Vec<RecordBatch>,
    /// Of `changed`, the rows that left silver (the others, `added`, entered).
    pub left: Vec<RecordBatch>,
}

/// What [`merge_new`] decided, and what its lookup read.
#[derive(Debug, Default)]
pub struct NewRows {
    /// None when no key is stored yet (the rows are merged among themselves and appended).
    pub merged: Option<Incremental>,
    /// The lookup of every live file, for the check after the write (None: by a query).
    pub scanned: Option<Scanned>,
}

/// Merges the new valid rows with the stored versions of their keys.
pub async fn merge_new(
    store: &Store,
    contract: &Contract,
    valid: &[RecordBatch],
    clock: &mut crate::timings::Clock<'_>,
) -> KaratResult<NewRows> {
    let mut stored = store.versions(valid).await?;
    clock.lap("key lookup");
    let scanned = stored.scanned.take();
    let merged = if stored.batches.iter().all(|b| b.num_rows() == 0) {
        None
    } else {
        Some(merge_found(store, contract, valid, stored, clock).await?)
    };
    Ok(NewRows { merged, scanned })
}

/// [`merge_new`] once some stored version was found.
async fn merge_found(
    store: &Store,
    contract: &Contract,
    valid: &[RecordBatch],
    stored: store::Versions,
    clock: &mut crate::timings::Clock<'_>,
) -> KaratResult<Incremental> {
    let ctx = format!("table {}", contract.table);
    let err = |e| KaratError::arrow(ctx.clone(), e);
    let schema = store::version_schema(contract)?;
    let mut narrowed = valid
        .iter()
        .map(|b| narrow(contract, b, &schema))
        .collect::<KaratResult<Vec<_>>>()?;
    narrowed.extend(stored.batches.iter().cloned());
    let versions = concat_batches(&schema, &narrowed).map_err(err)?;
    drop(narrowed);
    clock.lap("versions side by side");
    let nkeys = contract.key_indexes.len();
    let merged = merge::merge(&versions, &(0..nkeys).collect::<Vec<_>>(), &ctx)?;
    clock.lap("merged by key");
    let n_new = valid.iter().map(|b| b.num_rows()).sum::<usize>() as u32;
    let decided = Decided::of(&merged, n_new);
    let labels = label_column(&versions);
    let batches =
        crate::lake::delta::utf8(versions.column_by_name("_batch_id").expect("provenance"));
    let winner_of = |w: u32| (batches.value(w as usize), labels.value(w as usize));

    let mut out = Incremental::default();
    let mut superseded = Vec::new();
    if decided.new_losers.is_empty() {
        // every new row wins its key: written as validated, without a copy
        out.added = valid.to_vec();
    } else {
        let new = super::select::Chunks::new(valid);
        out.added = new.keep(&decided.new_winners).map_err(err)?;
        superseded.push(superseded_rows(
            contract,
            &new,
            &decided.new_losers,
            &winner_of,
        )?);
    }
    out.changed = out.added.clone();
    if decided.stored_losers.is_empty() {
        out.superseded = superseded;
        return Ok(out);
    }
    // stored winners that lost: their rows leave silver, and their own superseded versions
    // follow them to the new winner's partition
    let gone: Vec<u32> = decided.stored_losers.iter().map(|l| l.row).collect();
    let removed_keys = take_record_batch(&versions, &UInt32Array::from(gone.clone()))
        .map_err(err)?
        .project(&(0..nkeys).collect::<Vec<_>>())
        .map_err(err)?;
    let old_homes = labels_of(&labels, &gone);
    let stored_rows: Vec<u32> = gone.iter().map(|r| r - n_new).collect();
    clock.lap("winners and superseded rows");
    let mut located = store
        .removed(&stored, &stored_rows, &removed_keys, &old_homes)
        .await?;
    let removed =
        concat_batches(&contract.silver_schema, &std::mem::take(&mut located.rows)).map_err(err)?;
    let moved = Moved::new(contract, &removed_keys, &decided.stored_losers, &winner_of)?;
    superseded.push(moved.supersede(contract, &removed)?);
    let mut homes = old_homes.clone();
    homes.extend(superseded_homes(&superseded));
    clock.lap("removed rows");
    let of_keys = store.superseded_of_keys(&removed_keys, &homes).await?;
    clock.lap("superseded of moved keys");
    match of_keys {
        // only the moved keys' superseded rows are read, and moved in place
        Some(found) => {
            homes.extend(found.at.iter().filter_map(|at| at.partition.clone()));
            for old in &found.rows {
                superseded.push(moved.rehome(contract, old)?);
            }
            out.superseded_moved = Some(found);
        }
        None => {
            for old in store.superseded_of(&homes).await? {
                superseded.push(moved.rehome(contract, &old)?);
            }
        }
    }
    let mut rewrite = old_homes;
    rewrite.extend(labels_of(&labels, &decided.new_winners));
    out.changed.push(removed.clone());
    out.left.push(removed);
    out.removed = located;
    out.silver_partitions = Some(rewrite);
    out.superseded = superseded;
    out.superseded_partitions = Some(homes);
    Ok(out)
}

/// Every version's fate, by row of the merged versions (new rows first, then stored ones).
#[derive(Debug, Default)]
struct Decided {
    new_winners: Vec<u32>,
    new_losers: Vec<merge::Loser>,
    /// Stored versions that lost (to a new row, as stored keys are unique).
    stored_losers: Vec<merge::Loser>,
}

impl Decided {
    fn of(merged: &merge::Merged, n_new: u32) -> Decided {
        let mut d = Decided {
            new_winners: merged
                .winners
                .iter()
                .copied()
                .filter(|w| *w < n_new)
                .collect(),
            ..Decided::default()
        };
        d.new_winners.sort_unstable();
        for l in &merged.losers {
            if l.row < n_new {
                d.new_losers.push(*l);
            } else {
                d.stored_losers.push(*l);
            }
        }
        d
    }
}

/// The key, provenance and label columns of silver rows.
fn narrow(
    contract: &Contract,
    rows: &RecordBatch,
    schema: &Arc<deltalake::arrow::datatypes::Schema>,
) -> KaratResult<RecordBatch> {
    let err = |e| KaratError::arrow(format!("table {}", contract.table), e);
    let mut cols: Vec<ArrayRef> = schema.fields()[..schema.fields().len() - 1]
        .iter()
        .map(|f| {
            rows.column_by_name(f.name())
                .cloned()
                .expect("silver column")
        })
        .collect();
    let labels = super::labels::of(rows.column(contract.partition_index)).map_err(err)?;
    cols.push(Arc::new(labels));
    RecordBatch::try_new(schema.clone(), cols).map_err(err)
}

fn label_column(versions: &RecordBatch) -> StringArray {
    crate::lake::delta::utf8(versions.column_by_name(store::LABEL).expect("label column"))
}

/// The distinct labels of `rows` (hundreds of thousands of rows hold a few labels: each is
/// copied once, and a row with its predecessor's label is passed over).
fn labels_of(labels: &StringArray, rows: &[u32]) -> BTreeSet<String> {
    let mut distinct: BTreeSet<&str> = BTreeSet::new();
    let mut last = None;
    for r in rows.iter().map(|r| *r as usize) {
        if labels.is_valid(r) && last != Some(labels.value(r)) {
            let label = labels.value(r);
            distinct.insert(label);
            last = Some(label);
        }
    }
    distinct.into_iter().map(str::to_string).collect()
}

/// The winner partitions superseded rows are stored under.
fn superseded_homes(rows: &[RecordBatch]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in rows {
        let h = crate::lake::delta::utf8(
            b.column_by_name(WINNER_PARTITION)
                .expect("winner partition"),
        );
        out.extend(h.iter().flatten().map(str::to_string));
    }
    out
}

/// Rows of `rows` (silver schema) superseded, each with its winner's batch and partition.
fn superseded_rows<'a>(
    contract: &Contract,
    rows: &super::select::Chunks<'_>,
    losers: &[merge::Loser],
    winner_of: &dyn Fn(u32) -> (&'a str, &'a str),
) -> KaratResult<RecordBatch> {
    let err = |e| KaratError::arrow(format!("table {}", contract.table), e);
    let idx: Vec<u32> = losers.iter().map(|l| l.row).collect();
    let lost = rows.pick(&idx).map_err(err)?;
    let by: StringArray = losers.iter().map(|l| Some(winner_of(l.winner).0)).collect();
    let home: StringArray = losers.iter().map(|l| Some(winner_of(l.winner).1)).collect();
    with_winner(contract, &lost, by, home)
}

fn with_winner(
    contract: &Contract,
    silver: &RecordBatch,
    by: StringArray,
    home: StringArray,
) -> KaratResult<RecordBatch> {
    let mut cols = silver.columns().to_vec();
    cols.push(Arc::new(by));
    cols.push(Arc::new(home));
    RecordBatch::try_new(contract.superseded_schema.clone(), cols)
        .map_err(|e| KaratError::arrow(format!("table {}", contract.table), e))
}

/// Keys whose stored winner lost, with the batch and partition of the new winner.
struct Moved {
    converter: RowConverter,
    winner: HashMap<OwnedRow, (String, String)>,
}

impl Moved {
    fn new<'a>(
        contract: &Contract,
        keys: &RecordBatch,
        losers: &[merge::Loser],
        winner_of: &dyn Fn(u32) -> (&'a str, &'a str),
    ) -> KaratResult<Moved> {
        let err = |e| KaratError::arrow(format!("table {}: moved keys", contract.table), e);
        let converter = RowConverter::new(
            keys.schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(err)?;
        let rows = converter.convert_columns(keys.columns()).map_err(err)?;
        let winner = losers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (b, p) = winner_of(l.winner);
                (rows.row(i).owned(), (b.to_string(), p.to_string()))
            })
            .collect();
        Ok(Moved { converter, winner })
    }

    fn key_rows(&self, contract: &Contract, rows: &RecordBatch) -> KaratResult<Rows> {
        let cols: Vec<ArrayRef> = contract
            .key_indexes
            .iter()
            .map(|i| rows.column(*i).clone())
            .collect();
        self.converter
            .convert_columns(&cols)
            .map_err(|e| KaratError::arrow(format!("table {}: moved keys", contract.table), e))
    }

    /// The removed stored winners (silver schema) as superseded by their new winner.
    fn supersede(&self, contract: &Contract, removed: &RecordBatch) -> KaratResult<RecordBatch> {
        let keys = self.key_rows(contract, removed)?;
        let (by, home): (Vec<_>, Vec<_>) = (0..removed.num_rows())
            .map(|i| {
                let w = self.winner.get(&keys.row(i).owned());
                (w.map(|w| w.0.clone()), w.map(|w| w.1.clone()))
            })
            .unzip();
        with_winner(contract, removed, by.into(), home.into())
    }

    /// Stored superseded rows, those of moved keys now under their new winner.
    fn rehome(&self, contract: &Contract, old: &RecordBatch) -> KaratResult<RecordBatch> {
        let keys = self.key_rows(contract, old)?;
        let by_col = crate::lake::delta::utf8(old.column_by_name(SUPERSEDED_BY).expect("by"));
        let home_col =
            crate::lake::delta::utf8(old.column_by_name(WINNER_PARTITION).expect("home"));
        let (by, home): (Vec<_>, Vec<_>) = (0..old.num_rows())
            .map(|i| match self.winner.get(&keys.row(i).owned()) {
                Some((b, p)) => (Some(b.clone()), Some(p.clone())),
                None => (
                    by_col.is_valid(i).then(|| by_col.value(i).to_string()),
                    home_col.is_valid(i).then(|| home_col.value(i).to_string()),
                ),
            })
            .unzip();
        let silver_cols = (0..contract.silver_schema.fields().len()).collect::<Vec<_>>();
        let silver = old
            .project(&silver_cols)
            .map_err(|e| KaratError::arrow(format!("table {}", contract.table), e))?;
        with_winner(contract, &silver, by.into(), home.into())
    }
}
