//! Merging versions of rows by key, table-wide: of all versions of a key the one with the
//! greatest (`_ingested_at`, `_batch_id`, `_line`) wins — a total order, so the result never
//! depends on arrival order, grouping or retries. Every other version is superseded by it.
//! Sorting and comparing are Arrow kernels (lexsort and the row format), not a per-row map.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::{SortColumn, SortOptions, lexsort_to_indices};
use deltalake::arrow::row::{RowConverter, SortField};

use crate::error::{KaratError, KaratResult};

/// The outcome of merging a set of row versions.
#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    /// Rows that win their key (every row, for a table without key), in key order.
    pub winners: Vec<u32>,
    /// Superseded rows, each with the row that beat it.
    pub losers: Vec<Loser>,
}

/// A superseded row and the winning row of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loser {
    pub row: u32,
    pub winner: u32,
}

/// Merges the rows of `batch` (silver schema) by the columns `key_indexes`.
pub fn merge(batch: &RecordBatch, key_indexes: &[usize], context: &str) -> KaratResult<Merged> {
    let n = batch.num_rows();
    if key_indexes.is_empty() || n < 2 {
        return Ok(Merged {
            winners: (0..n as u32).collect(),
            losers: Vec::new(),
        });
    }
    let err = |e| KaratError::arrow(format!("{context}: merging by key"), e);
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .expect("silver rows carry provenance")
            .clone()
    };
    let asc = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let desc = SortOptions {
        descending: true,
        nulls_first: false,
    };
    let mut sort: Vec<SortColumn> = key_indexes
        .iter()
        .map(|i| SortColumn {
            values: batch.column(*i).clone(),
            options: Some(asc),
        })
        .collect();
    for name in ["_ingested_at", "_batch_id", "_line"] {
        sort.push(SortColumn {
            values: col(name),
            options: Some(desc),
        });
    }
    let order = lexsort_to_indices(&sort, None).map_err(err)?;
    let fields = key_indexes
        .iter()
        .map(|i| SortField::new(batch.schema().field(*i).data_type().clone()))
        .collect();
    let conv = RowConverter::new(fields).map_err(err)?;
    let keys: Vec<_> = key_indexes
        .iter()
        .map(|i| batch.column(*i).clone())
        .collect();
    let rows = conv.convert_columns(&keys).map_err(err)?;
    let mut merged = Merged::default();
    let mut winner = 0u32;
    for (pos, &i) in order.values().iter().enumerate() {
        if pos == 0 || rows.row(i as usize) != rows.row(order.value(pos - 1) as usize) {
            winner = i;
            merged.winners.push(i);
        } else {
            merged.losers.push(Loser { row: i, winner });
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn rows(ids: &[&str], batches: &[&str], ts: &[i64], lines: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("_batch_id", DataType::Utf8, true),
            Field::new(
                "_ingested_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("_line", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(StringArray::from(batches.to_vec())),
                Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC")),
                Arc::new(Int64Array::from(lines.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn newest_version_wins_then_batch_then_line() {
        let b = rows(
            &["a", "b", "a", "a", "b"],
            &["x", "x", "y", "x", "z"],
            &[10, 10, 20, 10, 10],
            &[1, 2, 1, 3, 1],
        );
        let m = merge(&b, &[0], "t").unwrap();
        // a: row 2 (newest); b: row 4 (same time, batch z > x)
        assert_eq!(m.winners, vec![2, 4]);
        let mut losers: Vec<(u32, u32)> = m.losers.iter().map(|l| (l.row, l.winner)).collect();
        losers.sort();
        assert_eq!(losers, vec![(0, 2), (1, 4), (3, 2)]);
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let a = rows(
            &["k", "k", "k"],
            &["b1", "b2", "b1"],
            &[5, 5, 5],
            &[1, 1, 2],
        );
        let b = rows(
            &["k", "k", "k"],
            &["b1", "b1", "b2"],
            &[5, 5, 5],
            &[2, 1, 1],
        );
        let wa = merge(&a, &[0], "t").unwrap().winners;
        let wb = merge(&b, &[0], "t").unwrap().winners;
        assert_eq!(
            (wa, wb),
            (vec![1], vec![2]),
            "batch b2 line 1 wins both times"
        );
    }

    #[test]
    fn without_key_every_row_stays() {
        let b = rows(&["a", "a"], &["x", "x"], &[1, 1], &[1, 2]);
        let m = merge(&b, &[], "t").unwrap();
        assert_eq!(m.winners, vec![0, 1]);
        assert!(m.losers.is_empty());
    }
}
