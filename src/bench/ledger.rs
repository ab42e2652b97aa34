//! `karat bench --ledger N`: the ledger after N runs. Appends N runs (each with five steps, one
//! Delta commit per ledger write, as real runs make them), then times reading the ledger the
//! way the dashboard and `karat status` do (runs, steps, the status computed from them) before
//! and after `karat maintain` compacts it.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::config::Zone;
use crate::error::KaratResult;
use crate::lake::{Lake, layout, stats};
use crate::ledger::{Ledger, RunRecord, StepRecord};
use crate::pipeline::Plan;
use crate::silver::PartitionStatus;

/// What the ledger bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerBench {
    pub runs: usize,
    pub write_seconds: f64,
    /// Files of `_karat/runs` + `_karat/steps` before and after maintenance.
    pub files_before: usize,
    pub files_after: usize,
    /// Reading runs + steps and computing the status, best of three.
    pub read_ms_before: f64,
    pub read_ms_after: f64,
    pub maintain_seconds: f64,
}

fn at(i: usize, secs: usize) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("static")
        + chrono::Duration::minutes(i as i64 * 15)
        + chrono::Duration::seconds(secs as i64);
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One synthetic run and its steps.
fn records(i: usize) -> (RunRecord, Vec<StepRecord>) {
    let run_id = uuid::Uuid::now_v7().to_string();
    let day = format!(
        "2026-{:02}-{:02}",
        1 + (i / 96 / 28) % 12,
        1 + (i / 96) % 28
    );
    let step = |zone: Zone, table: &str| StepRecord {
        run_id: run_id.clone(),
        trigger: crate::ledger::Trigger::Schedule,
        zone,
        table: table.into(),
        partition: day.clone(),
        status: PartitionStatus::Ok,
        started_at: at(i, 1),
        finished_at: at(i, 2),
        rows_in: 1000,
        rows_out: 990,
        dead: 10,
        duplicates: 0,
        messages: None,
        dead_by_rule: Some("{\"currency.one_of\":10}".into()),
        schema_fingerprint: None,
        delta_version: Some(i as i64),
    };
    let steps = vec![
        step(Zone::Silver, "orders"),
        step(Zone::Silver, "customers"),
        step(Zone::Gold, "daily_revenue"),
        step(Zone::Gold, "revenue_by_country"),
        step(Zone::Gold, "daily_orders"),
    ];
    let run = RunRecord {
        run_id,
        trigger: crate::ledger::Trigger::Schedule,
        status: crate::ledger::RunStatus::Ok,
        started_at: at(i, 0),
        finished_at: at(i, 3),
        command: "karat run".into(),
        error: None,
        rows_in: 2000,
        dead: 20,
        partitions_failed: 0,
    };
    (run, steps)
}

async fn files(lake: &Lake) -> KaratResult<usize> {
    let mut n = 0;
    for t in ["runs", "steps"] {
        let folder = layout::ledger(t);
        if let Some(s) = stats::stats(&lake.url_of(&folder), &folder).await? {
            n += s.files;
        }
    }
    Ok(n)
}

/// Best of three: runs + steps read and the status computed.
async fn read_ms(plan: &Plan, lake: &Lake) -> KaratResult<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let ledger = Ledger::new(lake);
        let runs = ledger.runs().await?;
        let steps = ledger.steps().await?;
        let _ = crate::ledger::status::compute(&plan.config, &runs, &steps, chrono::Utc::now());
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(best)
}

/// Runs the ledger bench in `dir` with `runs` runs.
pub async fn run_ledger(dir: &Path, runs: usize) -> KaratResult<LedgerBench> {
    super::generate(dir, 1000, 1)?;
    let plan = Plan::load(&dir.join("karat.toml")).await?;
    let lake = Lake::open(&plan.config.lake_url)?;
    let ledger = Ledger::new(&lake);
    let t = Instant::now();
    for i in 0..runs {
        let (run, steps) = records(i);
        ledger.append_steps(&steps).await?;
        ledger.append_run(&run).await?;
    }
    let write_seconds = t.elapsed().as_secs_f64();
    let files_before = files(&lake).await?;
    let read_ms_before = read_ms(&plan, &lake).await?;
    let t = Instant::now();
    crate::pipeline::maintain(&plan, &lake, false).await?;
    let maintain_seconds = t.elapsed().as_secs_f64();
    Ok(LedgerBench {
        runs,
        write_seconds,
        files_before,
        files_after: files(&lake).await?,
        read_ms_before,
        read_ms_after: read_ms(&plan, &lake).await?,
        maintain_seconds,
    })
}
