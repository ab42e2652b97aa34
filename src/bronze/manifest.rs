//! The manifest of a bronze batch: content checksum, counts and inferred schema. Its presence is
//! what makes a batch exist: the object is written first, the manifest last. A process reads
//! each manifest once, however often it lists them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{KaratError, KaratResult};
use crate::lake::{Lake, layout};

/// One immutable bronze batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub batch_id: String,
    pub source: String,
    /// sha256 of the original bytes (as read from the file or the HTTP bodies).
    pub sha256: String,
    pub ingest_date: String,
    /// RFC 3339 with microseconds, UTC.
    pub ingested_at: String,
    /// The file path or URL the bytes came from.
    pub origin: String,
    /// Lake path of the gzip NDJSON object.
    pub object: String,
    pub bytes_in: u64,
    pub records: u64,
    /// Lines that were not JSON objects (kept as `_raw`).
    pub invalid: u64,
    pub blank: u64,
    /// Field → JSON type(s), e.g. `"amount": "number|string"`.
    pub schema: BTreeMap<String, String>,
    /// The record count the source declared for this unit (`expected_count_field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_records: Option<u64>,
}

impl Manifest {
    /// A manifest of batch `batch_id` of source `orders` holding `records` records, for tests.
    #[cfg(test)]
    pub fn example(batch_id: &str, records: u64) -> Manifest {
        Manifest {
            batch_id: batch_id.into(),
            source: "orders".into(),
            sha256: "00".into(),
            ingest_date: "2026-11-24".into(),
            ingested_at: "2026-11-24T00:00:00.000000Z".into(),
            origin: "orders.ndjson".into(),
            object: format!("bronze/orders/{batch_id}.ndjson.gz"),
            bytes_in: 1,
            records,
            invalid: 0,
            blank: 0,
            schema: BTreeMap::new(),
            expected_records: None,
        }
    }

    /// Short fingerprint of the inferred schema (stable across runs).
    pub fn schema_fingerprint(&self) -> String {
        schema_fingerprint(&self.schema)
    }
}

/// Short fingerprint of a field → type map.
pub fn schema_fingerprint(schema: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (k, v) in schema {
        h.update(k.as_bytes());
        h.update(b":");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())[..12].to_string()
}

/// Reads the manifest of a batch, if it exists.
pub async fn read(lake: &Lake, source: &str, batch_id: &str) -> KaratResult<Option<Manifest>> {
    let path = layout::bronze_manifest(source, batch_id);
    match lake.get_opt(&path).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KaratError::Other(format!("bronze manifest {path}: {e}"))),
    }
}

/// Writes a manifest (after its object).
pub async fn write(lake: &Lake, m: &Manifest) -> KaratResult<()> {
    let path = layout::bronze_manifest(&m.source, &m.batch_id);
    let bytes = serde_json::to_vec_pretty(m).expect("manifest serialises");
    lake.put(&path, bytes.into()).await
}

/// Every batch of a source, oldest first (by ingest time, then id). A manifest already read
/// by this process is not read again ([`Seen`]): a run lists them several times, and the
/// dashboard on every refresh, while only the new ones need reading.
pub async fn list(lake: &Lake, source: &str) -> KaratResult<Vec<Manifest>> {
    let folder = layout::bronze_manifests(source);
    let metas = lake.list(&folder).await?;
    let cache = lake.url_of(&folder).to_string();
    let reads = futures::stream::iter(metas.into_iter().map(|m| {
        let (lake, cache) = (lake.clone(), cache.clone());
        async move {
            let path = m.location.to_string();
            let seen = Seen::of(&lake, &m);
            if let Some(known) = seen.get(&cache) {
                return Ok((seen, known));
            }
            let bytes = lake.get(&path).await?;
            let manifest = serde_json::from_slice::<Manifest>(&bytes)
                .map_err(|e| KaratError::Other(format!("bronze manifest {path}: {e}")))?;
            Ok((seen, manifest))
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let read = reads.into_iter().collect::<KaratResult<Vec<_>>>()?;
    Seen::keep(&cache, &read);
    let mut out: Vec<Manifest> = read.into_iter().map(|(_, m)| m).collect();
    out.sort_by(|a, b| (&a.ingested_at, &a.batch_id).cmp(&(&b.ingested_at, &b.batch_id)));
    Ok(out)
}

/// A manifest this process read, by its object's address, size, modification time and entity
/// tag. Bronze writes a batch's manifest once (never over one that exists); one rewritten
/// beside karat differs in tag (or time, or size), so is read again. Per manifests folder,
/// the process keeps those its last listing returned: one copy of each, and none deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Seen {
    url: String,
    size: u64,
    modified: Option<i64>,
    e_tag: Option<String>,
}

/// Per manifests folder (its URL), the manifests its last listing returned.
type Folders = HashMap<String, HashMap<Seen, Manifest>>;

impl Seen {
    fn of(lake: &Lake, meta: &object_store::ObjectMeta) -> Seen {
        Seen {
            url: lake.url_of(meta.location.as_ref()).to_string(),
            size: meta.size,
            modified: meta.last_modified.timestamp_nanos_opt(),
            e_tag: meta.e_tag.clone(),
        }
    }

    fn folders() -> std::sync::MutexGuard<'static, Folders> {
        static FOLDERS: OnceLock<Mutex<Folders>> = OnceLock::new();
        let folders = FOLDERS.get_or_init(Default::default);
        folders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The manifest of folder `cache`'s last listing, if this is it.
    fn get(&self, cache: &str) -> Option<Manifest> {
        Seen::folders().get(cache)?.get(self).cloned()
    }

    /// Keeps what a listing of folder `cache` returned, and only that.
    fn keep(cache: &str, read: &[(Seen, Manifest)]) {
        let listed = read.iter().cloned().collect();
        Seen::folders().insert(cache.to_string(), listed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(records: u64) -> Manifest {
        Manifest::example("b1", records)
    }

    #[tokio::test]
    async fn a_manifest_rewritten_beside_karat_is_read_again_and_a_deleted_one_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&url::Url::from_directory_path(dir.path()).unwrap()).unwrap();
        write(&lake, &manifest(3)).await.unwrap();
        assert_eq!(list(&lake, "orders").await.unwrap()[0].records, 3);
        // the same size, written again: another tag and time
        write(&lake, &manifest(4)).await.unwrap();
        assert_eq!(list(&lake, "orders").await.unwrap()[0].records, 4);
        lake.delete(&layout::bronze_manifest("orders", "b1"))
            .await
            .unwrap();
        assert!(list(&lake, "orders").await.unwrap().is_empty());
        let folder = lake.url_of(&layout::bronze_manifests("orders")).to_string();
        assert_eq!(
            Seen::folders()[&folder].len(),
            0,
            "none kept but the listing's"
        );
    }
}
