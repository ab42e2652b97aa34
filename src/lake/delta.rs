//! The Delta Lake operations karat needs, on top of deltalake: open, atomic partition replace
//! (replace-where), append, registering tables in a DataFusion session, and commit history.

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::{Column as DfColumn, ScalarValue};
use deltalake::datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, DEFAULT_METADATA_CACHE_LIMIT, FileMetadataCache,
};
use deltalake::datafusion::execution::cache::default_cache::DefaultCache;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, lit};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::{SchemaMode, WriteBuilder};
use deltalake::protocol::SaveMode;
use std::sync::{Arc, OnceLock};
use url::Url;

use crate::error::{KaratError, KaratResult};

/// Lets delta-rs open Delta tables on S3, GCS and Azure (the `cloud` feature), once per process.
/// delta-rs reads the same `AWS_*` / `GOOGLE_*` / `AZURE_*` variables as the lake's own store;
/// on S3 its commits are conditional puts (If-None-Match), which the writer lease's probe has
/// checked the store honours.
#[cfg(feature = "cloud")]
pub fn register_cloud_handlers(_root: &Url) -> KaratResult<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::gcp::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
    Ok(())
}

/// Without the `cloud` feature only local lakes hold Delta tables: refuse a cloud URL up front
/// rather than land bronze and fail at the first Delta commit.
#[cfg(not(feature = "cloud"))]
pub fn register_cloud_handlers(root: &Url) -> KaratResult<()> {
    Err(KaratError::Usage(format!(
        "lake {root}: this karat was built without the `cloud` feature, so it cannot write Delta tables there (build with `cargo build --release --features cloud`)"
    )))
}

/// Opens the table at `url`; `None` when nothing has been written there yet.
pub async fn open(url: &Url, label: &str) -> KaratResult<Option<DeltaTable>> {
    if let Ok(dir) = url.to_file_path()
        && url.scheme() == "file"
        && !dir.join("_delta_log").exists()
    {
        super::snapshots::forget(url);
        return Ok(None);
    }
    if let Some(table) = super::snapshots::brought_forward(url).await {
        return Ok(Some(table));
    }
    let table = DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| KaratError::delta(label, e))?;
    if table.version().is_none() {
        return Ok(None);
    }
    super::snapshots::keep(url, &table).await;
    Ok(Some(table))
}

/// The latest version of the table at `url`, read from its log's listing without loading its
/// state (which replays the log); `None` when nothing has been written there yet.
pub async fn latest_version(url: &Url, label: &str) -> KaratResult<Option<i64>> {
    if let Ok(dir) = url.to_file_path()
        && url.scheme() == "file"
        && !dir.join("_delta_log").exists()
    {
        return Ok(None);
    }
    let table = deltalake::DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| b.build())
        .map_err(|e| KaratError::delta(label, e))?;
    match table.log_store().get_latest_version(0).await {
        Ok(v) => Ok(Some(v as i64)),
        // no version 0 to start from (an empty log folder, say): as a full open sees it
        Err(_) => Ok(open(url, label)
            .await?
            .and_then(|t| t.version())
            .map(|v| v as i64)),
    }
}

/// Restores the table at `url` to `version` (Delta RESTORE: a new commit whose files are those
/// of `version`); returns the new version.
pub async fn restore(url: &Url, label: &str, version: i64) -> KaratResult<i64> {
    let table = DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| KaratError::delta(label, e))?;
    let (table, _) = table
        .restore()
        .with_version_to_restore(version.max(0) as u64)
        .await
        .map_err(|e| KaratError::delta(label, e))?;
    Ok(table.version().unwrap_or(0) as i64)
}

/// How a write replaces existing data.
#[derive(Debug, Clone)]
pub enum Replace {
    /// Exactly the rows whose `column` is one of `values` (atomic replace-where; on a partition
    /// column whole partitions are swapped, on any other column the files holding such rows are
    /// rewritten without them).
    Matching { column: String, values: Vec<String> },
    /// The whole table.
    All,
    /// Nothing: append.
    Append,
}

/// Writes `batches` in one Delta commit and returns the new table version.
///
/// The first write creates the table (partitioned by `partition_by`). Later writes replace the
/// named partitions atomically: readers see either the old or the new partition, never half.
pub async fn write(
    url: &Url,
    label: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    partition_by: Option<&str>,
    replace: Replace,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<i64> {
    let mut table = open_for_write(url, label).await?;
    if let (Replace::Append, Some(p)) = (&replace, partition_by)
        && super::append::suits(&schema, &batches, p)
    {
        if table.version().is_none() {
            table = create(table, label, &schema, p, metadata.clone()).await?;
        }
        if super::append::table_allows(&table, &schema, p) {
            return super::append::append(table, label, batches, p, metadata).await;
        }
    }
    let exists = table.version().is_some();
    let mut batches = batches;
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema.clone()));
    }
    let target = Target {
        label,
        schema: &schema,
        partition_by,
        replace: &replace,
        exists,
    };
    let builder = target.configure(table.write(batches), metadata)?;
    let table = builder.await.map_err(|e| KaratError::delta(label, e))?;
    super::snapshots::keep(url, &table).await;
    Ok(table.version().unwrap_or(0) as i64)
}

/// Creates the table at `url` empty (schema and partitioning, no rows), as delta-rs's write
/// creates a table, so that a large first append can be encoded in parallel.
async fn create(
    table: DeltaTable,
    label: &str,
    schema: &SchemaRef,
    partition_by: &str,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<DeltaTable> {
    let target = Target {
        label,
        schema,
        partition_by: Some(partition_by),
        replace: &Replace::Append,
        exists: false,
    };
    let empty = vec![RecordBatch::new_empty(schema.clone())];
    let builder = target.configure(table.write(empty), metadata)?;
    builder.await.map_err(|e| KaratError::delta(label, e))
}

/// Like [`write`], with the rows streamed from a DataFusion plan (which may read the table
/// being replaced: it sees the version before this commit) rather than held in memory.
pub async fn write_plan(
    url: &Url,
    label: &str,
    schema: SchemaRef,
    plan: LogicalPlan,
    partition_by: Option<&str>,
    replace: Replace,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<i64> {
    let table = open_for_write(url, label).await?;
    let target = Target {
        label,
        schema: &schema,
        partition_by,
        replace: &replace,
        exists: table.version().is_some(),
    };
    // delta-rs plans the write in its own session (which has its planner for the write's
    // nodes); the plan's scans carry their tables with them
    let builder = table.write(Vec::new()).with_input_plan(plan);
    let builder = target.configure(builder, metadata)?;
    let table = builder.await.map_err(|e| KaratError::delta(label, e))?;
    super::snapshots::keep(url, &table).await;
    Ok(table.version().unwrap_or(0) as i64)
}

async fn open_for_write(url: &Url, label: &str) -> KaratResult<DeltaTable> {
    if url.scheme() == "file"
        && let Ok(dir) = url.to_file_path()
    {
        std::fs::create_dir_all(&dir).map_err(|e| KaratError::io(&dir, e))?;
    }
    if let Some(table) = super::snapshots::brought_forward(url).await {
        return Ok(table);
    }
    let table = DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| KaratError::delta(label, e))?;
    if table.version().is_some() {
        super::snapshots::keep(url, &table).await;
    }
    Ok(table)
}

/// Commits between checkpoints of the tables karat creates (`delta.checkpointInterval`, as
/// Delta Lake's own default; delta-rs's is 100). Opening a table replays every JSON commit
/// since its last checkpoint, and every run opens each table several times: with a checkpoint
/// every 10 commits, what a daily run reads of a table's log stays flat as its history grows.
/// The same tables turn off delta-rs's cleanup of expired commits
/// (`delta.enableExpiredLogCleanup`), which after every commit deletes the JSON commits older
/// than 30 days below the last checkpoint: every version stays readable (time travel, restore,
/// `karat diff --replay`) until `karat maintain` vacuums its files.
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// Where and how a write lands.
struct Target<'a> {
    label: &'a str,
    schema: &'a SchemaRef,
    partition_by: Option<&'a str>,
    replace: &'a Replace,
    exists: bool,
}

impl Target<'_> {
    fn configure(
        &self,
        builder: WriteBuilder,
        metadata: Vec<(String, serde_json::Value)>,
    ) -> KaratResult<WriteBuilder> {
        let label = self.label;
        let mut builder = builder
            .with_table_name(label)
            .with_writer_properties(super::encoding::writer_properties(self.schema))
            .with_commit_properties(CommitProperties::default().with_metadata(metadata));
        if let Some(p) = self.partition_by {
            builder = builder.with_partition_columns([p.to_string()]);
        }
        if !self.exists {
            builder = builder.with_configuration([
                (
                    "delta.checkpointInterval",
                    Some(CHECKPOINT_INTERVAL.to_string()),
                ),
                ("delta.enableExpiredLogCleanup", Some("false".to_string())),
            ]);
        }
        Ok(match (self.replace, self.exists) {
            (_, false) => builder.with_save_mode(SaveMode::Append),
            // a contract that gained a column appends rows the table has no column for yet
            (Replace::Append, true) => builder
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge),
            (Replace::All, true) => builder
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(SchemaMode::Overwrite),
            (Replace::Matching { column, values }, true) => {
                let dt = self
                    .schema
                    .field_with_name(column)
                    .map_err(|e| {
                        KaratError::arrow(format!("{label}: partition column {column}"), e)
                    })?
                    .data_type()
                    .clone();
                let predicate = in_list(column, values, &dt)
                    .map_err(|e| KaratError::sql(format!("{label}: partition predicate"), e))?;
                builder
                    .with_save_mode(SaveMode::Overwrite)
                    .with_schema_mode(SchemaMode::Merge)
                    .with_replace_where(predicate)
            }
        })
    }
}

/// `column IN (values…)` with each value parsed as the column's type.
pub fn in_list(
    column: &str,
    values: &[String],
    dt: &DataType,
) -> deltalake::datafusion::error::Result<Expr> {
    let col = Expr::Column(DfColumn::new_unqualified(column));
    if values.is_empty() {
        return Ok(lit(false));
    }
    let lits = values
        .iter()
        .map(|v| ScalarValue::try_from_string(v.clone(), dt).map(lit))
        .collect::<deltalake::datafusion::error::Result<Vec<_>>>()?;
    Ok(col.in_list(lits, false))
}

/// Casts a scanned batch onto `schema` (scans of Delta tables yield view types, e.g. Utf8View,
/// where karat's schemas say Utf8).
pub fn conform(
    b: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            let c = b.column_by_name(f.name()).ok_or_else(|| {
                deltalake::arrow::error::ArrowError::SchemaError(format!(
                    "column {} is missing",
                    f.name()
                ))
            })?;
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                deltalake::arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), cols)
}

/// Registers the table at `url` as `name` in `ctx`. Returns false when the table does not exist.
pub async fn register(ctx: &SessionContext, name: &str, url: &Url) -> KaratResult<bool> {
    register_as(ctx, name, url, name).await
}

/// [`register`], naming the table `label` in errors (its folder, not its alias in a query).
pub async fn register_as(
    ctx: &SessionContext,
    name: &str,
    url: &Url,
    label: &str,
) -> KaratResult<bool> {
    let Some(table) = open(url, label).await? else {
        return Ok(false);
    };
    register_table(ctx, name, table, label).await?;
    Ok(true)
}

/// Registers an opened table as `name` in `ctx`, read through its own table provider (`label`
/// in errors).
pub(crate) async fn register_table(
    ctx: &SessionContext,
    name: &str,
    table: DeltaTable,
    label: &str,
) -> KaratResult<()> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| KaratError::delta(label, e))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| KaratError::sql(format!("table {label}"), e))?;
    ctx.register_table(name, provider)
        .map_err(|e| KaratError::sql(format!("registering table {label}"), e))?;
    Ok(())
}

/// Registers the table at `url` (`label` in errors) as of `version` (Delta time travel) as `name`
/// in `ctx`. Returns false when there is no such version (`None`, or no table yet).
pub async fn register_at(
    ctx: &SessionContext,
    name: &str,
    url: &Url,
    label: &str,
    version: Option<i64>,
) -> KaratResult<bool> {
    let Some(v) = version.and_then(|v| u64::try_from(v).ok()) else {
        return Ok(false);
    };
    if open(url, label).await?.is_none() {
        return Ok(false);
    }
    let table = deltalake::open_table_with_version(url.clone(), v)
        .await
        .map_err(|e| KaratError::delta(format!("{label} at version {v}"), e))?;
    register_table(ctx, name, table, &format!("{label} at version {v}")).await?;
    Ok(true)
}

/// A DataFusion session configured for karat (both cores, UTC), sharing the process's cache
/// of Parquet footers ([`footer_cache`]).
pub fn session() -> SessionContext {
    let config = deltalake::datafusion::prelude::SessionConfig::new()
        .with_target_partitions(super::append::cores())
        .with_information_schema(false);
    let caches = CacheManagerConfig::default()
        .with_file_metadata_cache(Some(footer_cache()))
        .with_metadata_cache_limit(FOOTER_CACHE_BYTES);
    match RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .build_arc()
    {
        Ok(runtime) => SessionContext::new_with_config_rt(config, runtime),
        // building a runtime of default parts does not fail (DataFusion's own default session
        // unwraps it); if it did, a session without the shared cache
        Err(_) => SessionContext::new_with_config(config),
    }
}

/// Bytes of Parquet footers the process keeps ([`footer_cache`]): DataFusion's own limit for
/// one session's, which each session had before they shared one.
const FOOTER_CACHE_BYTES: usize = DEFAULT_METADATA_CACHE_LIMIT;

/// The Parquet footers DataFusion read, shared by every session of the process. A run scans
/// the same files in several queries (the partitions of its batches, the partition counts, the
/// accounting), each from a session of its own: without it each query read and decoded every
/// footer again (on day 30 of the 30 × 100k bench, the accounting's reads of files went from
/// 707 to 335; on an object store each is a request). Entries are by the file's path in its
/// store (not its bucket) and checked by size alone (delta-rs gives no modification time):
/// what makes that safe is Delta's own rule, data files have fresh UUID names and are never
/// written again in place. Least recently used entries go first. The key lookup's own readers
/// keep their footers in [`super::footers`] (by table address and size); a footer both read is
/// held twice, and the two could be one cache.
fn footer_cache() -> Arc<FileMetadataCache> {
    static CACHE: OnceLock<Arc<FileMetadataCache>> = OnceLock::new();
    CACHE
        .get_or_init(|| Arc::new(DefaultCache::new(FOOTER_CACHE_BYTES).with_name("karat footers")))
        .clone()
}

/// What karat lets SQL do: read. No DDL (CREATE, external tables), no DML (INSERT, COPY),
/// no statements (SET), whoever wrote the query.
pub fn read_only() -> deltalake::datafusion::execution::context::SQLOptions {
    deltalake::datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Runs a read-only query and collects its batches.
pub async fn query(
    ctx: &SessionContext,
    sql: &str,
    context: &str,
) -> KaratResult<Vec<RecordBatch>> {
    let df = read_only_frame(ctx, sql, context).await?;
    df.collect()
        .await
        .map_err(|e| KaratError::sql(context.to_string(), e))
}

/// Runs a read-only query as a stream of batches, for results too large to collect.
pub async fn query_stream(
    ctx: &SessionContext,
    sql: &str,
    context: &str,
) -> KaratResult<deltalake::datafusion::execution::SendableRecordBatchStream> {
    let df = read_only_frame(ctx, sql, context).await?;
    df.execute_stream()
        .await
        .map_err(|e| KaratError::sql(context.to_string(), e))
}

/// Plans a query under [`read_only`].
async fn read_only_frame(
    ctx: &SessionContext,
    sql: &str,
    context: &str,
) -> KaratResult<deltalake::datafusion::dataframe::DataFrame> {
    ctx.sql_with_options(sql, read_only())
        .await
        .map_err(|e| KaratError::sql(context.to_string(), e))
}

fn quoted(side: &str, col: &str) -> String {
    format!("{side}.\"{}\"", col.replace('"', "\"\""))
}

/// Column `col` of relation `side` as text for showing: lists joined with `, `.
pub fn shown(side: &str, col: &str, schema: &Schema) -> String {
    let c = quoted(side, col);
    match schema.field_with_name(col).map(|f| f.data_type()) {
        Ok(DataType::List(_) | DataType::LargeList(_)) => format!("array_to_string({c}, ', ')"),
        _ => format!("CAST({c} AS VARCHAR)"),
    }
}

/// Column `col` of relation `side` for comparing with the same column of a relation shaped like
/// `target`: lists as text (joined with a separator no value holds), a type that differs from
/// the target's cast to it (so a retyped column compares by value), the rest as it is.
pub fn comparable(side: &str, col: &str, schema: &Schema, target: &Schema) -> String {
    let c = quoted(side, col);
    let ty = schema.field_with_name(col).map(|f| f.data_type().clone());
    let want = target.field_with_name(col).map(|f| f.data_type().clone());
    match (ty, want) {
        (Ok(DataType::List(_) | DataType::LargeList(_)), _) => {
            format!("array_to_string({c}, '\u{1f}')")
        }
        (Ok(t), Ok(w)) if t != w => format!("arrow_cast({c}, '{w}')"),
        _ => c,
    }
}

/// Rows of registered table `a` that `b` does not hold, as multisets over `cols` (each copy of
/// a row counts: DataFusion's `EXCEPT ALL` alone drops every copy `b` holds once, so copies are
/// numbered first), columns compared as shaped like `target`.
pub async fn count_except_all(
    ctx: &SessionContext,
    (a, sa): (&str, &Schema),
    (b, sb): (&str, &Schema),
    cols: &[String],
    target: &Schema,
    context: &str,
) -> KaratResult<u64> {
    let names: Vec<String> = cols
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect();
    let numbered = |side: &str, schema: &Schema| {
        let exprs: Vec<String> = cols
            .iter()
            .zip(&names)
            .map(|(c, n)| format!("{} AS {n}", comparable(side, c, schema, target)))
            .collect();
        let by = if names.is_empty() {
            String::new()
        } else {
            format!("PARTITION BY {}", names.join(", "))
        };
        format!(
            "SELECT *, ROW_NUMBER() OVER ({by}) AS \"__karat_copy\" FROM (SELECT {} FROM {side})",
            if exprs.is_empty() {
                "1 AS \"__karat_row\"".to_string()
            } else {
                exprs.join(", ")
            }
        )
    };
    let sql = format!(
        "SELECT COUNT(*) FROM ({} EXCEPT ALL {})",
        numbered(a, sa),
        numbered(b, sb)
    );
    Ok(first_u64(&query(ctx, &sql, context).await?).unwrap_or(0))
}

/// The arrow schema of the table registered as `name` (`label` in errors).
pub async fn schema_of(ctx: &SessionContext, name: &str, label: &str) -> KaratResult<Schema> {
    let t = ctx
        .table(name)
        .await
        .map_err(|e| KaratError::sql(format!("table {label}"), e))?;
    Ok(t.schema().as_arrow().clone())
}

/// The first column of the first row of a query result as a count (`COUNT(*)`), if any.
pub fn first_u64(batches: &[RecordBatch]) -> Option<u64> {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::Int64Type;
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let c = deltalake::arrow::compute::cast(b.column(0), &DataType::Int64).ok()?;
    let v = c.as_primitive::<Int64Type>().value(0);
    u64::try_from(v).ok()
}

/// A query result column as plain Utf8 (scans yield Utf8View, SQL casts may too).
pub fn utf8(a: &deltalake::arrow::array::ArrayRef) -> deltalake::arrow::array::StringArray {
    use deltalake::arrow::array::AsArray;
    let c =
        deltalake::arrow::compute::cast(a, &DataType::Utf8).expect("every column casts to Utf8");
    c.as_string::<i32>().clone()
}

/// A query result column of string lists as `List<Utf8>`.
pub fn utf8_list(a: &deltalake::arrow::array::ArrayRef) -> deltalake::arrow::array::ListArray {
    use deltalake::arrow::array::AsArray;
    let target = DataType::List(std::sync::Arc::new(
        deltalake::arrow::datatypes::Field::new("item", DataType::Utf8, true),
    ));
    let c = deltalake::arrow::compute::cast(a, &target).expect("string lists cast to List<Utf8>");
    c.as_list::<i32>().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    use deltalake::arrow::array::{ArrayRef, AsArray, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{Field, Int64Type};
    use deltalake::datafusion::datasource::MemTable;

    fn table(ctx: &SessionContext, name: &str, schema: SchemaRef, cols: Vec<ArrayRef>) {
        let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let t = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table(name, Arc::new(t)).unwrap();
    }

    #[tokio::test]
    async fn every_copy_of_a_row_counts_and_a_retyped_column_compares_by_value() {
        let ctx = session();
        let text = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let k = |v: &[&str]| -> Vec<ArrayRef> { vec![Arc::new(StringArray::from(v.to_vec()))] };
        table(&ctx, "two", text.clone(), k(&["r", "r", "s"]));
        table(&ctx, "one", text.clone(), k(&["r", "s"]));
        let cols = vec!["k".to_string()];
        let n = |a, b| {
            let (ctx, cols, text) = (ctx.clone(), cols.clone(), text.clone());
            async move {
                count_except_all(&ctx, (a, &text), (b, &text), &cols, &text, "test")
                    .await
                    .unwrap()
            }
        };
        assert_eq!(n("two", "one").await, 1, "the second r is only on the left");
        assert_eq!(n("one", "two").await, 0);
        // the same values as int64 and as text: equal once cast to the target's type
        let ints = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        table(
            &ctx,
            "i",
            ints.clone(),
            vec![Arc::new(Int64Array::from(vec![5, 7]))],
        );
        table(&ctx, "t", text.clone(), k(&["5", "7"]));
        let d = count_except_all(&ctx, ("i", &ints), ("t", &text), &cols, &text, "test")
            .await
            .unwrap();
        assert_eq!(d, 0);
    }

    #[tokio::test]
    async fn a_footer_read_by_one_session_serves_the_next_and_later_versions_read_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path().join("t")).unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let rows = |v: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(v)) as ArrayRef],
            )
            .unwrap()
        };
        let write = |v: Vec<i64>, replace: Replace| {
            let (url, schema, batch) = (url.clone(), schema.clone(), rows(v));
            async move {
                write(&url, "t", schema, vec![batch], None, replace, Vec::new())
                    .await
                    .unwrap()
            }
        };
        let sum = || {
            let url = url.clone();
            async move {
                let ctx = session();
                assert!(register(&ctx, "t", &url).await.unwrap());
                let out = query(&ctx, "SELECT SUM(n) FROM t", "test").await.unwrap();
                out[0].column(0).as_primitive::<Int64Type>().value(0)
            }
        };
        write(vec![1, 2], Replace::Append).await;
        assert_eq!(sum().await, 3);
        // a second session finds the first one's footer (other tests share the cache: this
        // table's file is looked for by its path)
        let fresh = session();
        let cache = fresh.runtime_env().cache_manager.get_file_metadata_cache();
        let folder = dir
            .path()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        assert!(
            cache
                .list_entries()
                .keys()
                .any(|k| k.as_ref().contains(folder.as_str())),
            "the footer read before is cached for every session"
        );
        write(vec![10], Replace::All).await;
        assert_eq!(
            sum().await,
            10,
            "the overwrite's file is read, not the first's footer"
        );
        write(vec![5], Replace::Append).await;
        assert_eq!(sum().await, 15);
    }
}
