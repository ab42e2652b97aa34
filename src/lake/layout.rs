//! Where things live inside the lake. One place, so the folder story stays readable:
//! `bronze/<source>/ingest_date=…/<batch>.ndjson.gz`, `silver/<table>/`, `gold/<table>/`,
//! `dead_letters/<table>/`, and `_karat/…` for the ledger.

use crate::config::Zone;

/// Folder of every source's bronze batches.
pub const BRONZE: &str = "bronze";

/// Folder of a source's bronze batches.
pub fn bronze_source(source: &str) -> String {
    format!("bronze/{source}")
}

/// The object holding one bronze batch.
pub fn bronze_batch(source: &str, ingest_date: &str, batch_id: &str) -> String {
    format!("bronze/{source}/ingest_date={ingest_date}/{batch_id}.ndjson.gz")
}

/// The manifest of one bronze batch (checksum, counts, schema), keyed by content hash so the
/// same bytes are never ingested twice.
pub fn bronze_manifest(source: &str, batch_id: &str) -> String {
    format!("bronze/{source}/_manifests/{batch_id}.json")
}

/// Marker of a source unit that failed to ingest: the same bytes are not retried.
pub fn bronze_quarantine(source: &str, batch_id: &str) -> String {
    format!("bronze/{source}/_failed/{batch_id}.json")
}

/// Folder of a source's manifests.
pub fn bronze_manifests(source: &str) -> String {
    format!("bronze/{source}/_manifests")
}

/// The files a source's runs read, by path, size and time ([`crate::bronze::seen`]).
pub fn bronze_files_seen(source: &str) -> String {
    format!("_karat/bronze_files/{source}.json")
}

/// What a gold table holds, for folding a run's changes into it ([`crate::gold::fold`]).
pub fn gold_baseline(name: &str) -> String {
    format!("_karat/gold_fold/{name}.json")
}

/// Folder of a silver or gold Delta table.
pub fn table(zone: Zone, name: &str) -> String {
    format!("{zone}/{name}")
}

/// Folder of a silver table's dead-letter Delta table.
pub fn dead_letters(name: &str) -> String {
    format!("dead_letters/{name}")
}

/// Folder of the Delta table of a silver table's superseded rows (older versions of keys,
/// each with the batch whose version replaced it): part of the ledger.
pub fn superseded(name: &str) -> String {
    format!("_karat/superseded/{name}")
}

/// Folder of a ledger Delta table (`runs`, `steps`, `batches`, `drift`).
pub fn ledger(name: &str) -> String {
    format!("_karat/{name}")
}
