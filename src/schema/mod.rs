//! Schemas over time: fingerprints of contracts and gold outputs, and a source's schema history
//! (inferred bronze schema per batch, with the diff against the previous batch).

use deltalake::arrow::datatypes::Schema;
use serde::Serialize;

use crate::bronze::{SchemaDiff, drift, manifest};
use crate::error::KaratResult;
use crate::lake::Lake;

/// Short fingerprint of an Arrow schema (names and types).
pub fn contract_fingerprint(schema: &Schema) -> String {
    let map = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    manifest::schema_fingerprint(&map)
}

/// One batch in a source's schema history.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaVersion {
    pub batch_id: String,
    pub ingested_at: String,
    pub origin: String,
    pub fingerprint: String,
    pub fields: Vec<(String, String)>,
    /// Difference from the previous batch (empty for the first).
    pub diff: SchemaDiff,
}

/// The schema history of a source, oldest first.
pub async fn history(lake: &Lake, source: &str) -> KaratResult<Vec<SchemaVersion>> {
    let manifests = manifest::list(lake, source).await?;
    let mut out = Vec::new();
    let mut prev: Option<&manifest::Manifest> = None;
    for m in &manifests {
        out.push(SchemaVersion {
            batch_id: m.batch_id.clone(),
            ingested_at: m.ingested_at.clone(),
            origin: m.origin.clone(),
            fingerprint: m.schema_fingerprint(),
            fields: m
                .schema
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            diff: prev
                .map(|p| drift::diff(&p.schema, &m.schema))
                .unwrap_or_default(),
        });
        prev = Some(m);
    }
    Ok(out)
}
