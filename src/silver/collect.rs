//! Reading bronze batches for a silver table: each batch is gunzipped, decoded and validated
//! chunk by chunk on two threads (decode ‖ validate), two batches at a time, into valid rows
//! (silver schema), dead letters (with every reason) and per-partition counters.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch, StringArray};
use futures::StreamExt;

use super::contract::Contract;
use super::validate::{self, Validated};
use crate::bronze::Manifest;
use crate::error::{KaratError, KaratResult};
use crate::events::{Event, Events, Stage};
use crate::lake::Lake;

/// Rows decoded and validated together (bounded memory per chunk).
pub const CHUNK_ROWS: usize = 65_536;

/// What reading a set of bronze batches produced, not yet merged or written.
#[derive(Debug, Default)]
pub struct Collected {
    /// Valid rows, silver schema.
    pub valid: Vec<RecordBatch>,
    /// Dead letters, dead-letter schema (partition label first).
    pub dead: Vec<RecordBatch>,
    /// Records per partition label (valid + dead).
    pub rows_in: BTreeMap<String, u64>,
    /// `warn` / `fail` expectation counts per (partition, expectation index).
    pub warned: HashMap<(String, usize), u64>,
    pub failed: HashMap<(String, usize), u64>,
}

/// Reads, decodes and validates `batches` with `contract` on all cores.
pub async fn collect(
    lake: &Lake,
    contract: Arc<Contract>,
    batches: Vec<Manifest>,
    run_id: &str,
    events: &Events,
) -> KaratResult<Collected> {
    let table = contract.table.clone();
    let total: u64 = batches.iter().map(|m| m.records).sum();
    events.send(Event::Started {
        stage: Stage::Silver,
        name: table.clone(),
        total: Some(total),
    });
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let results = futures::stream::iter(batches.into_iter().map(|m| {
        let lake = lake.clone();
        let contract = contract.clone();
        let run_id = run_id.to_string();
        let events = events.clone();
        let table = table.clone();
        async move {
            let gz = lake.get(&m.object).await?;
            let records = m.records;
            let chunks =
                tokio::task::spawn_blocking(move || process_batch(&contract, &m, &gz, &run_id))
                    .await
                    .map_err(|e| {
                        KaratError::Other(format!("silver {table}: worker failed: {e}"))
                    })??;
            events.send(Event::Progress {
                stage: Stage::Silver,
                name: table,
                rows: records,
            });
            Ok::<_, KaratError>(chunks)
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<_>>()
    .await;

    let mut c = Collected::default();
    for r in results {
        for v in r? {
            for (p, n) in v.rows_in {
                *c.rows_in.entry(p).or_default() += n;
            }
            for (k, n) in v.warned {
                *c.warned.entry(k).or_default() += n;
            }
            for (k, n) in v.failed {
                *c.failed.entry(k).or_default() += n;
            }
            if v.silver.num_rows() > 0 {
                c.valid.push(v.silver);
            }
            if v.dead.num_rows() > 0 {
                c.dead.push(v.dead);
            }
        }
    }
    Ok(c)
}

/// Decodes a bronze object into chunks of [`CHUNK_ROWS`] rows, sending each one on.
fn decode_batch(
    contract: &Contract,
    m: &Manifest,
    gz: &[u8],
    tx: std::sync::mpsc::SyncSender<RecordBatch>,
) -> KaratResult<()> {
    let mut reader =
        std::io::BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(gz));
    let mut builder = super::decode::ChunkBuilder::new(contract.source_fields.clone(), CHUNK_ROWS);
    let mut line = String::new();
    let mut line_no = 0u64;
    let gone = || KaratError::Other(format!("validating batch {} stopped early", m.batch_id));
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| {
            KaratError::Other(format!(
                "bronze object {} (batch {}) line {}: {e}",
                m.object,
                m.batch_id,
                line_no + 1
            ))
        })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        if !builder.push(text) {
            return Err(KaratError::Other(format!(
                "bronze object {} line {line_no} is not a bronze record; the object is damaged",
                m.object
            )));
        }
        if builder.len() >= CHUNK_ROWS {
            tx.send(builder.finish()).map_err(|_| gone())?;
        }
    }
    if !builder.is_empty() {
        tx.send(builder.finish()).map_err(|_| gone())?;
    }
    Ok(())
}

/// Decodes and validates one bronze batch: decoding (gunzip + JSON) and validation run on two
/// threads, chunk by chunk, so even a single large batch keeps both cores busy.
fn process_batch(
    contract: &Contract,
    m: &Manifest,
    gz: &[u8],
    run_id: &str,
) -> KaratResult<Vec<Validated>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    let (decoded, validated) = std::thread::scope(|scope| {
        let validator = scope.spawn(move || -> KaratResult<Vec<Validated>> {
            let mut out = Vec::new();
            for chunk in rx {
                out.push(validate::validate(
                    contract,
                    &chunk,
                    &m.ingest_date,
                    run_id,
                )?);
            }
            Ok(out)
        });
        let decoded = decode_batch(contract, m, gz, tx);
        let validated = validator.join().unwrap_or_else(|_| {
            Err(KaratError::Other(format!(
                "validating batch {} panicked",
                m.batch_id
            )))
        });
        (decoded, validated)
    });
    // a validation error is the cause when both failed (the decoder stops when it is gone)
    let chunks = validated?;
    decoded?;
    let home = home_partition(&chunks, &m.ingest_date);
    chunks.into_iter().map(|c| place(c, &home)).collect()
}

/// Where a batch's rows without a partition value are filed: the partition most of its other
/// rows went to (ties: the earliest), else its ingest date. Deterministic for a batch and a
/// contract, so a replay files them the same way.
fn home_partition(chunks: &[Validated], ingest_date: &str) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for c in chunks {
        for (p, n) in &c.rows_in {
            if p != validate::UNPLACED {
                *totals.entry(p.as_str()).or_default() += n;
            }
        }
    }
    totals
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| ingest_date.to_string())
}

/// Files [`validate::UNPLACED`] rows (always dead letters) under `home`.
fn place(mut v: Validated, home: &str) -> KaratResult<Validated> {
    let Some(n) = v.rows_in.remove(validate::UNPLACED) else {
        return Ok(v);
    };
    *v.rows_in.entry(home.to_string()).or_default() += n;
    let parts = v.dead.column(0).as_string::<i32>();
    let relabeled: StringArray = parts
        .iter()
        .map(|p| p.map(|p| if p == validate::UNPLACED { home } else { p }))
        .collect();
    let mut cols = v.dead.columns().to_vec();
    cols[0] = Arc::new(relabeled);
    v.dead = RecordBatch::try_new(v.dead.schema(), cols)
        .map_err(|e| KaratError::arrow("placing rows", e))?;
    Ok(v)
}
