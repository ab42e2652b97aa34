//! `karat serve`: the headless daemon for a VM, a container or systemd. It runs the
//! `[schedule]` (taking the writer lease only while a run writes), retries a run that failed on
//! storage with exponential backoff, and serves `/metrics`, `/healthz` and `/status` on
//! `[serve] listen`, sends the `[[alert]]`s due after each run, and runs `karat maintain` every
//! `[maintenance] every`. SIGTERM (or Ctrl-c) lets the current run finish, then exits 0.

pub mod http;
pub mod metrics;

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

use crate::config::schedule::Schedule;
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use crate::lake::Lake;
use crate::ledger::Ledger;
use crate::ledger::status::StatusReport;
use crate::pipeline::{Plan, RunOptions, RunReport, Trigger};
use http::{Endpoint, SharedPages};

/// Runs the daemon until SIGTERM / Ctrl-c. `listen` overrides `[serve] listen`.
pub async fn serve(plan: Plan, lake: Lake, listen: Option<String>) -> KaratResult<()> {
    let listen = listen.unwrap_or_else(|| plan.config.serve_listen.clone());
    let pages = SharedPages::default();
    let endpoint = Endpoint::start(&listen, pages.clone())?;
    tracing::info!(
        listen = endpoint.addr(),
        schedule = plan
            .config
            .schedule
            .as_ref()
            .map(|s| s.describe())
            .unwrap_or_else(|| "none".into()),
        "karat serve: /metrics, /healthz, /status"
    );
    refresh(&plan, &lake, &pages).await;
    let result = schedule_loop(&plan, &lake, &pages).await;
    endpoint.stop();
    tracing::info!("karat serve: stopped");
    result
}

fn ticker(every: Duration) -> Interval {
    let mut i = tokio::time::interval(every);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// The next tick of an interval, or never without one.
async fn next_tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Until `at`, or never.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}

/// When the schedule's next run is due from now.
fn next_run(schedule: Option<&Schedule>) -> Option<tokio::time::Instant> {
    schedule.map(|s| tokio::time::Instant::now() + s.wait_after(chrono::Utc::now()))
}

/// Runs the schedule and refreshes the pages until told to stop; a run in progress finishes.
async fn schedule_loop(plan: &Plan, lake: &Lake, pages: &SharedPages) -> KaratResult<()> {
    let io = |e: std::io::Error| KaratError::Other(format!("installing the SIGTERM handler: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut refresh_every = ticker(plan.config.serve_refresh);
    let schedule = plan.config.schedule.as_ref();
    // a fixed period runs once at start; a cron pattern waits for its first match
    let mut due = match schedule {
        Some(Schedule::Every(_)) => Some(tokio::time::Instant::now()),
        other => next_run(other),
    };
    let mut maintenance = plan.config.maintenance_every.map(|every| {
        // the first maintenance one period after start, not at once
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut running: Option<JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = refresh_every.tick() => refresh(plan, lake, pages).await,
            _ = until(due), if running.is_none() => {
                due = next_run(schedule);
                let (plan, lake, pages) = (plan.clone(), lake.clone(), pages.clone());
                running = Some(tokio::spawn(async move {
                    let report = scheduled_run(&plan, &lake).await;
                    alerts(&plan, &lake, report.as_ref().map(|r| r.run_id.as_str())).await;
                    if let Some(r) = &report {
                        lineage(&plan, &lake, r).await;
                    }
                    refresh(&plan, &lake, &pages).await;
                }));
            }
            _ = next_tick(&mut maintenance), if running.is_none() => {
                let (plan, lake, pages) = (plan.clone(), lake.clone(), pages.clone());
                running = Some(tokio::spawn(async move {
                    match crate::pipeline::maintain(&plan, &lake, false).await {
                        Ok(r) => tracing::info!(tables = r.tables.len(), "maintenance finished"),
                        Err(e) => tracing::error!(error = %e, "maintenance failed"),
                    }
                    refresh(&plan, &lake, &pages).await;
                }));
            }
            _ = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                running = None;
            }
        }
    }
    if let Some(run) = running {
        tracing::info!("stopping: letting the current run finish");
        let _ = run.await;
    }
    Ok(())
}

/// Errors worth retrying: the lake's storage, not the data or the config.
fn transient(e: &KaratError) -> bool {
    matches!(
        e,
        KaratError::Storage { .. } | KaratError::Io { .. } | KaratError::Delta { .. }
    )
}

/// One scheduled run, retried with exponential backoff on transient errors.
async fn scheduled_run(plan: &Plan, lake: &Lake) -> Option<RunReport> {
    let retries = plan.config.schedule_retries;
    for attempt in 0..=retries {
        let started = std::time::Instant::now();
        let res = crate::pipeline::run(
            plan,
            lake,
            RunOptions::new(Trigger::Schedule),
            &Events::none(),
        )
        .await;
        match res {
            Ok(r) => {
                tracing::info!(
                    run_id = %r.run_id,
                    status = %r.status,
                    seconds = started.elapsed().as_secs_f64(),
                    "scheduled run finished"
                );
                return Some(r);
            }
            Err(e) if transient(&e) && attempt < retries => {
                let wait = Duration::from_secs(1 << attempt.min(6));
                tracing::warn!(error = %e, attempt = attempt + 1, ?wait, "run failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled run failed");
                return None;
            }
        }
    }
    None
}

/// Sends the alerts due after a run; undelivered ones are logged and tried again next time.
async fn alerts(plan: &Plan, lake: &Lake, run_id: Option<&str>) {
    match crate::alert::notify(plan, lake, run_id).await {
        Ok(records) => {
            for r in &records {
                if r.delivered {
                    tracing::info!(alert = %r.alert, status = %r.status, key = %r.key, "alert sent");
                } else {
                    tracing::warn!(
                        alert = %r.alert,
                        status = %r.status,
                        error = r.error.as_deref().unwrap_or(""),
                        "alert not delivered"
                    );
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "evaluating alerts failed"),
    }
}

/// Sends the run's OpenLineage events; a refusal is logged.
async fn lineage(plan: &Plan, lake: &Lake, report: &RunReport) {
    match crate::lineage::openlineage::emit(plan, lake, report).await {
        Ok((sent, None)) if sent > 0 => tracing::info!(events = sent, "openlineage events sent"),
        Ok((_, Some(e))) => tracing::warn!(error = %e, "openlineage events not delivered"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "building openlineage events failed"),
    }
}

/// Recomputes the pages from the ledger; a failure shows on `/healthz`.
pub async fn refresh(plan: &Plan, lake: &Lake, pages: &SharedPages) {
    let computed = compute_pages(plan, lake).await;
    let mut p = pages.write().unwrap_or_else(|e| e.into_inner());
    match computed {
        Ok((metrics, status)) => {
            p.metrics = metrics;
            p.status = status;
            p.error = None;
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the ledger for /metrics failed");
            p.error = Some(format!("reading the ledger: {e}"));
        }
    }
}

/// The metrics text and the status document, from one read of the ledger and the lease.
async fn compute_pages(plan: &Plan, lake: &Lake) -> KaratResult<(String, String)> {
    let ledger = Ledger::new(lake);
    let runs = ledger.runs().await?;
    let steps = ledger.steps().await?;
    let status: StatusReport =
        crate::ledger::status::compute(&plan.config, &runs, &steps, chrono::Utc::now());
    let breaches = crate::ledger::breaches::group(&status);
    let lease = crate::lake::lease::current(lake).await?;
    let slis = crate::ledger::sli::compute(&status, &runs, &steps, chrono::Utc::now());
    let declared_batches = crate::ledger::declared::batches(&plan.config, lake).await?;
    let slos =
        crate::ledger::slo::compute(&plan.config, &steps, &declared_batches, chrono::Utc::now());
    let declared = crate::ledger::declared::summarize(&declared_batches);
    let event_lags =
        crate::ledger::event_time::lags(&plan.config, lake, chrono::Utc::now()).await?;
    let text = metrics::encode(&metrics::MetricsInput {
        slis: &slis,
        slos: &slos,
        event_lags: &event_lags,
        declared: &declared,
        status: &status,
        breaches: &breaches,
        runs: &runs,
        steps: &steps,
        lease: lease.as_ref(),
    });
    let json = serde_json::to_string_pretty(&status)
        .map_err(|e| KaratError::Other(format!("encoding the status: {e}")))?;
    Ok((text, json))
}
