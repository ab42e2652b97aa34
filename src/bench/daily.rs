//! `karat bench --daily N`: the daily incremental benchmark. One gzip file of orders arrives per
//! day, as real sources send them: new orders of the day, late orders (3%, up to five days
//! back), re-sends of orders from any earlier day (3%, same key, newer status), a few percent
//! bad values and one invalid line in a thousand. `karat run` runs after each arrival; the
//! figures are each day's seconds and peak memory, which must stay flat as history grows.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{BENCH_CONFIG, peak_memory_mb, reset_peak_memory};
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use crate::ledger::Trigger;
use crate::pipeline::{Plan, RunOptions};

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

/// Runs `days` daily arrivals of `per_day` lines in `dir`, one `karat run` after each.
pub async fn run_daily(dir: &Path, days: usize, per_day: usize) -> KaratResult<DailyResult> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| KaratError::io(&data, e))?;
    std::fs::write(dir.join("karat.toml"), BENCH_CONFIG).map_err(|e| KaratError::io(dir, e))?;
    let plan = Plan::load(&dir.join("karat.toml")).await?;
    let lake = crate::lake::Lake::open(&plan.config.lake_url)?;
    let mut rng = StdRng::seed_from_u64(11);
    let mut out = Vec::new();
    for day in 0..days {
        write_day(&data, day, per_day, &mut rng)?;
        reset_peak_memory();
        let t0 = Instant::now();
        let report = crate::pipeline::run(
            &plan,
            &lake,
            RunOptions::new(Trigger::Bench),
            &Events::none(),
        )
        .await?;
        out.push(DayFigures {
            day: day + 1,
            lines: per_day,
            seconds: t0.elapsed().as_secs_f64(),
            peak_memory_mb: peak_memory_mb(),
            partitions_failed: report
                .partitions()
                .filter(|(_, _, p)| !p.status.promoted())
                .count(),
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
