//! A set of keys (one or more columns), whatever their types: the keys a rewrite drops from a
//! partition's stored rows, or a lookup looks for among every row silver holds.
//!
//! Probing is the hot side: a daily run asks of every stored row (millions) whether its key is
//! one of the day's (hundreds of thousands), and almost none is. So each probe first asks a
//! small filter (a blocked bitmap of three bits per key, 16 bits per key in all: it fits in a
//! core's cache, about 1% of absent keys pass it), and only then the hash table of the keys'
//! bytes. A key of one string column is hashed and compared as its bytes; other keys in Arrow's
//! row format.

use std::hash::BuildHasher;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::buffer::BooleanBuffer;
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;

/// How a key becomes the bytes the set hashes and compares.
enum Encoding {
    /// One string column: its bytes (a null key is [`KeySet::null`]).
    Text,
    /// Anything else: Arrow's row format, which orders and compares whole keys.
    Rows(RowConverter),
}

/// Keys by the names of their columns.
pub struct KeySet {
    names: Vec<String>,
    encoding: Encoding,
    /// Every key's bytes, one after another, and where each ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Positions of the keys (into `ends`) by hash.
    table: HashTable<u32>,
    filter: Filter,
    /// With [`Encoding::Text`]: whether the null key is in the set.
    null: bool,
    state: foldhash::fast::RandomState,
}

impl KeySet {
    /// The keys of `keys` (batches holding the key columns `names`, of the same types).
    pub fn new(names: &[String], keys: &[RecordBatch]) -> Result<KeySet, ArrowError> {
        let types: Vec<DataType> = match keys.first() {
            Some(b) => columns(b, names)?
                .iter()
                .map(|c| c.data_type().clone())
                .collect(),
            None => Vec::new(),
        };
        let encoding = match types.as_slice() {
            [t] if is_text(t) => Encoding::Text,
            _ => Encoding::Rows(RowConverter::new(
                types.into_iter().map(SortField::new).collect(),
            )?),
        };
        let n: usize = keys.iter().map(|b| b.num_rows()).sum();
        let mut set = KeySet {
            names: names.to_vec(),
            encoding,
            bytes: Vec::new(),
            ends: Vec::with_capacity(n),
            table: HashTable::with_capacity(n),
            filter: Filter::for_keys(n),
            null: false,
            state: foldhash::fast::RandomState::default(),
        };
        for b in keys {
            set.insert_batch(b)?;
        }
        Ok(set)
    }

    fn insert_batch(&mut self, b: &RecordBatch) -> Result<(), ArrowError> {
        let cols = columns(b, &self.names)?;
        match &self.encoding {
            Encoding::Text => {
                let col = &cols[0];
                for i in 0..col.len() {
                    match text_value(col, i)? {
                        Some(v) => self.insert(v),
                        None => self.null = true,
                    }
                }
            }
            Encoding::Rows(converter) => {
                let rows = converter.convert_columns(&cols)?;
                for r in rows.iter() {
                    self.insert(r.data());
                }
            }
        }
        Ok(())
    }

    fn key(&self, at: u32) -> &[u8] {
        let at = at as usize;
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        &self.bytes[start..self.ends[at]]
    }

    fn insert(&mut self, key: &[u8]) {
        let hash = self.state.hash_one(key);
        if self.find(key, hash) {
            return;
        }
        let at = self.ends.len() as u32;
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        self.filter.insert(hash);
        let (bytes, ends, state) = (&self.bytes, &self.ends, &self.state);
        self.table.insert_unique(hash, at, |i| {
            let i = *i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] };
            state.hash_one(&bytes[start..ends[i]])
        });
    }

    fn find(&self, key: &[u8], hash: u64) -> bool {
        self.filter.may_hold(hash) && self.table.find(hash, |i| self.key(*i) == key).is_some()
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.find(key, self.state.hash_one(key))
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && !self.null
    }

    /// Per row of `rows` (holding the key columns by name): true where its key is not in
    /// the set.
    pub fn absent(&self, rows: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let n = rows.num_rows();
        if self.is_empty() {
            return Ok(BooleanArray::from(BooleanBuffer::new_set(n)));
        }
        let cols = columns(rows, &self.names)?;
        let absent = match &self.encoding {
            Encoding::Text => {
                let col = &cols[0];
                if !is_text(col.data_type()) {
                    return Err(ArrowError::SchemaError(format!(
                        "key column {} is {}, not text",
                        self.names[0],
                        col.data_type()
                    )));
                }
                let mut failed = None;
                let b = BooleanBuffer::collect_bool(n, |i| match text_value(col, i) {
                    Ok(Some(v)) => !self.contains(v),
                    Ok(None) => !self.null,
                    Err(e) => {
                        failed.get_or_insert(e);
                        true
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                b
            }
            Encoding::Rows(converter) => {
                let keys = converter.convert_columns(&cols)?;
                BooleanBuffer::collect_bool(n, |i| !self.contains(keys.row(i).data()))
            }
        };
        Ok(BooleanArray::from(absent))
    }
}

/// Whether keys of type `t` are hashed as their bytes ([`Encoding::Text`]).
fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Row `i` of a text column as bytes (None: null).
fn text_value(col: &ArrayRef, i: usize) -> Result<Option<&[u8]>, ArrowError> {
    if col.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).as_bytes(),
        DataType::LargeUtf8 => col.as_string::<i64>().value(i).as_bytes(),
        DataType::Utf8View => col.as_string_view().value(i).as_bytes(),
        other => {
            return Err(ArrowError::SchemaError(format!(
                "a text key column is {other}"
            )));
        }
    }))
}

/// A blocked bitmap filter: each key sets three bits of one 64-bit word chosen by its hash,
/// so a probe reads one word. No false negatives.
struct Filter {
    words: Vec<u64>,
}

impl Filter {
    /// Bits per key: 16 keeps false positives near 1% with three bits a key.
    const BITS_PER_KEY: usize = 16;

    fn for_keys(n: usize) -> Filter {
        let words = (n.max(1) * Self::BITS_PER_KEY)
            .div_ceil(64)
            .next_power_of_two();
        Filter {
            words: vec![0; words],
        }
    }

    fn place(&self, hash: u64) -> (usize, u64) {
        let word = (hash >> 32) as usize & (self.words.len() - 1);
        let bits =
            (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63)) | (1u64 << ((hash >> 12) & 63));
        (word, bits)
    }

    fn insert(&mut self, hash: u64) {
        let (word, bits) = self.place(hash);
        self.words[word] |= bits;
    }

    fn may_hold(&self, hash: u64) -> bool {
        let (word, bits) = self.place(hash);
        self.words[word] & bits == bits
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
    use deltalake::arrow::array::{Int64Array, StringArray, StringViewArray};
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

    fn absent(set: &KeySet, rows: &RecordBatch) -> Vec<bool> {
        set.absent(rows).unwrap().iter().flatten().collect()
    }

    #[test]
    fn a_row_is_absent_unless_its_whole_key_is_in_the_set() {
        let names = vec!["id".to_string(), "n".to_string()];
        let set = KeySet::new(&names, &[batch(&["a", "b", "a"], &[1, 2, 1])]).unwrap();
        let rows = batch(&["a", "a", "b", "c"], &[1, 2, 2, 1]);
        assert_eq!(absent(&set, &rows), vec![false, true, false, true]);
    }

    #[test]
    fn a_text_key_is_found_by_its_bytes_whatever_its_string_type() {
        let names = vec!["id".to_string()];
        let set = KeySet::new(&names, &[batch(&["a", "bb", "a"], &[1, 2, 3])]).unwrap();
        assert_eq!(
            absent(&set, &batch(&["a", "b", "bb", ""], &[0; 4])),
            vec![false, true, false, true]
        );
        let view = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "id",
                DataType::Utf8View,
                true,
            )])),
            vec![Arc::new(StringViewArray::from(vec![
                Some("bb"),
                None,
                Some("c"),
            ]))],
        )
        .unwrap();
        assert_eq!(absent(&set, &view), vec![false, true, true]);
    }

    #[test]
    fn a_null_text_key_is_held_only_when_inserted() {
        let names = vec!["id".to_string()];
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let keys = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![None, Some("x")]))],
        )
        .unwrap();
        let set = KeySet::new(&names, &[keys]).unwrap();
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                None,
                Some("y"),
                Some("x"),
            ]))],
        )
        .unwrap();
        assert_eq!(absent(&set, &rows), vec![false, true, false]);
    }

    #[test]
    fn many_keys_are_all_found_and_few_others_pass_the_filter() {
        let names = vec!["id".to_string()];
        let held: Vec<String> = (0..50_000).map(|i| format!("o-{i}")).collect();
        let refs: Vec<&str> = held.iter().map(String::as_str).collect();
        let set = KeySet::new(&names, &[batch(&refs, &vec![0; refs.len()])]).unwrap();
        assert!(
            absent(&set, &batch(&refs, &vec![0; refs.len()]))
                .iter()
                .all(|a| !a)
        );
        let passed = (0..50_000)
            .map(|i| set.state.hash_one(format!("x-{i}").as_bytes()))
            .filter(|h| set.filter.may_hold(*h))
            .count();
        assert!(
            passed < 2_500,
            "{passed} of 50000 absent keys passed the filter"
        );
    }

    #[test]
    fn an_empty_set_keeps_every_row() {
        let set = KeySet::new(&["id".to_string()], &[]).unwrap();
        let absent = set.absent(&batch(&["a"], &[1])).unwrap();
        assert_eq!(absent.true_count(), 1);
    }
}
