//! Silver: typed, validated, de-duplicated tables. For one silver table this module reads the
//! bronze batches it is given, enforces the contract chunk by chunk on both cores, sends broken
//! rows to the dead-letter table with every reason and their provenance, de-duplicates each
//! partition, applies the quality gate, replaces the partitions atomically in Delta, and then
//! proves the row accounting from what was actually committed.

pub mod contract;
pub mod decode;
pub mod dedup;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufRead;
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{concat_batches, take_record_batch};
use futures::StreamExt;

use crate::bronze::Manifest;
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::events::{Event, Events, Stage};
use crate::lake::delta::{self, Replace};
use crate::lake::{Lake, layout};
pub use contract::Contract;
use contract::{DEAD_LETTER_PARTITION, dead_letter_schema};
use validate::Validated;

/// Rows decoded and validated together (bounded memory per chunk).
pub const CHUNK_ROWS: usize = 65_536;

/// Final state of a partition in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionStatus {
    Ok,
    /// Written, with warnings.
    Warn,
    /// Not promoted: a blocking check failed.
    Failed,
    /// Not promoted because something upstream failed.
    Blocked,
}

impl PartitionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PartitionStatus::Ok => "ok",
            PartitionStatus::Warn => "warn",
            PartitionStatus::Failed => "failed",
            PartitionStatus::Blocked => "blocked",
        }
    }

    pub fn promoted(&self) -> bool {
        matches!(self, PartitionStatus::Ok | PartitionStatus::Warn)
    }
}

/// What happened to one partition of a silver (or gold) table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionOutcome {
    pub partition: String,
    pub status: PartitionStatus,
    pub rows_in: u64,
    pub rows_out: u64,
    pub dead: u64,
    pub duplicates: u64,
    /// Why it failed, and warnings.
    pub messages: Vec<String>,
    /// Dead-letter counts by rule, largest first.
    pub dead_by_rule: Vec<(String, u64)>,
    /// Delta version of the table after this partition was written (None: not written).
    pub delta_version: Option<i64>,
}

/// What processing a silver table did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SilverReport {
    pub table: String,
    pub partitions: Vec<PartitionOutcome>,
    /// (batch id, partition, rows): which partitions each read batch feeds.
    pub batch_partitions: Vec<(String, String, u64)>,
    pub silver_version: Option<i64>,
    pub dead_letter_version: Option<i64>,
}

struct BatchResult {
    batch_id: String,
    chunks: Vec<Validated>,
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
    let mut builder = decode::ChunkBuilder::new(contract.source_fields.clone(), CHUNK_ROWS);
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

/// Decodes and validates one bronze batch, optionally keeping only some partitions.
fn process_batch(
    contract: &Contract,
    m: &Manifest,
    gz: &[u8],
    keep: Option<&HashSet<String>>,
    run_id: &str,
) -> KaratResult<BatchResult> {
    // decoding (gunzip + JSON) and validation run on two threads, chunk by chunk, so even a
    // single large batch keeps both cores busy
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
    // rows without a partition value go where most of their batch went
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &chunks {
        for (p, n) in &c.rows_in {
            if p != validate::UNPLACED {
                *totals.entry(p.as_str()).or_default() += n;
            }
        }
    }
    let home = totals
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| m.ingest_date.clone());
    let chunks = chunks
        .into_iter()
        .map(|c| restrict(place(c, &home)?, keep))
        .collect::<KaratResult<Vec<_>>>()?;
    Ok(BatchResult {
        batch_id: m.batch_id.clone(),
        chunks,
    })
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

/// Keeps only the rows of the given partitions.
fn restrict(v: Validated, keep: Option<&HashSet<String>>) -> KaratResult<Validated> {
    let Some(keep) = keep else { return Ok(v) };
    let sel = |parts: &StringArray| -> UInt32Array {
        (0..parts.len())
            .filter(|i| keep.contains(parts.value(*i)))
            .map(|i| i as u32)
            .collect()
    };
    let s_idx = sel(&v.silver_partitions);
    let silver = take_record_batch(&v.silver, &s_idx)
        .map_err(|e| KaratError::arrow("restricting rows", e))?;
    let silver_partitions: StringArray = s_idx
        .values()
        .iter()
        .map(|i| Some(v.silver_partitions.value(*i as usize)))
        .collect();
    let dead_parts = v.dead.column(0).as_string::<i32>().clone();
    let dead = take_record_batch(&v.dead, &sel(&dead_parts))
        .map_err(|e| KaratError::arrow("restricting rows", e))?;
    Ok(Validated {
        silver,
        silver_partitions,
        dead,
        rows_in: v
            .rows_in
            .into_iter()
            .filter(|(p, _)| keep.contains(p))
            .collect(),
        warned: v
            .warned
            .into_iter()
            .filter(|((p, _), _)| keep.contains(p))
            .collect(),
        failed: v
            .failed
            .into_iter()
            .filter(|((p, _), _)| keep.contains(p))
            .collect(),
    })
}

/// Splits a batch into per-partition pieces given each row's partition.
fn split(
    batch: &RecordBatch,
    parts: &StringArray,
    into: &mut BTreeMap<String, Vec<RecordBatch>>,
) -> KaratResult<()> {
    let mut idx: HashMap<&str, Vec<u32>> = HashMap::new();
    for i in 0..parts.len() {
        idx.entry(parts.value(i)).or_default().push(i as u32);
    }
    for (p, rows) in idx {
        let piece = take_record_batch(batch, &UInt32Array::from(rows))
            .map_err(|e| KaratError::arrow("splitting partitions", e))?;
        into.entry(p.to_string()).or_default().push(piece);
    }
    Ok(())
}

/// Rows of a silver table decoded and validated, grouped by partition, not yet written.
#[derive(Debug, Default)]
pub struct Collected {
    silver_parts: BTreeMap<String, Vec<RecordBatch>>,
    dead_parts: BTreeMap<String, Vec<RecordBatch>>,
    rows_in: BTreeMap<String, u64>,
    warned: HashMap<(String, usize), u64>,
    failed: HashMap<(String, usize), u64>,
    /// (batch id, partition, rows) for every batch read.
    pub batch_partitions: Vec<(String, String, u64)>,
}

impl Collected {
    /// Partitions that received rows.
    pub fn partitions(&self) -> BTreeSet<String> {
        self.rows_in.keys().cloned().collect()
    }

    /// Adds another collection (disjoint batches) to this one.
    pub fn merge(&mut self, other: Collected) {
        for (p, v) in other.silver_parts {
            self.silver_parts.entry(p).or_default().extend(v);
        }
        for (p, v) in other.dead_parts {
            self.dead_parts.entry(p).or_default().extend(v);
        }
        for (p, n) in other.rows_in {
            *self.rows_in.entry(p).or_default() += n;
        }
        for (k, n) in other.warned {
            *self.warned.entry(k).or_default() += n;
        }
        for (k, n) in other.failed {
            *self.failed.entry(k).or_default() += n;
        }
        self.batch_partitions.extend(other.batch_partitions);
    }
}

/// Reads, decodes and validates `batches` for `contract` on all cores. With `only`, rows of
/// other partitions are discarded as they are read.
pub async fn collect(
    lake: &Lake,
    contract: Arc<Contract>,
    batches: Vec<Manifest>,
    only: Option<&BTreeSet<String>>,
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
    let only: Option<Arc<HashSet<String>>> = only.map(|o| Arc::new(o.iter().cloned().collect()));
    let results = futures::stream::iter(batches.into_iter().map(|m| {
        let lake = lake.clone();
        let contract = contract.clone();
        let only = only.clone();
        let run_id = run_id.to_string();
        let events = events.clone();
        let table = table.clone();
        async move {
            let gz = lake.get(&m.object).await?;
            let records = m.records;
            let res = tokio::task::spawn_blocking(move || {
                process_batch(&contract, &m, &gz, only.as_deref(), &run_id)
            })
            .await
            .map_err(|e| KaratError::Other(format!("silver {table}: worker failed: {e}")))??;
            events.send(Event::Progress {
                stage: Stage::Silver,
                name: table,
                rows: records,
            });
            Ok::<_, KaratError>(res)
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<_>>()
    .await;

    let mut c = Collected::default();
    for r in results {
        let r = r?;
        let mut per_batch: BTreeMap<String, u64> = BTreeMap::new();
        for v in r.chunks {
            for (p, n) in &v.rows_in {
                *c.rows_in.entry(p.clone()).or_default() += n;
                *per_batch.entry(p.clone()).or_default() += n;
            }
            for (k, n) in v.warned {
                *c.warned.entry(k).or_default() += n;
            }
            for (k, n) in v.failed {
                *c.failed.entry(k).or_default() += n;
            }
            split(&v.silver, &v.silver_partitions, &mut c.silver_parts)?;
            let dp = v.dead.column(0).as_string::<i32>().clone();
            split(&v.dead, &dp, &mut c.dead_parts)?;
        }
        c.batch_partitions.extend(
            per_batch
                .into_iter()
                .map(|(p, n)| (r.batch_id.clone(), p, n)),
        );
    }
    Ok(c)
}

/// De-duplicates, gates and writes the collected partitions (plus any partition of `also` that
/// received no rows, which is then emptied), and verifies the accounting.
pub async fn finish(
    lake: &Lake,
    contract: Arc<Contract>,
    collected: Collected,
    also: &BTreeSet<String>,
    run_id: &str,
    events: &Events,
) -> KaratResult<SilverReport> {
    let table = contract.table.clone();
    let Collected {
        mut silver_parts,
        mut dead_parts,
        rows_in,
        warned,
        failed,
        batch_partitions,
    } = collected;
    let mut partitions: BTreeSet<String> = rows_in.keys().cloned().collect();
    partitions.extend(also.iter().cloned());

    // dedup and gate each partition
    let spec = &contract.spec;
    let mut outcomes = Vec::new();
    let mut silver_out: Vec<RecordBatch> = Vec::new();
    let mut group: Vec<String> = Vec::new();
    let mut group_rows = 0usize;
    let mut versions: BTreeMap<String, i64> = BTreeMap::new();
    let mut silver_version = None;
    let silver_url = lake.url_of(&layout::table(Zone::Silver, &table));
    let meta = |op: &str| {
        vec![
            ("karat.run_id".to_string(), serde_json::json!(run_id)),
            ("karat.operation".to_string(), serde_json::json!(op)),
        ]
    };
    let mut dead_out: Vec<RecordBatch> = Vec::new();
    for p in &partitions {
        let rin = rows_in.get(p).copied().unwrap_or(0);
        let pieces = silver_parts.remove(p).unwrap_or_default();
        let merged = concat_batches(&contract.silver_schema, &pieces)
            .map_err(|e| KaratError::arrow(format!("table {table} partition {p}"), e))?;
        drop(pieces);
        let (kept, dups) = dedup::dedup(&merged, &contract.key_indexes, &table, p)?;
        drop(merged);
        let dead_pieces = dead_parts.remove(p).unwrap_or_default();
        let dead: u64 = dead_pieces.iter().map(|b| b.num_rows() as u64).sum();
        let mut by_rule: HashMap<String, u64> = HashMap::new();
        for b in &dead_pieces {
            let rules = b.column(2).as_list::<i32>();
            for i in 0..rules.len() {
                let v = rules.value(i);
                let v = v.as_string::<i32>();
                for j in 0..v.len() {
                    *by_rule.entry(v.value(j).to_string()).or_default() += 1;
                }
            }
        }
        let mut dead_by_rule: Vec<(String, u64)> = by_rule.into_iter().collect();
        dead_by_rule.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut messages = Vec::new();
        let mut status = PartitionStatus::Ok;
        for (i, e) in contract.expectations.iter().enumerate() {
            if let Some(n) = failed.get(&(p.clone(), i)) {
                status = PartitionStatus::Failed;
                messages.push(format!(
                    "expectation {} failed on {n} row(s): {} (on_fail = fail)",
                    e.name, e.sql
                ));
            }
        }
        let rate = if rin == 0 {
            0.0
        } else {
            dead as f64 / rin as f64
        };
        if rate > spec.max_reject_rate {
            status = PartitionStatus::Failed;
            let top = dead_by_rule
                .first()
                .map(|(r, n)| format!("; top rule {r}: {n}"))
                .unwrap_or_default();
            messages.push(format!(
                "reject rate {:.1}% ({dead} of {rin} rows) exceeds max_reject_rate {:.1}%{top}",
                rate * 100.0,
                spec.max_reject_rate * 100.0
            ));
        }
        for (i, e) in contract.expectations.iter().enumerate() {
            if let Some(n) = warned.get(&(p.clone(), i)) {
                messages.push(format!(
                    "warning: expectation {} failed on {n} row(s): {}",
                    e.name, e.sql
                ));
                if status == PartitionStatus::Ok {
                    status = PartitionStatus::Warn;
                }
            }
        }
        let rows_out = kept.num_rows() as u64;
        if status.promoted() {
            group_rows += kept.num_rows();
            silver_out.push(kept);
            group.push(p.clone());
            // bounded memory: write promoted partitions in groups, each group one atomic commit
            if group_rows >= WRITE_GROUP_ROWS {
                let v = write_silver(
                    &silver_url,
                    &contract,
                    std::mem::take(&mut silver_out),
                    std::mem::take(&mut group),
                    &mut versions,
                    meta("silver partition replace"),
                )
                .await?;
                silver_version = Some(v);
                group_rows = 0;
            }
        }
        dead_out.extend(dead_pieces);
        outcomes.push(PartitionOutcome {
            partition: p.clone(),
            status,
            rows_in: rin,
            rows_out,
            dead,
            duplicates: dups,
            messages,
            dead_by_rule,
            delta_version: None,
        });
    }

    // the rest of the promoted partitions, then every partition's dead letters in one commit
    if !group.is_empty() {
        let v = write_silver(
            &silver_url,
            &contract,
            silver_out,
            group,
            &mut versions,
            meta("silver partition replace"),
        )
        .await?;
        silver_version = Some(v);
    }
    let dead_url = lake.url_of(&layout::dead_letters(&table));
    let mut dead_version = None;
    if !outcomes.is_empty() {
        let v = delta::write(
            &dead_url,
            &format!("dead_letters.{table}"),
            dead_letter_schema(),
            dead_out,
            Some(DEAD_LETTER_PARTITION),
            Replace::Partitions {
                column: DEAD_LETTER_PARTITION.to_string(),
                values: outcomes.iter().map(|o| o.partition.clone()).collect(),
            },
            meta("dead letters partition replace"),
        )
        .await?;
        dead_version = Some(v);
    }

    // prove the accounting from what was committed
    verify_accounting(lake, &contract, &mut outcomes).await?;
    for o in &mut outcomes {
        if o.status.promoted() {
            o.delta_version = versions.get(&o.partition).copied();
        }
        events.send(Event::Partition {
            table: table.clone(),
            partition: o.partition.clone(),
            status: o.status.as_str().to_string(),
        });
    }
    let rows: u64 = outcomes.iter().map(|o| o.rows_in).sum();
    let nfailed = outcomes.iter().filter(|o| !o.status.promoted()).count();
    events.send(Event::Finished {
        stage: Stage::Silver,
        name: table.clone(),
        rows,
        ok: nfailed == 0,
        detail: format!("{} partition(s), {} failed", outcomes.len(), nfailed),
    });
    Ok(SilverReport {
        table,
        partitions: outcomes,
        batch_partitions,
        silver_version,
        dead_letter_version: dead_version,
    })
}

/// Promoted partitions are written in commits of about this many rows, so memory stays bounded
/// by a group, not by the whole run.
pub const WRITE_GROUP_ROWS: usize = 1_000_000;

/// Replaces `partitions` of the silver table with `batches` in one commit; records the version.
async fn write_silver(
    url: &url::Url,
    contract: &Contract,
    batches: Vec<RecordBatch>,
    partitions: Vec<String>,
    versions: &mut BTreeMap<String, i64>,
    meta: Vec<(String, serde_json::Value)>,
) -> KaratResult<i64> {
    let v = delta::write(
        url,
        &format!("silver.{}", contract.table),
        contract.silver_schema.clone(),
        batches,
        Some(&contract.spec.partition_by),
        Replace::Partitions {
            column: contract.spec.partition_by.clone(),
            values: partitions.clone(),
        },
        meta,
    )
    .await?;
    for p in partitions {
        versions.insert(p, v);
    }
    Ok(v)
}

/// Counts committed rows per partition in silver and dead letters and checks
/// rows in = silver + dead + duplicates. A mismatch fails the partition.
async fn verify_accounting(
    lake: &Lake,
    contract: &Contract,
    outcomes: &mut [PartitionOutcome],
) -> KaratResult<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let table = &contract.table;
    let ctx = delta::session();
    let has_silver =
        delta::register(&ctx, "s", &lake.url_of(&layout::table(Zone::Silver, table))).await?;
    delta::register(&ctx, "d", &lake.url_of(&layout::dead_letters(table))).await?;
    let list: Vec<String> = outcomes
        .iter()
        .map(|o| format!("'{}'", o.partition.replace('\'', "''")))
        .collect();
    let list = list.join(", ");
    let pcol = contract::ident(&contract.spec.partition_by);
    let count = |batches: Vec<RecordBatch>| -> HashMap<String, u64> {
        let mut m = HashMap::new();
        for b in batches {
            let p = deltalake::arrow::compute::cast(
                b.column(0),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .expect("cast to utf8");
            let p = p.as_string::<i32>();
            let c = b
                .column(1)
                .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                m.insert(p.value(i).to_string(), c.value(i) as u64);
            }
        }
        m
    };
    let silver_counts = if has_silver {
        count(
            delta::query(
                &ctx,
                &format!("SELECT CAST({pcol} AS VARCHAR) AS p, COUNT(*) AS n FROM s WHERE CAST({pcol} AS VARCHAR) IN ({list}) GROUP BY 1"),
                &format!("accounting of silver.{table}"),
            )
            .await?,
        )
    } else {
        HashMap::new()
    };
    let dead_counts = count(
        delta::query(
            &ctx,
            &format!(
                "SELECT partition AS p, COUNT(*) AS n FROM d WHERE partition IN ({list}) GROUP BY 1"
            ),
            &format!("accounting of dead_letters.{table}"),
        )
        .await?,
    );
    for o in outcomes.iter_mut() {
        let dead = dead_counts.get(&o.partition).copied().unwrap_or(0);
        let mut problems = Vec::new();
        if dead != o.dead {
            problems.push(format!(
                "dead-letter table holds {dead} rows, expected {}",
                o.dead
            ));
        }
        if o.status.promoted() {
            let silver = silver_counts.get(&o.partition).copied().unwrap_or(0);
            if silver != o.rows_out {
                problems.push(format!(
                    "silver table holds {silver} rows, expected {}",
                    o.rows_out
                ));
            }
            if o.rows_in != silver + dead + o.duplicates {
                problems.push(format!(
                    "rows in {} != silver {silver} + dead {dead} + duplicates {}",
                    o.rows_in, o.duplicates
                ));
            }
        } else if o.rows_in != o.rows_out + dead + o.duplicates {
            problems.push(format!(
                "rows in {} != valid {} + dead {dead} + duplicates {}",
                o.rows_in, o.rows_out, o.duplicates
            ));
        }
        if !problems.is_empty() {
            let e = KaratError::Accounting {
                table: table.clone(),
                partition: o.partition.clone(),
                detail: problems.join("; "),
            };
            o.status = PartitionStatus::Failed;
            o.messages.insert(0, e.to_string());
        }
    }
    Ok(())
}
