//! `karat bench --rounds N`: the same generated files measured N times, each round on an
//! empty lake, karat and the DuckDB reference taking turns to go first, and the medians.
//!
//! On a shared 2-core VM one run of either side varies by up to 2x from one minute to the
//! next (the reference more than karat): a single pair of runs can put the ratio anywhere in
//! that range. The medians of alternated rounds are the figures to quote.

use std::path::Path;

use serde::Serialize;

use super::{BenchResult, Order, generate, measure};
use crate::error::{KaratError, KaratResult};

/// Every round of one size, and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Rounds {
    pub lines: usize,
    pub rounds: Vec<BenchResult>,
    pub median_seconds: f64,
    /// The silver stage's rows per second: median, and the slowest round's.
    pub median_silver_rows_per_second: Option<f64>,
    pub slowest_silver_rows_per_second: Option<f64>,
    /// The largest peak memory of any round.
    pub largest_peak_memory_mb: Option<f64>,
    /// The reference's median seconds, and that over karat's (above 1: karat is faster).
    pub median_duckdb_seconds: Option<f64>,
    pub median_speedup: Option<f64>,
}

/// Generates the files once into `dir` (empty or absent) and measures `rounds` rounds.
pub async fn run_rounds(
    dir: &Path,
    lines: usize,
    days: usize,
    rounds: usize,
) -> KaratResult<Rounds> {
    let input_bytes = generate(dir, lines, days)?;
    let mut out = Vec::new();
    for i in 0..rounds.max(1) {
        clear_outputs(dir)?;
        let order = match i % 2 {
            0 => Order::KaratFirst,
            _ => Order::ReferenceFirst,
        };
        out.push(measure(dir, lines, days, input_bytes, order).await?);
    }
    Ok(summarize(lines, out))
}

/// Removes what a round wrote (the lake), so that the next one starts from the files alone.
fn clear_outputs(dir: &Path) -> KaratResult<()> {
    let lake = dir.join("lake");
    if lake.exists() {
        std::fs::remove_dir_all(&lake).map_err(|e| KaratError::io(&lake, e))?;
    }
    Ok(())
}

/// The rounds with their medians.
pub fn summarize(lines: usize, rounds: Vec<BenchResult>) -> Rounds {
    let silver: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.stages.iter().find(|s| s.stage == "silver"))
        .map(|s| s.rows_per_second)
        .collect();
    let karat = median(rounds.iter().map(|r| r.end_to_end_seconds).collect());
    let duckdb = median(
        rounds
            .iter()
            .filter_map(|r| r.duckdb.as_ref().map(|d| d.seconds))
            .collect(),
    );
    Rounds {
        lines,
        median_seconds: karat.unwrap_or(0.0),
        median_silver_rows_per_second: median(silver.clone()),
        slowest_silver_rows_per_second: silver.iter().copied().reduce(f64::min),
        largest_peak_memory_mb: rounds
            .iter()
            .filter_map(|r| r.peak_memory_mb)
            .reduce(f64::max),
        median_speedup: duckdb.zip(karat).map(|(d, k)| d / k.max(1e-9)),
        median_duckdb_seconds: duckdb,
        rounds,
    }
}

/// The median of `xs` (the mean of the middle two for an even count); None when empty.
fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(match n % 2 {
        1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    })
}

/// One round as the bench prints it: end to end, each stage, and the reference.
pub fn describe(r: &BenchResult) -> String {
    let mut text = format!(
        "{} lines ({:.0} MB of NDJSON): end to end {:.2}s = {:.0} rows/s, peak memory {}, {} partition(s) not promoted\n",
        r.lines,
        r.input_bytes as f64 / 1e6,
        r.end_to_end_seconds,
        r.end_to_end_rows_per_second,
        r.peak_memory_mb
            .map(|m| format!("{m:.0} MB"))
            .unwrap_or_else(|| "n/a".into()),
        r.partitions_failed
    );
    for s in &r.stages {
        text.push_str(&format!(
            "  {:<7} {:>7.2}s {:>12.0} rows/s\n",
            s.stage, s.seconds, s.rows_per_second
        ));
    }
    match (&r.duckdb, &r.duckdb_skipped) {
        (Some(d), _) => text.push_str(&format!(
            "  duckdb reference {:.2}s, peak {:.0} MB, silver {} (karat {}), dead {}: karat is {}\n",
            d.seconds,
            d.peak_memory_mb,
            d.silver,
            r.silver_rows,
            d.dead,
            speedup(d.seconds / r.end_to_end_seconds.max(1e-9)),
        )),
        (None, Some(why)) => text.push_str(&format!("  duckdb reference skipped: {why}\n")),
        _ => {}
    }
    text
}

/// The medians of several rounds, in one paragraph.
pub fn describe_medians(r: &Rounds) -> String {
    let per_s = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.0} rows/s"));
    let mut text = format!(
        "{} rounds of {} lines: median end to end {:.2}s; silver median {}, slowest {}; largest peak {}\n",
        r.rounds.len(),
        r.lines,
        r.median_seconds,
        per_s(r.median_silver_rows_per_second),
        per_s(r.slowest_silver_rows_per_second),
        r.largest_peak_memory_mb
            .map_or("n/a".into(), |m| format!("{m:.0} MB")),
    );
    if let (Some(d), Some(x)) = (r.median_duckdb_seconds, r.median_speedup) {
        text.push_str(&format!(
            "  duckdb reference median {d:.2}s: karat is {} (median over median)\n",
            speedup(x)
        ));
    }
    text
}

/// `x` (reference seconds over karat's) as `1.40x faster` or `1.25x slower`.
fn speedup(x: f64) -> String {
    if x >= 1.0 {
        format!("{x:.2}x faster")
    } else {
        format!("{:.2}x slower", 1.0 / x.max(1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Reference, StageFigures};

    fn round(seconds: f64, silver: f64, duckdb: f64) -> BenchResult {
        BenchResult {
            lines: 10,
            days: 1,
            input_bytes: 0,
            stages: vec![StageFigures {
                stage: "silver".into(),
                seconds: 1.0,
                rows_per_second: silver,
            }],
            end_to_end_seconds: seconds,
            end_to_end_rows_per_second: 10.0 / seconds,
            peak_memory_mb: Some(seconds * 100.0),
            partitions_failed: 0,
            silver_rows: 10,
            duckdb: Some(Reference {
                seconds: duckdb,
                peak_memory_mb: 1.0,
                records: 10,
                silver: 10,
                dead: 0,
            }),
            duckdb_skipped: None,
        }
    }

    #[test]
    fn the_medians_of_rounds_are_taken_side_by_side_not_per_round() {
        let r = summarize(
            10,
            vec![
                round(6.0, 1.2e6, 13.0),
                round(7.0, 0.9e6, 7.0),
                round(6.5, 1.1e6, 9.1),
            ],
        );
        assert_eq!(r.median_seconds, 6.5);
        assert_eq!(r.median_silver_rows_per_second, Some(1.1e6));
        assert_eq!(r.slowest_silver_rows_per_second, Some(0.9e6));
        assert_eq!(r.largest_peak_memory_mb, Some(700.0));
        assert_eq!(r.median_duckdb_seconds, Some(9.1));
        assert_eq!(r.median_speedup, Some(9.1 / 6.5));
        assert!(describe_medians(&r).contains("karat is 1.40x faster"));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(speedup(0.8), "1.25x slower");
    }
}
