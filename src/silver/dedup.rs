//! De-duplication of a silver partition by its key: the row with the newest `_ingested_at`
//! wins (ties: the later batch, then the later line). Sorting and comparing are Arrow kernels
//! (lexsort and the row format), not a per-row map.

use deltalake::arrow::array::{RecordBatch, UInt32Array};
use deltalake::arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use deltalake::arrow::row::{RowConverter, SortField};

use crate::error::{KaratError, KaratResult};

/// Keeps one row per key; returns the kept rows and how many duplicates were dropped.
pub fn dedup(
    batch: &RecordBatch,
    key_indexes: &[usize],
    table: &str,
    partition: &str,
) -> KaratResult<(RecordBatch, u64)> {
    let n = batch.num_rows();
    if key_indexes.is_empty() || n < 2 {
        return Ok((batch.clone(), 0));
    }
    let ctx = || format!("table {table} partition {partition}: dedup");
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .expect("silver rows carry provenance")
            .clone()
    };
    let desc = SortOptions {
        descending: true,
        nulls_first: false,
    };
    let asc = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let mut sort: Vec<SortColumn> = key_indexes
        .iter()
        .map(|i| SortColumn {
            values: batch.column(*i).clone(),
            options: Some(asc),
        })
        .collect();
    sort.push(SortColumn {
        values: col("_ingested_at"),
        options: Some(desc),
    });
    sort.push(SortColumn {
        values: col("_batch_id"),
        options: Some(desc),
    });
    sort.push(SortColumn {
        values: col("_line"),
        options: Some(desc),
    });
    let order = lexsort_to_indices(&sort, None).map_err(|e| KaratError::arrow(ctx(), e))?;
    let sorted = take_record_batch(batch, &order).map_err(|e| KaratError::arrow(ctx(), e))?;
    let fields = key_indexes
        .iter()
        .map(|i| SortField::new(batch.schema().field(*i).data_type().clone()))
        .collect();
    let conv = RowConverter::new(fields).map_err(|e| KaratError::arrow(ctx(), e))?;
    let keys: Vec<_> = key_indexes
        .iter()
        .map(|i| sorted.column(*i).clone())
        .collect();
    let rows = conv
        .convert_columns(&keys)
        .map_err(|e| KaratError::arrow(ctx(), e))?;
    let mut keep: Vec<u32> = Vec::with_capacity(n);
    for i in 0..n {
        if i == 0 || rows.row(i) != rows.row(i - 1) {
            keep.push(i as u32);
        }
    }
    let dropped = (n - keep.len()) as u64;
    let kept = take_record_batch(&sorted, &UInt32Array::from(keep))
        .map_err(|e| KaratError::arrow(ctx(), e))?;
    Ok((kept, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        Array, AsArray, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn newest_ingested_wins() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new("_batch_id", DataType::Utf8, true),
            Field::new(
                "_ingested_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("_line", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "a"])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec!["x", "x", "y", "x"])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![10, 10, 20, 10]).with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![1, 2, 1, 3])),
            ],
        )
        .unwrap();
        let (kept, dropped) = dedup(&b, &[0], "t", "p").unwrap();
        assert_eq!(dropped, 2);
        assert_eq!(kept.num_rows(), 2);
        let ids = kept.column(0).as_string::<i32>();
        let vs = kept
            .column(1)
            .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        let a = (0..2).find(|i| ids.value(*i) == "a").unwrap();
        assert_eq!(vs.value(a), 3, "row from the newest batch wins");
        assert!(kept.column(1).is_valid(0));
    }
}
