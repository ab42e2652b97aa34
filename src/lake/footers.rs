//! Parquet footers read once a process.
//!
//! A daily run looks keys up in the same data files several times (the stored versions of the
//! day's keys, then the rows they supersede, then the check that no key is held twice), and
//! each reader began by fetching the file's footer again: two reads of the object store (its
//! last eight bytes, then the metadata they point to) before a byte of data. A Delta data file
//! is never written over (delta-rs names each by a fresh UUID; a rewrite is a new file), so its
//! footer, once read, holds for as long as the file does: it is kept by the file's address and
//! size. The cache is bounded by the memory the footers take ([`BUDGET`]); past it, further
//! footers are read each time (a footer is a few kilobytes, so the budget is thousands of
//! files).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use deltalake::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::ParquetMetaData;

/// Bytes of footers kept at most.
pub const BUDGET: usize = 32 << 20;

/// A data file, by its address and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// The table's address and the file's path in it.
    pub url: String,
    /// Its length in bytes (a file rewritten in place, which Delta never does, would most
    /// likely differ in length too).
    pub size: u64,
}

#[derive(Default)]
struct Footers {
    by_file: HashMap<FileKey, Arc<ParquetMetaData>>,
    bytes: usize,
}

fn footers() -> std::sync::MutexGuard<'static, Footers> {
    static FOOTERS: OnceLock<Mutex<Footers>> = OnceLock::new();
    super::process_wide(&FOOTERS)
}

/// The footer of `file` read through `reader` with `options`: the one kept if this process
/// read it before, else read now and kept. On a hit only the options that apply to a footer
/// already read take effect (the schema, virtual columns); the footer was decoded as the
/// first reader asked, so every caller must ask the same of the footer itself (karat's one
/// caller, [`super::lookup`], reads no page index).
pub async fn load<R: AsyncFileReader>(
    file: &FileKey,
    reader: &mut R,
    options: ArrowReaderOptions,
) -> Result<ArrowReaderMetadata, ParquetError> {
    let kept = footers().by_file.get(file).cloned();
    if let Some(metadata) = kept {
        return ArrowReaderMetadata::try_new(metadata, options);
    }
    let read = ArrowReaderMetadata::load_async(reader, options).await?;
    keep(file, read.metadata().clone());
    Ok(read)
}

/// Keeps `metadata` while the budget allows: once it is spent, footers already kept stay
/// (a lookup walks the same files in the same order every time, which clearing would defeat)
/// and new ones are read each time.
fn keep(file: &FileKey, metadata: Arc<ParquetMetaData>) {
    let size = metadata.memory_size();
    let mut kept = footers();
    if kept.by_file.contains_key(file) || kept.bytes + size > BUDGET {
        return;
    }
    kept.bytes += size;
    kept.by_file.insert(file.clone(), metadata);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use deltalake::arrow::array::{ArrayRef, Int64Array};
    use deltalake::arrow::record_batch::RecordBatch;
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::file::metadata::ParquetMetaDataReader;
    use futures::FutureExt;
    use futures::future::BoxFuture;
    use std::ops::Range;

    /// A Parquet file in memory that counts the reads asked of it.
    struct Counted {
        file: Bytes,
        reads: usize,
    }

    impl AsyncFileReader for Counted {
        fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
            self.reads += 1;
            let bytes = self.file.slice(range.start as usize..range.end as usize);
            async move { Ok(bytes) }.boxed()
        }

        fn get_metadata<'a>(
            &'a mut self,
            _options: Option<&'a ArrowReaderOptions>,
        ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
            self.reads += 1;
            let read = ParquetMetaDataReader::new().parse_and_finish(&self.file);
            async move { read.map(Arc::new) }.boxed()
        }
    }

    fn parquet() -> Bytes {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100));
        let batch = RecordBatch::try_from_iter([("id", ids)]).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    #[tokio::test]
    async fn a_footer_is_read_once_per_file() {
        let file = parquet();
        let key = FileKey {
            url: format!("memory:///footers-test/{}.parquet", uuid::Uuid::new_v4()),
            size: file.len() as u64,
        };
        // as the key lookup asks: rows numbered by a virtual column, which a hit must keep
        let options = || super::super::lookup::numbered().unwrap();
        let mut first = Counted {
            file: file.clone(),
            reads: 0,
        };
        let read = load(&key, &mut first, options()).await.unwrap();
        assert_eq!(first.reads, 1, "the first open reads the footer");
        let mut again = Counted {
            file: file.clone(),
            reads: 0,
        };
        let kept = load(&key, &mut again, options()).await.unwrap();
        assert_eq!(
            again.reads, 0,
            "a second open of the same file reads nothing"
        );
        assert_eq!(kept.schema(), read.schema());
        assert!(
            kept.schema().field_with_name("_karat_row_number").is_ok(),
            "{:?}",
            kept.schema()
        );
        let rewritten = FileKey {
            size: key.size + 1,
            ..key.clone()
        };
        let mut other = Counted { file, reads: 0 };
        load(&rewritten, &mut other, options()).await.unwrap();
        assert_eq!(other.reads, 1, "another size is another file");
    }
}
