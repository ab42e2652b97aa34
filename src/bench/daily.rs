//! `karat bench --daily N`: the daily incremental benchmark. One gzip file of orders arrives per
//! day, as real sources send them: new orders of the day, late orders (3%, up to five days
//! back), re-sends of orders from any earlier day (3%, same key, newer status), a few percent
//! bad values and one invalid line in a thousand. `karat run` runs after each arrival, in a
//! process of its own; the figures are each day's seconds and peak memory, which must stay flat
//! as history grows.

use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::bench_config;
use crate::error::{KaratError, KaratResult};
use crate::silver::PartitionStatus;
use crate::timings::peak_kb_of;

/// One day's run.
#[derive(Debug, Clone, Serialize)]
pub struct DayFigures {
    pub day: usize,
    pub lines: usize,
    pub seconds: f64,
    pub peak_memory_mb: Option<f64>,
    pub partitions_failed: usize,
}

/// The whole daily series.
#[derive(Debug, Clone, Serialize)]
pub struct DailyResult {
    pub days: Vec<DayFigures>,
    /// Last day's time over the first day's.
    pub time_ratio: f64,
    pub memory_ratio: Option<f64>,
}

fn date(day: usize) -> String {
    (chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date") + chrono::Days::new(day as u64))
        .format("%Y-%m-%d")
        .to_string()
}

/// Writes day `day`'s file (`per_day` lines) into `data`.
pub fn write_day(data: &Path, day: usize, per_day: usize, rng: &mut StdRng) -> KaratResult<()> {
    let path = data.join(format!("orders-{day:04}.ndjson.gz"));
    let f = std::fs::File::create(&path).map_err(|e| KaratError::io(&path, e))?;
    let mut enc = GzEncoder::new(std::io::BufWriter::new(f), Compression::fast());
    for i in 0..per_day {
        let r: f64 = rng.random();
        let (id, d, status) = if r < 0.03 && day > 0 {
            // a late order, up to five days back
            (
                format!("o-{day}-{i}"),
                day - rng.random_range(1..=day.min(5)),
                "placed",
            )
        } else if r < 0.06 && day > 0 {
            // a re-send of an order from any earlier day, with a newer status
            let old = rng.random_range(0..day);
            (
                format!("o-{old}-{}", rng.random_range(0..per_day)),
                old,
                "shipped",
            )
        } else {
            (format!("o-{day}-{i}"), day, "paid")
        };
        let line = super::order_line(rng, &id, status, &date(d), i % 1000 == 999);
        enc.write_all(line.as_bytes())
            .map_err(|e| KaratError::io(&path, e))?;
        enc.write_all(b"\n").map_err(|e| KaratError::io(&path, e))?;
    }
    enc.finish().map_err(|e| KaratError::io(&path, e))?;
    Ok(())
}

/// Runs `days` daily arrivals of `per_day` lines in `dir`, one `karat run` after each, in a
/// process of its own as cron or Airflow would start it (so a day's peak memory is that run's,
/// not what earlier days left in this process). With `deletion_vectors`, silver deletes
/// superseded rows by deletion vector instead of rewriting their partitions.
pub async fn run_daily(
    dir: &Path,
    days: usize,
    per_day: usize,
    deletion_vectors: bool,
) -> KaratResult<DailyResult> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| KaratError::io(&data, e))?;
    let config = dir.join("karat.toml");
    std::fs::write(&config, bench_config(deletion_vectors)).map_err(|e| KaratError::io(dir, e))?;
    let mut rng = StdRng::seed_from_u64(11);
    let mut out = Vec::new();
    for day in 0..days {
        write_day(&data, day, per_day, &mut rng)?;
        let config = config.clone();
        let run = tokio::task::spawn_blocking(move || run_day(&config))
            .await
            .map_err(|e| KaratError::Other(format!("bench day {}: {e}", day + 1)))??;
        out.push(DayFigures {
            day: day + 1,
            lines: per_day,
            seconds: run.seconds,
            peak_memory_mb: run.peak_memory_mb,
            partitions_failed: run.partitions_failed,
        });
    }
    let first = out.first().cloned();
    let last = out.last().cloned();
    let (time_ratio, memory_ratio) = match (first, last) {
        (Some(f), Some(l)) => (
            l.seconds / f.seconds.max(1e-9),
            f.peak_memory_mb
                .zip(l.peak_memory_mb)
                .map(|(a, b)| b / a.max(1e-9)),
        ),
        _ => (0.0, None),
    };
    Ok(DailyResult {
        days: out,
        time_ratio,
        memory_ratio,
    })
}

/// What one day's `karat run` process took.
struct DayRun {
    seconds: f64,
    peak_memory_mb: Option<f64>,
    partitions_failed: usize,
}

/// Runs `karat -c config run --json` (this executable) and waits for it, reading its peak
/// resident memory (VmHWM, which only grows) until it exits.
fn run_day(config: &Path) -> KaratResult<DayRun> {
    let exe = std::env::current_exe().map_err(|e| KaratError::io(Path::new("karat"), e))?;
    let t0 = Instant::now();
    let mut child = std::process::Command::new(&exe)
        .arg("-c")
        .arg(config)
        .args(["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| KaratError::io(&exe, e))?;
    // read the report as it comes, so a large one cannot block the run on a full pipe
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb: Option<f64> = None;
    let status = loop {
        if let Some(s) = peak_kb_of(&status_file) {
            peak_kb = Some(peak_kb.map_or(s, |p: f64| p.max(s)));
        }
        match child.try_wait().map_err(|e| KaratError::io(&exe, e))? {
            Some(status) => break status,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let report = reader
        .join()
        .map_err(|_| KaratError::Other("bench: reading karat run's report failed".into()))?
        .map_err(|e| KaratError::io(&exe, e))?;
    let partitions_failed = not_promoted(&report).ok_or_else(|| {
        KaratError::Other(format!(
            "bench: karat run ({status}) printed no run report: {}",
            report.chars().take(200).collect::<String>()
        ))
    })?;
    Ok(DayRun {
        seconds,
        peak_memory_mb: peak_kb.map(|kb| kb / 1024.0),
        partitions_failed,
    })
}

/// Silver and gold partitions a `karat run --json` report did not promote.
fn not_promoted(report: &str) -> Option<usize> {
    let doc: serde_json::Value = serde_json::from_str(report).ok()?;
    let mut n = 0;
    for zone in ["silver", "gold"] {
        for table in doc[zone].as_array()? {
            for p in table["partitions"].as_array()? {
                let status: PartitionStatus = serde_json::from_value(p["status"].clone()).ok()?;
                n += usize::from(!status.promoted());
            }
        }
    }
    Some(n)
}
