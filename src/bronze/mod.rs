//! Bronze: raw, immutable landing. Each source unit (a file, or one HTTP fetch across its pages)
//! becomes one gzip NDJSON batch whose records are stamped with their provenance, plus a
//! manifest with the sha256 of the original bytes. The same bytes are never ingested twice,
//! drift is recorded instead of rejected, and a corrupt unit fails only itself.

mod csv_rows;
pub mod declared;
pub mod drift;
pub mod files;
pub mod http;
pub mod manifest;
pub mod record;
pub mod seen;
pub mod stamp;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use futures::StreamExt;
use sha2::Digest;

use crate::config::{Source, SourceSpec};
use crate::error::{KaratError, KaratResult};
use crate::events::{Event, Events, Stage};
use crate::lake::{Lake, layout};
pub use drift::SchemaDiff;
pub use manifest::Manifest;
use seen::SeenFiles;
use stamp::{BatchWriter, Stamp};

/// A source unit that could not become a batch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BatchFailure {
    pub origin: String,
    pub error: String,
}

/// A schema change between two consecutive batches of a source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriftEvent {
    pub source: String,
    pub batch_id: String,
    pub previous_batch_id: String,
    pub ingested_at: String,
    pub diff: SchemaDiff,
}

/// What one ingestion of a source did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    pub source: String,
    pub new_batches: Vec<Manifest>,
    /// Units whose bytes were already in bronze.
    pub skipped: usize,
    /// Units that failed before and have not changed since (not retried; replace the file),
    /// with the failure recorded then.
    pub quarantined: Vec<BatchFailure>,
    pub failed: Vec<BatchFailure>,
    pub drift: Vec<DriftEvent>,
}

/// Batch id of some bytes: the start of their sha256, so identical bytes share one batch.
pub fn batch_id_of(sha256: &str) -> String {
    format!("b{}", &sha256[..20])
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Ingests every new unit of `source` into bronze.
pub async fn ingest(lake: &Lake, source: &Source, events: &Events) -> KaratResult<IngestReport> {
    let existing = manifest::list(lake, &source.name).await?;
    let known: HashSet<String> = existing.iter().map(|m| m.batch_id.clone()).collect();
    let mut report = IngestReport {
        source: source.name.clone(),
        ..Default::default()
    };
    match &source.spec {
        SourceSpec::Files { glob, format } => {
            let mut paths = files::matching(glob, &source.name)?;
            if source.expected_count_field.is_some() {
                // the manifests beside the files declare counts; they are not data
                paths.retain(|p| !p.to_string_lossy().ends_with(".manifest.json"));
            }
            events.send(Event::Started {
                stage: Stage::Bronze,
                name: source.name.clone(),
                total: Some(paths.len() as u64),
            });
            let base = Utc::now();
            // a cache: when it cannot be read or written, every file is read and hashed
            let seen = SeenFiles::load(lake, &source.name)
                .await
                .unwrap_or_else(|e| {
                    events.note(format!("bronze {}: {e}: every file is read", source.name));
                    SeenFiles::default()
                });
            let seen = Arc::new(Mutex::new(seen));
            let claimed = Arc::new(Mutex::new(known));
            let parallel = crate::lake::append::cores();
            let results = futures::stream::iter(paths.into_iter().enumerate().map(|(i, path)| {
                let lake = lake.clone();
                let claimed = claimed.clone();
                let seen = seen.clone();
                let name = source.name.clone();
                let format = *format;
                let limits = source.limits;
                let declared_field = source.expected_count_field.clone();
                let events = events.clone();
                let at = base + ChronoDuration::microseconds(i as i64);
                async move {
                    let origin = path.to_string_lossy().into_owned();
                    let meta = tokio::fs::metadata(&path).await.ok();
                    let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                    let modified = meta.as_ref().and_then(seen::modified);
                    let seen_before = {
                        let known = claimed.lock().expect("lock");
                        let seen = seen.lock().expect("lock");
                        seen.unchanged(&origin, size, modified.as_deref(), &known)
                            .is_some()
                    };
                    if seen_before {
                        return Unit::Skipped;
                    }
                    let read_at = Utc::now();
                    let at_path = origin.clone();
                    let read = move |batch_id: &str| {
                        let mut seen = seen.lock().expect("lock");
                        seen.read(&at_path, size, modified, batch_id, read_at);
                    };
                    if let Err(error) = files::check_size(size, limits) {
                        return Unit::Failed(BatchFailure { origin, error });
                    }
                    let bytes = match tokio::fs::read(&path).await {
                        Ok(b) => b,
                        Err(e) => {
                            return Unit::Failed(BatchFailure {
                                origin,
                                error: format!("cannot read: {e}"),
                            });
                        }
                    };
                    let sha = sha256_hex(&bytes);
                    let batch_id = batch_id_of(&sha);
                    if !claimed.lock().expect("lock").insert(batch_id.clone()) {
                        read(&batch_id);
                        return Unit::Skipped;
                    }
                    match lake
                        .exists(&layout::bronze_quarantine(&name, &batch_id))
                        .await
                    {
                        Ok(true) => {
                            return Unit::Quarantined(
                                quarantined(&lake, &name, &batch_id, origin).await,
                            );
                        }
                        Ok(false) => {}
                        Err(e) => {
                            return Unit::Failed(BatchFailure {
                                origin,
                                error: e.to_string(),
                            });
                        }
                    }
                    let stamp = Stamp {
                        batch_id: batch_id.clone(),
                        ingested_at: rfc3339(at),
                        source: name.clone(),
                        origin: origin.clone(),
                    };
                    let task_path = path.clone();
                    let built = tokio::task::spawn_blocking(move || {
                        let mut w = BatchWriter::new(&stamp, bytes.len() * 4);
                        let fmt = files::format_of(&task_path, format);
                        files::stamp_unit(&bytes, limits, fmt, &mut w, &task_path)?;
                        Ok::<_, String>((w.finish(), bytes.len() as u64))
                    })
                    .await;
                    let (stamped, bytes_in) = match built {
                        Ok(Ok(s)) => s,
                        Ok(Err(error)) => {
                            let f = BatchFailure { origin, error };
                            let marker = serde_json::to_vec_pretty(&f).expect("failure serialises");
                            if let Err(e) = lake
                                .put(&layout::bronze_quarantine(&name, &batch_id), marker.into())
                                .await
                            {
                                return Unit::Failed(BatchFailure {
                                    origin: f.origin,
                                    error: format!(
                                        "{}; and recording the failure failed: {e}",
                                        f.error
                                    ),
                                });
                            }
                            return Unit::Failed(f);
                        }
                        Err(e) => {
                            return Unit::Failed(BatchFailure {
                                origin,
                                error: format!("ingest task failed: {e}"),
                            });
                        }
                    };
                    let expected = declared_field.as_deref().and_then(|f| {
                        let said = match declared::beside_file(&path, f) {
                            Ok(Some(n)) => return Some(n),
                            Ok(None) => {
                                format!("no {} beside it", declared::sidecar(&path).display())
                            }
                            Err(m) => m,
                        };
                        events.note(format!(
                            "bronze {name}: {origin}: {said}: landed undeclared"
                        ));
                        None
                    });
                    let landing = Landing {
                        batch_id: &batch_id,
                        sha: &sha,
                        at,
                        origin: &origin,
                        bytes_in,
                        expected,
                    };
                    match land(&lake, &name, landing, stamped).await {
                        Ok(m) => {
                            read(&batch_id);
                            Unit::New(m)
                        }
                        Err(e) => Unit::Failed(BatchFailure {
                            origin,
                            error: e.to_string(),
                        }),
                    }
                }
            }))
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
            let seen = std::mem::take(&mut *seen.lock().expect("lock"));
            if let Err(e) = seen.save(lake, &source.name).await {
                events.note(format!("bronze {}: {e}", source.name));
            }
            for r in results {
                match r {
                    Unit::New(m) => {
                        events.send(Event::Progress {
                            stage: Stage::Bronze,
                            name: source.name.clone(),
                            rows: m.records,
                        });
                        report.new_batches.push(m)
                    }
                    Unit::Skipped => report.skipped += 1,
                    Unit::Quarantined(f) => report.quarantined.push(f),
                    Unit::Failed(f) => {
                        events.note(format!(
                            "bronze {}: batch failed: {}: {}",
                            source.name, f.origin, f.error
                        ));
                        report.failed.push(f)
                    }
                }
            }
        }
        SourceSpec::Http(spec) => {
            events.send(Event::Started {
                stage: Stage::Bronze,
                name: source.name.clone(),
                total: None,
            });
            match http::fetch_all(spec, &source.name, source.limits.max_unit_bytes).await {
                Err(e) => report.failed.push(BatchFailure {
                    origin: spec.url.clone(),
                    error: e.to_string(),
                }),
                Ok(pages) => {
                    let mut all = Vec::new();
                    for p in &pages {
                        all.extend_from_slice(&p.body);
                    }
                    let sha = sha256_hex(&all);
                    let batch_id = batch_id_of(&sha);
                    if known.contains(&batch_id) {
                        report.skipped += 1;
                    } else {
                        let at = Utc::now();
                        let stamp = Stamp {
                            batch_id: batch_id.clone(),
                            ingested_at: rfc3339(at),
                            source: source.name.clone(),
                            origin: spec.url.clone(),
                        };
                        let mut w = BatchWriter::new(&stamp, all.len());
                        let mut n = 0u64;
                        for p in &pages {
                            for r in &p.records {
                                n += 1;
                                w.push_value(n, r);
                            }
                        }
                        let expected = source.expected_count_field.as_deref().and_then(|f| {
                            let first = pages.first()?;
                            declared::in_json(&first.body, f).unwrap_or_else(|m| {
                                events.note(format!("bronze {}: {}: {m}", source.name, first.url));
                                None
                            })
                        });
                        let landing = Landing {
                            batch_id: &batch_id,
                            sha: &sha,
                            at,
                            origin: &spec.url,
                            bytes_in: all.len() as u64,
                            expected,
                        };
                        let m = land(lake, &source.name, landing, w.finish()).await?;
                        report.new_batches.push(m);
                    }
                }
            }
        }
    }
    report
        .new_batches
        .sort_by(|a, b| (&a.ingested_at, &a.batch_id).cmp(&(&b.ingested_at, &b.batch_id)));
    let mut previous = existing.last().cloned();
    for m in &report.new_batches {
        if let Some(prev) = &previous {
            let d = drift::diff(&prev.schema, &m.schema);
            if !d.is_empty() {
                events.note(format!(
                    "bronze {}: schema drift in {}: {}",
                    source.name,
                    m.batch_id,
                    d.summary()
                ));
                report.drift.push(DriftEvent {
                    source: source.name.clone(),
                    batch_id: m.batch_id.clone(),
                    previous_batch_id: prev.batch_id.clone(),
                    ingested_at: m.ingested_at.clone(),
                    diff: d,
                });
            }
        }
        previous = Some(m.clone());
    }
    let rows: u64 = report.new_batches.iter().map(|m| m.records).sum();
    events.send(Event::Finished {
        stage: Stage::Bronze,
        name: source.name.clone(),
        rows,
        ok: report.failed.is_empty(),
        detail: format!(
            "{} new batch(es), {} already ingested, {} failed, {} quarantined",
            report.new_batches.len(),
            report.skipped,
            report.failed.len(),
            report.quarantined.len()
        ),
    });
    Ok(report)
}

enum Unit {
    New(Manifest),
    Skipped,
    Quarantined(BatchFailure),
    Failed(BatchFailure),
}

/// A quarantined unit at `origin`, with the failure its marker recorded.
async fn quarantined(lake: &Lake, source: &str, batch_id: &str, origin: String) -> BatchFailure {
    let marker = lake
        .get_opt(&layout::bronze_quarantine(source, batch_id))
        .await
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<BatchFailure>(&b).ok());
    BatchFailure {
        origin,
        error: format!(
            "unchanged since it failed (batch {batch_id}): {}",
            marker
                .map(|m| m.error)
                .unwrap_or_else(|| "see its quarantine marker".into())
        ),
    }
}

/// What is known of a unit before it lands.
struct Landing<'a> {
    batch_id: &'a str,
    sha: &'a str,
    at: DateTime<Utc>,
    origin: &'a str,
    bytes_in: u64,
    /// The record count the source declared for it.
    expected: Option<u64>,
}

async fn land(
    lake: &Lake,
    source: &str,
    unit: Landing<'_>,
    stamped: stamp::Stamped,
) -> KaratResult<Manifest> {
    let Landing {
        batch_id,
        sha,
        at,
        origin,
        bytes_in,
        expected,
    } = unit;
    let ingest_date = at.format("%Y-%m-%d").to_string();
    let object = layout::bronze_batch(source, &ingest_date, batch_id);
    if lake
        .exists(&layout::bronze_manifest(source, batch_id))
        .await?
    {
        return Err(KaratError::Other(format!(
            "bronze batch {batch_id} of {source} already exists"
        )));
    }
    lake.put(&object, stamped.gz.into()).await?;
    crate::lake::fault::after("bronze.object");
    let m = Manifest {
        batch_id: batch_id.to_string(),
        source: source.to_string(),
        sha256: sha.to_string(),
        ingest_date,
        ingested_at: rfc3339(at),
        origin: origin.to_string(),
        object,
        bytes_in,
        records: stamped.records,
        invalid: stamped.invalid,
        blank: stamped.blank,
        schema: stamped.schema,
        expected_records: expected,
    };
    manifest::write(lake, &m).await?;
    crate::lake::fault::after("bronze.manifest");
    Ok(m)
}
