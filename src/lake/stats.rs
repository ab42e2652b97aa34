//! What a table's Delta log says about its data without reading it: row and null counts, and
//! the largest value of a column (in all, or per partition) from its files' statistics.
//!
//! A file's statistics describe the rows it was written with. Once a deletion vector deletes
//! some of them (a silver table with `deletion_vectors = true`), a maximum may be a deleted
//! row's: the largest values are then read from the table itself (a query, which leaves the
//! deleted rows out), row counts subtract each vector's cardinality, and the nulls of such a
//! file are counted by reading that one column of it.

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, make_array,
};
use deltalake::arrow::buffer::NullBuffer;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use url::Url;

use super::{delta, lookup};
use crate::error::{KaratError, KaratResult};

/// A table and its live files, one row each, with their statistics, partition values and
/// deletion vectors (read by [`column_at`] as `num_records`, `null_count.<col>`, `max.<col>`,
/// `partition.<col>`, `deletion_vector.cardinality`).
struct Files {
    table: DeltaTable,
    actions: RecordBatch,
    /// Rows its deletion vectors delete.
    deleted: i64,
}

impl Files {
    /// `None` without a table.
    async fn of(url: &Url, label: &str) -> KaratResult<Option<Files>> {
        let Some(table) = delta::open(url, label).await? else {
            return Ok(None);
        };
        let err = |e| KaratError::delta(label, e);
        let actions = table
            .snapshot()
            .and_then(|s| s.add_actions_table(false))
            .map_err(err)?;
        let deleted =
            int64(&actions, "deletion_vector.cardinality").map_or(0, |d| d.iter().flatten().sum());
        Ok(Some(Files {
            table,
            actions,
            deleted,
        }))
    }

    /// Column `name` of the files' table as text, if it has one.
    fn text(&self, name: &str, label: &str) -> KaratResult<Option<StringArray>> {
        column_at(&self.actions, name)
            .map(|c| as_text(&c, &format!("{label}: {name}")))
            .transpose()
    }

    /// A query over the table (as `t`) whose last column is a value and whose first, when it
    /// has two, a partition: (partition, value) as text, rows with a null value left out.
    async fn query(&self, sql: &str, label: &str) -> KaratResult<Vec<(Option<String>, String)>> {
        let ctx = delta::session();
        delta::register_table(&ctx, "t", self.table.clone(), label).await?;
        let rows = delta::query(&ctx, sql, &format!("largest values of {label}")).await?;
        let mut out = Vec::new();
        for b in &rows {
            let last = b.num_columns() - 1;
            let values = as_text(b.column(last), label)?;
            let parts = match last {
                0 => None,
                _ => Some(as_text(b.column(0), label)?),
            };
            for i in (0..b.num_rows()).filter(|i| values.is_valid(*i)) {
                let part = parts
                    .as_ref()
                    .and_then(|p| p.is_valid(i).then(|| p.value(i).to_string()));
                out.push((part, values.value(i).to_string()));
            }
        }
        Ok(out)
    }
}

/// A column as text, as a date or timestamp is shown (`2026-03-28`, `2026-03-28T10:00:00Z`).
fn as_text(c: &ArrayRef, context: &str) -> KaratResult<StringArray> {
    let t = deltalake::arrow::compute::cast(c, &DataType::Utf8)
        .map_err(|e| KaratError::arrow(context.to_string(), e))?;
    Ok(t.as_string::<i32>().clone())
}

/// `name` quoted as a SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Row and null counts of a table's live rows, from its files' Delta statistics ([`stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableStats {
    pub rows: i64,
    pub files: usize,
    /// Column → nulls, for the columns whose statistics every file carries.
    pub nulls: BTreeMap<String, i64>,
}

/// The statistics of the table at `url`; `None` when nothing has been written there yet. Rows
/// deleted by deletion vectors are not counted, nor are their nulls: a file's statistics are
/// those it was written with, so the nulls of a file that a vector has since shrunk are
/// counted among its live rows by reading that column of it ([`live_nulls`]).
pub async fn stats(url: &Url, label: &str) -> KaratResult<Option<TableStats>> {
    let Some(files) = Files::of(url, label).await? else {
        return Ok(None);
    };
    let actions = &files.actions;
    let sum = |name: &str| -> Option<i64> {
        let c = int64(actions, name)?;
        (c.null_count() == 0).then(|| c.iter().flatten().sum())
    };
    let mut out = TableStats {
        rows: sum("num_records").unwrap_or(0) - files.deleted,
        files: actions.num_rows(),
        nulls: Default::default(),
    };
    let columns = actions
        .column_by_name("null_count")
        .and_then(|c| c.as_struct_opt())
        .map(|c| c.column_names().iter().map(|n| n.to_string()).collect())
        .unwrap_or_else(Vec::<String>::new);
    for column in columns {
        if let Some(n) = live_nulls(&files, &column, label).await? {
            out.nulls.insert(column, n);
        }
    }
    Ok(Some(out))
}

/// The nulls of each of `columns` among the live rows of the table at `url`, as [`stats`]
/// counts them; a column without a figure (a file lacks its statistics) is left out, as is
/// every column without a table.
pub async fn nulls_of(
    url: &Url,
    label: &str,
    columns: &[String],
) -> KaratResult<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    let Some(files) = Files::of(url, label).await? else {
        return Ok(out);
    };
    for column in columns {
        if let Some(n) = live_nulls(&files, column, label).await? {
            out.insert(column.clone(), n);
        }
    }
    Ok(out)
}

/// The nulls of `column` among the table's live rows: the files' statistics, but for a file
/// holding nulls whose deletion vector deletes rows, its nulls counted by reading the column
/// with the vector applied. `None` when a file lacks the statistics, or such files cannot be
/// read (not a plain table): no figure rather than one that may count deleted rows.
async fn live_nulls(files: &Files, column: &str, label: &str) -> KaratResult<Option<i64>> {
    let actions = &files.actions;
    let Some(nulls) = int64(actions, &format!("null_count.{column}")) else {
        return Ok(None);
    };
    if nulls.null_count() > 0 {
        return Ok(None);
    }
    let deleted = int64(actions, "deletion_vector.cardinality");
    let shrunk = |i: usize| {
        deleted
            .as_ref()
            .is_some_and(|d| d.is_valid(i) && d.value(i) > 0)
    };
    let paths = files.text("path", label)?;
    let mut exact = 0;
    let mut to_read = BTreeSet::new();
    for (i, n) in nulls.values().iter().enumerate() {
        if *n > 0 && shrunk(i) {
            let Some(paths) = &paths else {
                return Ok(None);
            };
            to_read.insert(lookup::file_name(paths.value(i)).to_string());
        } else {
            exact += n;
        }
    }
    if to_read.is_empty() {
        return Ok(Some(exact));
    }
    let Some(reading) = lookup::Reading::of_table(files.table.clone(), label) else {
        return Ok(None);
    };
    let read = count_nulls(reading, &to_read, column).await?;
    Ok(Some(exact + read))
}

/// The live rows of the files named `names` where `column` is null (a file written before
/// the column was added holds nulls only).
async fn count_nulls(
    reading: lookup::Reading,
    names: &BTreeSet<String>,
    column: &str,
) -> KaratResult<i64> {
    let reading = std::sync::Arc::new(reading);
    let files = reading.files_named(names).await?;
    let name = column.to_string();
    let null: lookup::Wanted = std::sync::Arc::new(move |b: &RecordBatch| {
        Ok(match b.column_by_name(&name) {
            Some(c) => deltalake::arrow::compute::is_null(c)?,
            None => BooleanArray::from(vec![true; b.num_rows()]),
        })
    });
    let found = reading
        .find(files, &[column.to_string()], null, false)
        .await?;
    Ok(found.iter().map(|f| f.at.rows.len() as i64).sum())
}

/// Live rows per value of `table`'s partition column `partition`, for the values in `wanted`
/// (as text, as the log stores them: `2026-03-28`), from the Delta log alone: each file's
/// record count less the rows its deletion vector deletes. `None` when a file lacks its
/// record count or the log its partition values (count with a query then).
pub fn rows_by_partition(
    table: &DeltaTable,
    label: &str,
    partition: &str,
    wanted: &BTreeSet<String>,
) -> KaratResult<Option<BTreeMap<String, u64>>> {
    let actions = table
        .snapshot()
        .and_then(|s| s.add_actions_table(false))
        .map_err(|e| KaratError::delta(label, e))?;
    let records = int64(&actions, "num_records");
    let parts = column_at(&actions, &format!("partition.{partition}"));
    let (Some(records), Some(parts)) = (records, parts) else {
        return Ok(None);
    };
    if records.null_count() > 0 {
        return Ok(None);
    }
    let parts = as_text(&parts, &format!("{label}: partition {partition}"))?;
    let deleted = int64(&actions, "deletion_vector.cardinality");
    let mut out = BTreeMap::new();
    for i in (0..actions.num_rows()).filter(|i| parts.is_valid(*i)) {
        let part = parts.value(i);
        if !wanted.contains(part) {
            continue;
        }
        let gone = deleted
            .as_ref()
            .filter(|d| d.is_valid(i))
            .map_or(0, |d| d.value(i));
        *out.entry(part.to_string()).or_default() +=
            u64::try_from(records.value(i) - gone).unwrap_or(0);
    }
    Ok(Some(out))
}

/// The largest value of `column` per value of the partition column `partition` in the table at
/// `url`, as text: from its files' Delta statistics (or partition values), partitions without
/// statistics left out; read from the table when deletion vectors delete rows.
pub async fn max_by_partition(
    url: &Url,
    label: &str,
    column: &str,
    partition: &str,
) -> KaratResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(files) = Files::of(url, label).await? else {
        return Ok(out);
    };
    if files.deleted > 0 {
        let q = format!(
            "SELECT {p}, MAX({c}) FROM t GROUP BY {p}",
            p = ident(partition),
            c = ident(column)
        );
        for (p, v) in files.query(&q, label).await? {
            if let Some(p) = p {
                out.insert(p, v);
            }
        }
        return Ok(out);
    }
    let values = match files.text(&format!("max.{column}"), label)? {
        Some(v) => v,
        None => match files.text(&format!("partition.{column}"), label)? {
            Some(v) => v,
            None => return Ok(out),
        },
    };
    let Some(parts) = files.text(&format!("partition.{partition}"), label)? else {
        return Ok(out);
    };
    for (p, v) in parts.iter().zip(values.iter()) {
        if let (Some(p), Some(v)) = (p, v) {
            let e = out.entry(p.to_string()).or_insert_with(|| v.to_string());
            if v > e.as_str() {
                *e = v.to_string();
            }
        }
    }
    Ok(out)
}

/// The largest value of `column` in the table at `url`, as text (`2026-03-28`,
/// `2026-03-28T10:00:00Z`; compared as text, which orders dates and timestamps): from its files' Delta statistics or partition values (no data
/// read), or from the table when deletion vectors delete rows; `None` without data or
/// statistics.
pub async fn max_of(url: &Url, label: &str, column: &str) -> KaratResult<Option<String>> {
    let Some(files) = Files::of(url, label).await? else {
        return Ok(None);
    };
    if files.deleted > 0 {
        let q = format!("SELECT MAX({}) FROM t", ident(column));
        let found = files.query(&q, label).await?;
        return Ok(found.into_iter().map(|(_, v)| v).max());
    }
    // a partition column has no statistics: its value is the file's partition value
    let text = match files.text(&format!("max.{column}"), label)? {
        Some(t) => t,
        None => match files.text(&format!("partition.{column}"), label)? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    Ok(text.iter().flatten().max().map(str::to_string))
}

/// Text statistics at least this long may be truncated (parquet's default truncation length):
/// such a minimum equal to its maximum does not show that a file holds one value.
const EXACT_BELOW: usize = 64;

/// Files holding several values are read rather than queried while they hold at most this
/// share of the table's records (the read keeps their values; a query streams them).
const READ_SHARED_UP_TO: f64 = 0.25;

/// Rows per value of a text column, for some of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Live rows per value (a value in no file is absent).
    pub counted: BTreeMap<String, u64>,
    /// Values left for a query, their counts not in `counted`: those a file holding several
    /// values may hold, when such files could not be read ([`counts_by_value`]).
    pub unknown: BTreeSet<String>,
}

/// What the log alone tells of the values of a column.
#[derive(Debug, Default)]
struct FromLog {
    /// Live rows per value in the files that hold that value alone (and no nulls): the file's
    /// record count less the rows its deletion vector deletes.
    counted: BTreeMap<String, u64>,
    /// Names of the files that may hold a wanted value beside others, or lack statistics.
    shared: BTreeSet<String>,
    /// Records in those files, and in all.
    shared_records: i64,
    records: i64,
    /// Wanted values those files may hold.
    unknown: BTreeSet<String>,
}

/// Rows per value of `column` (a text column) for the values in `wanted`, in `table`
/// (`label` in errors). A file holding one value alone is counted from the Delta log: its
/// record count less the rows its deletion vector deletes. Files holding several are read (a
/// plain table, while they hold a small share of it); otherwise the values they may hold are
/// left `unknown`, for the caller to count with a query.
pub async fn counts_by_value(
    table: &DeltaTable,
    label: &str,
    column: &str,
    wanted: &BTreeSet<String>,
) -> KaratResult<LogCounts> {
    let log = from_log(table, label, column, wanted)?;
    let mut counted = log.counted;
    if log.shared.is_empty() {
        return Ok(LogCounts {
            counted,
            unknown: BTreeSet::new(),
        });
    }
    let small = (log.shared_records as f64) <= READ_SHARED_UP_TO * log.records as f64;
    match small
        .then(|| lookup::Reading::of_table(table.clone(), label))
        .flatten()
    {
        Some(reading) => {
            read_shared(reading, &log.shared, column, wanted, &mut counted).await?;
            Ok(LogCounts {
                counted,
                unknown: BTreeSet::new(),
            })
        }
        None => {
            counted.retain(|v, _| !log.unknown.contains(v));
            Ok(LogCounts {
                counted,
                unknown: log.unknown,
            })
        }
    }
}

/// The log's part of [`counts_by_value`].
fn from_log(
    table: &DeltaTable,
    label: &str,
    column: &str,
    wanted: &BTreeSet<String>,
) -> KaratResult<FromLog> {
    let actions = table
        .snapshot()
        .and_then(|s| s.add_actions_table(false))
        .map_err(|e| KaratError::delta(label, e))?;
    let text = |name: &str| match column_at(&actions, name) {
        Some(c) if matches!(c.data_type(), DataType::Utf8) => Some(c.as_string::<i32>().clone()),
        _ => None,
    };
    let Some(paths) = text("path") else {
        return Err(KaratError::Other(format!(
            "table {label}: its Delta log lists files without paths"
        )));
    };
    let records = int64(&actions, "num_records");
    let min = text(&format!("min.{column}"));
    let max = text(&format!("max.{column}"));
    let nulls = int64(&actions, &format!("null_count.{column}"));
    let deleted = int64(&actions, "deletion_vector.cardinality");
    let mut out = FromLog::default();
    for i in 0..actions.num_rows() {
        let n = records
            .as_ref()
            .filter(|r| r.is_valid(i))
            .map(|r| r.value(i));
        let file = lookup::file_name(paths.value(i));
        out.records += n.unwrap_or(0);
        let stats = match (n, &min, &max, &nulls) {
            (Some(n), Some(min), Some(max), Some(nulls)) if nulls.is_valid(i) => {
                let range =
                    (min.is_valid(i) && max.is_valid(i)).then(|| (min.value(i), max.value(i)));
                Some((n, range, nulls.value(i)))
            }
            _ => None,
        };
        let may_hold = match stats {
            // every row null: none of the wanted values
            Some((n, None, nulls)) if nulls == n => continue,
            Some((n, Some((lo, hi)), 0)) if lo == hi && lo.len() < EXACT_BELOW => {
                if wanted.contains(lo) {
                    let gone = deleted
                        .as_ref()
                        .filter(|d| d.is_valid(i))
                        .map_or(0, |d| d.value(i));
                    *out.counted.entry(lo.to_string()).or_default() +=
                        u64::try_from(n - gone).unwrap_or(0);
                }
                continue;
            }
            Some((_, Some((lo, hi)), _)) if lo <= hi => wanted
                .range::<str, _>((Bound::Included(lo), Bound::Included(hi)))
                .cloned()
                .collect::<Vec<_>>(),
            _ => wanted.iter().cloned().collect(),
        };
        if !may_hold.is_empty() {
            out.shared.insert(file.to_string());
            out.shared_records += n.unwrap_or(i64::MAX / 2);
            out.unknown.extend(may_hold);
        }
    }
    Ok(out)
}

/// Adds the live rows per wanted value of the files named `shared`, read for `column` alone.
async fn read_shared(
    reading: lookup::Reading,
    shared: &BTreeSet<String>,
    column: &str,
    wanted: &BTreeSet<String>,
    counted: &mut BTreeMap<String, u64>,
) -> KaratResult<()> {
    let reading = std::sync::Arc::new(reading);
    let files = reading.files_named(shared).await?;
    let every_row: lookup::Wanted =
        std::sync::Arc::new(|b: &RecordBatch| Ok(BooleanArray::from(vec![true; b.num_rows()])));
    let label = reading.label.clone();
    for found in reading
        .find(files, &[column.to_string()], every_row, false)
        .await?
    {
        // a file written before the column was added holds none of its values
        let Some(values) = found.values.column_by_name(column) else {
            continue;
        };
        let values = as_text(values, &label)?;
        for v in values.iter().flatten().filter(|v| wanted.contains(*v)) {
            *counted.entry(v.to_string()).or_default() += 1;
        }
    }
    Ok(())
}

/// Column `name` of the files' table as 64-bit integers, if it has one.
fn int64(actions: &RecordBatch, name: &str) -> Option<Int64Array> {
    let c = column_at(actions, name)?;
    let c = deltalake::arrow::compute::cast(&c, &DataType::Int64).ok()?;
    Some(c.as_primitive::<Int64Type>().clone())
}

/// Column `name` of the files' table: a top-level one (`path`, `num_records`) or, as
/// `<struct>.<field>` (`min.<col>`, `partition.<col>`, `deletion_vector.cardinality`), a field
/// of one of its struct columns, null where the struct is. (delta-rs's flattened table fails
/// on a table where some files have a deletion vector and others none.)
fn column_at(actions: &RecordBatch, name: &str) -> Option<ArrayRef> {
    if let Some(c) = actions.column_by_name(name) {
        return Some(c.clone());
    }
    let (outer, field) = name.split_once('.')?;
    let parent = actions.column_by_name(outer)?.as_struct_opt()?;
    let child = parent.column_by_name(field)?;
    let nulls = NullBuffer::union(parent.nulls(), child.nulls());
    let data = child.to_data().into_builder().nulls(nulls).build().ok()?;
    Some(make_array(data))
}
