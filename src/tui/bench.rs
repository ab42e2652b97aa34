//! The dashboard's render benchmark (`karat bench --render`): a synthetic ledger of 5 silver
//! tables × 1,000 daily partitions (a failure every 97 days, a block every 89), the model
//! built from it once, then every screen — and the partitions screen's dense view — drawn
//! into ratatui's TestBackend at 160 × 48, timed per frame.

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Days, NaiveDate, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde::Serialize;

use super::action::{Action, View};
use super::engine::{Update, load_snapshot};
use super::state::App;
use super::theme::Theme;
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::lake::Lake;
use crate::ledger::StepRecord;
use crate::ledger::status;
use crate::pipeline::Plan;
use crate::silver::PartitionStatus;

const TABLES: usize = 5;
const PARTITIONS: usize = 1_000;

/// Time per frame of one screen.
#[derive(Debug, Clone, Serialize)]
pub struct FrameFigures {
    pub screen: String,
    pub ms_per_frame: f64,
}

/// The whole render benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct RenderFigures {
    pub tables: usize,
    pub partitions: usize,
    /// Building the model (matrix, breach groups) from a snapshot, once per lake read.
    pub model_ms: f64,
    pub frames: Vec<FrameFigures>,
}

/// Runs the benchmark in `dir` (a config is written there; the lake stays empty).
pub async fn run(dir: &Path, frames: usize) -> KaratResult<RenderFigures> {
    let config = dir.join("karat.toml");
    std::fs::write(&config, config_text()).map_err(|e| KaratError::io(&config, e))?;
    let plan = Plan::load(&config).await?;
    let lake = Lake::open(&plan.config.lake_url)?;
    let now = Utc::now();
    let mut snapshot = load_snapshot(&plan, &lake, now).await?;
    snapshot.steps = steps(now);
    snapshot.status = status::compute(&plan.config, &[], &snapshot.steps, now);
    let mut app = App::new(Theme::default_dark(), now, true);
    let t0 = Instant::now();
    app.apply(Update::Snapshot(Box::new(snapshot)));
    let model_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut out = Vec::new();
    for view in View::ALL {
        app.handle(Action::Show(view));
        out.push(time(&mut app, view.slug(), frames)?);
    }
    app.handle(Action::Show(View::Partitions));
    app.handle(Action::ToggleDense);
    out.push(time(&mut app, "partitions (dense)", frames)?);
    Ok(RenderFigures {
        tables: TABLES,
        partitions: PARTITIONS,
        model_ms,
        frames: out,
    })
}

fn time(app: &mut App, screen: &str, frames: usize) -> KaratResult<FrameFigures> {
    let mut term = Terminal::new(TestBackend::new(160, 48))
        .map_err(|e| KaratError::Other(format!("render bench: {e}")))?;
    let t0 = Instant::now();
    for _ in 0..frames.max(1) {
        term.draw(|f| super::render::draw(f, app))
            .map_err(|e| KaratError::Other(format!("render bench: {e}")))?;
    }
    Ok(FrameFigures {
        screen: screen.to_string(),
        ms_per_frame: t0.elapsed().as_secs_f64() * 1e3 / frames.max(1) as f64,
    })
}

fn config_text() -> String {
    let mut text = String::from(
        "[project]\nname = \"render-bench\"\n[lake]\nurl = \"lake\"\n\
         [[source]]\nname = \"events\"\nkind = \"files\"\npath = \"data/*.ndjson\"\n",
    );
    for t in 0..TABLES {
        text.push_str(&format!(
            "[[table]]\nname = \"table_{t}\"\nzone = \"silver\"\nfrom = \"events\"\n\
             partition_by = \"day\"\n[table.columns]\nday = {{ type = \"date\", nullable = false }}\n"
        ));
    }
    text
}

fn steps(now: DateTime<Utc>) -> Vec<StepRecord> {
    let at = now.to_rfc3339();
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date");
    let mut out = Vec::with_capacity(TABLES * PARTITIONS);
    for t in 0..TABLES {
        for d in 0..PARTITIONS {
            let status = match d {
                d if d % 97 == 3 => PartitionStatus::Failed,
                d if d % 89 == 5 => PartitionStatus::Blocked,
                _ => PartitionStatus::Ok,
            };
            out.push(StepRecord {
                run_id: "bench".into(),
                trigger: crate::ledger::Trigger::Bench,
                zone: Zone::Silver,
                table: format!("table_{t}"),
                partition: (start + Days::new(d as u64)).to_string(),
                status,
                started_at: at.clone(),
                finished_at: at.clone(),
                rows_in: 1_000,
                rows_out: 1_000 - (d % 60) as i64,
                dead: (d % 60) as i64,
                duplicates: 0,
                messages: (status != PartitionStatus::Ok)
                    .then(|| format!("reject rate {}% exceeds max_reject_rate", d % 60)),
                dead_by_rule: None,
                schema_fingerprint: None,
                delta_version: Some(d as i64),
            });
        }
    }
    out
}
