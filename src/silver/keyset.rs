//! A set of keys (one or more columns) in Arrow's row format, whatever their types: the keys a
//! rewrite drops from a partition's stored rows.

use std::hash::BuildHasher;

use deltalake::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;

/// Keys by the names of their columns.
pub struct KeySet {
    names: Vec<String>,
    converter: RowConverter,
    /// The keys' bytes in row format, and a table of their positions by hash.
    bytes: Vec<Box<[u8]>>,
    table: HashTable<u32>,
    state: foldhash::fast::RandomState,
}

impl KeySet {
    /// The keys of `keys` (batches holding the key columns `names`, of the same types).
    pub fn new(names: &[String], keys: &[RecordBatch]) -> Result<KeySet, ArrowError> {
        let fields = match keys.first() {
            Some(b) => columns(b, names)?
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
            None => Vec::new(),
        };
        let mut set = KeySet {
            names: names.to_vec(),
            converter: RowConverter::new(fields)?,
            bytes: Vec::new(),
            table: HashTable::new(),
            state: foldhash::fast::RandomState::default(),
        };
        for b in keys {
            let rows = set.converter.convert_columns(&columns(b, names)?)?;
            for r in rows.iter() {
                set.insert(r.data());
            }
        }
        Ok(set)
    }

    fn insert(&mut self, key: &[u8]) {
        if self.find(key) {
            return;
        }
        let hash = self.state.hash_one(key);
        let at = self.bytes.len() as u32;
        self.bytes.push(key.into());
        let bytes = &self.bytes;
        let state = &self.state;
        self.table
            .insert_unique(hash, at, |i| state.hash_one(&bytes[*i as usize][..]));
    }

    fn find(&self, key: &[u8]) -> bool {
        let hash = self.state.hash_one(key);
        self.table
            .find(hash, |i| &self.bytes[*i as usize][..] == key)
            .is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Per row of `rows` (holding the key columns by name): true where its key is not in
    /// the set.
    pub fn absent(&self, rows: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        if self.is_empty() {
            return Ok(BooleanArray::from(vec![true; rows.num_rows()]));
        }
        let keys = self
            .converter
            .convert_columns(&columns(rows, &self.names)?)?;
        Ok(keys.iter().map(|k| Some(!self.find(k.data()))).collect())
    }
}

pub(super) fn columns(b: &RecordBatch, names: &[String]) -> Result<Vec<ArrayRef>, ArrowError> {
    names
        .iter()
        .map(|n| {
            b.column_by_name(n)
                .cloned()
                .ok_or_else(|| ArrowError::SchemaError(format!("key column {n} is missing")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[&str], n: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_row_is_absent_unless_its_whole_key_is_in_the_set() {
        let names = vec!["id".to_string(), "n".to_string()];
        let set = KeySet::new(&names, &[batch(&["a", "b", "a"], &[1, 2, 1])]).unwrap();
        let rows = batch(&["a", "a", "b", "c"], &[1, 2, 2, 1]);
        let absent: Vec<bool> = set.absent(&rows).unwrap().iter().flatten().collect();
        assert_eq!(absent, vec![false, true, false, true]);
    }

    #[test]
    fn an_empty_set_keeps_every_row() {
        let set = KeySet::new(&["id".to_string()], &[]).unwrap();
        let absent = set.absent(&batch(&["a"], &[1])).unwrap();
        assert_eq!(absent.true_count(), 1);
    }
}
