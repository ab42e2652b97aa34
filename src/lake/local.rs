//! A local lake's reads, done where they are asked for.
//!
//! object_store's local folder hands every call to tokio's blocking threads and waits for the
//! answer: a read of a few kilobytes from the page cache then costs two thread switches (a
//! wake-up there, one back), more than the read. A daily run reads small pieces of many files
//! (footers, key columns, Delta commits and deletion vectors of every partition it touches),
//! so these switches grew with the lake's history: on day 30 of the 30 × 100k bench, 35,000
//! futex calls and a third of the run's CPU in the kernel, against 2,300 on day 1.
//!
//! [`Inline`] answers plain reads of up to [`INLINE_UP_TO`] bytes (a file, or byte ranges,
//! without conditions) on the calling thread, with the same results and error kinds as the
//! folder store, and passes everything else (larger reads, writes, lists, conditional reads,
//! heads) to it unchanged. [`register`] makes it the store of `file://` Delta tables too. An
//! inline read is a `pread` of at most a megabyte that the page cache holds or a disk fetches
//! in milliseconds, which a worker thread may wait for; a larger one (a bronze object, a whole
//! column of a big file) still goes to a blocking thread, where it cannot hold up the runtime.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Once};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use url::Url;

/// Reads of at most this many bytes run on the calling thread.
pub const INLINE_UP_TO: u64 = 1 << 20;

/// A local folder whose small plain reads run on the calling thread.
#[derive(Debug)]
pub struct Inline {
    inner: LocalFileSystem,
}

impl Inline {
    /// `inner`, its small plain reads answered here.
    pub fn new(inner: LocalFileSystem) -> Inline {
        Inline { inner }
    }
}

impl std::fmt::Display for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inline({})", self.inner)
    }
}

/// Whether `options` ask for the object's bytes and nothing else.
fn plain(options: &GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head
}

fn not_found_or(e: std::io::Error, path: &std::path::Path) -> object_store::Error {
    let shown = path.to_string_lossy().to_string();
    if e.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: shown,
            source: Box::new(e),
        }
    } else {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("reading {shown}: {e}").into(),
        }
    }
}

/// `range` of `file` (at `path`, for errors), read whole.
fn read_range(file: &File, path: &std::path::Path, range: Range<u64>) -> Result<Bytes> {
    let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("reading {}: range {range:?} too large", path.display()).into(),
        }
    })?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, range.start).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            let size = file.metadata().map(|m| m.len()).unwrap_or_default();
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!(
                    "reading {}: range {range:?} is past its end ({size} bytes)",
                    path.display()
                )
                .into(),
            }
        } else {
            not_found_or(e, path)
        }
    })?;
    Ok(Bytes::from(buf))
}

/// The object's description, as the folder store gives it (its entity tag included: inode,
/// modification time and size, in hexadecimal).
fn meta_of(location: &Path, m: &std::fs::Metadata) -> ObjectMeta {
    let micros = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    ObjectMeta {
        location: location.clone(),
        last_modified: m
            .modified()
            .map(chrono::DateTime::<chrono::Utc>::from)
            .unwrap_or_default(),
        size: m.len(),
        e_tag: Some(format!("{:x}-{micros:x}-{:x}", m.ino(), m.len())),
        version: None,
    }
}

impl Inline {
    /// `location` read here, or `None` when the read is too large to be ([`INLINE_UP_TO`]).
    fn get_here(&self, location: &Path, options: &GetOptions) -> Result<Option<GetResult>> {
        let path = self.inner.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| not_found_or(e, &path))?;
        let metadata = file.metadata().map_err(|e| not_found_or(e, &path))?;
        if metadata.is_dir() {
            return Err(object_store::Error::NotFound {
                path: path.to_string_lossy().to_string(),
                source: "is a directory".into(),
            });
        }
        let meta = meta_of(location, &metadata);
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        if range.end - range.start > INLINE_UP_TO {
            return Ok(None);
        }
        let bytes = read_range(&file, &path, range.clone())?;
        Ok(Some(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes: Attributes::default(),
        }))
    }
}

#[async_trait]
impl ObjectStore for Inline {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if plain(&options)
            && let Some(here) = self.get_here(location, &options)?
        {
            return Ok(here);
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let asked: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        if asked > INLINE_UP_TO {
            return self.inner.get_ranges(location, ranges).await;
        }
        let path = self.inner.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| not_found_or(e, &path))?;
        ranges
            .iter()
            .map(|r| read_range(&file, &path, r.clone()))
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// The store of `file://` URLs delta-rs opens tables with.
#[derive(Debug, Default)]
struct Factory;

impl deltalake::logstore::ObjectStoreFactory for Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<(deltalake::logstore::ObjectStoreRef, Path)> {
        if url.host_str().is_some_and(|h| !h.is_empty()) {
            return Err(deltalake::DeltaTableError::InvalidTableLocation(
                url.to_string(),
            ));
        }
        let path = Path::from_url_path(url.path())?;
        let mut store: deltalake::logstore::ObjectStoreRef =
            Arc::new(Inline::new(LocalFileSystem::new()));
        // as delta-rs's own factory does: I/O on the runtime the options name, if any
        if let Some(runtime) = &config.runtime {
            store = Arc::new(deltalake::logstore::DeltaIOStorageBackend::new(
                store,
                runtime.clone(),
            ));
        }
        Ok((store, path))
    }
}

/// Makes [`Inline`] the store delta-rs opens local tables with (once a process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let file = Url::parse("file://").expect("file:// is a URL");
        deltalake::logstore::object_store_factories().insert(file, Arc::new(Factory));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{GetRange, ObjectStoreExt};

    /// A folder with one file, as the folder store and as [`Inline`] see it.
    fn stores() -> (tempfile::TempDir, LocalFileSystem, Inline) {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("data.bin"), bytes).unwrap();
        // larger than a read done inline: the folder store reads it
        let big = vec![7u8; INLINE_UP_TO as usize + 1];
        std::fs::write(dir.path().join("big.bin"), big).unwrap();
        let folder = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let inline = Inline::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        (dir, folder, inline)
    }

    async fn read(
        store: &dyn ObjectStore,
        name: &str,
        options: GetOptions,
    ) -> (ObjectMeta, Range<u64>, Bytes) {
        let got = store.get_opts(&Path::from(name), options).await.unwrap();
        let (meta, range) = (got.meta.clone(), got.range.clone());
        (meta, range, got.bytes().await.unwrap())
    }

    #[tokio::test]
    async fn reads_what_the_folder_store_reads() {
        let (_dir, folder, inline) = stores();
        let ranges = [
            None,
            Some(GetRange::Bounded(100..4_000)),
            Some(GetRange::Bounded(9_990..20_000)),
            Some(GetRange::Suffix(8)),
            Some(GetRange::Offset(9_000)),
        ];
        for (name, range) in ["data.bin", "big.bin"]
            .into_iter()
            .flat_map(|n| ranges.iter().map(move |r| (n, r)))
        {
            let options = || GetOptions {
                range: range.clone(),
                ..GetOptions::default()
            };
            let want = read(&folder, name, options()).await;
            let got = read(&inline, name, options()).await;
            assert_eq!(got, want, "{name}, range {range:?}");
        }
        let asked = [0..8, 5_000..5_100, 9_992..10_000];
        let path = Path::from("data.bin");
        assert_eq!(
            inline.get_ranges(&path, &asked).await.unwrap(),
            folder.get_ranges(&path, &asked).await.unwrap()
        );
        let (big, asked) = (
            Path::from("big.bin"),
            [0..INLINE_UP_TO, INLINE_UP_TO..INLINE_UP_TO + 1],
        );
        assert_eq!(
            inline.get_ranges(&big, &asked).await.unwrap(),
            folder.get_ranges(&big, &asked).await.unwrap()
        );
    }

    #[tokio::test]
    async fn missing_files_and_conditions_answer_as_the_folder_store() {
        let (dir, _folder, inline) = stores();
        let missing = Path::from("nope.bin");
        let get = inline.get_opts(&missing, GetOptions::default()).await;
        assert!(
            matches!(get, Err(object_store::Error::NotFound { .. })),
            "{get:?}"
        );
        let ranges = inline.get_ranges(&missing, &[0..1, 1..2]).await;
        assert!(
            matches!(ranges, Err(object_store::Error::NotFound { .. })),
            "{ranges:?}"
        );
        let past_end = inline
            .get_ranges(&Path::from("data.bin"), &[0..1, 9_999..10_001])
            .await;
        let said = past_end
            .expect_err("a range past the end is an error")
            .to_string();
        assert!(said.contains("past its end (10000 bytes)"), "{said}");
        let start_past_end = GetOptions {
            range: Some(GetRange::Bounded(10_000..10_010)),
            ..GetOptions::default()
        };
        let got = inline
            .get_opts(&Path::from("data.bin"), start_past_end)
            .await;
        assert!(
            got.is_err(),
            "a range starting at the end is an error: {got:?}"
        );
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        let folder = inline
            .get_opts(&Path::from("folder"), GetOptions::default())
            .await;
        assert!(
            matches!(folder, Err(object_store::Error::NotFound { .. })),
            "{folder:?}"
        );
        let tag = inline.head(&Path::from("data.bin")).await.unwrap().e_tag;
        let unchanged = GetOptions {
            if_none_match: tag,
            ..GetOptions::default()
        };
        let conditional = inline.get_opts(&Path::from("data.bin"), unchanged).await;
        assert!(
            matches!(conditional, Err(object_store::Error::NotModified { .. })),
            "{conditional:?}"
        );
    }
}
