//! Silver: typed, validated, de-duplicated tables, kept equal to one pure function of the
//! bronze batches (see `DESIGN-silver.md` and the README): every record of a batch is either a
//! silver row, a dead letter (with every reason), or a superseded older version of its key.
//!
//! [`update`] (re)processes a set of bronze batches with the current contract and applies the
//! result wherever the rows belong: keys are unique table-wide (the newest
//! `_ingested_at`, then batch, then line wins), partitions that only gain rows get a Delta
//! append, partitions where anything changes are rewritten from their current silver rows
//! (never from bronze) in one replace-where commit, dead letters are replaced per batch, and
//! superseded rows are kept with the batch that replaced them. A normal run passes only new
//! batches; a replay passes every batch that contributed to the replayed partitions.

pub mod accounting;
pub mod collect;
pub mod contract;
pub mod contract_doc;
pub mod decode;
pub mod gate;
pub mod incremental;
pub mod key_check;
pub mod keyset;
pub mod labels;
pub mod mask;
pub mod merge;
pub mod moved_across;
pub mod preview;
pub mod select;
pub mod store;
pub mod validate;
pub mod written_keys;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};

use crate::bronze::Manifest;
use crate::error::{KaratError, KaratResult};
use crate::events::{Event, Events, Stage};
use crate::lake::Lake;
pub use collect::CHUNK_ROWS;
pub use contract::Contract;
use contract::SUPERSEDED_BY;
pub use gate::{PartitionOutcome, PartitionStatus};
use store::{Store, Stored};

/// What processing a silver table did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SilverReport {
    pub table: String,
    pub partitions: Vec<PartitionOutcome>,
    /// The bronze batches (re)processed, with the contract fingerprint they now use.
    pub batches: Vec<String>,
    pub contract: String,
    pub silver_version: Option<i64>,
    pub dead_letter_version: Option<i64>,
    /// Rows that entered or left silver, for the gold partitions they feed.
    #[serde(skip)]
    pub changed: Changed,
    /// Keys this update looked up that silver now holds twice, when it checked them itself
    /// ([`written_keys`]); None leaves the check of the changed keys to the caller.
    #[serde(skip)]
    pub keys_held_twice: Option<Vec<String>>,
}

impl SilverReport {
    pub fn empty(table: &str, contract: &str) -> SilverReport {
        SilverReport {
            table: table.into(),
            partitions: Vec::new(),
            batches: Vec::new(),
            contract: contract.into(),
            silver_version: None,
            dead_letter_version: None,
            changed: Changed::default(),
            keys_held_twice: None,
        }
    }

    /// Adds the report of a later update of the same table in the same run.
    pub fn absorb(&mut self, later: SilverReport) {
        for o in later.partitions {
            match self
                .partitions
                .iter_mut()
                .find(|p| p.partition == o.partition)
            {
                Some(p) => p.absorb(o),
                None => self.partitions.push(o),
            }
        }
        self.partitions
            .sort_by(|a, b| a.partition.cmp(&b.partition));
        self.batches.extend(later.batches);
        self.contract = later.contract;
        self.silver_version = later.silver_version.or(self.silver_version);
        self.dead_letter_version = later.dead_letter_version.or(self.dead_letter_version);
        self.changed.absorb(later.changed);
    }
}

/// Silver rows that entered or left the table in an update (silver schema), split by whether
/// their partition passed its gate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changed {
    pub promoted: Vec<RecordBatch>,
    pub failed: Vec<RecordBatch>,
    /// The rows of `promoted` told apart, when the update knows which entered and which left
    /// (None: it does not, as a replay's re-merge of whole partitions).
    pub signed: Option<Signed>,
}

/// Rows of promoted partitions that entered silver, and rows that left it (silver schema).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signed {
    pub entered: Vec<RecordBatch>,
    pub left: Vec<RecordBatch>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.promoted
            .iter()
            .chain(&self.failed)
            .all(|b| b.num_rows() == 0)
    }

    /// Adds the rows a later update changed. They stay told apart only when one of the two
    /// changed nothing (a run takes each update's changes before it absorbs its report).
    pub fn absorb(&mut self, later: Changed) {
        let signed = if later.is_empty() {
            self.signed.take()
        } else if self.is_empty() {
            later.signed
        } else {
            None
        };
        self.promoted.extend(later.promoted);
        self.failed.extend(later.failed);
        self.signed = signed;
    }
}

/// The new state of the partitions an update touches.
#[derive(Debug, Default)]
struct Applied {
    /// Partitions replaced whole (None: the rows are appended).
    replace: Option<BTreeSet<String>>,
    /// With `replace`: the partitions keep their stored rows but those of these keys, and
    /// gain `silver` (None: `silver` is their whole new content).
    keep_stored_except: Option<store::Removed>,
    silver: Vec<RecordBatch>,
    /// Winner partitions of superseded rows replaced whole (None: appended).
    replace_superseded: Option<BTreeSet<String>>,
    /// With `replace_superseded`: those partitions keep their stored rows but these (None:
    /// `superseded` is their whole new content).
    superseded_moved: Option<store::SupersededInPlace>,
    superseded: Vec<RecordBatch>,
    /// Rows that entered or left silver.
    changed: Vec<RecordBatch>,
    /// `changed` told apart into the rows that entered and those that left, when known.
    signed: Option<Signed>,
    /// What the lookup before the merge read, for the key check after the write.
    scanned: Option<written_keys::Scanned>,
}

/// (Re)processes `batches` with `contract` and applies the result. `targets` are partitions
/// that must get an outcome even if no row lands there any more (a replay's partitions).
pub async fn update(
    lake: &Lake,
    contract: Arc<Contract>,
    batches: Vec<Manifest>,
    targets: &BTreeSet<String>,
    run_id: &str,
    events: &Events,
) -> KaratResult<SilverReport> {
    let table = contract.table.clone();
    let mut clock = crate::timings::Clock::new(format!("silver {table}"), events);
    let ids: BTreeSet<String> = batches.iter().map(|m| m.batch_id.clone()).collect();
    // where the batches wrote before is read while they decode (both only read)
    let earlier = async {
        let store = Store::open(lake, contract.clone()).await?;
        let of_batches = store.partitions_of_batches(&ids).await?;
        Ok::<_, KaratError>((store, of_batches))
    };
    let collecting = collect::collect(lake, contract.clone(), batches, run_id, events);
    let (collected, earlier) = futures::join!(collecting, earlier);
    let (collected, (store, of_batches)) = (collected?, earlier?);
    clock.lap("decode + validate, partitions of batches");
    let applied = apply(
        &store,
        &contract,
        Input {
            valid: &collected.valid,
            ids: &ids,
            of_batches,
            targets,
        },
        &mut clock,
    )
    .await?;
    clock.lap("merge");
    let meta = |op: &str| {
        vec![
            ("karat.run_id".to_string(), serde_json::json!(run_id)),
            ("karat.operation".to_string(), serde_json::json!(op)),
        ]
    };
    let mut labels: BTreeSet<String> = collected.rows_in.keys().cloned().collect();
    labels.extend(targets.iter().cloned());
    labels.extend(partition_labels(&contract, &applied.changed)?);
    // superseded rows first: after a crash between the two commits a version is in both
    // tables (never in neither), and the next run, seeing these batches' traces, re-merges
    // with versions told apart by batch and line
    store
        .write_superseded(
            applied.superseded,
            applied.replace_superseded.as_ref(),
            applied.superseded_moved,
            meta("superseded update"),
        )
        .await?;
    crate::lake::fault::after("silver.superseded");
    clock.lap("write superseded");
    let silver_rows = SilverRows {
        replace: applied.replace,
        keep_stored_except: applied.keep_stored_except,
        rows: applied.silver,
    };
    let (silver_version, dead_version) = write_rows(
        &store,
        silver_rows,
        collected.dead.clone(),
        &ids,
        meta,
        events,
        &mut clock,
    )
    .await?;
    let after = Store::open(lake, contract.clone()).await?;
    let (counts, keys_held_twice) =
        check_written(&after, &contract, &labels, applied.scanned, events).await?;
    clock.lap("partition counts + written keys");
    let mut outcomes = gate::outcomes(&contract, &collected, &counts);
    let changed = split_changed(&contract, applied.changed, applied.signed, &outcomes)?;
    for o in &mut outcomes {
        o.delta_version = Some(silver_version);
        events.send(Event::Partition {
            table: table.clone(),
            partition: o.partition.clone(),
            status: o.status.as_str().to_string(),
        });
    }
    let rows: u64 = outcomes.iter().map(|o| o.rows_in).sum();
    let nfailed = outcomes.iter().filter(|o| !o.status.promoted()).count();
    events.send(Event::Finished {
        stage: Stage::Silver,
        name: table.clone(),
        rows,
        ok: nfailed == 0,
        detail: format!("{} partition(s), {} failed", outcomes.len(), nfailed),
    });
    Ok(SilverReport {
        table,
        partitions: outcomes,
        batches: ids.into_iter().collect(),
        contract: contract.fingerprint.clone(),
        silver_version: Some(silver_version),
        dead_letter_version: Some(dead_version),
        changed,
        keys_held_twice,
    })
}

/// What silver's commit writes: `rows`, appended, or replacing partitions `replace`
/// (those keeping their stored rows but `keep_stored_except`'s, when known).
struct SilverRows {
    replace: Option<BTreeSet<String>>,
    keep_stored_except: Option<store::Removed>,
    rows: Vec<RecordBatch>,
}

/// Writes silver's rows, then the batches' dead letters (two tables, two commits, in this
/// order: a crash between them leaves rows that became dead letters in neither table until
/// the batch is processed again — by the next run, or a replay, which also takes the batches
/// that no longer balance). Their Delta versions.
async fn write_rows(
    store: &Store,
    silver: SilverRows,
    dead: Vec<RecordBatch>,
    ids: &BTreeSet<String>,
    meta: impl Fn(&str) -> Vec<(String, serde_json::Value)>,
    events: &Events,
    clock: &mut crate::timings::Clock<'_>,
) -> KaratResult<(i64, i64)> {
    let rows = match (&silver.replace, silver.keep_stored_except) {
        (Some(partitions), Some(except)) => {
            let meta = meta("silver update");
            store
                .rewrite_silver(partitions, except, silver.rows, meta, events)
                .await?
        }
        _ => {
            let replace = silver.replace.as_ref();
            store
                .write_silver(silver.rows, replace, meta("silver update"))
                .await?
        }
    };
    crate::lake::fault::after("silver.rows");
    clock.lap("write silver");
    let dead = store
        .write_dead(dead, ids, meta("dead letters of batches"))
        .await?;
    crate::lake::fault::after("silver.dead_letters");
    clock.lap("write dead letters");
    // most partitions gain a small file a run: merged as they crowd. The rows are committed:
    // a compaction that fails (racing another) is left to a later run or to `karat maintain`
    let dead = store.compact_dead().await.unwrap_or(None).unwrap_or(dead);
    clock.lap("compact dead letters");
    Ok((rows, dead))
}

/// After the writes, side by side: the counts of partitions `labels`, and the keys the
/// update's lookup `scanned` that silver now holds twice (None: not checked here; a check
/// that cannot read leaves it to the run's whole scan).
async fn check_written(
    after: &Store,
    contract: &Contract,
    labels: &BTreeSet<String>,
    scanned: Option<written_keys::Scanned>,
    events: &Events,
) -> KaratResult<(
    std::collections::BTreeMap<String, store::PartitionCounts>,
    Option<Vec<String>>,
)> {
    let keys = async {
        let scanned = scanned?;
        written_keys::held_twice(after, contract, scanned)
            .await
            .unwrap_or_else(|e| {
                let table = &contract.table;
                events.note(format!("silver {table}: checking the written keys: {e}"));
                None
            })
    };
    let (counts, keys) = futures::join!(after.counts(labels), keys);
    Ok((counts?, keys))
}

/// What an update applies: the batches' valid rows, their ids, the partitions where an earlier
/// processing of them wrote ([`Store::partitions_of_batches`]), and the partitions that must
/// get an outcome (a replay's).
struct Input<'a> {
    valid: &'a [RecordBatch],
    ids: &'a BTreeSet<String>,
    of_batches: BTreeSet<String>,
    targets: &'a BTreeSet<String>,
}

/// Decides the new content of silver and superseded rows. A keyed table's normal run (new
/// batches only) merges against the stored versions of its keys ([`incremental`]); a
/// replay, a retry of batches that already wrote, or a table without key re-merges whole
/// partitions ([`rewrite`]).
async fn apply(
    store: &Store,
    contract: &Contract,
    input: Input<'_>,
    clock: &mut crate::timings::Clock<'_>,
) -> KaratResult<Applied> {
    let Input {
        valid,
        ids,
        of_batches,
        targets,
    } = input;
    if !contract.key_indexes.is_empty() && targets.is_empty() && of_batches.is_empty() {
        let new = incremental::merge_new(store, contract, valid, clock).await?;
        let applied = match new.merged {
            None => append(contract, valid)?,
            Some(i) => Applied {
                keep_stored_except: i.silver_partitions.as_ref().map(|_| i.removed),
                replace: i.silver_partitions,
                signed: Some(Signed {
                    entered: i.added.clone(),
                    left: i.left,
                }),
                silver: i.added,
                replace_superseded: i.superseded_partitions,
                superseded_moved: i.superseded_moved,
                superseded: i.superseded,
                changed: i.changed,
                scanned: None,
            },
        };
        return Ok(Applied {
            scanned: new.scanned,
            ..applied
        });
    }
    // partitions already holding rows of these keys, or of these batches, or to replay
    let mut existing = store.partitions_of_keys(valid).await?;
    existing.extend(of_batches);
    existing.extend(targets.iter().cloned());
    if existing.is_empty() {
        append(contract, valid)
    } else {
        rewrite(store, contract, existing, valid, ids).await
    }
}

/// No key of the new rows exists yet and none of their batches wrote before: merge them among
/// themselves and append. The merge looks at the key and provenance columns only; when no key
/// repeats (the usual case) the validated chunks are written as they are, without a copy.
fn append(contract: &Contract, valid: &[RecordBatch]) -> KaratResult<Applied> {
    let err = |e| KaratError::arrow(format!("table {}", contract.table), e);
    let context = format!("table {}", contract.table);
    if contract.key_indexes.is_empty() {
        return Ok(Applied {
            silver: valid.to_vec(),
            changed: valid.to_vec(),
            signed: Some(Signed {
                entered: valid.to_vec(),
                left: Vec::new(),
            }),
            ..Applied::default()
        });
    }
    let schema = &contract.silver_schema;
    let mut cols = contract.key_indexes.clone();
    for name in ["_ingested_at", "_batch_id", "_line"] {
        cols.push(schema.index_of(name).map_err(err)?);
    }
    let narrow = valid
        .iter()
        .map(|b| b.project(&cols))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let narrow_schema = std::sync::Arc::new(schema.project(&cols).map_err(err)?);
    let keys = concat_batches(&narrow_schema, &narrow).map_err(err)?;
    let key_positions: Vec<usize> = (0..contract.key_indexes.len()).collect();
    let merged = merge::merge(&keys, &key_positions, &context)?;
    if merged.losers.is_empty() {
        return Ok(Applied {
            silver: valid.to_vec(),
            changed: valid.to_vec(),
            signed: Some(Signed {
                entered: valid.to_vec(),
                left: Vec::new(),
            }),
            ..Applied::default()
        });
    }
    // the narrow rows are in the same order as the full ones: the merge holds for both
    let mut applied = split_merged(contract, valid, &merged)?;
    applied.changed = applied.silver.clone();
    applied.signed = Some(Signed {
        entered: applied.silver.clone(),
        left: Vec::new(),
    });
    Ok(applied)
}

/// Some partitions hold rows of the same keys or of the same batches: read them, merge every
/// version of their keys with the new rows, and replace them. A winner that now belongs to a
/// partition not read yet (a superseded version coming back) pulls that partition in too.
async fn rewrite(
    store: &Store,
    contract: &Contract,
    mut partitions: BTreeSet<String>,
    valid: &[RecordBatch],
    ids: &BTreeSet<String>,
) -> KaratResult<Applied> {
    for label in partition_labels(contract, valid)? {
        partitions.insert(label);
    }
    loop {
        let stored = store.read(&partitions).await?;
        let (applied, outside) = rewrite_partitions(contract, stored, valid, ids, &partitions)?;
        if outside.is_empty() {
            return Ok(Applied {
                replace_superseded: Some(partitions.clone()),
                replace: Some(partitions),
                ..applied
            });
        }
        partitions.extend(outside);
    }
}

/// The merge of [`rewrite`] over rows already read; also returns winners' partitions that
/// were not read.
fn rewrite_partitions(
    contract: &Contract,
    stored: Stored,
    valid: &[RecordBatch],
    ids: &BTreeSet<String>,
    partitions: &BTreeSet<String>,
) -> KaratResult<(Applied, BTreeSet<String>)> {
    let ctx = format!("table {}", contract.table);
    let err = |e| KaratError::arrow(ctx.clone(), e);
    let schema = contract.silver_schema.clone();
    let old_silver = concat_batches(&schema, &stored.silver).map_err(err)?;
    let from_batches = in_set(&old_silver, "_batch_id", ids)?;
    let removed = filter_record_batch(&old_silver, &from_batches).map_err(err)?;
    let old_silver = filter_record_batch(&old_silver, &not(&from_batches)).map_err(err)?;
    let superseded =
        concat_batches(&contract.superseded_schema, &stored.superseded).map_err(err)?;
    // versions these batches pushed out of silver before (an interrupted attempt) count as
    // changed, whatever happens to them now
    let pushed_out = in_set(&superseded, SUPERSEDED_BY, ids)?;
    let superseded = superseded
        .project(&(0..schema.fields().len()).collect::<Vec<_>>())
        .map_err(err)?;
    let pushed_out = filter_record_batch(&superseded, &pushed_out).map_err(err)?;
    let sup_from = in_set(&superseded, "_batch_id", ids)?;
    let superseded = filter_record_batch(&superseded, &not(&sup_from)).map_err(err)?;
    // a version both in silver and superseded (a crash between their commits) counts once
    let twice = same_versions(&superseded, &old_silver);
    let superseded = filter_record_batch(&superseded, &not(&twice)).map_err(err)?;
    let new_rows = concat_batches(&schema, valid).map_err(err)?;
    let n_old = old_silver.num_rows() as u32;
    let all = concat_batches(&schema, &[old_silver.clone(), superseded, new_rows]).map_err(err)?;
    let merged = merge::merge(&all, &contract.key_indexes, &ctx)?;

    let labels = labels_of(contract, &all)?;
    let outside: BTreeSet<String> = merged
        .winners
        .iter()
        .map(|w| labels.value(*w as usize).to_string())
        .filter(|l| !partitions.contains(l))
        .collect();
    if !outside.is_empty() {
        return Ok((Applied::default(), outside));
    }
    let mut applied = split_merged(contract, std::slice::from_ref(&all), &merged)?;
    // changed: rows of the batches that were in silver, old winners now superseded, and every
    // winner that was not in silver before
    let mut changed = vec![removed, pushed_out];
    let lost: Vec<u32> = merged
        .losers
        .iter()
        .map(|l| l.row)
        .filter(|r| *r < n_old)
        .collect();
    changed.push(take_record_batch(&all, &UInt32Array::from(lost)).map_err(err)?);
    let gained: Vec<u32> = merged
        .winners
        .iter()
        .copied()
        .filter(|w| *w >= n_old)
        .collect();
    changed.push(take_record_batch(&all, &UInt32Array::from(gained)).map_err(err)?);
    applied.changed = changed;
    Ok((applied, BTreeSet::new()))
}

/// Silver rows (winners) and superseded rows (losers, with their winner's batch and partition).
fn split_merged(
    contract: &Contract,
    rows: &[RecordBatch],
    merged: &merge::Merged,
) -> KaratResult<Applied> {
    let err = |e| KaratError::arrow(format!("table {}", contract.table), e);
    let rows = select::Chunks::new(rows);
    let mut applied = Applied {
        silver: rows.keep(&merged.winners).map_err(err)?,
        ..Applied::default()
    };
    if merged.losers.is_empty() {
        return Ok(applied);
    }
    let (lost, won): (Vec<u32>, Vec<u32>) = merged.losers.iter().map(|l| (l.row, l.winner)).unzip();
    let losers = rows.pick(&lost).map_err(err)?;
    // each loser's winner: its batch, and the partition the loser is now stored under
    let won = rows.pick(&won).map_err(err)?;
    let mut cols = losers.columns().to_vec();
    cols.push(Arc::new(delta_utf8(&won, "_batch_id")));
    cols.push(Arc::new(labels_of(contract, &won)?));
    applied.superseded =
        vec![RecordBatch::try_new(contract.superseded_schema.clone(), cols).map_err(err)?];
    Ok(applied)
}

/// The partition label (`YYYY-MM-DD`) of every row.
fn labels_of(contract: &Contract, rows: &RecordBatch) -> KaratResult<StringArray> {
    labels::of(rows.column(contract.partition_index))
        .map_err(|e| KaratError::arrow(format!("table {}: partition labels", contract.table), e))
}

fn partition_labels(contract: &Contract, rows: &[RecordBatch]) -> KaratResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for b in rows {
        let l = labels::distinct(b.column(contract.partition_index)).map_err(|e| {
            KaratError::arrow(format!("table {}: partition labels", contract.table), e)
        })?;
        out.extend(l);
    }
    Ok(out)
}

fn delta_utf8(rows: &RecordBatch, column: &str) -> StringArray {
    crate::lake::delta::utf8(rows.column_by_name(column).expect("provenance column"))
}

/// Rows whose `column` is in `set`.
fn in_set(rows: &RecordBatch, column: &str, set: &BTreeSet<String>) -> KaratResult<BooleanArray> {
    let v = delta_utf8(rows, column);
    Ok(v.iter()
        .map(|x| Some(x.is_some_and(|x| set.contains(x))))
        .collect())
}

/// Rows of `rows` whose version (batch and line) is also in `other`.
fn same_versions(rows: &RecordBatch, other: &RecordBatch) -> BooleanArray {
    let version = |b: &RecordBatch| {
        (
            delta_utf8(b, "_batch_id"),
            b.column_by_name("_line")
                .expect("provenance column")
                .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                .clone(),
        )
    };
    let (ob, ol) = version(other);
    let seen: HashSet<(Option<&str>, Option<i64>)> = ob.iter().zip(ol.iter()).collect();
    let (rb, rl) = version(rows);
    rb.iter()
        .zip(rl.iter())
        .map(|v| Some(seen.contains(&v)))
        .collect()
}

fn not(mask: &BooleanArray) -> BooleanArray {
    mask.iter().map(|v| Some(!v.unwrap_or(false))).collect()
}

/// Splits changed rows (and, when told apart, the rows that entered and left) by whether
/// their partition was promoted. A key that changed in a failed partition counts as failed
/// in every partition: its version that left a promoted one (the key moved into the failed
/// partition) would otherwise empty its gold day of it, while the day it moved to is blocked,
/// and gold counted it nowhere; blocked, both keep what they last published.
fn split_changed(
    contract: &Contract,
    changed: Vec<RecordBatch>,
    signed: Option<Signed>,
    outcomes: &[PartitionOutcome],
) -> KaratResult<Changed> {
    let failed: HashSet<&str> = outcomes
        .iter()
        .filter(|o| !o.status.promoted())
        .map(|o| o.partition.as_str())
        .collect();
    let (promoted, failed_rows) = split_by(contract, changed, &failed)?;
    let moved = FailedKeys::of(contract, &failed_rows)?;
    let (promoted, also_failed) = moved.split(promoted)?;
    let signed = match signed {
        Some(s) => Some(Signed {
            entered: moved.split(split_by(contract, s.entered, &failed)?.0)?.0,
            left: moved.split(split_by(contract, s.left, &failed)?.0)?.0,
        }),
        None => None,
    };
    Ok(Changed {
        promoted,
        failed: failed_rows.into_iter().chain(also_failed).collect(),
        signed,
    })
}

/// The keys of rows that changed in failed partitions (none for a table without a key).
struct FailedKeys<'a> {
    contract: &'a Contract,
    keys: Option<keyset::KeySet>,
}

impl<'a> FailedKeys<'a> {
    fn of(contract: &'a Contract, failed_rows: &[RecordBatch]) -> KaratResult<FailedKeys<'a>> {
        let names = store::key_names(contract);
        let rows: Vec<RecordBatch> = failed_rows
            .iter()
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        let keys = match names.is_empty() || rows.is_empty() {
            true => None,
            false => Some(keyset::KeySet::new(&names, &rows).map_err(|e| {
                KaratError::arrow(
                    format!(
                        "table {}: keys changed in failed partitions",
                        contract.table
                    ),
                    e,
                )
            })?),
        };
        Ok(FailedKeys { contract, keys })
    }

    /// `rows` whose key did not change in a failed partition, and those whose key did.
    fn split(&self, rows: Vec<RecordBatch>) -> KaratResult<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        let Some(keys) = &self.keys else {
            return Ok((rows, Vec::new()));
        };
        let err = |e| KaratError::arrow(format!("table {}", self.contract.table), e);
        let (mut kept, mut failed) = (Vec::new(), Vec::new());
        for b in rows.into_iter().filter(|b| b.num_rows() > 0) {
            let absent = keys.absent(&b).map_err(err)?;
            failed.push(filter_record_batch(&b, &not(&absent)).map_err(err)?);
            kept.push(filter_record_batch(&b, &absent).map_err(err)?);
        }
        Ok((kept, failed))
    }
}

/// Rows in partitions not `failed`, and rows in `failed` partitions.
fn split_by(
    contract: &Contract,
    rows: Vec<RecordBatch>,
    failed: &HashSet<&str>,
) -> KaratResult<(Vec<RecordBatch>, Vec<RecordBatch>)> {
    let err = |e| KaratError::arrow(format!("table {}", contract.table), e);
    let (mut promoted, mut failed_rows) = (Vec::new(), Vec::new());
    for b in rows.into_iter().filter(|b| b.num_rows() > 0) {
        let labels = labels_of(contract, &b)?;
        let mask: BooleanArray = labels
            .iter()
            .map(|l| Some(l.is_some_and(|l| failed.contains(l))))
            .collect();
        failed_rows.push(filter_record_batch(&b, &mask).map_err(err)?);
        promoted.push(filter_record_batch(&b, &not(&mask)).map_err(err)?);
    }
    Ok((promoted, failed_rows))
}
