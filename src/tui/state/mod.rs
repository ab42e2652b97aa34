//! The dashboard's state and how it changes: updates from the engine and user actions go in,
//! requests for the engine come out. Rendering reads this and nothing else (one direction:
//! events → actions → state → render).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::action::{Action, Approved, Request, View};
use super::engine::{Snapshot, Update};
use super::screens::overview::{Effect, OverviewScreen};
use super::theme::Theme;
use crate::config::Zone;
use crate::events::Event;
use crate::export::DeadLetter;
use crate::gold::WHOLE_TABLE;
use crate::ledger::StepRecord;
use crate::ledger::breaches::BreachGroup;
use crate::ledger::status::latest_partition_states;
use crate::lineage::Node;
use crate::pipeline::{ReplayPreview, ReplayTarget};
use crate::silver::PartitionStatus;

mod dead;
mod derived;
mod keys;
mod matrix;
mod prompt;
mod replay;

pub use dead::{DeadFocus, DeadState};
pub use derived::TimelineEntry;
pub use matrix::{Cell, CellState, Matrix, StatusFilter};
pub use replay::{APPROVE, Gate, ReplayPlan};

/// Input modes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Filter(String),
    Prompt(String),
    Confirm(ReplayPlan),
    /// Undo this replay run?
    ConfirmRestore(String),
    Help,
}

/// The whole dashboard state.
pub struct App {
    /// No key writes to the lake (`karat ui --read-only`, `[ui] read_only`).
    pub read_only: bool,
    pub view: View,
    pub theme: Theme,
    pub snapshot: Option<Snapshot>,
    pub matrix: Matrix,
    /// Breaches grouped by cause, most urgent first.
    pub breaches: Vec<BreachGroup>,
    /// The seed's SLIs M1–M8, computed once per snapshot.
    pub slis: Option<crate::ledger::sli::Slis>,
    pub mode: Mode,
    pub now: DateTime<Utc>,
    pub fixed_clock: bool,
    pub overview: OverviewScreen,
    pub cell: (usize, usize),
    /// The partitions screen shows every partition, one character each (`z`).
    pub dense: bool,
    /// Partitions: which partitions (columns) the matrix shows.
    pub status_filter: StatusFilter,
    pub anchor: Option<(usize, usize)>,
    pub running: BTreeMap<(String, String), CellState>,
    pub dead: DeadState,
    pub lineage_focus: Option<Node>,
    pub lineage_sel: usize,
    /// What the replay the restore confirmation would undo changed (`None`: computing).
    pub restore_diff: Option<Result<Vec<String>, String>>,
    pub schema_source: usize,
    pub schema_sel: usize,
    pub schema_marks: Vec<usize>,
    pub runs_sel: usize,
    pub filter: Option<String>,
    pub log: Vec<(DateTime<Utc>, String)>,
    pub message: Option<(String, bool)>,
    pub job: Option<String>,
    pub quit: bool,
    pub outbox: Vec<Request>,
    pub page: usize,
    cursor_placed: bool,
}

const PAGE: usize = 200;

fn zone_rank(z: Zone) -> u8 {
    match z {
        Zone::Bronze => 0,
        Zone::Silver => 1,
        Zone::Gold => 2,
    }
}

impl App {
    pub fn new(theme: Theme, now: DateTime<Utc>, fixed_clock: bool) -> App {
        App {
            read_only: false,
            view: View::Overview,
            theme,
            snapshot: None,
            matrix: Matrix::default(),
            breaches: Vec::new(),
            slis: None,
            mode: Mode::Normal,
            now,
            fixed_clock,
            overview: OverviewScreen::default(),
            cell: (0, 0),
            dense: false,
            status_filter: StatusFilter::All,
            anchor: None,
            running: BTreeMap::new(),
            dead: DeadState {
                table: None,
                reasons: Vec::new(),
                values: BTreeMap::new(),
                reasons_loading: false,
                reason_sel: 0,
                rows: Vec::new(),
                rows_loading: false,
                rows_done: false,
                row_sel: 0,
                generation: 0,
                partition: None,
                rows_label: String::new(),
                filter: None,
                focus: DeadFocus::Reasons,
            },
            lineage_focus: None,
            lineage_sel: 0,
            restore_diff: None,
            schema_source: 0,
            schema_sel: 0,
            schema_marks: Vec::new(),
            runs_sel: 0,
            filter: None,
            log: Vec::new(),
            message: None,
            job: None,
            quit: false,
            outbox: vec![Request::Refresh],
            page: 10,
            cursor_placed: false,
        }
    }

    /// Requests produced since the last call.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    /// Shows an action at once and has the engine record it in the ledger (with who and
    /// where), so every dashboard on the lake lists it from the next snapshot on.
    fn log_action(&mut self, command: String) {
        if !self.read_only {
            self.outbox.push(Request::LogAction(command.clone()));
        }
        self.log.push((self.now, command));
    }

    // ---------------------------------------------------------------- engine updates

    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Snapshot(s) => {
                if !self.fixed_clock {
                    self.now = Utc::now();
                }
                // actions the ledger now lists are shown from there (with who and where)
                self.log
                    .retain(|(_, c)| !s.actions.iter().any(|a| &a.command == c));
                self.snapshot = Some(*s);
                self.rebuild();
                if self.dead.table.is_none() {
                    self.dead.table = self.silver_tables().first().cloned();
                    self.request_reasons();
                } else if self.view == View::DeadLetters {
                    self.request_reasons();
                }
                if self.schema_sel == 0 && self.schema_marks.is_empty() {
                    self.schema_sel = self.latest_schema_change();
                }
                if self.lineage_focus.is_none() {
                    self.lineage_focus =
                        self.snapshot
                            .as_ref()
                            .and_then(|s| s.tables.first())
                            .map(|t| Node {
                                zone: t.zone,
                                name: t.name.clone(),
                            });
                }
            }
            Update::Event(Event::Partition {
                table,
                partition,
                status,
            }) => {
                let st = match status.as_str() {
                    "ok" => CellState::Ok,
                    "warn" => CellState::Warn,
                    "blocked" => CellState::Blocked,
                    _ => CellState::Failed,
                };
                self.running.insert((table, partition), st);
            }
            Update::Event(_) => {}
            Update::JobStarted { command } => {
                self.job = Some(command);
            }
            Update::JobFinished {
                command,
                status,
                summary,
                changed,
            } => {
                self.job = None;
                // what failed comes first; what a replay changed only once it did not fail
                let first = if changed.is_empty() || status == "failed" {
                    summary
                        .lines()
                        .nth(1)
                        .or(summary.lines().next())
                        .unwrap_or("")
                        .trim()
                        .to_string()
                } else {
                    format!("changed {}", changed.join("; "))
                };
                self.message = Some((format!("{command}: {status}. {first}"), status == "failed"));
            }
            Update::ReplayDiff { run_id, result } => {
                // only the answer for the open confirmation counts
                if matches!(&self.mode, Mode::ConfirmRestore(id) if *id == run_id) {
                    self.restore_diff = Some(result);
                }
            }
            Update::ReplayPreview { commands, result } => {
                // answers arrive in any order: only the one for the open confirmation counts
                if let Mode::Confirm(plan) = &mut self.mode
                    && plan.commands() == commands
                {
                    plan.preview = Some(result);
                }
            }
            Update::Reasons {
                table,
                partition,
                counts,
                values,
            } => {
                // answers arrive in any order: only the one for what is shown now counts
                if self.dead.table.as_deref() == Some(table.as_str())
                    && self.dead.partition == partition
                {
                    self.dead.reasons = counts;
                    self.dead.values = values;
                    self.dead.reasons_loading = false;
                    self.dead.reason_sel = self
                        .dead
                        .reason_sel
                        .min(self.dead.reasons.len().saturating_sub(1));
                }
            }
            Update::DeadLetters {
                generation,
                offset,
                rows,
                done,
            } => {
                if generation == self.dead.generation && offset == self.dead.rows.len() {
                    self.dead.rows.extend(rows);
                    self.dead.rows_done = done;
                    self.dead.rows_loading = false;
                }
            }
            Update::Message(m) => self.message = Some((m, false)),
            Update::Error(m) => self.message = Some((m, true)),
        }
    }
}

/// A duration in seconds as `5m`, `3h`, `2d`.
pub use crate::summary::human_age as age;
