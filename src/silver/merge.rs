//! Merging versions of rows by key, table-wide: of all versions of a key the one with the
//! greatest (`_ingested_at`, `_batch_id`, `_line`) wins — a total order, so the result never
//! depends on arrival order, grouping or retries. Every other version is superseded by it.
//! Keys are hashed in Arrow's row format (one pass, no sort); only versions of the same key are
//! compared by their provenance.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};

use crate::error::{KaratError, KaratResult};

/// The outcome of merging a set of row versions.
#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    /// Rows that win their key (every row, for a table without key), in row order.
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
    // the key's bytes in row format: equal keys have equal bytes, whatever their types
    let key_fields = key_indexes
        .iter()
        .map(|i| SortField::new(batch.schema().field(*i).data_type().clone()))
        .collect();
    let keys: Vec<_> = key_indexes
        .iter()
        .map(|i| batch.column(*i).clone())
        .collect();
    let key_rows = RowConverter::new(key_fields)
        .map_err(err)?
        .convert_columns(&keys)
        .map_err(err)?;
    let version = Versions::of(batch);
    // the newest version of each key seen so far (a row number: 4 bytes a key, hashed once);
    // every version it beats, or that loses to it, is superseded (versions of one key are rare)
    let state = foldhash::fast::RandomState::default();
    let key = |row: u32| key_rows.row(row as usize).data();
    let hash = |row: u32| state.hash_one(key(row));
    let mut newest: HashTable<u32> = HashTable::with_capacity(n);
    let mut beaten = Vec::new();
    for row in 0..n as u32 {
        let k = key(row);
        match newest.entry(hash(row), |held| key(*held) == k, |held| hash(*held)) {
            Entry::Vacant(e) => {
                e.insert(row);
            }
            Entry::Occupied(mut e) => {
                let held = *e.get();
                if version.cmp(row as usize, held as usize).is_gt() {
                    *e.get_mut() = row;
                    beaten.push(held);
                } else {
                    beaten.push(row);
                }
            }
        }
    }
    let mut lost = vec![false; n];
    let losers: Vec<Loser> = beaten
        .into_iter()
        .map(|row| {
            lost[row as usize] = true;
            let k = key(row);
            let winner = *newest
                .find(hash(row), |held| key(*held) == k)
                .expect("every key has its newest version");
            Loser { row, winner }
        })
        .collect();
    let winners = (0..n as u32).filter(|r| !lost[*r as usize]).collect();
    Ok(Merged { winners, losers })
}

/// The provenance that orders versions of one key.
struct Versions {
    ingested_at: deltalake::arrow::array::TimestampMicrosecondArray,
    batch_id: deltalake::arrow::array::StringArray,
    line: deltalake::arrow::array::Int64Array,
}

impl Versions {
    fn of(batch: &RecordBatch) -> Versions {
        use deltalake::arrow::array::AsArray;
        use deltalake::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .expect("silver rows carry provenance")
        };
        Versions {
            ingested_at: col("_ingested_at")
                .as_primitive::<TimestampMicrosecondType>()
                .clone(),
            batch_id: crate::lake::delta::utf8(col("_batch_id")),
            line: col("_line").as_primitive::<Int64Type>().clone(),
        }
    }

    /// Which of two rows is the newer version (nulls oldest).
    fn cmp(&self, a: usize, b: usize) -> std::cmp::Ordering {
        use deltalake::arrow::array::Array;
        let opt_i = |x: &deltalake::arrow::array::TimestampMicrosecondArray, i: usize| {
            x.is_valid(i).then(|| x.value(i))
        };
        let opt_l = |i: usize| self.line.is_valid(i).then(|| self.line.value(i));
        let opt_b = |i: usize| self.batch_id.is_valid(i).then(|| self.batch_id.value(i));
        opt_i(&self.ingested_at, a)
            .cmp(&opt_i(&self.ingested_at, b))
            .then_with(|| opt_b(a).cmp(&opt_b(b)))
            .then_with(|| opt_l(a).cmp(&opt_l(b)))
    }
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
    fn a_key_of_several_columns_groups_by_all_of_them() {
        // key (id, batch): ("a","x") twice, ("a","y") once; winners come in row order
        let b = rows(
            &["a", "a", "a", "b"],
            &["x", "y", "x", "x"],
            &[1, 1, 2, 1],
            &[1, 2, 3, 4],
        );
        let m = merge(&b, &[0, 1], "t").unwrap();
        assert_eq!(m.winners, vec![1, 2, 3]);
        assert_eq!(m.losers, vec![Loser { row: 0, winner: 2 }]);
    }

    #[test]
    fn without_key_every_row_stays() {
        let b = rows(&["a", "a"], &["x", "x"], &[1, 1], &[1, 2]);
        let m = merge(&b, &[], "t").unwrap();
        assert_eq!(m.winners, vec![0, 1]);
        assert!(m.losers.is_empty());
    }
}
