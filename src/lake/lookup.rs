//! Finding stored rows of a partitioned Delta table by some of their columns (a table's key),
//! from its files themselves, so that each row found has a place: a file and a row of it.
//!
//! A daily run looks a few keys up among every row a table holds. Through a query a row found
//! is a value without a place: deleting it means reading its partition's files again, and
//! taking its other columns a second scan of every column. Here each file's reader decides on
//! the key columns alone (a parquet row filter) and decodes the other columns of the rows it
//! wants only, with their row numbers; rows the file's deletion vector deletes are passed
//! over. The same positions are what a deletion vector then marks ([`super::deletion`]).
//!
//! Only plain tables are read this way (those [`super::append::table_allows`]): a file's
//! columns are then the table's columns, by name, with the partition value beside the file.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, StringArray, new_null_array,
};
use deltalake::arrow::compute::{cast, filter, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use deltalake::kernel::LogicalFileView;
use deltalake::logstore::parquet_reader::ParquetObjectReader;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions, RowFilter};
use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::PageIndexPolicy;
use futures::{StreamExt, TryStreamExt};

use super::append::cores;
use super::{delta, footers, vectors};
use crate::error::{KaratError, KaratResult};

/// The row number column a file's reader adds (a parquet virtual column).
const ROW_NUMBER: &str = "_karat_row_number";

/// Rows a file's reader decides on at a time (the row filter runs once per batch).
const BATCH_ROWS: usize = 8192;

/// Bytes read from a file's end for its footer: enough for karat's footers in one read (the
/// last eight bytes say how long the footer is; without a hint they are a read of their own).
const FOOTER_HINT: usize = 64 << 10;

/// A file reader's options: rows numbered ([`ROW_NUMBER`], parquet's `RowNumber` virtual
/// column, named by its extension type since neither the type nor arrow's metadata keys are
/// re-exported), no page index.
pub(super) fn numbered() -> Result<ArrowReaderOptions, ParquetError> {
    let number = Field::new(ROW_NUMBER, DataType::Int64, false).with_metadata(HashMap::from([
        (
            "ARROW:extension:name".to_string(),
            "parquet.virtual.row_number".to_string(),
        ),
        ("ARROW:extension:metadata".to_string(), String::new()),
    ]));
    ArrowReaderOptions::new()
        .with_page_index_policy(PageIndexPolicy::Skip)
        .with_virtual_columns(vec![Arc::new(number)])
}

/// Which rows of a batch (holding at least the columns read) are wanted (true).
pub type Wanted = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync>;

/// Rows of one file.
#[derive(Clone)]
pub struct Located {
    pub file: LogicalFileView,
    /// The file's partition value as Delta stores it (None: null).
    pub partition: Option<String>,
    /// Rows of the file (physical, from 0), ascending.
    pub rows: Vec<u64>,
}

impl std::fmt::Debug for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Located")
            .field("file", &self.file.path())
            .field("partition", &self.partition)
            .field("rows", &self.rows)
            .finish()
    }
}

/// The rows found in one file, and the columns read of them.
#[derive(Debug, Clone)]
pub struct Found {
    pub at: Located,
    pub values: RecordBatch,
}

/// What reading files for some columns shares.
pub struct Reading {
    pub table: DeltaTable,
    /// The table's schema (a file may store a column under another type of the same kind).
    pub schema: SchemaRef,
    pub partition_by: String,
    pub label: String,
}

impl Reading {
    /// A reading of `table` as it is: its own schema, and its partition column when it is
    /// plain ([`super::append::plain`]) and partitioned by one column; `None` otherwise.
    pub fn of_table(table: DeltaTable, label: &str) -> Option<Reading> {
        if !super::append::plain(&table) {
            return None;
        }
        let snapshot = table.snapshot().ok()?.snapshot().clone();
        let columns = snapshot.metadata().partition_columns();
        let [partition_by] = columns else {
            return None;
        };
        Some(Reading {
            partition_by: partition_by.clone(),
            schema: snapshot.arrow_schema(),
            table,
            label: label.to_string(),
        })
    }

    /// Every live file of the table, or of `partitions` of it.
    pub async fn files(
        &self,
        partitions: Option<&BTreeSet<String>>,
    ) -> KaratResult<Vec<LogicalFileView>> {
        live_files(&self.table, &self.label, &self.partition_by, partitions).await
    }

    /// The live files of the table named (their last path part) in `names`.
    pub async fn files_named(&self, names: &BTreeSet<String>) -> KaratResult<Vec<LogicalFileView>> {
        Ok(self
            .files(None)
            .await?
            .into_iter()
            .filter(|f| names.contains(file_name(&f.path())))
            .collect())
    }

    /// The partition value of `file`, as Delta stores it.
    pub fn partition_of(&self, file: &LogicalFileView) -> Option<String> {
        partition_value(file, &self.partition_by)
    }

    /// The rows `wanted` of `files` (but those already deleted), with the columns `keys`
    /// that `wanted` looks at, or whole (the table's schema, partition column included) with
    /// `whole`; a file with none is left out. Files are read a task per core.
    pub async fn find(
        self: &Arc<Self>,
        files: Vec<LogicalFileView>,
        keys: &[String],
        wanted: Wanted,
        whole: bool,
    ) -> KaratResult<Vec<Found>> {
        let deleted = self.deleted().await?;
        self.find_deleting(files, deleted, keys, wanted, whole)
            .await
    }

    /// [`Reading::find`] with the rows each file's deletion vector deletes, by file name, as
    /// [`Reading::deleted`] read them.
    pub async fn find_deleting(
        self: &Arc<Self>,
        files: Vec<LogicalFileView>,
        mut deleted: vectors::Deleted,
        keys: &[String],
        wanted: Wanted,
        whole: bool,
    ) -> KaratResult<Vec<Found>> {
        let keys: Arc<[String]> = keys.into();
        // the largest files first, so that the last reads are short ones
        let mut files: Vec<(usize, LogicalFileView)> = files.into_iter().enumerate().collect();
        files.sort_by_key(|(_, f)| std::cmp::Reverse(f.size()));
        let todo: Vec<_> = files
            .into_iter()
            .map(|(at, f)| {
                let gone = deleted.remove(file_name(&f.path())).unwrap_or_default();
                let job = self.clone();
                let wanted = wanted.clone();
                let keys = keys.clone();
                let label = self.label.clone();
                // a task of its own, so that files are decoded on every core (the futures of
                // one stream take turns on one)
                async move {
                    let read = async move { job.find_in(f, &keys, wanted, whole, &gone).await };
                    let found = Spawned(tokio::spawn(read))
                        .await
                        .map_err(|e| KaratError::Other(format!("reading {label}: {e}")))??;
                    Ok::<_, KaratError>((at, found))
                }
            })
            .collect();
        // unordered: a read that ends early makes room for the next at once (in order, it
        // would wait for those before it, and a core would idle)
        let mut found: Vec<(usize, Option<Found>)> = futures::stream::iter(todo)
            .buffer_unordered(cores())
            .try_collect()
            .await?;
        found.sort_unstable_by_key(|(at, _)| *at);
        Ok(found.into_iter().filter_map(|(_, f)| f).collect())
    }

    /// One file's rows `wanted` but not `gone` (ascending), as [`Reading::find`] has them.
    async fn find_in(
        self: Arc<Self>,
        file: LogicalFileView,
        keys: &[String],
        wanted: Wanted,
        whole: bool,
        gone: &[u64],
    ) -> KaratResult<Option<Found>> {
        let context = format!("{} file {}", self.label, file.path());
        let arrow = |e| KaratError::arrow(format!("reading {context}"), e);
        let builder = self.builder(&file).await?;
        let schema = builder.parquet_schema();
        let decide = ProjectionMask::columns(schema, keys.iter().map(String::as_str));
        let project = if whole {
            ProjectionMask::all()
        } else {
            decide.clone()
        };
        let me = self.clone();
        let predicate = ArrowPredicateFn::new(decide, move |b: RecordBatch| wanted(&me.typed(&b)?));
        let mut stream = builder
            .with_projection(project)
            .with_batch_size(BATCH_ROWS)
            .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
            .build()
            .map_err(|e| parquet_error(&context, e))?;
        let gone: BTreeSet<u64> = gone.iter().copied().collect();
        let mut rows = Vec::new();
        let mut picked = Vec::new();
        while let Some(b) = stream.next().await {
            let b = self
                .typed(&b.map_err(|e| parquet_error(&context, e))?)
                .map_err(arrow)?;
            let numbers = b
                .column_by_name(ROW_NUMBER)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| KaratError::Other(format!("reading {context}: no row numbers")))?
                .clone();
            let keep: BooleanArray = numbers
                .iter()
                .map(|n| n.map(|n| !gone.contains(&(n as u64))))
                .collect();
            let b = filter_record_batch(&b, &keep).map_err(arrow)?;
            let numbers = filter(&numbers, &keep).map_err(arrow)?;
            rows.extend(
                numbers
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|n| *n as u64),
            );
            let at = b.schema().index_of(ROW_NUMBER).map_err(arrow)?;
            let mut b = b;
            b.remove_column(at);
            if b.num_rows() > 0 {
                picked.push(if whole {
                    self.whole(&b, self.partition_of(&file).as_deref())
                        .map_err(arrow)?
                } else {
                    b
                });
            }
        }
        let Some(first) = picked.first() else {
            return Ok(None);
        };
        let values =
            deltalake::arrow::compute::concat_batches(&first.schema(), &picked).map_err(arrow)?;
        let partition = self.partition_of(&file);
        Ok(Some(Found {
            at: Located {
                file,
                partition,
                rows,
            },
            values,
        }))
    }

    /// A reader of `file` that numbers its rows ([`ROW_NUMBER`]), its footer read once a
    /// process ([`footers`]). Page indexes are not read: fetching page by page was slower than
    /// whole column chunks (measured on the daily benches).
    async fn builder(
        &self,
        file: &LogicalFileView,
    ) -> KaratResult<ParquetRecordBatchStreamBuilder<ParquetObjectReader>> {
        let context = format!("{} file {}", self.label, file.path());
        let store = self.table.log_store().object_store(None);
        let reader = ParquetObjectReader::new(store, file.object_store_path())
            .with_file_size(file.size() as u64);
        let options = numbered().map_err(|e| parquet_error(&context, e))?;
        let key = footers::FileKey {
            url: format!("{}{}", self.table.table_url(), file.path()),
            size: file.size() as u64,
        };
        let mut reader = reader.with_footer_size_hint(FOOTER_HINT);
        let metadata = footers::load(&key, &mut reader, options)
            .await
            .map_err(|e| parquet_error(&context, e))?;
        Ok(ParquetRecordBatchStreamBuilder::new_with_metadata(
            reader, metadata,
        ))
    }

    /// `b`'s columns as the table's schema types them.
    fn typed(&self, b: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let fields: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| {
                self.schema
                    .field_with_name(f.name())
                    .map(|t| Arc::new(t.clone()))
                    .unwrap_or_else(|_| f.clone())
            })
            .collect();
        let columns = b
            .columns()
            .iter()
            .zip(&fields)
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast(c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }

    /// A file's batch (every stored column) as rows of the table: its columns in the table's
    /// order, the partition column from the file's partition value, and a column the table
    /// gained after the file was written null, as Delta reads it.
    fn whole(&self, b: &RecordBatch, partition: Option<&str>) -> Result<RecordBatch, ArrowError> {
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == &self.partition_by {
                    return partition_column(partition, f.data_type(), b.num_rows());
                }
                match b.column_by_name(f.name()) {
                    Some(c) => Ok(c.clone()),
                    None if f.is_nullable() => Ok(new_null_array(f.data_type(), b.num_rows())),
                    None => Err(ArrowError::SchemaError(format!(
                        "column {} is not in the file",
                        f.name()
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// The rows each file's current deletion vector deletes, by file name (names are unique in
    /// a table: delta-rs names a file by a fresh UUID): as kept when this process read every
    /// one of the vectors before ([`vectors`]), else read now.
    pub async fn deleted(&self) -> KaratResult<vectors::Deleted> {
        let root = self.table.table_url().to_string();
        let files: Vec<(String, vectors::VectorKey)> = self
            .files(None)
            .await?
            .iter()
            .filter_map(|f| Some((file_name(&f.path()).to_string(), vectors::VectorKey::of(f)?)))
            .collect();
        if let Some(kept) = vectors::kept(&root, &files) {
            return Ok(kept);
        }
        Ok(vectors::keep(&root, &files, self.read_deleted().await?))
    }

    /// What [`Reading::deleted`] reads: every vector of the table, by file URL.
    async fn read_deleted(&self) -> KaratResult<HashMap<String, Vec<u64>>> {
        let label = &self.label;
        let err = |e| KaratError::sql(format!("{label}: reading deletion vectors"), e);
        let ctx = delta::session();
        self.table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| KaratError::delta(label, e))?;
        let snapshot = self
            .table
            .snapshot()
            .map_err(|e| KaratError::delta(label, e))?
            .snapshot()
            .clone();
        let scan = DeltaScanNext::new(snapshot, DeltaScanConfig::default()).map_err(err)?;
        let vectors = scan.deletion_vectors(&ctx.state()).await.map_err(err)?;
        Ok(vectors
            .into_iter()
            .map(|v| {
                let rows = v
                    .keep_mask
                    .iter()
                    .enumerate()
                    .filter(|(_, keep)| !**keep)
                    .map(|(i, _)| i as u64)
                    .collect();
                (v.filepath.to_string(), rows)
            })
            .collect())
    }
}

/// A spawned read, aborted when dropped: a lookup that fails, or is dropped, stops the reads
/// it started.
struct Spawned<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for Spawned<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Every live file of `table` (partitioned by `partition_by`), or of `partitions` of it.
pub async fn live_files(
    table: &DeltaTable,
    label: &str,
    partition_by: &str,
    partitions: Option<&BTreeSet<String>>,
) -> KaratResult<Vec<LogicalFileView>> {
    let err = |e| KaratError::delta(label, e);
    let state = table.snapshot().map_err(err)?;
    let store = table.log_store();
    let files: Vec<LogicalFileView> = state
        .snapshot()
        .file_views(store.as_ref(), None)
        .try_collect()
        .await
        .map_err(err)?;
    Ok(files
        .into_iter()
        .filter(|f| {
            partitions
                .is_none_or(|ps| partition_value(f, partition_by).is_some_and(|v| ps.contains(&v)))
        })
        .collect())
}

/// The value of `file`'s partition column `partition_by`, as Delta stores it.
fn partition_value(file: &LogicalFileView, partition_by: &str) -> Option<String> {
    file.partition_values_map()
        .get(partition_by)
        .cloned()
        .flatten()
}

/// The names of `files` ([`file_name`]).
pub fn names(files: &[LogicalFileView]) -> BTreeSet<String> {
    files
        .iter()
        .map(|f| file_name(&f.path()).to_string())
        .collect()
}

/// The name of a file (the last part of its path).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A column of `n` rows of one partition value, typed as the table types it.
fn partition_column(value: Option<&str>, dt: &DataType, n: usize) -> Result<ArrayRef, ArrowError> {
    match value {
        None => Ok(new_null_array(dt, n)),
        Some(v) => cast(&StringArray::from(vec![v; n]), dt),
    }
}

fn parquet_error(context: &str, e: impl std::fmt::Display) -> KaratError {
    KaratError::Other(format!("reading {context}: {e}"))
}
