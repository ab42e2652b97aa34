//! The end-of-run check that no key a run changed is held twice by its silver table, and
//! `karat verify`'s check of every key ([`KeyCheck::duplicates_in_table`]: every key hashed,
//! the hashes sorted, those met twice recounted exactly by the same second scan).
//!
//! The keys that entered or left silver are remembered, group after group, as 64-bit hashes
//! (8 bytes a key, not the keys); once the table's last group is written, the hashes are
//! bucketed by their top bits (keeping some 50 bits of each) and one scan of the table's key
//! columns flags every hash met twice. A flagged hash is a duplicate or, about once in 2^50
//! pairs, two keys sharing those bits: a second scan, run only then, counts the flagged rows'
//! keys exactly, so the check reports real duplicates only and misses none (both rows of a
//! key have its hash). This
//! replaced a join and a grouping of the changed keys against the whole table after every
//! group of a run.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;

use deltalake::arrow::array::{Array, ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::contract::{Contract, ident};
use crate::error::{KaratError, KaratResult};
use crate::lake::delta;

/// At most this many duplicate keys are reported.
pub const SHOWN: usize = 20;

/// At most this many hashes met twice are recounted exactly: enough for [`SHOWN`] real
/// duplicates whatever the rare false ones, and bounded when a whole batch is held twice.
const RECOUNTED: usize = 50 * SHOWN;

/// Hashes of the keys a run changed in one table.
pub struct KeyCheck {
    names: Vec<String>,
    types: Vec<DataType>,
    converter: RowConverter,
    hashes: Vec<u64>,
    state: foldhash::fast::RandomState,
}

impl std::fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCheck")
            .field("names", &self.names)
            .field("keys", &self.hashes.len())
            .finish()
    }
}

impl KeyCheck {
    /// An empty check for the key columns of `contract`; None for a table without key.
    pub fn new(contract: &Contract) -> KaratResult<Option<KeyCheck>> {
        if contract.key_indexes.is_empty() {
            return Ok(None);
        }
        let fields: Vec<Field> = contract
            .key_indexes
            .iter()
            .map(|i| contract.silver_schema.field(*i).clone())
            .collect();
        KeyCheck::of_columns(&contract.table, &fields).map(Some)
    }

    /// An empty check for keys made of `fields` (of table `table`).
    fn of_columns(table: &str, fields: &[Field]) -> KaratResult<KeyCheck> {
        let converter = RowConverter::new(
            fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(arrow(table))?;
        Ok(KeyCheck {
            names: fields.iter().map(|f| f.name().clone()).collect(),
            types: fields.iter().map(|f| f.data_type().clone()).collect(),
            converter,
            hashes: Vec::new(),
            state: foldhash::fast::RandomState::default(),
        })
    }

    /// Remembers the keys of `rows` (holding the key columns by name).
    pub fn add(&mut self, rows: &[RecordBatch]) -> Result<(), ArrowError> {
        let n: usize = rows.iter().map(RecordBatch::num_rows).sum();
        self.hashes.reserve(n);
        for b in rows.iter().filter(|b| b.num_rows() > 0) {
            let keys = self.rows_of(b)?;
            for k in keys.iter() {
                self.hashes.push(self.state.hash_one(k.data()));
            }
        }
        Ok(())
    }

    /// Whether no key was added.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Keys among those added that the table registered as `s` in `ctx` holds more than
    /// once, rendered `k1=v1,k2=v2 (n rows)`; at most [`SHOWN`].
    pub async fn duplicates(
        mut self,
        ctx: &SessionContext,
        table: &str,
    ) -> KaratResult<Vec<String>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        if self.hashes.len() >= u32::MAX as usize {
            return Err(KaratError::Other(format!(
                "key check of {table}: {} changed keys in one run, more than it can hold",
                self.hashes.len()
            )));
        }
        let mut index = Buckets::of(&std::mem::take(&mut self.hashes));
        let mut twice: HashSet<u64> = HashSet::new();
        let mut scan = self.scan(ctx, table).await?;
        while let Some(b) = scan.next().await {
            let keys = self.rows_of(&self.batch(b, table)?).map_err(arrow(table))?;
            let hashes: Vec<u64> = keys.iter().map(|k| self.state.hash_one(k.data())).collect();
            index.warm(&hashes);
            for hash in hashes {
                if index.meet(hash) && twice.len() < RECOUNTED {
                    twice.insert(hash);
                }
            }
        }
        drop(index);
        if twice.is_empty() {
            return Ok(Vec::new());
        }
        self.count_exactly(ctx, table, &twice).await
    }

    /// Keys the table registered as `s` in `ctx` holds more than once, among all its rows
    /// (`karat verify`), rendered as [`KeyCheck::duplicates`] renders them: one scan hashes
    /// every key (8 bytes a row, where a grouping by key held every key), hashes met twice are
    /// found by sorting, and the second scan counts their rows exactly.
    pub async fn duplicates_in_table(
        mut self,
        ctx: &SessionContext,
        table: &str,
    ) -> KaratResult<Vec<String>> {
        let mut scan = self.scan(ctx, table).await?;
        while let Some(b) = scan.next().await {
            let b = self.batch(b, table)?;
            self.add(std::slice::from_ref(&b)).map_err(arrow(table))?;
        }
        self.met_twice(ctx, table).await
    }

    /// Keys met more than once among `rows` (holding the key columns by name), counted in
    /// the table registered as `s` in `ctx`: the rows are every row the table holds of the
    /// keys looked for ([`super::written_keys`]), so a key met twice is held twice.
    pub async fn duplicates_among(
        mut self,
        ctx: &SessionContext,
        table: &str,
        rows: &[RecordBatch],
    ) -> KaratResult<Vec<String>> {
        self.add(rows).map_err(arrow(table))?;
        self.met_twice(ctx, table).await
    }

    /// The keys whose hash was added twice, counted exactly by a scan of the table.
    async fn met_twice(&mut self, ctx: &SessionContext, table: &str) -> KaratResult<Vec<String>> {
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.sort_unstable();
        let twice: HashSet<u64> = hashes
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .take(RECOUNTED)
            .collect();
        drop(hashes);
        if twice.is_empty() {
            return Ok(Vec::new());
        }
        self.count_exactly(ctx, table, &twice).await
    }

    /// The second scan: the rows whose hash was met twice, counted by their key.
    async fn count_exactly(
        &self,
        ctx: &SessionContext,
        table: &str,
        twice: &HashSet<u64>,
    ) -> KaratResult<Vec<String>> {
        let mut counts: BTreeMap<Vec<u8>, (u64, String)> = BTreeMap::new();
        let mut scan = self.scan(ctx, table).await?;
        while let Some(b) = scan.next().await {
            let b = self.batch(b, table)?;
            let keys = self.rows_of(&b).map_err(arrow(table))?;
            let flagged: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| twice.contains(&self.state.hash_one(k.data())))
                .map(|(r, _)| r)
                .collect();
            if flagged.is_empty() {
                continue;
            }
            let shown: Vec<_> = b.columns().iter().map(delta::utf8).collect();
            for r in flagged {
                let k = keys.row(r);
                let entry = counts.entry(k.data().to_vec()).or_insert_with(|| {
                    let parts: Vec<String> = self
                        .names
                        .iter()
                        .zip(&shown)
                        .map(|(name, v)| {
                            format!("{name}={}", if v.is_valid(r) { v.value(r) } else { "null" })
                        })
                        .collect();
                    (0, parts.join(","))
                });
                entry.0 += 1;
            }
        }
        Ok(counts
            .into_values()
            .filter(|(n, _)| *n > 1)
            .take(SHOWN)
            .map(|(n, key)| format!("{key} ({n} rows)"))
            .collect())
    }

    /// The key columns of every row of the table registered as `s`.
    async fn scan(
        &self,
        ctx: &SessionContext,
        table: &str,
    ) -> KaratResult<deltalake::datafusion::execution::SendableRecordBatchStream> {
        let cols: Vec<String> = self.names.iter().map(|n| ident(n)).collect();
        let q = format!("SELECT {} FROM s", cols.join(", "));
        delta::query_stream(ctx, &q, &format!("key check of {table}")).await
    }

    /// A scanned batch with its key columns of the types the keys were added with.
    fn batch(
        &self,
        b: Result<RecordBatch, deltalake::datafusion::error::DataFusionError>,
        table: &str,
    ) -> KaratResult<RecordBatch> {
        let b = b.map_err(|e| KaratError::sql(format!("key check of {table}"), e))?;
        let cols = b
            .columns()
            .iter()
            .zip(&self.types)
            .map(|(c, t)| {
                if c.data_type() == t {
                    Ok(c.clone())
                } else {
                    deltalake::arrow::compute::cast(c, t)
                }
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(arrow(table))?;
        let fields: Vec<_> = self
            .names
            .iter()
            .zip(&self.types)
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect();
        RecordBatch::try_new(
            std::sync::Arc::new(deltalake::arrow::datatypes::Schema::new(fields)),
            cols,
        )
        .map_err(arrow(table))
    }

    fn rows_of(&self, b: &RecordBatch) -> Result<Rows, ArrowError> {
        self.converter
            .convert_columns(&super::keyset::columns(b, &self.names)?)
    }
}

/// The hashes bucketed by their top bits, each kept as the 32 bits below those, with
/// whether the scan met it yet. About eight to a bucket: the bucket starts (4 bytes a
/// bucket) fit in a core's cache and the fingerprints (4 bytes a key) in the shared one, so
/// a row of the scan costs about one cache miss.
struct Buckets {
    bits: u32,
    /// `starts[b]..starts[b + 1]` are bucket `b`'s fingerprints in `prints`.
    starts: Vec<u32>,
    prints: Vec<u32>,
    met: Vec<u64>,
}

impl Buckets {
    fn of(hashes: &[u64]) -> Buckets {
        let bits = (hashes.len() / 8).max(1).ilog2().clamp(1, 30);
        let mut starts = vec![0u32; (1 << bits) + 1];
        let shape = Buckets {
            bits,
            starts: Vec::new(),
            prints: Vec::new(),
            met: Vec::new(),
        };
        for h in hashes {
            starts[shape.bucket(*h) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut next = starts.clone();
        let mut prints = vec![0u32; hashes.len()];
        for h in hashes {
            let at = &mut next[shape.bucket(*h)];
            prints[*at as usize] = shape.print(*h);
            *at += 1;
        }
        Buckets {
            starts,
            met: vec![0; hashes.len().div_ceil(64)],
            prints,
            ..shape
        }
    }

    fn bucket(&self, hash: u64) -> usize {
        (hash >> (64 - self.bits)) as usize
    }

    fn print(&self, hash: u64) -> u32 {
        (hash >> (32 - self.bits)) as u32
    }

    /// Reads the first fingerprint of each hash's bucket: the loads do not wait for one
    /// another, so a batch's cache misses overlap, and [`Buckets::meet`] then finds its
    /// bucket in cache instead of waiting for memory once a row (most of a scan's time).
    fn warm(&self, hashes: &[u64]) {
        let mut seen = 0u32;
        for h in hashes {
            let from = self.starts[self.bucket(*h)] as usize;
            seen ^= self.prints.get(from).copied().unwrap_or(0);
        }
        std::hint::black_box(seen);
    }

    /// Notes a row with `hash`; true when a row with it was met before.
    fn meet(&mut self, hash: u64) -> bool {
        let b = self.bucket(hash);
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let print = self.print(hash);
        let Some(i) = self.prints[from..to].iter().position(|p| *p == print) else {
            return false;
        };
        let (word, bit) = ((from + i) / 64, 1u64 << ((from + i) % 64));
        let before = self.met[word] & bit != 0;
        self.met[word] |= bit;
        before
    }
}

pub(super) fn arrow(table: &str) -> impl Fn(ArrowError) -> KaratError + '_ {
    move |e| KaratError::arrow(format!("key check of {table}"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_met_twice_is_told_and_one_never_added_is_ignored() {
        let hashes: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut index = Buckets::of(&hashes);
        assert!(hashes.iter().all(|h| !index.meet(*h)), "first meetings");
        assert!(index.meet(hashes[7]), "second meeting");
        // one that differs from every added hash in the bits the index keeps
        let never = hashes[7] ^ (1 << 40);
        assert!(hashes.iter().all(|h| h >> 26 != never >> 26));
        assert!(!index.meet(never), "a hash never added");
        assert!(!index.meet(never), "still never added");
    }

    fn keys(ids: &[&str], n: &[i64], view: bool) -> RecordBatch {
        use deltalake::arrow::array::{Int64Array, StringArray, StringViewArray};
        let id: ArrayRef = if view {
            std::sync::Arc::new(StringViewArray::from(ids.to_vec()))
        } else {
            std::sync::Arc::new(StringArray::from(ids.to_vec()))
        };
        let schema = deltalake::arrow::datatypes::Schema::new(vec![
            Field::new("id", id.data_type().clone(), false),
            Field::new("n", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![id, std::sync::Arc::new(Int64Array::from(n.to_vec()))],
        )
        .unwrap()
    }

    /// `stored` registered as `s`, read back as string views as Parquet scans give them.
    fn table(stored: RecordBatch) -> SessionContext {
        let ctx = SessionContext::new();
        let t = deltalake::datafusion::datasource::MemTable::try_new(
            stored.schema(),
            vec![vec![stored]],
        )
        .unwrap();
        ctx.register_table("s", std::sync::Arc::new(t)).unwrap();
        ctx
    }

    fn check(added: &[RecordBatch]) -> KeyCheck {
        let fields = [
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ];
        let mut check = KeyCheck::of_columns("t", &fields).unwrap();
        for b in added {
            check.add(std::slice::from_ref(b)).unwrap();
        }
        check
    }

    #[tokio::test]
    async fn a_key_of_two_columns_held_twice_is_named_once_with_its_count() {
        // (a,1) three times, (a,2) and (b,1) once: the whole key counts, not its parts
        let stored = keys(&["a", "a", "b", "a", "a"], &[1, 2, 1, 1, 1], true);
        let added = [
            keys(&["a", "b"], &[1, 1], false),
            keys(&["a", "a"], &[2, 1], false),
        ];
        let found = check(&added).duplicates(&table(stored), "t").await.unwrap();
        assert_eq!(found, vec!["id=a,n=1 (3 rows)".to_string()]);
    }

    #[tokio::test]
    async fn a_key_held_twice_but_not_added_is_not_this_runs_to_report() {
        let stored = keys(&["a", "a", "b"], &[1, 1, 1], true);
        let found = check(&[keys(&["b", "c"], &[1, 1], false)])
            .duplicates(&table(stored), "t")
            .await
            .unwrap();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn one_hash_makes_a_usable_index() {
        let mut index = Buckets::of(&[u64::MAX]);
        assert!(!index.meet(u64::MAX));
        assert!(index.meet(u64::MAX));
        assert!(!index.meet(0));
    }
}
