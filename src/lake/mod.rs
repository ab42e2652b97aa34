//! The lake: one object store (local folder by default, S3/GCS/Azure by URL) holding bronze
//! objects, the Delta tables of silver, gold and dead letters, and karat's own ledger under
//! `_karat/`. Every other module reaches storage through here; nothing else assumes a local disk.

pub mod append;
pub mod compact;
pub mod deletion;
pub mod delta;
pub mod encoding;
pub mod fault;
pub mod footers;
pub mod layout;
pub mod lease;
#[cfg(unix)]
pub mod local;
pub mod lookup;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod vectors;

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::error::{KaratError, KaratResult};

/// The contents of a process-wide cache (`cell`), locked; created empty on first use. A lock
/// poisoned by a panic still hands its contents over: a cache only ever holds copies of what
/// storage holds, each entry inserted whole.
pub(crate) fn process_wide<T: Default>(
    cell: &'static std::sync::OnceLock<std::sync::Mutex<T>>,
) -> std::sync::MutexGuard<'static, T> {
    cell.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A handle on the lake's root.
#[derive(Clone)]
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    /// How long a writer waits for another writer's lease.
    writer_wait: std::time::Duration,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lake({})", self.root)
    }
}

impl Lake {
    /// Opens (and for a local folder, creates) the lake at `url`. Cloud credentials come from the
    /// usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn open(url: &Url) -> KaratResult<Lake> {
        let mut root = url.clone();
        if !root.path().ends_with('/') {
            let p = format!("{}/", root.path());
            root.set_path(&p);
        }
        let store: Arc<dyn ObjectStore> = match root.scheme() {
            "file" => {
                let dir = root.to_file_path().map_err(|_| {
                    KaratError::Usage(format!("lake url {root} is not a local path"))
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| KaratError::io(&dir, e))?;
                let folder = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| KaratError::storage(root.as_str(), e))?;
                #[cfg(unix)]
                let folder = {
                    local::register();
                    local::Inline::new(folder)
                };
                Arc::new(folder)
            }
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            scheme => {
                let (store, prefix) = cloud_store(&root, scheme)?;
                delta::register_cloud_handlers(&root)?;
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            }
        };
        Ok(Lake {
            root,
            store,
            writer_wait: std::time::Duration::ZERO,
        })
    }

    /// The same lake, whose writers wait up to `wait` for another writer's lease.
    pub fn with_writer_wait(mut self, wait: std::time::Duration) -> Lake {
        self.writer_wait = wait;
        self
    }

    /// How long a writer waits for another writer's lease.
    pub fn writer_wait(&self) -> std::time::Duration {
        self.writer_wait
    }

    /// The lake's root URL (always ending in `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// URL of a folder below the root, e.g. a Delta table (`silver/orders/`).
    pub fn url_of(&self, rel: &str) -> Url {
        let rel = rel.trim_matches('/');
        self.root
            .join(&format!("{rel}/"))
            .expect("relative lake path joins onto a directory URL")
    }

    /// Writes an object (whole, atomically on every object store).
    pub async fn put(&self, rel: &str, bytes: Bytes) -> KaratResult<()> {
        self.store
            .put(&ObjPath::from(rel), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| KaratError::storage(rel, e))?;
        Ok(())
    }

    /// Writes an object only if none exists at `rel`; false when one does.
    pub async fn put_if_absent(&self, rel: &str, bytes: Bytes) -> KaratResult<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&ObjPath::from(rel), PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(KaratError::storage(rel, e)),
        }
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, rel: &str) -> KaratResult<()> {
        match self.store.delete(&ObjPath::from(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(KaratError::storage(rel, e)),
        }
    }

    /// Reads a whole object.
    pub async fn get(&self, rel: &str) -> KaratResult<Bytes> {
        let res = self
            .store
            .get(&ObjPath::from(rel))
            .await
            .map_err(|e| KaratError::storage(rel, e))?;
        res.bytes().await.map_err(|e| KaratError::storage(rel, e))
    }

    /// Reads an object, `None` when it does not exist.
    pub async fn get_opt(&self, rel: &str) -> KaratResult<Option<Bytes>> {
        match self.store.get(&ObjPath::from(rel)).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(|e| KaratError::storage(rel, e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(KaratError::storage(rel, e)),
        }
    }

    /// True when the object exists.
    pub async fn exists(&self, rel: &str) -> KaratResult<bool> {
        match self.store.head(&ObjPath::from(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(KaratError::storage(rel, e)),
        }
    }

    /// Every object below a prefix (recursively), sorted by path.
    pub async fn list(&self, prefix: &str) -> KaratResult<Vec<ObjectMeta>> {
        let p = ObjPath::from(prefix);
        let mut items: Vec<ObjectMeta> = self
            .store
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| KaratError::storage(prefix, e))?;
        items.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(items)
    }
}

fn cloud_store(root: &Url, scheme: &str) -> KaratResult<(Arc<dyn ObjectStore>, ObjPath)> {
    let bucket_url = format!("{}://{}", scheme, root.host_str().unwrap_or_default());
    let prefix = ObjPath::from(root.path().trim_matches('/'));
    let err = |e: object_store::Error| KaratError::storage(root.as_str(), e);
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(bucket_url)
                .build()
                .map_err(err)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(bucket_url)
                .build()
                .map_err(err)?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(root.as_str())
                .build()
                .map_err(err)?,
        ),
        other => {
            return Err(KaratError::Usage(format!(
                "lake url scheme \"{other}\" is not supported"
            )));
        }
    };
    Ok((store, prefix))
}
