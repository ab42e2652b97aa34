//! What a table's Delta log says about its data without reading it: row and null counts, and
//! the largest value of a column (in all, or per partition) from its files' statistics.
//!
//! A file's statistics describe the rows it was written with. Once a deletion vector deletes
//! some of them (a silver table with `deletion_vectors = true`), a maximum may be a deleted
//! row's: the largest values are then read from the table itself (a query, which leaves the
//! deleted rows out), and row counts subtract each vector's cardinality.

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use std::collections::BTreeMap;
use url::Url;

use super::delta;
use crate::error::{KaratError, KaratResult};

/// A table and its live files, one row each, with their statistics and partition values
/// flattened (`num_records`, `null_count.<col>`, `max.<col>`, `partition.<col>`).
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
            .and_then(|s| s.add_actions_table(true))
            .map_err(err)?;
        let deleted = deleted_rows(&table, label).await?;
        Ok(Some(Files {
            table,
            actions,
            deleted,
        }))
    }

    /// Column `name` of the files' table as text, if it has one.
    fn text(&self, name: &str, label: &str) -> KaratResult<Option<StringArray>> {
        self.actions
            .column_by_name(name)
            .map(|c| as_text(c, &format!("{label}: {name}")))
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

/// Rows the deletion vectors of `table`'s live files delete.
async fn deleted_rows(table: &DeltaTable, label: &str) -> KaratResult<i64> {
    let err = |e| KaratError::delta(label, e);
    table
        .snapshot()
        .map_err(err)?
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_filter_map(
            |f| async move { Ok(f.deletion_vector_descriptor().map(|d| d.cardinality)) },
        )
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await
        .map_err(err)
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

/// Row and null counts of a table, summed from its files' Delta statistics (no data read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableStats {
    pub rows: i64,
    pub files: usize,
    /// Column → nulls, for the columns whose statistics every file carries.
    pub nulls: BTreeMap<String, i64>,
}

/// The statistics of the table at `url`; `None` when nothing has been written there yet. Rows
/// deleted by deletion vectors are not counted; their nulls still are (a file's statistics are
/// those it was written with).
pub async fn stats(url: &Url, label: &str) -> KaratResult<Option<TableStats>> {
    let Some(files) = Files::of(url, label).await? else {
        return Ok(None);
    };
    let actions = &files.actions;
    let sum = |name: &str| -> Option<i64> {
        let col = actions.column_by_name(name)?;
        let c = deltalake::arrow::compute::cast(col, &DataType::Int64).ok()?;
        let c = c.as_primitive::<Int64Type>();
        (c.null_count() == 0).then(|| c.iter().flatten().sum())
    };
    let mut out = TableStats {
        rows: sum("num_records").unwrap_or(0) - files.deleted,
        files: actions.num_rows(),
        nulls: Default::default(),
    };
    for f in actions.schema().fields() {
        if let Some(column) = f.name().strip_prefix("null_count.")
            && let Some(n) = sum(f.name())
        {
            out.nulls.insert(column.to_string(), n);
        }
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
