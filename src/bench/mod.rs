//! `karat bench`: generates orders-like source data (about 140 bytes a line, several daily
//! files, a few percent bad values and duplicates, one invalid line in a thousand), runs bronze →
//! silver → gold on a local lake, and reports seconds, rows/s and peak memory per stage.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

pub mod daily;
pub mod ledger;
pub mod rounds;

use crate::error::{KaratError, KaratResult};
use crate::events::{Event, Events, Stage};
use crate::ledger::Trigger;
use crate::pipeline::{Plan, RunOptions};

/// The bench pipeline.
pub const BENCH_CONFIG: &str = r#"[project]
name = "bench"
[lake]
url = "lake"
[[source]]
name = "orders"
kind = "files"
path = "data/*.ndjson.gz"
[[table]]
name = "orders"
zone = "silver"
from = "orders"
partition_by = "order_date"
key = ["order_id"]
max_reject_rate = 0.5
[table.columns]
order_id = { type = "string", nullable = false }
customer_id = { type = "string", nullable = false }
amount = { type = "decimal(12,2)", nullable = false, min = 0 }
currency = { type = "string", nullable = false, one_of = ["USD", "EUR", "GBP"] }
quantity = { type = "int64", min = 1, max = 100 }
status = { type = "string", one_of = ["placed", "paid", "shipped", "cancelled"] }
order_date = { type = "date", nullable = false }
[[table]]
name = "daily_revenue"
zone = "gold"
partition_by = "order_date"
sql = "SELECT order_date, currency, SUM(amount) AS revenue, COUNT(*) AS orders FROM orders GROUP BY order_date, currency"
"#;

/// [`BENCH_CONFIG`], its silver table deleting superseded rows by deletion vector when
/// `deletion_vectors` (the table setting of that name).
pub fn bench_config(deletion_vectors: bool) -> String {
    if deletion_vectors {
        BENCH_CONFIG.replacen(
            "max_reject_rate = 0.5\n",
            "max_reject_rate = 0.5\ndeletion_vectors = true\n",
            1,
        )
    } else {
        BENCH_CONFIG.to_string()
    }
}

/// Figures for one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageFigures {
    pub stage: String,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// Figures for one size.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub lines: usize,
    pub days: usize,
    pub input_bytes: u64,
    pub stages: Vec<StageFigures>,
    pub end_to_end_seconds: f64,
    pub end_to_end_rows_per_second: f64,
    pub peak_memory_mb: Option<f64>,
    /// Silver partitions whose gate or accounting failed (expected 0).
    pub partitions_failed: usize,
    /// Rows in silver after the run.
    pub silver_rows: u64,
    /// The DuckDB reference on the same files, when python3 with duckdb is available.
    pub duckdb: Option<Reference>,
    /// Why the reference did not run.
    pub duckdb_skipped: Option<String>,
}

/// What the DuckDB reference script measured (see `duckdb_reference.py`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Reference {
    pub seconds: f64,
    pub peak_memory_mb: f64,
    pub records: u64,
    pub silver: u64,
    pub dead: u64,
}

/// The DuckDB reference script (same semantics as [`BENCH_CONFIG`]).
pub const DUCKDB_REFERENCE: &str = include_str!("duckdb_reference.py");

/// Runs the DuckDB reference on the bench folder `dir` (in its own process).
pub fn run_reference(dir: &Path) -> Result<Reference, String> {
    let script = dir.join("duckdb_reference.py");
    std::fs::write(&script, DUCKDB_REFERENCE).map_err(|e| format!("{}: {e}", script.display()))?;
    let out = std::process::Command::new("python3")
        // DuckDB with its own allocator settings, not the arena limit karat runs with
        .env_remove(crate::malloc::ARENA_MAX)
        .arg(&script)
        .arg(dir)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("failed").to_string();
        return Err(format!("duckdb reference: {last} (pip install duckdb)"));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("duckdb reference output: {e}"))
}

/// Writes `lines` order lines over `days` gzip files into `dir/data`, plus the config.
pub fn generate(dir: &Path, lines: usize, days: usize) -> KaratResult<u64> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| KaratError::io(&data, e))?;
    std::fs::write(dir.join("karat.toml"), BENCH_CONFIG).map_err(|e| KaratError::io(dir, e))?;
    let per_day = lines / days;
    let mut rng = StdRng::seed_from_u64(7);
    let mut total = 0u64;
    for d in 0..days {
        let path = data.join(format!("orders-{d:02}.ndjson.gz"));
        let f = std::fs::File::create(&path).map_err(|e| KaratError::io(&path, e))?;
        let mut enc = GzEncoder::new(std::io::BufWriter::new(f), Compression::fast());
        let date = format!("2026-03-{:02}", 1 + d);
        let n = if d + 1 == days {
            lines - per_day * (days - 1)
        } else {
            per_day
        };
        for i in 0..n {
            let id = if rng.random_bool(0.02) && i > 0 {
                d * per_day + i - 1
            } else {
                d * per_day + i
            };
            let status = ["placed", "paid", "shipped"][rng.random_range(0..3)];
            let line = order_line(&mut rng, &format!("o-{id}"), status, &date, i % 1000 == 999);
            total += line.len() as u64 + 1;
            enc.write_all(line.as_bytes())
                .map_err(|e| KaratError::io(&path, e))?;
            enc.write_all(b"\n").map_err(|e| KaratError::io(&path, e))?;
        }
        enc.finish().map_err(|e| KaratError::io(&path, e))?;
    }
    Ok(total)
}

/// One generated order line: about 3% bad values ("usd " currencies, negative amounts), and a
/// truncated (invalid JSON) line when `truncated`.
pub fn order_line(rng: &mut StdRng, id: &str, status: &str, date: &str, truncated: bool) -> String {
    if truncated {
        return format!("{{\"order_id\":\"{id}\",\"amount\":");
    }
    let cur = match rng.random_range(0..100) {
        0..=1 => "usd ",
        2..=40 => "EUR",
        41..=60 => "GBP",
        _ => "USD",
    };
    let amount = if rng.random_bool(0.01) {
        -12.5
    } else {
        rng.random_range(1.0..500.0f64)
    };
    format!(
        "{{\"order_id\":\"{id}\",\"customer_id\":\"c-{}\",\"amount\":{amount:.2},\"currency\":\"{cur}\",\"quantity\":{},\"status\":\"{status}\",\"order_date\":\"{date}\"}}",
        rng.random_range(1..100_000),
        rng.random_range(1..10),
    )
}

/// Which of karat and the DuckDB reference runs first in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    KaratFirst,
    ReferenceFirst,
}

/// One round on the files [`generate`] wrote to `dir` (its lake empty or absent): karat's run
/// and the DuckDB reference's, in `order`.
pub async fn measure(
    dir: &Path,
    lines: usize,
    days: usize,
    input_bytes: u64,
    order: Order,
) -> KaratResult<BenchResult> {
    let early = (order == Order::ReferenceFirst).then(|| run_reference(dir));
    let mut r = measure_karat(dir, lines, days, input_bytes).await?;
    let reference = match early {
        Some(r) => r,
        None => run_reference(dir),
    };
    (r.duckdb, r.duckdb_skipped) = match reference {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    Ok(r)
}

/// karat's run of the bench pipeline over `dir`'s files, timed per stage.
async fn measure_karat(
    dir: &Path,
    lines: usize,
    days: usize,
    input_bytes: u64,
) -> KaratResult<BenchResult> {
    let plan = Plan::load(&dir.join("karat.toml")).await?;
    let lake = crate::lake::Lake::open(&plan.config.lake_url)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let events = Events::new(tx);
    crate::timings::reset_peak();
    let t0 = Instant::now();
    let collector = tokio::spawn(async move {
        let mut marks: Vec<(Stage, bool, Instant)> = Vec::new();
        while let Some(e) = rx.recv().await {
            match e {
                Event::Started { stage, .. } => marks.push((stage, true, Instant::now())),
                Event::Finished { stage, .. } => marks.push((stage, false, Instant::now())),
                Event::Note { message } if std::env::var_os("KARAT_TIMINGS").is_some() => {
                    eprintln!("{message}")
                }
                _ => {}
            }
        }
        marks
    });
    let report =
        crate::pipeline::run(&plan, &lake, RunOptions::new(Trigger::Bench), &events).await?;
    let total = t0.elapsed().as_secs_f64();
    drop(events);
    let marks = collector
        .await
        .map_err(|e| KaratError::Other(format!("bench: {e}")))?;
    let peak = crate::timings::peak_mb();
    if report.silver.iter().all(|s| s.partitions.is_empty()) {
        return Err(KaratError::Other("bench: silver processed nothing".into()));
    }
    let mut stages = Vec::new();
    for stage in [Stage::Bronze, Stage::Silver, Stage::Gold] {
        let start = marks
            .iter()
            .filter(|m| m.0 == stage && m.1)
            .map(|m| m.2)
            .min();
        let end = marks
            .iter()
            .filter(|m| m.0 == stage && !m.1)
            .map(|m| m.2)
            .max();
        if let (Some(s), Some(e)) = (start, end) {
            let secs = (e - s).as_secs_f64();
            stages.push(StageFigures {
                stage: stage.to_string(),
                seconds: secs,
                rows_per_second: lines as f64 / secs.max(1e-9),
            });
        }
    }
    Ok(BenchResult {
        lines,
        days,
        input_bytes,
        stages,
        end_to_end_seconds: total,
        end_to_end_rows_per_second: lines as f64 / total,
        peak_memory_mb: peak,
        partitions_failed: report
            .partitions()
            .filter(|(_, _, p)| !p.status.promoted())
            .count(),
        silver_rows: report
            .silver
            .iter()
            .flat_map(|s| s.partitions.iter())
            .map(|p| p.rows_out)
            .sum(),
        duckdb: None,
        duckdb_skipped: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_deletion_vector_bench_config_sets_the_setting_on_its_silver_table() {
        let on = super::bench_config(true);
        assert_ne!(on, super::BENCH_CONFIG, "the setting was not inserted");
        let config: toml::Value = toml::from_str(&on).unwrap();
        let silver = &config["table"][0];
        assert_eq!(silver["zone"].as_str(), Some("silver"));
        assert_eq!(silver["deletion_vectors"].as_bool(), Some(true));
        assert_eq!(super::bench_config(false), super::BENCH_CONFIG);
    }
}
