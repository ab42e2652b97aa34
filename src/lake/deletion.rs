//! Deleting some stored rows of a partitioned Delta table in place, by deletion vectors, in
//! the same commit as the rows those partitions gain.
//!
//! A daily run's re-sends supersede a few stored rows in most partitions; a copy-on-write
//! rewrite ([`super::rewrite`]) re-encodes each of those partitions whole, so the run costs
//! what the table holds. Here a file keeps its rows: it is read for the columns that decide
//! (the key), the rows to delete are marked in a deletion vector (the Delta protocol's
//! `deletionVectors` feature; serialised by the Delta kernel's writer, every vector of a
//! commit in one `deletion_vector_<uuid>.bin` file beside the data), and the file is removed
//! and added again with its vector, in one commit with the new rows' files: readers see every
//! partition old or every partition new. Readers apply the vectors (delta-rs's scan, so every
//! query karat makes; any Delta reader of version 3); rewriting a file drops its deleted rows
//! for good (the merge of a crowded partition below; delta-rs's optimize leaves a partition's
//! lone large file as it is); vacuum keeps the vector files that live files name.
//!
//! Where the rows to delete are was usually found already, by the lookup that decided they
//! lose ([`super::lookup`]); only then are the other files not read at all.
//!
//! Each such change adds a file to a partition (its new rows), and a scan pays per file: a
//! partition that would hold [`COMPACT_FILES`] files or more has its small files merged into
//! one with its new rows, or, when that is not enough, is rewritten whole
//! ([`super::rewrite`]), in the same commit, as Delta's auto-compaction would, so a table
//! keeps a bounded number of files per partition without a `karat maintain`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use delta_kernel::actions::deletion_vector_writer::{
    KernelDeletionVector, StreamingDeletionVectorWriter,
};
use delta_kernel::table_features::TableFeature;
use deltalake::DeltaTable;
use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add, DeletionVectorDescriptor, LogicalFileView, StorageType};
use object_store::ObjectStoreExt;

use super::append;
use super::lookup::{Located, Reading, Wanted, file_name};
use super::rewrite::{self, Keep, Rewrite};
use crate::error::{KaratError, KaratResult};

/// Files a partition may hold before a change merges its small files (or rewrites it whole).
pub const COMPACT_FILES: usize = 8;

/// Rows the small files a change merges may hold in all (they are read into memory).
pub const COMPACT_ROWS: usize = 256 * 1024;

/// A small file holds at most this share of its partition's largest file's rows.
const SMALL_SHARE: usize = 8;

/// Whether `table` writes deletion vectors: the feature is on (`delta.enableDeletionVectors`).
pub fn enabled(table: &DeltaTable) -> bool {
    table.snapshot().is_ok_and(|s| {
        s.snapshot()
            .table_configuration()
            .is_feature_enabled(&TableFeature::DeletionVectors)
    })
}

/// Turns deletion vectors on for `table` (a commit of its own carrying `metadata`, e.g. the
/// run that did it, raising the protocol to reader 3 / writer 7); the table as it is then.
pub async fn enable(
    table: DeltaTable,
    label: &str,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<DeltaTable> {
    if enabled(&table) {
        return Ok(table);
    }
    table
        .set_tbl_properties()
        .with_properties(HashMap::from([(
            "delta.enableDeletionVectors".to_string(),
            "true".to_string(),
        )]))
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await
        .map_err(|e| KaratError::delta(format!("{label}: turning deletion vectors on"), e))
}

/// Replaces `rewrite.partitions` of `table` (partitioned by `partition_by`, rows of
/// `schema`): the stored rows `rewrite.keep` refuses are deleted by deletion vector (found
/// by reading the columns `reads` of each file, unless `rewrite.found` says where they are),
/// and `rewrite.added` is appended; one commit, the new version.
pub async fn delete_and_append(
    table: DeltaTable,
    label: &str,
    schema: &SchemaRef,
    partition_by: &str,
    rewrite: Rewrite,
    reads: &[String],
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<i64> {
    let started = std::time::Instant::now();
    rewrite.check(label)?;
    let Rewrite {
        partitions,
        keep,
        added,
        found,
    } = rewrite;
    let reading = Arc::new(Reading {
        table: table.clone(),
        schema: schema.clone(),
        partition_by: partition_by.to_string(),
        label: label.to_string(),
    });
    let files = reading.files(Some(&partitions)).await?;
    let live: BTreeSet<String> = files.iter().map(|f| f.path().to_string()).collect();
    let layout = Layout::of(&reading, files);
    let mut added = added;
    let todo: Vec<(String, Vec<RecordBatch>)> = layout
        .whole
        .keys()
        .map(|p| (p.clone(), added.remove(p).unwrap_or_default()))
        .collect();
    let mut adds =
        rewrite::rewrite_whole(&table, label, schema, partition_by, keep.clone(), todo).await?;
    let kept = reading
        .find(layout.compact.clone(), reads, keep.clone(), true)
        .await?;
    let marked = mark(&reading, layout.in_place, reads, keep, found, &live).await?;
    let mut actions = write_vectors(&table, label, marked).await?;
    // the vectors and rewritten partitions are written and no commit names them yet
    super::fault::after("delta.deletion_vectors");
    let rows: Vec<RecordBatch> = added
        .into_values()
        .flatten()
        .chain(kept.into_iter().map(|f| f.values))
        .filter(|b| b.num_rows() > 0)
        .collect();
    adds.extend(append::write_files(&table, label, schema, partition_by, rows).await?);
    for f in layout.whole.into_values().flatten().chain(layout.compact) {
        actions.push(Action::Remove(f.remove_action(true)));
    }
    let removed = actions
        .iter()
        .filter(|a| matches!(a, Action::Remove(_)))
        .count();
    let operation = rewrite::replace_where(schema, partition_by, &partitions, label)?;
    let metrics = append::Metrics {
        added: &adds,
        removed_files: removed,
        partitions: partitions.len(),
        started,
    };
    actions.extend(adds.iter().cloned().map(Action::Add));
    append::commit(&table, label, actions, operation, metadata, metrics).await
}

/// How a change treats each file of the partitions it replaces. A partition that would hold
/// [`COMPACT_FILES`] files or more (with the one a change adds) has its small files (each at
/// most 1/[`SMALL_SHARE`] of its largest, up to [`COMPACT_ROWS`] rows in all) merged into
/// one with its new rows; when that does not bring it under [`COMPACT_FILES`], it is
/// rewritten whole.
struct Layout {
    whole: BTreeMap<String, Vec<LogicalFileView>>,
    /// Small files whose kept rows are written again, with their partitions' new rows.
    compact: Vec<LogicalFileView>,
    /// Files that keep their rows (some of them deleted by vector).
    in_place: Vec<LogicalFileView>,
}

impl Layout {
    fn of(reading: &Reading, files: Vec<LogicalFileView>) -> Layout {
        let mut by_partition: BTreeMap<String, Vec<LogicalFileView>> = BTreeMap::new();
        for f in files {
            let value = reading.partition_of(&f).unwrap_or_default();
            by_partition.entry(value).or_default().push(f);
        }
        let mut layout = Layout {
            whole: BTreeMap::new(),
            compact: Vec::new(),
            in_place: Vec::new(),
        };
        for (partition, mut files) in by_partition {
            if files.len() + 1 < COMPACT_FILES {
                layout.in_place.extend(files);
                continue;
            }
            files.sort_by_key(|f| f.num_records().unwrap_or(usize::MAX));
            let largest = files.last().and_then(|f| f.num_records()).unwrap_or(0);
            let mut rows = 0usize;
            let small = files
                .iter()
                .take_while(|f| {
                    let n = f.num_records().unwrap_or(usize::MAX);
                    rows = rows.saturating_add(n);
                    n <= largest / SMALL_SHARE && rows <= COMPACT_ROWS
                })
                .count();
            if small >= 2 && files.len() - small + 1 < COMPACT_FILES {
                let rest = files.split_off(small);
                layout.compact.extend(files);
                layout.in_place.extend(rest);
            } else {
                layout.whole.insert(partition, files);
            }
        }
        layout
    }
}

/// A file whose deletion vector grows: every row it deletes now (old and new).
struct Marked {
    file: LogicalFileView,
    deleted: Vec<u64>,
}

/// The files of `in_place` that delete more rows: those `keep` refuses, found by reading
/// the columns `reads` of every file, or where `found` says they are (other files are then
/// not read; every file they name must be one of `live`, those the partitions hold).
async fn mark(
    reading: &Arc<Reading>,
    in_place: Vec<LogicalFileView>,
    reads: &[String],
    keep: Keep,
    found: Option<Vec<Located>>,
    live: &BTreeSet<String>,
) -> KaratResult<Vec<Marked>> {
    let found = match found {
        Some(found) => placed(&reading.label, &in_place, found, live)?,
        None => {
            let wanted: Wanted = Arc::new(move |b: &RecordBatch| not(&keep(b)?));
            let hits = reading.find(in_place, reads, wanted, false).await?;
            hits.into_iter().map(|f| f.at).collect()
        }
    };
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let mut before = reading.deleted().await?;
    Ok(found
        .into_iter()
        .filter(|l| !l.rows.is_empty())
        .map(|l| {
            let mut deleted: BTreeSet<u64> = before
                .remove(file_name(&l.file.path()))
                .unwrap_or_default()
                .iter()
                .copied()
                .collect();
            deleted.extend(l.rows);
            Marked {
                file: l.file,
                deleted: deleted.into_iter().collect(),
            }
        })
        .collect())
}

/// Of rows found earlier, those in `in_place`'s files (the other files' partitions are
/// rewritten whole); a file found that the partitions no longer hold is an error, not a row
/// kept.
fn placed(
    label: &str,
    in_place: &[LogicalFileView],
    found: Vec<Located>,
    live: &BTreeSet<String>,
) -> KaratResult<Vec<Located>> {
    let here: BTreeSet<String> = in_place.iter().map(|f| f.path().to_string()).collect();
    let mut out = Vec::new();
    for l in found {
        let path = l.file.path().to_string();
        if here.contains(&path) {
            out.push(l);
        } else if !live.contains(&path) {
            return Err(KaratError::Other(format!(
                "{label}: file {path} is not in the table any more (changed since its rows \
                 were looked up)"
            )));
        }
    }
    Ok(out)
}

/// Where `mask` is false.
fn not(mask: &BooleanArray) -> Result<BooleanArray, ArrowError> {
    deltalake::arrow::compute::not(mask)
}

/// Writes the vectors of `marked` into one file beside the data; per file, its removal and its
/// addition with the new vector.
async fn write_vectors(
    table: &DeltaTable,
    label: &str,
    marked: Vec<Marked>,
) -> KaratResult<Vec<Action>> {
    if marked.is_empty() {
        return Ok(Vec::new());
    }
    let err = |e: delta_kernel::Error| {
        KaratError::Other(format!("{label}: writing a deletion vector: {e}"))
    };
    let uuid = uuid::Uuid::new_v4();
    let mut bytes = Vec::new();
    let mut written = Vec::new();
    {
        let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
        for m in &marked {
            let mut vector = KernelDeletionVector::new();
            vector.add_deleted_row_indexes(m.deleted.iter().copied());
            written.push(writer.write_deletion_vector(vector).map_err(err)?);
        }
        writer.finalize().map_err(err)?;
    }
    let path = deltalake::Path::from(format!("deletion_vector_{uuid}.bin"));
    table
        .log_store()
        .object_store(None)
        .put(&path, bytes.into())
        .await
        .map_err(|e| KaratError::storage(format!("{label}: {path}"), e))?;
    let mut actions = Vec::with_capacity(marked.len() * 2);
    for (m, w) in marked.into_iter().zip(written) {
        let vector = DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(uuid.as_bytes()),
            offset: Some(w.offset),
            size_in_bytes: w.size_in_bytes,
            cardinality: w.cardinality,
        };
        actions.push(Action::Remove(m.file.remove_action(true)));
        actions.push(Action::Add(with_vector(&m.file, vector)));
    }
    Ok(actions)
}

/// `file` added again, with `vector`. Its statistics were counted before any row was deleted,
/// so they are marked `tightBounds: false`, as the protocol asks of a file with a vector: the
/// bounds still hold every live row, the row and null counts are no longer exact.
fn with_vector(file: &LogicalFileView, vector: DeletionVectorDescriptor) -> Add {
    Add {
        path: file.path().to_string(),
        partition_values: file.partition_values_map(),
        size: file.size(),
        modification_time: file.modification_time(),
        data_change: true,
        stats: file.stats().map(|s| loose_bounds(&s)),
        tags: None,
        deletion_vector: Some(vector),
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

/// A file's statistics (JSON) marked `"tightBounds": false`; left as they are when they do not
/// parse as a JSON object.
fn loose_bounds(stats: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stats) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("tightBounds".into(), serde_json::Value::Bool(false));
            serde_json::Value::Object(fields).to_string()
        }
        _ => stats.to_string(),
    }
}
