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
//! its vectors again only when one of them is new. The cache is bounded by the row numbers
//! it holds ([`BUDGET`]); past it, vectors are read each time they are asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use deltalake::kernel::{DeletionVectorDescriptor, LogicalFileView};

use super::lookup::file_name;

/// Row numbers kept at most (8 bytes each).
pub const BUDGET: usize = 4 << 20;

/// The rows each file's deletion vector deletes (ascending), by file name.
pub type Deleted = HashMap<String, Arc<[u64]>>;

/// A deletion vector, by the table it belongs to and its descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorKey(String);

impl VectorKey {
    /// `file`'s vector in the table at `root`; None when the file has none.
    pub fn of(root: &str, file: &LogicalFileView) -> Option<VectorKey> {
        file.deletion_vector_descriptor()
            .map(|d| VectorKey::from_descriptor(root, &d))
    }

    fn from_descriptor(root: &str, d: &DeletionVectorDescriptor) -> VectorKey {
        VectorKey(format!(
            "{root}|{:?}|{}|{:?}|{}",
            d.storage_type, d.path_or_inline_dv, d.offset, d.size_in_bytes
        ))
    }
}

#[derive(Default)]
struct Vectors {
    rows: HashMap<VectorKey, Arc<[u64]>>,
    kept: usize,
}

fn vectors() -> std::sync::MutexGuard<'static, Vectors> {
    static VECTORS: OnceLock<Mutex<Vectors>> = OnceLock::new();
    VECTORS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The files' vectors (file name, vector) as kept, when every one of them is.
pub fn kept(files: &[(String, VectorKey)]) -> Option<Deleted> {
    let kept = vectors();
    files
        .iter()
        .map(|(name, key)| Some((name.clone(), kept.rows.get(key)?.clone())))
        .collect()
}

/// Keeps what the files' vectors delete, as just `read` (by file path, as delta-rs names
/// them), while the budget allows: once it is spent, the vectors kept stay and new ones are
/// read each time. The rows read, by file name.
pub fn keep(files: &[(String, VectorKey)], read: HashMap<String, Vec<u64>>) -> Deleted {
    let read: Deleted = read
        .into_iter()
        .map(|(path, rows)| (file_name(&path).to_string(), Arc::from(rows)))
        .collect();
    let mut kept = vectors();
    for (name, key) in files {
        let Some(rows) = read.get(name) else {
            continue;
        };
        if kept.rows.contains_key(key) || kept.kept + rows.len() > BUDGET {
            continue;
        }
        kept.kept += rows.len();
        kept.rows.insert(key.clone(), rows.clone());
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uuid: &str, offset: i32) -> VectorKey {
        let d = DeletionVectorDescriptor {
            storage_type: deltalake::kernel::StorageType::UuidRelativePath,
            path_or_inline_dv: uuid.to_string(),
            offset: Some(offset),
            size_in_bytes: 40,
            cardinality: 2,
        };
        VectorKey::from_descriptor("file:///t-vectors-test/", &d)
    }

    #[test]
    fn vectors_are_kept_by_descriptor_and_all_or_nothing() {
        let a = ("part-a.parquet".to_string(), key("uuid-one", 1));
        let b = ("part-b.parquet".to_string(), key("uuid-one", 45));
        assert_eq!(kept(std::slice::from_ref(&a)), None);
        let read = HashMap::from([
            ("p=1/part-a.parquet".to_string(), vec![3, 7]),
            ("p=1/part-b.parquet".to_string(), vec![0]),
        ]);
        let deleted = keep(&[a.clone(), b.clone()], read);
        assert_eq!(&*deleted["part-a.parquet"], &[3, 7]);
        let again = kept(&[a.clone(), b.clone()]).expect("both kept");
        assert_eq!(again, deleted);
        // the same file with a new vector (another offset) is not a hit
        let b2 = ("part-b.parquet".to_string(), key("uuid-one", 90));
        assert_eq!(kept(&[a, b2]), None);
    }
}
