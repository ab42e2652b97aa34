//! The dashboard's engine worker: the only part of the dashboard that touches storage. It owns
//! the plan and the lake, serves requests in background tasks, reports progress and results over
//! a channel, polls the ledger so runs started elsewhere show up, runs the configured schedule,
//! and reloads `karat.toml` when it changes on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::Zone;
use crate::error::KaratResult;
use crate::events::{Event, Events};
use crate::export::{self, DeadLetter, DeadLetterQuery};
use crate::lake::{Lake, delta, layout};
use crate::ledger::status::{self, StatusReport};
use crate::ledger::{
    ActionRecord, AlertRecord, ContractRecord, DriftRecord, Ledger, RunRecord, StepRecord,
};
use crate::lineage::Lineage;
use crate::pipeline::{Plan, ReplayTarget, RunOptions, Trigger};
use crate::schema::{self, SchemaVersion};
use crate::silver::contract_doc::{ContractColumn, ContractDoc};

use super::action::Request;

/// A table as the views need it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub zone: Zone,
    pub owner: Option<String>,
    pub source: Option<String>,
    pub partition_by: Option<String>,
    pub columns: Vec<ContractColumn>,
    /// Silver: the current contract.
    pub contract: Option<ContractDoc>,
    pub sql: Option<String>,
    /// Gold: tables it reads; recomputed per partition.
    pub inputs: Vec<String>,
    pub incremental: bool,
    /// `runbook` and `runbooks` (rule id → runbook).
    pub runbook: Option<String>,
    pub rule_runbooks: Vec<(String, String)>,
}

impl TableInfo {
    /// The runbook for a failure whose reason is `reason` (a rule's, else the table's).
    pub fn runbook_for(&self, reason: &str) -> Option<&str> {
        crate::config::runbook_for(self.runbook.as_deref(), &self.rule_runbooks, reason)
    }
}

/// What the views show of one table of the plan.
fn table_info(plan: &Plan, t: &crate::config::Table) -> TableInfo {
    let g = plan.gold_plan(&t.name);
    let contract = t.silver().map(|s| ContractDoc::of(&t.name, s));
    let columns = match (&contract, g) {
        (Some(c), _) => c.columns.clone(),
        (None, Some(g)) => g
            .schema
            .fields()
            .iter()
            .map(|f| ContractColumn {
                name: f.name().clone(),
                source_field: f.name().clone(),
                ty: f.data_type().to_string(),
                nullable: f.is_nullable(),
                rules: Vec::new(),
            })
            .collect(),
        (None, None) => Vec::new(),
    };
    TableInfo {
        name: t.name.clone(),
        zone: t.zone,
        owner: t.owner.clone(),
        source: t.silver().map(|s| s.from.clone()),
        partition_by: t.partition_column().map(str::to_string),
        columns,
        contract,
        sql: t.gold().map(|g| g.sql.trim().to_string()),
        inputs: g.map(|g| g.inputs.clone()).unwrap_or_default(),
        incremental: g.map(|g| g.incremental).unwrap_or(true),
        runbook: t.runbook.clone(),
        rule_runbooks: t.rule_runbooks.clone(),
    }
}

/// Everything the views show, loaded in one go.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub project: String,
    pub loaded_at: DateTime<Utc>,
    pub status: StatusReport,
    pub steps: Vec<StepRecord>,
    pub runs: Vec<RunRecord>,
    pub drift: Vec<DriftRecord>,
    pub lineage: Lineage,
    pub tables: Vec<TableInfo>,
    pub sources: Vec<String>,
    pub schemas: BTreeMap<String, Vec<SchemaVersion>>,
    /// Who holds the lake's writer lease, if anyone.
    pub lease: Option<crate::lake::lease::LeaseInfo>,
    /// Actions taken from dashboards on this lake (any machine), oldest first.
    pub actions: Vec<ActionRecord>,
    /// Every recorded contract version, oldest first.
    pub contracts: Vec<ContractRecord>,
    /// Every alert notification sent or attempted, oldest first.
    pub alerts: Vec<AlertRecord>,
    /// Every `[[table.slo]]` as of `loaded_at`.
    pub slos: Vec<crate::ledger::slo::SloStatus>,
    /// Event-time freshness of the silver tables with an `event_time`.
    pub event_lags: Vec<crate::ledger::event_time::EventLag>,
    /// Completeness against the counts sources declared.
    pub declared: Vec<crate::ledger::declared::SourceCompleteness>,
    /// What replays cost, per month, newest first.
    pub replay_costs: Vec<crate::ledger::replay_cost::MonthCost>,
    /// `[defaults] replay_budget_rows`.
    pub replay_budget_rows: Option<u64>,
    /// The newest event per partition of tables with an `event_time`.
    pub partition_events: BTreeMap<(Zone, String), BTreeMap<String, String>>,
}

impl Snapshot {
    pub fn table(&self, name: &str) -> Option<&TableInfo> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Update {
    Snapshot(Box<Snapshot>),
    Event(Event),
    JobStarted {
        command: String,
    },
    JobFinished {
        command: String,
        status: String,
        summary: String,
        /// For a replay: what it changed, one summary line per table it wrote.
        changed: Vec<String>,
    },
    Reasons {
        table: String,
        /// The partition asked about (`None`: the whole table).
        partition: Option<String>,
        /// (rule, rows), most rows first.
        counts: Vec<(String, i64)>,
        /// Per rule, its most frequent offending values.
        values: BTreeMap<String, Vec<(String, i64)>>,
    },
    DeadLetters {
        generation: u64,
        offset: usize,
        rows: Vec<DeadLetter>,
        done: bool,
    },
    /// What replaying the targets (named by their commands) would rewrite, or why that could
    /// not be computed.
    ReplayPreview {
        commands: Vec<String>,
        result: Result<Vec<crate::pipeline::ReplayPreview>, String>,
    },
    /// What a replay changed, per table it wrote (summary lines), or why that is unknown.
    ReplayDiff {
        run_id: String,
        result: Result<Vec<String>, String>,
    },
    Message(String),
    Error(String),
}

/// Loads a snapshot of the lake for `plan` at `now`.
pub async fn load_snapshot(plan: &Plan, lake: &Lake, now: DateTime<Utc>) -> KaratResult<Snapshot> {
    let ledger = Ledger::new(lake);
    let runs = ledger.runs().await?;
    let steps = ledger.steps().await?;
    let drift = ledger.drift().await?;
    let actions = ledger.actions().await?;
    let contracts = ledger.contracts().await?;
    let alerts = ledger.alerts().await?;
    let declared_batches = crate::ledger::declared::batches(&plan.config, lake).await?;
    let slos = crate::ledger::slo::compute(&plan.config, &steps, &declared_batches, now);
    let declared = crate::ledger::declared::summarize(&declared_batches);
    let replay_costs = crate::ledger::replay_cost::per_month(
        &crate::ledger::replay_cost::costs(&plan.config, lake, &runs).await?,
    );
    let event_lags = crate::ledger::event_time::lags(&plan.config, lake, now).await?;
    let partition_events =
        crate::ledger::event_time::newest_by_partition(&plan.config, lake).await?;
    let status = status::compute(&plan.config, &runs, &steps, now);
    let mut schemas = BTreeMap::new();
    for s in &plan.config.sources {
        schemas.insert(s.name.clone(), schema::history(lake, &s.name).await?);
    }
    let tables = plan
        .config
        .tables
        .iter()
        .map(|t| table_info(plan, t))
        .collect();
    Ok(Snapshot {
        project: plan.config.project.clone(),
        loaded_at: now,
        status,
        steps,
        runs,
        drift,
        lineage: Lineage::of(plan),
        tables,
        sources: plan.config.sources.iter().map(|s| s.name.clone()).collect(),
        schemas,
        lease: crate::lake::lease::current(lake).await?,
        actions,
        contracts,
        slos,
        event_lags,
        declared,
        replay_costs,
        replay_budget_rows: plan.config.replay_budget_rows,
        partition_events,
        alerts,
    })
}

/// What replaying `targets` would rewrite, as the update the dashboard waits for.
pub async fn preview_replay(plan: &Plan, lake: &Lake, targets: &[ReplayTarget]) -> Update {
    let mut out = Vec::new();
    for t in targets {
        match crate::pipeline::preview(plan, lake, t).await {
            Ok(p) => out.push(p),
            Err(e) => {
                return Update::ReplayPreview {
                    commands: targets.iter().map(ReplayTarget::command).collect(),
                    result: Err(e.to_string()),
                };
            }
        }
    }
    Update::ReplayPreview {
        commands: targets.iter().map(ReplayTarget::command).collect(),
        result: Ok(out),
    }
}

/// What the replay `run_id` changed: one summary line per table it wrote.
pub async fn diff_replay(plan: &Plan, lake: &Lake, run_id: &str) -> Update {
    let result = crate::schema::table_diff::of_run(plan, lake, run_id)
        .await
        .map(|ds| ds.iter().map(|d| d.summary()).collect())
        .map_err(|e| e.to_string());
    Update::ReplayDiff {
        run_id: run_id.to_string(),
        result,
    }
}

/// Writes every dead letter the dashboard's rows pane selects to `name`, streamed.
pub async fn export_rows(
    lake: &Lake,
    table: &str,
    partition: Option<String>,
    filter: Option<String>,
    name: &str,
) -> Update {
    let q = DeadLetterQuery::page(partition, filter, 0, 0);
    match export::export_all(lake, table, &q, std::path::Path::new(name)).await {
        Ok(n) => Update::Message(format!("exported {n} row(s) to {name}")),
        Err(e) => Update::Error(e.to_string()),
    }
}

/// Values shown per rule in the dead-letters screen.
const VALUES_PER_RULE: usize = 3;

async fn reasons(lake: &Lake, table: String, partition: Option<String>) -> KaratResult<Update> {
    let p = partition.as_deref();
    let export::RuleSummary { counts, values } =
        export::rule_summary(lake, &table, p, VALUES_PER_RULE).await?;
    Ok(Update::Reasons {
        table,
        partition,
        counts,
        values,
    })
}

/// Serves the read-only requests (dead-letter reasons and pages); `None` for any other request.
/// The worker and [`super::headless_state`] both answer through here.
pub async fn serve_read(lake: &Lake, req: Request) -> Option<KaratResult<Update>> {
    match req {
        Request::Reasons { table, partition } => Some(reasons(lake, table, partition).await),
        Request::DeadLetters {
            table,
            partition,
            filter,
            offset,
            limit,
            generation,
        } => Some(
            export::dead_letters(
                lake,
                &table,
                &DeadLetterQuery::page(partition, filter, offset, limit),
            )
            .await
            .map(|rows| {
                let done = rows.len() < limit;
                Update::DeadLetters {
                    generation,
                    offset,
                    rows,
                    done,
                }
            }),
        ),
        _ => None,
    }
}

struct Shared {
    plan: Plan,
    lake: Lake,
    config_path: PathBuf,
    config_mtime: Option<SystemTime>,
    clock: Option<DateTime<Utc>>,
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Shared {
    fn now(&self) -> DateTime<Utc> {
        self.clock.unwrap_or_else(Utc::now)
    }

    /// Reloads the config if it changed on disk; a broken config keeps the old plan.
    async fn reload_if_changed(&mut self, tx: &UnboundedSender<Update>) {
        let m = mtime(&self.config_path);
        if m == self.config_mtime {
            return;
        }
        self.config_mtime = m;
        match Plan::load(&self.config_path).await {
            Ok(p) => {
                self.plan = p;
                let _ = tx.send(Update::Message(format!(
                    "reloaded {}",
                    self.config_path.display()
                )));
            }
            Err(e) => {
                let _ = tx.send(Update::Error(format!("{e} (keeping the previous config)")));
            }
        }
    }
}

/// Starts the worker; returns the request sender and the update receiver.
pub fn spawn(
    plan: Plan,
    lake: Lake,
    config_path: PathBuf,
    clock: Option<DateTime<Utc>>,
    read_only: bool,
) -> (UnboundedSender<Request>, UnboundedReceiver<Update>) {
    let (req_tx, mut req_rx) = unbounded_channel::<Request>();
    let (tx, rx) = unbounded_channel::<Update>();
    // a read-only dashboard never writes, so it never runs the schedule either
    let schedule = plan.config.schedule.clone().filter(|_| !read_only);
    let shared = Arc::new(Mutex::new(Shared {
        config_mtime: mtime(&config_path),
        plan,
        lake,
        config_path,
        clock,
    }));
    let jobs = Arc::new(Mutex::new(()));
    let self_tx = req_tx.clone();
    tokio::spawn(async move {
        let mut poll = tokio::time::interval(Duration::from_secs(3));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let due = |s: &crate::config::schedule::Schedule| {
            tokio::time::Instant::now() + s.wait_after(chrono::Utc::now())
        };
        let mut next = schedule.as_ref().map(due);
        let mut last_runs_version: Option<Option<i64>> = None;
        loop {
            let req = tokio::select! {
                r = req_rx.recv() => match r { Some(r) => r, None => break },
                _ = poll.tick() => {
                    // runs started elsewhere on the same lake show up within seconds
                    let lake = shared.lock().await.lake.clone();
                    let v = delta::open(&lake.url_of(&layout::ledger("runs")), "_karat.runs").await.ok().flatten().and_then(|t| t.version()).map(|v| v as i64);
                    if last_runs_version.is_some() && last_runs_version != Some(v) {
                        let _ = self_tx.send(Request::Refresh);
                    }
                    last_runs_version = Some(v);
                    continue;
                }
                _ = async { match next { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending::<()>().await } } => {
                    next = schedule.as_ref().map(due);
                    Request::Run(Trigger::Schedule)
                }
            };
            if read_only
                && matches!(
                    req,
                    Request::Run(_) | Request::Replay(..) | Request::Restore(_)
                )
            {
                let _ = tx.send(Update::Error(
                    "read-only dashboard: nothing is written".into(),
                ));
                continue;
            }
            let shared = shared.clone();
            let tx = tx.clone();
            let jobs = jobs.clone();
            let self_tx = self_tx.clone();
            tokio::spawn(async move { handle(req, shared, jobs, tx, self_tx).await });
        }
    });
    (req_tx, rx)
}

async fn handle(
    req: Request,
    shared: Arc<Mutex<Shared>>,
    jobs: Arc<Mutex<()>>,
    tx: UnboundedSender<Update>,
    self_tx: UnboundedSender<Request>,
) {
    match req {
        Request::Refresh => {
            let (plan, lake, now) = {
                let s = shared.lock().await;
                (s.plan.clone(), s.lake.clone(), s.now())
            };
            match load_snapshot(&plan, &lake, now).await {
                Ok(s) => {
                    let _ = tx.send(Update::Snapshot(Box::new(s)));
                }
                Err(e) => {
                    let _ = tx.send(Update::Error(format!("loading the lake: {e}")));
                }
            }
        }
        job @ (Request::Run(_) | Request::Replay(..)) => {
            // one pipeline job at a time; reads keep being served meanwhile
            let _guard = jobs.lock().await;
            let (plan, lake) = {
                let mut s = shared.lock().await;
                s.reload_if_changed(&tx).await;
                (s.plan.clone(), s.lake.clone())
            };
            let (etx, mut erx) = unbounded_channel::<Event>();
            let fwd = tx.clone();
            let forward = tokio::spawn(async move {
                while let Some(e) = erx.recv().await {
                    let _ = fwd.send(Update::Event(e));
                }
            });
            let events = Events::new(etx);
            let (command, result) = match job {
                Request::Replay(target, approved) => {
                    let command = target.command();
                    let _ = tx.send(Update::JobStarted {
                        command: command.clone(),
                    });
                    let approval = approved.map(|a| crate::pipeline::Approval {
                        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                        records: a.records,
                        budget: plan.config.replay_budget_rows,
                    });
                    // the confirmation asks for approval over the budget; the engine holds to it
                    let checked = match &approval {
                        Some(_) => Ok(()),
                        None => crate::pipeline::within_budget(&plan, &lake, &target).await,
                    };
                    let report = match checked {
                        Ok(()) => {
                            crate::pipeline::replay_approved(
                                &plan, &lake, target, approval, &events,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    (command, report)
                }
                _ => {
                    let trigger = match job {
                        Request::Run(t) => t,
                        _ => Trigger::Dashboard,
                    };
                    let command = "karat run".to_string();
                    let _ = tx.send(Update::JobStarted {
                        command: command.clone(),
                    });
                    let mut opts = RunOptions::new(trigger);
                    opts.command = command.clone();
                    (
                        command,
                        crate::pipeline::run(&plan, &lake, opts, &events).await,
                    )
                }
            };
            drop(events);
            let _ = forward.await;
            match result {
                Ok(r) => {
                    // a replay says what it changed (`karat diff --replay`), table by table
                    let changed = if r.trigger == Trigger::Replay {
                        match crate::schema::table_diff::of_run(&plan, &lake, &r.run_id).await {
                            Ok(ds) => ds.iter().map(|d| d.summary()).collect(),
                            Err(e) => vec![format!("cannot tell what it changed: {e}")],
                        }
                    } else {
                        Vec::new()
                    };
                    let _ = tx.send(Update::JobFinished {
                        command,
                        status: r.status.to_string(),
                        summary: crate::summary::run_lines(&r),
                        changed,
                    });
                }
                Err(e) => {
                    let _ = tx.send(Update::JobFinished {
                        command,
                        status: "failed".into(),
                        summary: e.to_string(),
                        changed: Vec::new(),
                    });
                }
            }
            let _ = self_tx.send(Request::Refresh);
        }
        Request::Restore(run_id) => {
            let _guard = jobs.lock().await;
            let (plan, lake) = {
                let mut s = shared.lock().await;
                s.reload_if_changed(&tx).await;
                (s.plan.clone(), s.lake.clone())
            };
            let command = format!("karat restore --run {run_id}");
            let _ = tx.send(Update::JobStarted {
                command: command.clone(),
            });
            let (status, summary) = match crate::pipeline::restore(&plan, &lake, &run_id).await {
                Ok(r) => (
                    "ok".to_string(),
                    format!(
                        "{} table(s) restored, {} partition(s) back to before the replay",
                        r.tables.len(),
                        r.partitions
                    ),
                ),
                Err(e) => ("failed".to_string(), e.to_string()),
            };
            let _ = tx.send(Update::JobFinished {
                command,
                status,
                summary,
                changed: Vec::new(),
            });
            let _ = self_tx.send(Request::Refresh);
        }
        Request::LogAction(command) => {
            let lake = shared.lock().await.lake.clone();
            let action = ActionRecord {
                at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                host: crate::lake::lease::hostname(),
                command,
            };
            if let Err(e) = Ledger::new(&lake).append_action(&action).await {
                let _ = tx.send(Update::Error(format!("recording the action: {e}")));
            }
        }
        Request::PreviewReplay(targets) => {
            // the preview uses the config the replay will use: an edited contract counts
            let (plan, lake) = {
                let mut s = shared.lock().await;
                s.reload_if_changed(&tx).await;
                (s.plan.clone(), s.lake.clone())
            };
            let _ = tx.send(preview_replay(&plan, &lake, &targets).await);
        }
        Request::DiffReplay(run_id) => {
            let (plan, lake) = {
                let s = shared.lock().await;
                (s.plan.clone(), s.lake.clone())
            };
            let _ = tx.send(diff_replay(&plan, &lake, &run_id).await);
        }
        Request::Reasons { .. } | Request::DeadLetters { .. } => {
            let lake = shared.lock().await.lake.clone();
            if let Some(result) = serve_read(&lake, req).await {
                let _ = tx.send(result.unwrap_or_else(|e| Update::Error(e.to_string())));
            }
        }
        Request::Export {
            table,
            partition,
            filter,
        } => {
            let name = format!(
                "karat-dead-letters-{table}-{}.ndjson",
                Utc::now().format("%Y%m%dT%H%M%S")
            );
            let lake = shared.lock().await.lake.clone();
            let _ = tx.send(export_rows(&lake, &table, partition, filter, &name).await);
        }
        Request::WriteFile { path, contents } => match std::fs::write(&path, contents) {
            Ok(()) => {
                let _ = tx.send(Update::Message(format!("wrote {}", path.display())));
            }
            Err(e) => {
                let _ = tx.send(Update::Error(format!("{}: {e}", path.display())));
            }
        },
    }
}
