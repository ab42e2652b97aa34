//! Rewriting some partitions of a partitioned Delta table in one commit, one partition at a
//! time on each core: each partition's stored rows are streamed through a filter, followed by
//! the rows it gains.
//!
//! delta-rs's replace-where write streams the whole input through one writer per partition
//! value, all of them open until the end: a daily run whose re-sends touch thirty partitions
//! held thirty writers' buffers at once, and encoded them on one core. Here each partition is
//! read (a DataFusion scan pruned to it), filtered and written by a `DeltaWriter` of its own
//! that is closed before the next partition starts, at most one per core at a time. The files
//! the partitions held are removed and the new ones added in one commit, as delta-rs's
//! replace-where commits them (operation `WRITE`, mode `Overwrite`, the partition predicate,
//! `operationMetrics`): readers see every partition old or every partition new. Only plain
//! tables qualify ([`super::append::table_allows`]); anything else takes delta-rs's write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::{DeltaOperation, SaveMode};
use futures::StreamExt;

use super::append::{self, cores};
use super::delta;
use super::lookup::Located;
use crate::error::{KaratError, KaratResult};

/// Which stored rows a rewrite keeps (true) of a batch of the table's schema.
pub type Keep = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync>;

/// What a rewrite does to the partitions it replaces.
pub struct Rewrite {
    /// The partition values (as Delta stores them, e.g. `2026-03-28`) replaced.
    pub partitions: BTreeSet<String>,
    /// Stored rows kept.
    pub keep: Keep,
    /// Rows each partition gains (keyed by its value; every key one of `partitions`).
    pub added: BTreeMap<String, Vec<RecordBatch>>,
    /// Where the stored rows `keep` refuses are, when a lookup found them already: deletion
    /// vectors ([`super::deletion`]) then mark them without reading the files again; a
    /// rewrite reads every row anyway and has no use for them.
    pub found: Option<Vec<Located>>,
}

impl Rewrite {
    /// An error naming the table (`label`) and the partition when rows are added to a
    /// partition the rewrite does not replace (they would be written nowhere).
    pub fn check(&self, label: &str) -> KaratResult<()> {
        match self.added.keys().find(|p| !self.partitions.contains(*p)) {
            Some(stray) => Err(KaratError::Other(format!(
                "{label}: rows for partition {stray}, which this rewrite does not replace"
            ))),
            None => Ok(()),
        }
    }
}

/// Replaces `rewrite.partitions` of `table` (partitioned by `partition_by`, rows of
/// `schema`) in one commit; the new version.
pub async fn replace_partitions(
    table: DeltaTable,
    label: &str,
    schema: &SchemaRef,
    partition_by: &str,
    rewrite: Rewrite,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<i64> {
    let started = std::time::Instant::now();
    rewrite.check(label)?;
    let Rewrite {
        partitions,
        keep,
        mut added,
        found: _,
    } = rewrite;
    let removes = files_of(&table, label, partition_by, &partitions).await?;
    let todo: Vec<(String, Vec<RecordBatch>)> = partitions
        .iter()
        .map(|p| (p.clone(), added.remove(p).unwrap_or_default()))
        .collect();
    let adds = rewrite_whole(&table, label, schema, partition_by, keep, todo).await?;
    // the new files are written and no commit names them yet
    super::fault::after("delta.rewrite_files");
    let operation = replace_where(schema, partition_by, &partitions, label)?;
    let metrics = append::Metrics {
        added: &adds,
        removed_files: removes.len(),
        partitions: partitions.len(),
        started,
    };
    let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
    actions.extend(adds.iter().cloned().map(Action::Add));
    append::commit(&table, label, actions, operation, metadata, metrics).await
}

/// Rewrites `todo`'s partitions of `table` (partitioned by `partition_by`, rows of `schema`)
/// whole, committing nothing: each partition's stored rows that `keep` keeps, then the rows it
/// gains; the files written. The caller removes the partitions' files in its commit.
pub(super) async fn rewrite_whole(
    table: &DeltaTable,
    label: &str,
    schema: &SchemaRef,
    partition_by: &str,
    keep: Keep,
    mut todo: Vec<(String, Vec<RecordBatch>)>,
) -> KaratResult<Vec<Add>> {
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = delta::session();
    delta::register_table(&ctx, "t", table.clone(), label).await?;
    let job = Job {
        ctx,
        table: table.clone(),
        config: append::writer_config(table, partition_by, label)?,
        schema: schema.clone(),
        stored: table
            .snapshot()
            .map_err(|e| KaratError::delta(label, e))?
            .snapshot()
            .arrow_schema(),
        partition_by: partition_by.to_string(),
        keep,
        label: label.to_string(),
    };
    todo.reverse();
    job.run(todo).await
}

/// The files `partitions` hold now, as removals.
async fn files_of(
    table: &DeltaTable,
    label: &str,
    partition_by: &str,
    partitions: &BTreeSet<String>,
) -> KaratResult<Vec<Remove>> {
    let files = super::lookup::live_files(table, label, partition_by, Some(partitions)).await?;
    Ok(files.into_iter().map(|f| f.remove_action(true)).collect())
}

/// A replace-where of `partitions` as delta-rs records it: a `WRITE` in mode `Overwrite` with
/// the predicate `partition_by IN (…)`.
pub(super) fn replace_where(
    schema: &SchemaRef,
    partition_by: &str,
    partitions: &BTreeSet<String>,
    label: &str,
) -> KaratResult<DeltaOperation> {
    Ok(DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(vec![partition_by.to_string()]),
        predicate: Some(predicate_sql(schema, partition_by, partitions, label)?),
    })
}

/// `partition_by IN (…)` as SQL, as delta-rs records a replace-where's predicate.
fn predicate_sql(
    schema: &SchemaRef,
    partition_by: &str,
    partitions: &BTreeSet<String>,
    label: &str,
) -> KaratResult<String> {
    let dt = schema
        .field_with_name(partition_by)
        .map_err(|e| KaratError::arrow(format!("{label}: partition column"), e))?
        .data_type()
        .clone();
    let values: Vec<String> = partitions.iter().cloned().collect();
    let expr = delta::in_list(partition_by, &values, &dt)
        .map_err(|e| KaratError::sql(format!("{label}: partition predicate"), e))?;
    deltalake::delta_datafusion::expr::fmt_expr_to_sql(&expr)
        .map_err(|e| KaratError::delta(label, e))
}

/// What every partition's writer shares.
struct Job {
    ctx: SessionContext,
    table: DeltaTable,
    config: WriterConfig,
    /// The rows' schema, and the stored table's (the same columns, maybe in another order).
    schema: SchemaRef,
    stored: SchemaRef,
    partition_by: String,
    keep: Keep,
    label: String,
}

impl Job {
    /// Rewrites the partitions of `todo` (taken from its end), one task per core; the files
    /// written. A failed partition stops the others' start; what was written stays unreferenced
    /// (no commit names it) until `karat maintain` vacuums it.
    async fn run(self, mut todo: Vec<(String, Vec<RecordBatch>)>) -> KaratResult<Vec<Add>> {
        let job = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        let mut adds = Vec::new();
        let mut failed: Option<KaratError> = None;
        loop {
            while failed.is_none() && tasks.len() < cores() {
                let Some((partition, added)) = todo.pop() else {
                    break;
                };
                let job = job.clone();
                tasks.spawn(async move { job.partition(&partition, added).await });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok(Ok(written)) => adds.extend(written),
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(e) => {
                    failed.get_or_insert(KaratError::Other(format!(
                        "{}: a rewrite task failed: {e}",
                        job.label
                    )));
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(adds),
        }
    }

    /// One partition: its stored rows that are kept, then `added`, through one writer.
    async fn partition(&self, partition: &str, added: Vec<RecordBatch>) -> KaratResult<Vec<Add>> {
        let context = format!("{} partition {partition}", self.label);
        let sql = |e| KaratError::sql(format!("rewriting {context}"), e);
        let arrow = |e| KaratError::arrow(format!("rewriting {context}"), e);
        let dt = self
            .schema
            .field_with_name(&self.partition_by)
            .map_err(arrow)?
            .data_type()
            .clone();
        let only =
            delta::in_list(&self.partition_by, &[partition.to_string()], &dt).map_err(sql)?;
        let mut stored = self
            .ctx
            .table("t")
            .await
            .map_err(sql)?
            .filter(only)
            .map_err(sql)?
            .execute_stream()
            .await
            .map_err(sql)?;
        let store = self.table.log_store().object_store(None);
        let mut writer = DeltaWriter::new(store, self.config.clone());
        let written: KaratResult<()> = async {
            while let Some(b) = stored.next().await {
                let b = delta::conform(&b.map_err(sql)?, &self.schema).map_err(arrow)?;
                let kept =
                    filter_record_batch(&b, &(self.keep)(&b).map_err(arrow)?).map_err(arrow)?;
                if kept.num_rows() > 0 {
                    let kept = append::in_stored_order(&kept, &self.stored).map_err(arrow)?;
                    writer
                        .write(&kept)
                        .await
                        .map_err(|e| KaratError::delta(&context, e))?;
                }
            }
            for b in added.iter().filter(|b| b.num_rows() > 0) {
                let b = append::in_stored_order(b, &self.stored).map_err(arrow)?;
                writer
                    .write(&b)
                    .await
                    .map_err(|e| KaratError::delta(&context, e))?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer
            .close()
            .await
            .map_err(|e| KaratError::delta(&context, e))
    }
}
