//! The manifest of a bronze batch: content checksum, counts and inferred schema. Its presence is
//! what makes a batch exist: the object is written first, the manifest last.

use std::collections::BTreeMap;

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

/// Every batch of a source, oldest first (by ingest time, then id).
pub async fn list(lake: &Lake, source: &str) -> KaratResult<Vec<Manifest>> {
    let metas = lake.list(&layout::bronze_manifests(source)).await?;
    let reads = futures::stream::iter(metas.into_iter().map(|m| {
        let lake = lake.clone();
        async move {
            let path = m.location.to_string();
            let bytes = lake.get(&path).await?;
            serde_json::from_slice::<Manifest>(&bytes)
                .map_err(|e| KaratError::Other(format!("bronze manifest {path}: {e}")))
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut out = reads.into_iter().collect::<KaratResult<Vec<_>>>()?;
    out.sort_by(|a, b| (&a.ingested_at, &a.batch_id).cmp(&(&b.ingested_at, &b.batch_id)));
    Ok(out)
}
