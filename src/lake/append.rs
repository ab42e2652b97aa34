//! Large appends to a partitioned Delta table, encoded on every core and committed as one
//! Delta write.
//!
//! delta-rs's write operation gives each partition value to one writer task, so the rows of a
//! day (a daily run's usual shape) are encoded on one core while the other waits. Here the
//! rows are shared out among one delta-rs `DeltaWriter` per core; their files are committed in
//! one transaction through the deltalake commit API, as the write operation would commit them
//! (operation `WRITE`, mode `Append`, karat's commit metadata and `operationMetrics`). Only
//! plain tables qualify: writer protocol 2 or lower, or deletion vectors besides (no column
//! mapping, constraints or generated columns), the table's columns (by name: rows are written
//! in the stored order) and partitioning exactly, and a partition value of at least
//! [`PARALLEL_ROWS`] rows; anything else takes delta-rs's own write. A table that does not
//! exist yet is first created empty by delta-rs's write (so it is made exactly as delta-rs
//! makes it), then appended to.

use std::collections::HashMap;

use delta_kernel::table_features::TableFeature;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, Add};
use deltalake::operations::write::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;

use crate::error::{KaratError, KaratResult};

/// A partition value with fewer rows than this is appended by delta-rs's write (one file).
pub const PARALLEL_ROWS: usize = 256 * 1024;

/// Whether `batches` are worth appending in parallel: at least two batches, all of
/// `schema`, one partition value holding at least [`PARALLEL_ROWS`] rows (the other partition
/// values of the same append get a file per writer), and more than one core.
pub fn suits(schema: &SchemaRef, batches: &[RecordBatch], partition_by: &str) -> bool {
    cores() > 1
        && batches.len() > 1
        && batches.iter().map(RecordBatch::num_rows).sum::<usize>() >= PARALLEL_ROWS
        && batches
            .iter()
            .all(|b| b.schema().fields() == schema.fields())
        && largest_partition(batches, partition_by) >= PARALLEL_ROWS
}

/// Whether `table` takes a parallel append of rows of `schema`: a plain table (writer
/// protocol 2 or lower, or writer features no more than those and deletion vectors) with
/// exactly this schema's columns ([`same_columns`]), partitioned by `partition_by` alone.
pub fn table_allows(table: &DeltaTable, schema: &SchemaRef, partition_by: &str) -> bool {
    let Ok(state) = table.snapshot() else {
        return false;
    };
    let snapshot = state.snapshot();
    plain(table)
        && snapshot.metadata().partition_columns() == [partition_by.to_string()].as_slice()
        && same_columns(&snapshot.arrow_schema(), schema)
}

/// Whether a stored table's columns are `schema`'s, by name and in any order. A table whose
/// contract gained a column holds it last (a schema merge appends it), where the contract
/// lists it among the others: by position it would never match again, and every later run
/// would take the slow path.
pub fn same_columns(stored: &Schema, schema: &Schema) -> bool {
    stored.fields().len() == schema.fields().len()
        && schema.fields().iter().all(|f| {
            stored
                .field_with_name(f.name())
                .is_ok_and(|s| s == f.as_ref())
        })
}

/// `b` (rows of the same columns, [`same_columns`]) with its columns in the stored table's
/// order, as a writer of the table takes them.
pub fn in_stored_order(b: &RecordBatch, stored: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if b.schema().fields() == stored.fields() {
        return Ok(b.clone());
    }
    super::delta::conform(b, stored)
}

/// Whether `table` is plain: writer protocol 2 or lower, or writer features no more than
/// those and deletion vectors (no column mapping: a file's columns are the table's, by name).
pub fn plain(table: &DeltaTable) -> bool {
    let Ok(state) = table.snapshot() else {
        return false;
    };
    let protocol = state.snapshot().protocol();
    protocol.min_writer_version() <= 2
        || protocol.writer_features().is_some_and(|features| {
            features.iter().all(|f| {
                matches!(
                    f,
                    TableFeature::AppendOnly
                        | TableFeature::Invariants
                        | TableFeature::DeletionVectors
                )
            })
        })
}

/// Rows of the most frequent value of `column` (0 when it cannot be read).
fn largest_partition(batches: &[RecordBatch], column: &str) -> usize {
    let Some(first) = batches[0].column_by_name(column) else {
        return 0;
    };
    let Ok(converter) = RowConverter::new(vec![SortField::new(first.data_type().clone())]) else {
        return 0;
    };
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for b in batches {
        let Some(c) = b.column_by_name(column) else {
            return 0;
        };
        let Ok(rows) = converter.convert_columns(std::slice::from_ref(c)) else {
            return 0;
        };
        for r in rows.iter() {
            match counts.get_mut(r.as_ref()) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(r.as_ref().to_vec(), 1);
                }
            }
        }
    }
    counts.into_values().max().unwrap_or(0)
}

/// Appends `batches` to `table` (partitioned by `partition_by`) in one commit; the new
/// version.
pub async fn append(
    table: DeltaTable,
    label: &str,
    batches: Vec<RecordBatch>,
    partition_by: &str,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<i64> {
    let started = std::time::Instant::now();
    let config = writer_config(&table, partition_by, label)?;
    let adds = write_shares(&table, config, share_out(batches), label).await?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec![partition_by.to_string()]),
        predicate: None,
    };
    let metrics = Metrics {
        added: &adds,
        removed_files: 0,
        partitions: partitions_of(&adds),
        started,
    };
    let actions = adds.iter().cloned().map(Action::Add).collect();
    commit(&table, label, actions, operation, metadata, metrics).await
}

/// A writer's configuration as delta-rs's write configures it: karat's Parquet properties
/// ([`super::encoding`]), the table's target file size and statistics columns.
pub fn writer_config(
    table: &DeltaTable,
    partition_by: &str,
    label: &str,
) -> KaratResult<WriterConfig> {
    let state = table.snapshot().map_err(|e| KaratError::delta(label, e))?;
    let snapshot = state.snapshot();
    let stats = WriterStatsConfig::from_config(snapshot.table_configuration());
    let file_size = snapshot
        .table_configuration()
        .table_properties()
        .target_file_size();
    let schema = snapshot.arrow_schema();
    Ok(WriterConfig::new(
        schema.clone(),
        vec![partition_by.to_string()],
        Some(super::encoding::writer_properties(&schema)),
        Some(file_size),
        None,
        stats.num_indexed_cols,
        stats.stats_columns,
    ))
}

/// What a commit made by karat records as its `operationMetrics` (delta-rs's names).
pub struct Metrics<'a> {
    pub added: &'a [Add],
    pub removed_files: usize,
    pub partitions: usize,
    pub started: std::time::Instant,
}

impl Metrics<'_> {
    fn json(&self) -> serde_json::Value {
        let rows: i64 = self
            .added
            .iter()
            .filter_map(|a| a.stats.as_deref())
            .filter_map(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .filter_map(|s| s["numRecords"].as_i64())
            .sum();
        serde_json::json!({
            "num_added_files": self.added.len(),
            "num_removed_files": self.removed_files,
            "num_partitions": self.partitions,
            "num_added_rows": rows,
            "execution_time_ms": self.started.elapsed().as_millis() as u64,
            "num_retries": 0,
        })
    }
}

/// The number of partition values among `adds`.
fn partitions_of(adds: &[Add]) -> usize {
    adds.iter()
        .map(|a| {
            let mut values: Vec<_> = a.partition_values.iter().collect();
            values.sort();
            values
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Commits `actions` to `table` as `operation`, with karat's `metadata` and `metrics`, through
/// the deltalake commit API (which checks for conflicting commits); the new version.
pub async fn commit(
    table: &DeltaTable,
    label: &str,
    actions: Vec<Action>,
    operation: DeltaOperation,
    metadata: Vec<(String, serde_json::Value)>,
    metrics: Metrics<'_>,
) -> KaratResult<i64> {
    let err = |e| KaratError::delta(label, e);
    let state = table.snapshot().map_err(err)?;
    let mut metadata = metadata;
    metadata.push(("operationMetrics".to_string(), metrics.json()));
    let commit = CommitBuilder::from(CommitProperties::default().with_metadata(metadata))
        .with_actions(actions)
        .build(
            Some(state as &dyn TableReference),
            table.log_store(),
            operation,
        )
        .await
        .map_err(err)?;
    Ok(commit.version() as i64)
}

/// Writes `batches` (rows of `schema`) as new files of `table`, committing nothing: shared out
/// among a writer per core when they [`suits`], else through one writer; the files written.
pub async fn write_files(
    table: &DeltaTable,
    label: &str,
    schema: &SchemaRef,
    partition_by: &str,
    batches: Vec<RecordBatch>,
) -> KaratResult<Vec<Add>> {
    let config = writer_config(table, partition_by, label)?;
    let shares = if suits(schema, &batches, partition_by) {
        share_out(batches)
    } else {
        vec![batches]
    };
    write_shares(table, config, shares, label).await
}

/// The number of writers: one per core. Asked once a process (the standard library reads the
/// cgroup's CPU quota files each time it is asked).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}

/// The batches dealt out round robin, one share per core.
fn share_out(batches: Vec<RecordBatch>) -> Vec<Vec<RecordBatch>> {
    let mut shares: Vec<Vec<RecordBatch>> = vec![Vec::new(); cores().min(batches.len())];
    let n = shares.len();
    for (i, b) in batches.into_iter().enumerate() {
        shares[i % n].push(b);
    }
    shares
}

/// Writes each share with its own writer on its own task; the files written. A writer that
/// fails aborts its uploads; the others are awaited, and what they wrote stays unreferenced
/// (no commit names it) until `karat maintain` vacuums it.
async fn write_shares(
    table: &DeltaTable,
    config: WriterConfig,
    shares: Vec<Vec<RecordBatch>>,
    label: &str,
) -> KaratResult<Vec<Add>> {
    let stored = table
        .snapshot()
        .map_err(|e| KaratError::delta(label, e))?
        .snapshot()
        .arrow_schema();
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let writer = DeltaWriter::new(table.log_store().object_store(None), config.clone());
        tasks.spawn(write_share(writer, share, stored.clone()));
    }
    let mut adds = Vec::new();
    let mut failed = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(written)) => adds.extend(written),
            Ok(Err(e)) => {
                failed.get_or_insert(KaratError::delta(label, e));
            }
            Err(e) => {
                failed.get_or_insert(KaratError::Other(format!(
                    "{label}: a writer task failed: {e}"
                )));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(adds),
    }
}

/// Writes one share's rows (in the stored table's column order) with `writer`.
async fn write_share(
    mut writer: DeltaWriter,
    share: Vec<RecordBatch>,
    stored: SchemaRef,
) -> deltalake::DeltaResult<Vec<Add>> {
    for b in &share {
        let written = match in_stored_order(b, &stored) {
            Ok(b) => writer.write(&b).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            let _ = writer.abort().await;
            return Err(e);
        }
    }
    writer.close().await
}
