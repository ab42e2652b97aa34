//! The rows deletion vectors delete, read once a process.
//!
//! A late daily run asks which rows each file's deletion vector deletes several times on the
//! same table version: the lookup of the day's keys, the merge of a crowded partition, the
//! marking of the rows it deletes, the check of the written keys, the accounting's read of
//! files holding several batches. Each asked delta-rs to read and expand every vector of the
//! table (a flag per row of the file), 10–20 ms at thirty days of history. A vector is named
//! by its descriptor in the Delta log (a file written once under a fresh UUID, its offset and
//! size, or the vector itself when inline), so what it deletes is kept by that descriptor:
//! a reading whose vectors were all read before reads nothing, and a new table version reads
//! its vectors again only when one of them is new, and then keeps that version's alone. The
//! cache is bounded by the row numbers it holds ([`BUDGET`]); past it, a table's vectors are
//! read each time they are asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use deltalake::kernel::{DeletionVectorDescriptor, LogicalFileView};

use super::lookup::file_name;

/// Row numbers kept at most (8 bytes each), over every table.
pub const BUDGET: usize = 4 << 20;

/// The rows each file's deletion vector deletes (ascending), by file name.
pub type Deleted = HashMap<String, Arc<[u64]>>;

/// A deletion vector of a table, by its descriptor: its storage type, path (or the inline
/// vector itself), offset and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorKey {
    storage: String,
    path_or_inline: String,
    offset: Option<i32>,
    size: i32,
}

impl VectorKey {
    /// `file`'s vector; None when the file has none.
    pub fn of(file: &LogicalFileView) -> Option<VectorKey> {
        file.deletion_vector_descriptor()
            .map(|d| VectorKey::from_descriptor(&d))
    }

    fn from_descriptor(d: &DeletionVectorDescriptor) -> VectorKey {
        VectorKey {
            storage: format!("{:?}", d.storage_type),
            path_or_inline: d.path_or_inline_dv.clone(),
            offset: d.offset,
            size: d.size_in_bytes,
        }
    }
}

/// The vectors kept: per table (by its address), those of the version last read, so that
/// vectors a later version replaced are not kept (a long-lived `karat serve` would fill the
/// budget with them).
#[derive(Default)]
struct Vectors {
    by_table: HashMap<String, HashMap<VectorKey, Arc<[u64]>>>,
    rows: usize,
}

fn vectors() -> std::sync::MutexGuard<'static, Vectors> {
    static VECTORS: OnceLock<Mutex<Vectors>> = OnceLock::new();
    super::process_wide(&VECTORS)
}

/// The vectors of `files` (file name, vector) of the table at `root`, when every one of them
/// is kept.
pub fn kept(root: &str, files: &[(String, VectorKey)]) -> Option<Deleted> {
    let all = vectors();
    let table = all.by_table.get(root);
    files
        .iter()
        .map(|(name, key)| Some((name.clone(), table?.get(key)?.clone())))
        .collect()
}

/// What the vectors of `files` of the table at `root` delete, as just `read` (by file URL, as
/// delta-rs names them), by file name. They replace what was kept of the table, while the
/// budget allows; past it the table keeps nothing and is read each time it is asked.
pub fn keep(root: &str, files: &[(String, VectorKey)], read: HashMap<String, Vec<u64>>) -> Deleted {
    let read: Deleted = read
        .into_iter()
        .map(|(path, rows)| (file_name(&path).to_string(), Arc::from(rows)))
        .collect();
    let current: HashMap<VectorKey, Arc<[u64]>> = files
        .iter()
        .filter_map(|(name, key)| Some((key.clone(), read.get(name)?.clone())))
        .collect();
    let size = |table: &HashMap<VectorKey, Arc<[u64]>>| table.values().map(|r| r.len()).sum();
    let mut all = vectors();
    let before: usize = all.by_table.remove(root).as_ref().map_or(0, size);
    all.rows -= before;
    let now: usize = size(&current);
    if all.rows + now <= BUDGET {
        all.rows += now;
        all.by_table.insert(root.to_string(), current);
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "file:///t-vectors-test/";

    fn key(uuid: &str, offset: i32) -> VectorKey {
        let d = DeletionVectorDescriptor {
            storage_type: deltalake::kernel::StorageType::UuidRelativePath,
            path_or_inline_dv: uuid.to_string(),
            offset: Some(offset),
            size_in_bytes: 40,
            cardinality: 2,
        };
        VectorKey::from_descriptor(&d)
    }

    #[test]
    fn vectors_are_kept_by_descriptor_per_table_for_the_version_last_read() {
        let a = ("part-a.parquet".to_string(), key("uuid-one", 1));
        let b = ("part-b.parquet".to_string(), key("uuid-one", 45));
        assert_eq!(kept(ROOT, std::slice::from_ref(&a)), None);
        let read = HashMap::from([
            ("p=1/part-a.parquet".to_string(), vec![3, 7]),
            ("p=1/part-b.parquet".to_string(), vec![0]),
        ]);
        let deleted = keep(ROOT, &[a.clone(), b.clone()], read);
        assert_eq!(&*deleted["part-a.parquet"], &[3, 7]);
        let again = kept(ROOT, &[a.clone(), b.clone()]).expect("both kept");
        assert_eq!(again, deleted);
        assert_eq!(
            kept("file:///another-table/", std::slice::from_ref(&a)),
            None
        );
        // the same file with a new vector (another offset) is not a hit
        let b2 = ("part-b.parquet".to_string(), key("uuid-two", 0));
        assert_eq!(kept(ROOT, &[a.clone(), b2.clone()]), None);
        // reading the new version replaces the table's vectors: the old one of b is gone
        let read = HashMap::from([
            ("p=1/part-a.parquet".to_string(), vec![3, 7]),
            ("p=1/part-b.parquet".to_string(), vec![0, 5]),
        ]);
        keep(ROOT, &[a.clone(), b2.clone()], read);
        assert_eq!(
            &*kept(ROOT, &[a.clone(), b2]).expect("kept")["part-b.parquet"],
            &[0, 5]
        );
        assert_eq!(kept(ROOT, &[a, b]), None);
    }
}
