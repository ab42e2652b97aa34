//! Reading bronze batches for a silver table: each batch is gunzipped and cut into blocks of
//! lines on one thread while two others decode and validate the blocks, two batches at a time,
//! into valid rows (silver schema), dead letters (with every reason) and per-partition counters.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch, StringArray};
use deltalake::arrow::buffer::Buffer;
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
    let parallel = crate::lake::append::cores();
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

/// Lines of a bronze object decoded and validated together.
struct Block {
    /// Position of the block in the object.
    index: usize,
    /// Line number (1-based) of its first line.
    first_line: u64,
    /// Its lines, each ending in a newline.
    text: String,
}

/// Gunzips a bronze object and cuts it into blocks of [`CHUNK_ROWS`] lines, sending each one on.
fn split_batch(m: &Manifest, gz: &[u8], tx: std::sync::mpsc::SyncSender<Block>) -> KaratResult<()> {
    let mut reader =
        std::io::BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(gz));
    let gone = || KaratError::Other(format!("validating batch {} stopped early", m.batch_id));
    let mut line_no = 0u64;
    // a block starts as large as the largest so far and a little more (lines of a batch are
    // alike), so it rarely grows while it is read
    let mut size = CHUNK_ROWS * 160;
    for index in 0.. {
        let mut block = Block {
            index,
            first_line: line_no + 1,
            text: String::with_capacity(size),
        };
        let mut lines = 0;
        while lines < CHUNK_ROWS {
            let read = reader.read_line(&mut block.text).map_err(|e| {
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
            lines += 1;
        }
        if lines == 0 {
            break;
        }
        size = size.max(block.text.len() + block.text.len() / 16);
        tx.send(block).map_err(|_| gone())?;
    }
    Ok(())
}

/// Decodes the lines of a block into a chunk (which keeps the block, its lines' `_raw`).
fn decode_block(
    m: &Manifest,
    block: Block,
    builder: &mut super::decode::ChunkBuilder,
) -> KaratResult<RecordBatch> {
    let first_line = block.first_line;
    let text = builder.start_block(Buffer::from(block.text.into_bytes()));
    let text = std::str::from_utf8(text.as_slice()).map_err(|e| {
        KaratError::Other(format!(
            "bronze object {} (batch {}) line {first_line} and after: not UTF-8: {e}",
            m.object, m.batch_id
        ))
    })?;
    for (i, line) in text.lines().enumerate() {
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        if !builder.push(text) {
            return Err(KaratError::Other(format!(
                "bronze object {} line {} is not a bronze record; the object is damaged",
                m.object,
                first_line + i as u64
            )));
        }
    }
    Ok(builder.finish())
}

/// A worker's failure: the block it failed on, and why.
type BlockError = Box<(usize, KaratError)>;

/// Decoders and validators of one batch: each takes the next block, decodes and validates it.
const WORKERS: usize = 2;

/// Decodes and validates one bronze batch: one thread gunzips and cuts it into blocks of
/// lines while [`WORKERS`] threads decode (JSON) and validate blocks, so even a single large
/// batch keeps every core busy. Chunks come back in the object's order.
fn process_batch(
    contract: &Contract,
    m: &Manifest,
    gz: &[u8],
    run_id: &str,
) -> KaratResult<Vec<Validated>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(WORKERS);
    // a failing worker drops the receiver, so the splitter's next send fails and it stops
    let rx = std::sync::Mutex::new(Some(rx));
    let next = || {
        let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().and_then(|r| r.recv().ok())
    };
    let stop = || *rx.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let work = || -> Result<Vec<(usize, Validated)>, BlockError> {
        let stamp = crate::bronze::stamp::Stamp {
            batch_id: m.batch_id.clone(),
            ingested_at: m.ingested_at.clone(),
            source: m.source.clone(),
            origin: m.origin.clone(),
        };
        let mut builder =
            super::decode::ChunkBuilder::new(contract.source_fields.clone(), CHUNK_ROWS)
                .stamped_by(&stamp);
        let mut out = Vec::new();
        while let Some(block) = next() {
            let index = block.index;
            let v = decode_block(m, block, &mut builder)
                .and_then(|chunk| validate::validate(contract, &chunk, &m.ingest_date, run_id))
                .map_err(|e| {
                    stop();
                    Box::new((index, e))
                })?;
            out.push((index, v));
        }
        Ok(out)
    };
    let (split, worked) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS).map(|_| scope.spawn(work)).collect();
        let split = split_batch(m, gz, tx);
        let worked: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    stop();
                    let why = format!("validating batch {} panicked", m.batch_id);
                    Err(Box::new((usize::MAX, KaratError::Other(why))))
                })
            })
            .collect();
        (split, worked)
    });
    // a worker's error is the cause when both failed (the splitter stops when they are gone);
    // of several, the one of the earliest block
    let mut chunks = Vec::new();
    let mut first_error: Option<(usize, KaratError)> = None;
    for w in worked {
        match w {
            Ok(c) => chunks.extend(c),
            Err(failed) => {
                let (i, e) = *failed;
                if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_error = Some((i, e));
                }
            }
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    split?;
    chunks.sort_by_key(|(i, _)| *i);
    let chunks: Vec<Validated> = chunks.into_iter().map(|(_, v)| v).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::Write;

    fn contract() -> Contract {
        let text = r#"
[project]
name = "t"
[lake]
url = "lake"
[[source]]
name = "s"
kind = "files"
path = "data/*.ndjson"
[[table]]
name = "t"
zone = "silver"
from = "s"
key = ["id"]
[table.columns]
id = { type = "int64", nullable = false }
"#;
        let cfg = Config::from_str(std::path::Path::new("/tmp/karat.toml"), text.into()).unwrap();
        Contract::compile(&cfg, cfg.table("t").unwrap()).unwrap()
    }

    fn object(lines: &[String]) -> (Manifest, Vec<u8>) {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for l in lines {
            writeln!(enc, "{l}").unwrap();
        }
        let m = Manifest {
            batch_id: "b".into(),
            source: "s".into(),
            sha256: String::new(),
            ingest_date: "2026-01-01".into(),
            ingested_at: "2026-01-01T00:00:00Z".into(),
            origin: "f".into(),
            object: "bronze/s/b.ndjson.gz".into(),
            bytes_in: 0,
            records: lines.len() as u64,
            invalid: 0,
            blank: 0,
            schema: Default::default(),
            expected_records: None,
        };
        (m, enc.finish().unwrap())
    }

    fn record(n: usize) -> String {
        format!(
            r#"{{"_batch_id":"b","_ingested_at":"2026-01-01T00:00:00Z","_source":"s","_file":"f","_line":{n},"id":{}}}"#,
            if n.is_multiple_of(1000) {
                "\"x\"".to_string()
            } else {
                n.to_string()
            }
        )
    }

    #[test]
    fn blocks_decoded_on_several_threads_come_back_in_the_objects_order() {
        let n = CHUNK_ROWS * 2 + CHUNK_ROWS / 2;
        let (m, gz) = object(&(1..=n).map(record).collect::<Vec<_>>());
        let chunks = process_batch(&contract(), &m, &gz, "run").unwrap();
        assert_eq!(chunks.len(), 3, "one chunk per block of {CHUNK_ROWS} lines");
        let lines: Vec<i64> = chunks
            .iter()
            .flat_map(|c| {
                let l = c.silver.column_by_name("_line").unwrap();
                l.as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        let dead: usize = chunks.iter().map(|c| c.dead.num_rows()).sum();
        assert_eq!(dead, n / 1000, "every thousandth id is not a number");
        assert_eq!(lines.len() + dead, n);
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "rows in line order");
    }

    #[test]
    fn workers_that_fail_stop_the_splitter_instead_of_hanging() {
        let n = CHUNK_ROWS * 5 + 1;
        let (mut m, gz) = object(&(1..=n).map(record).collect::<Vec<_>>());
        m.ingest_date = "not a date".into();
        let err = process_batch(&contract(), &m, &gz, "run")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad ingest date"), "{err}");
    }

    #[test]
    fn a_damaged_line_in_a_later_block_is_named_by_its_line_number() {
        let n = CHUNK_ROWS + 100;
        let mut lines: Vec<String> = (1..=n).map(record).collect();
        lines[CHUNK_ROWS + 9] = "not a record".into();
        let (m, gz) = object(&lines);
        let err = process_batch(&contract(), &m, &gz, "run")
            .unwrap_err()
            .to_string();
        let want = format!(
            "bronze object bronze/s/b.ndjson.gz line {} is not a bronze record",
            CHUNK_ROWS + 10
        );
        assert!(err.contains(&want), "{err}");
    }
}
