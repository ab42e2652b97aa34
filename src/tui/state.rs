//! The dashboard's state and how it changes: updates from the engine and user actions go in,
//! requests for the engine come out. Rendering reads this and nothing else (one direction:
//! events → actions → state → render).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::action::{Action, Request, View};
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

/// State of one partition cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    Ok,
    /// Promoted, with some rows dead-lettered (≥1%).
    OkRejects,
    Warn,
    Failed,
    Blocked,
    Stale,
    Running,
    Missing,
}

impl CellState {
    pub fn glyph(&self) -> &'static str {
        match self {
            CellState::Ok => "●",
            CellState::OkRejects => "◉",
            CellState::Warn => "◐",
            CellState::Failed => "✗",
            CellState::Blocked => "⊘",
            CellState::Stale => "○",
            CellState::Running => "◌",
            CellState::Missing => "·",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            CellState::Ok => "ok",
            CellState::OkRejects => "ok (rejects)",
            CellState::Warn => "warn",
            CellState::Failed => "failed",
            CellState::Blocked => "gate-blocked",
            CellState::Stale => "stale",
            CellState::Running => "running",
            CellState::Missing => "missing",
        }
    }

    fn from_step(s: &StepRecord) -> CellState {
        match s.status.as_str() {
            "ok" if s.rows_in > 0 && s.dead * 100 >= s.rows_in => CellState::OkRejects,
            "ok" => CellState::Ok,
            "warn" => CellState::Warn,
            "blocked" => CellState::Blocked,
            _ => CellState::Failed,
        }
    }
}

/// One cell of the partitions matrix.
#[derive(Debug, Clone)]
pub struct Cell {
    pub state: CellState,
    pub step: Option<StepRecord>,
}

/// The partitions matrix: tables × partitions.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// (zone, table)
    pub rows: Vec<(Zone, String)>,
    /// Partition values, oldest first; `*` first when any table is unpartitioned.
    pub cols: Vec<String>,
    pub cells: BTreeMap<(usize, usize), Cell>,
}

/// A replay awaiting confirmation: what was asked, and what the pipeline computed it would
/// rewrite (`pipeline::preview`, the same as `karat replay --dry-run`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPlan {
    /// (table, partitions) asked for.
    pub targets: Vec<(String, Vec<String>)>,
    /// `None` while it is being computed.
    pub preview: Option<Result<Vec<ReplayPreview>, String>>,
}

/// Input modes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Filter(String),
    Prompt(String),
    Confirm(ReplayPlan),
    Help,
}

/// Which pane of the dead-letters view has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadFocus {
    Reasons,
    Rows,
    Detail,
}

/// Dead-letters view state.
#[derive(Debug, Clone)]
pub struct DeadState {
    pub table: Option<String>,
    pub reasons: Vec<(String, i64)>,
    /// Per rule, its most frequent offending values.
    pub values: BTreeMap<String, Vec<(String, i64)>>,
    pub reasons_loading: bool,
    pub reason_sel: usize,
    pub rows: Vec<DeadLetter>,
    pub rows_loading: bool,
    pub rows_done: bool,
    pub row_sel: usize,
    pub generation: u64,
    /// The partition the view is scoped to (entered from a partition cell).
    pub partition: Option<String>,
    /// Which rows are loaded, in words (`of 2026-03-28 rule currency.one_of`).
    pub rows_label: String,
    pub filter: Option<String>,
    pub focus: DeadFocus,
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
    pub mode: Mode,
    pub now: DateTime<Utc>,
    pub fixed_clock: bool,
    pub overview: OverviewScreen,
    pub cell: (usize, usize),
    pub anchor: Option<(usize, usize)>,
    pub running: BTreeMap<(String, String), CellState>,
    pub dead: DeadState,
    pub lineage_focus: Option<Node>,
    pub lineage_sel: usize,
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
            mode: Mode::Normal,
            now,
            fixed_clock,
            overview: OverviewScreen::default(),
            cell: (0, 0),
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

    fn log_action(&mut self, command: String) {
        self.log.push((self.now, command));
    }

    // ---------------------------------------------------------------- engine updates

    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Snapshot(s) => {
                if !self.fixed_clock {
                    self.now = Utc::now();
                }
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
            } => {
                self.job = None;
                let first = summary
                    .lines()
                    .nth(1)
                    .or(summary.lines().next())
                    .unwrap_or("")
                    .trim()
                    .to_string();
                self.message = Some((format!("{command}: {status}. {first}"), status == "failed"));
            }
            Update::ReplayPreview(preview) => {
                if let Mode::Confirm(plan) = &mut self.mode {
                    plan.preview = Some(preview);
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

    pub fn silver_tables(&self) -> Vec<String> {
        self.snapshot
            .as_ref()
            .map(|s| {
                s.tables
                    .iter()
                    .filter(|t| t.zone == Zone::Silver)
                    .map(|t| t.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Recomputes the derived views of the snapshot (matrix, breaches).
    fn rebuild(&mut self) {
        let Some(s) = &self.snapshot else { return };
        // running cells are replaced by what the ledger now says
        self.running.clear();
        let latest = latest_partition_states(&s.steps);
        let mut rows: Vec<(Zone, String)> =
            s.tables.iter().map(|t| (t.zone, t.name.clone())).collect();
        rows.sort_by_key(|(z, _)| zone_rank(*z));
        let mut cols: BTreeSet<String> = BTreeSet::new();
        let mut any_whole = false;
        for (z, t, p) in latest.keys() {
            if *z == Zone::Bronze || !rows.iter().any(|(_, n)| n == t) {
                continue;
            }
            if p == WHOLE_TABLE {
                any_whole = true;
            } else {
                cols.insert(p.clone());
            }
        }
        let mut cols: Vec<String> = cols.into_iter().collect();
        if any_whole {
            cols.insert(0, WHOLE_TABLE.to_string());
        }
        let stale: BTreeSet<&str> = s
            .status
            .tables
            .iter()
            // stale by write time; stale by data shows on the failed newest partition itself
            .filter(|t| {
                t.freshness == crate::ledger::status::Freshness::Error && t.stale_because.is_none()
            })
            .map(|t| t.name.as_str())
            .collect();
        let mut cells = BTreeMap::new();
        for (ri, (z, t)) in rows.iter().enumerate() {
            for (ci, p) in cols.iter().enumerate() {
                if let Some(step) = latest.get(&(*z, t.clone(), p.clone())) {
                    let mut state = CellState::from_step(step);
                    if matches!(state, CellState::Ok | CellState::OkRejects)
                        && stale.contains(t.as_str())
                    {
                        state = CellState::Stale;
                    }
                    cells.insert(
                        (ri, ci),
                        Cell {
                            state,
                            step: Some(step.clone()),
                        },
                    );
                }
            }
        }
        self.matrix = Matrix { rows, cols, cells };
        self.breaches = crate::ledger::breaches::group(&s.status);
        self.overview.clamp(&self.breaches, &s.status.tables);
        // first time: put the partitions cursor on the most urgent cell, else keep it in range
        if self.matrix.rows.is_empty() || self.matrix.cols.is_empty() {
            self.cell = (0, 0);
        } else {
            self.cell.0 = self.cell.0.min(self.matrix.rows.len() - 1);
            self.cell.1 = self.cell.1.min(self.matrix.cols.len() - 1);
        }
        if !self.cursor_placed {
            self.cursor_placed = true;
            self.place_cursor_on_breach();
        }
    }

    fn place_cursor_on_breach(&mut self) {
        let target = self
            .breaches
            .iter()
            .filter(|g| g.zone() != Zone::Bronze)
            .find_map(|g| Some((g.table().to_string(), g.newest()?.partition.clone())));
        match target {
            Some((table, partition)) => self.jump_to(&table, Some(&partition)),
            None => {
                if !self.matrix.cols.is_empty() {
                    self.cell = (0, self.matrix.cols.len() - 1);
                }
            }
        }
    }

    fn jump_to(&mut self, table: &str, partition: Option<&str>) {
        if let Some(r) = self.matrix.rows.iter().position(|(_, t)| t == table) {
            self.cell.0 = r;
        }
        if let Some(p) = partition
            && let Some(c) = self.matrix.cols.iter().position(|c| c == p)
        {
            self.cell.1 = c;
        }
    }

    /// The cell state shown (a replay in progress overrides the ledger).
    pub fn cell_state(&self, r: usize, c: usize) -> CellState {
        let (_, t) = &self.matrix.rows[r];
        let p = &self.matrix.cols[c];
        if let Some(st) = self.running.get(&(t.clone(), p.clone())) {
            return *st;
        }
        self.matrix
            .cells
            .get(&(r, c))
            .map(|c| c.state)
            .unwrap_or(CellState::Missing)
    }

    // ---------------------------------------------------------------- user actions

    pub fn handle(&mut self, a: Action) {
        if !matches!(a, Action::Up | Action::Down | Action::Left | Action::Right) {
            self.message = None;
        }
        if self.read_only && a.writes() {
            self.message = Some((
                "read-only dashboard: runs and replays are off ([ui] read_only / --read-only)"
                    .into(),
                true,
            ));
            return;
        }
        match (&self.mode, a) {
            (Mode::Help, _) => self.mode = Mode::Normal,
            (Mode::Confirm(plan), Action::Confirm) => {
                let plan = plan.clone();
                self.mode = Mode::Normal;
                self.start_replay(plan);
            }
            (Mode::Confirm(_), _) => {
                self.mode = Mode::Normal;
                self.message = Some(("replay cancelled".into(), false));
            }
            (_, Action::Quit) => self.quit = true,
            (_, Action::Help) => self.mode = Mode::Help,
            (_, Action::Show(v)) => self.show(v),
            (_, Action::NextView) => self.show(View::ALL[(self.view.index() + 1) % 6]),
            (_, Action::PrevView) => self.show(View::ALL[(self.view.index() + 5) % 6]),
            (_, Action::Prompt) => self.mode = Mode::Prompt(String::new()),
            (_, Action::Filter) => {
                self.mode = Mode::Filter(self.filter.clone().unwrap_or_default())
            }
            (_, Action::RunNow) => {
                self.log_action("karat run".into());
                self.outbox
                    .push(Request::Run(crate::pipeline::Trigger::Dashboard));
            }
            (_, Action::Refresh) => self.outbox.push(Request::Refresh),
            (_, Action::Back) => self.back(),
            (_, a) => self.view_action(a),
        }
    }

    fn show(&mut self, v: View) {
        self.view = v;
        self.filter = None;
        if v == View::DeadLetters {
            self.request_reasons();
        }
    }

    fn back(&mut self) {
        if self.anchor.take().is_some() {
            return;
        }
        if self.filter.take().is_some() {
            return;
        }
        if self.view == View::DeadLetters {
            if self.dead.focus == DeadFocus::Reasons && self.dead.partition.take().is_some() {
                // out of the partition: the whole table's reasons again
                self.dead.reasons.clear();
                self.dead.reason_sel = 0;
                self.request_reasons();
            }
            self.dead.focus = match self.dead.focus {
                DeadFocus::Detail => DeadFocus::Rows,
                _ => DeadFocus::Reasons,
            };
        }
    }

    fn request_reasons(&mut self) {
        if let Some(t) = self.dead.table.clone() {
            self.dead.reasons_loading = true;
            self.outbox.push(Request::Reasons {
                table: t,
                partition: self.dead.partition.clone(),
            });
        }
    }

    fn load_rows(&mut self) {
        let Some(table) = self.dead.table.clone() else {
            return;
        };
        self.dead.generation += 1;
        self.dead.rows.clear();
        self.dead.row_sel = 0;
        self.dead.rows_done = false;
        self.dead.rows_loading = true;
        let filter = match (
            &self.dead.filter,
            self.dead.reasons.get(self.dead.reason_sel),
        ) {
            (Some(f), _) => Some(f.clone()),
            (None, Some((rule, _))) => Some(format!("rule:{rule}")),
            _ => None,
        };
        let what = match &filter {
            Some(f) => match f.strip_prefix("rule:") {
                Some(rule) => format!("rule {rule}"),
                None => format!("matching \"{f}\""),
            },
            None => "every rule".to_string(),
        };
        self.dead.rows_label = match &self.dead.partition {
            Some(p) => format!("of {p}, {what}"),
            None => what,
        };
        self.outbox.push(Request::DeadLetters {
            table,
            partition: self.dead.partition.clone(),
            filter,
            offset: 0,
            limit: PAGE,
            generation: self.dead.generation,
        });
    }

    /// What the rows pane shows: the `/` filter, else the selected rule (`rule:<id>`).
    fn rows_filter(&self) -> Option<String> {
        let d = &self.dead;
        match (&d.filter, d.reasons.get(d.reason_sel)) {
            (Some(f), _) => Some(f.clone()),
            (None, Some((rule, _))) => Some(format!("rule:{rule}")),
            _ => None,
        }
    }

    fn more_rows_if_needed(&mut self) {
        let d = &self.dead;
        if d.rows_done || d.rows_loading || d.row_sel + self.page * 2 < d.rows.len() {
            return;
        }
        let Some(table) = d.table.clone() else { return };
        let filter = self.rows_filter();
        let (offset, generation) = (d.rows.len(), d.generation);
        self.dead.rows_loading = true;
        self.outbox.push(Request::DeadLetters {
            table,
            partition: self.dead.partition.clone(),
            filter,
            offset,
            limit: PAGE,
            generation,
        });
    }

    /// Submits the text of the filter or prompt.
    pub fn submit(&mut self, text: String) {
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Filter(_) => {
                let f = if text.is_empty() { None } else { Some(text) };
                if self.view == View::DeadLetters {
                    self.dead.filter = f.clone();
                    self.dead.focus = DeadFocus::Rows;
                    self.load_rows();
                }
                self.filter = f;
                self.next_match(true);
            }
            Mode::Prompt(_) => self.command(&text),
            other => self.mode = other,
        }
    }

    /// Runs a `:` command.
    pub fn command(&mut self, text: &str) {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["run"] => self.handle(Action::RunNow),
            ["q"] | ["quit"] => self.quit = true,
            ["replay", table, parts @ ..] if !parts.is_empty() => {
                let plan = self.replay_plan(&[(
                    table.to_string(),
                    parts.iter().map(|p| p.to_string()).collect(),
                )]);
                self.mode = Mode::Confirm(plan);
            }
            ["replay", "--failed"] | ["replay", "failed"] => self.handle(Action::ReplayFailed),
            ["table", name] => {
                if self.matrix.rows.iter().any(|(_, t)| t == name) {
                    self.jump_to(name, None);
                    self.dead.table = Some(name.to_string())
                        .filter(|n| self.silver_tables().contains(n))
                        .or(self.dead.table.clone());
                    if let Some(t) = self.snapshot.as_ref().and_then(|s| s.table(name)) {
                        self.lineage_focus = Some(Node {
                            zone: t.zone,
                            name: t.name.clone(),
                        });
                    }
                    self.message = Some((format!("table {name}"), false));
                } else {
                    self.message = Some((format!("no table named {name}"), true));
                }
            }
            ["theme", name] => match Theme::load(name) {
                Ok(t) => {
                    self.theme = t;
                    self.message = Some((format!("theme {name}"), false));
                }
                Err(e) => self.message = Some((e.to_string(), true)),
            },
            ["view", name] => match View::from_slug(name) {
                Some(v) => self.show(v),
                None => self.message = Some((format!("no view {name}"), true)),
            },
            [] => {}
            _ => {
                self.message = Some((
                    format!(
                        "unknown command :{text}  (try :run, :replay TABLE PARTITION, :table NAME, :theme NAME, :view NAME)"
                    ),
                    true,
                ))
            }
        }
    }

    /// Completions for the prompt text.
    pub fn complete(&self, text: &str) -> String {
        let words: Vec<&str> = text.split(' ').collect();
        let cands: Vec<String> = match words.as_slice() {
            [w] => ["run", "replay", "table", "theme", "view", "quit"]
                .iter()
                .filter(|c| c.starts_with(w))
                .map(|c| format!("{c} "))
                .collect(),
            ["replay", w] | ["table", w] => self
                .matrix
                .rows
                .iter()
                .map(|(_, t)| t.clone())
                .filter(|t| t.starts_with(w))
                .map(|t| format!("{} {t} ", words[0]))
                .collect(),
            ["replay", t, w] => self
                .matrix
                .cols
                .iter()
                .filter(|c| c.starts_with(w))
                .map(|c| format!("replay {t} {c}"))
                .rev()
                .collect(),
            ["theme", w] => super::theme::BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.starts_with(w))
                .map(|n| format!("theme {n}"))
                .collect(),
            ["view", w] => View::ALL
                .iter()
                .map(|v| v.slug())
                .filter(|n| n.starts_with(w))
                .map(|n| format!("view {n}"))
                .collect(),
            _ => vec![],
        };
        cands.into_iter().next().unwrap_or_else(|| text.to_string())
    }

    /// `n`/`N` on the partitions screen: the next (previous) failed or blocked cell, row by
    /// row, in the tables whose name contains the `/` filter when there is one.
    fn next_match(&mut self, forward: bool) {
        if self.view != View::Partitions {
            return;
        }
        let filter = self.filter.as_ref().map(|f| f.to_lowercase());
        let (nr, nc) = (self.matrix.rows.len(), self.matrix.cols.len());
        let n = nr * nc;
        if n == 0 {
            return;
        }
        let here = self.cell.0 * nc + self.cell.1;
        for step in 1..=n {
            let i = if forward {
                (here + step) % n
            } else {
                (here + n * 2 - step) % n
            };
            let (r, c) = (i / nc, i % nc);
            let table_ok = filter
                .as_ref()
                .is_none_or(|f| self.matrix.rows[r].1.to_lowercase().contains(f));
            let broken =
                self.matrix.cells.get(&(r, c)).is_some_and(|cell| {
                    matches!(cell.state, CellState::Failed | CellState::Blocked)
                });
            if table_ok && broken {
                self.cell = (r, c);
                return;
            }
        }
        self.message = Some(("no failed or blocked partition in view".into(), false));
    }

    fn view_action(&mut self, a: Action) {
        let page = self.page.max(1);
        match self.view {
            View::Overview => {
                let tables = self
                    .snapshot
                    .as_ref()
                    .map(|s| s.status.tables.as_slice())
                    .unwrap_or(&[]);
                let effect =
                    self.overview
                        .handle(a, &self.breaches, tables, self.filter.as_deref(), page);
                if let Effect::Open { table, partition } = effect {
                    self.jump_to(&table, partition.as_deref());
                    self.view = View::Partitions;
                }
            }
            View::Partitions => {
                let (nr, nc) = (self.matrix.rows.len(), self.matrix.cols.len());
                if nr == 0 || nc == 0 {
                    return;
                }
                match a {
                    Action::Down => self.cell.0 = (self.cell.0 + 1).min(nr - 1),
                    Action::Up => self.cell.0 = self.cell.0.saturating_sub(1),
                    Action::Left => self.cell.1 = self.cell.1.saturating_sub(1),
                    Action::Right => self.cell.1 = (self.cell.1 + 1).min(nc - 1),
                    Action::Top | Action::PageUp => self.cell.0 = 0,
                    Action::Bottom | Action::PageDown => self.cell.0 = nr - 1,
                    Action::NextMatch => self.next_match(true),
                    Action::PrevMatch => self.next_match(false),
                    Action::MultiSelect => {
                        if self.anchor.is_some() {
                            self.anchor = None;
                        } else {
                            self.anchor = Some(self.cell);
                        }
                    }
                    Action::Replay => {
                        let targets = self.selected_targets();
                        if targets.is_empty() {
                            self.message = Some(("nothing to replay here".into(), true));
                        } else {
                            self.mode = Mode::Confirm(self.replay_plan(&targets));
                        }
                    }
                    Action::ReplayFailed => {
                        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for r in 0..nr {
                            for c in 0..nc {
                                if matches!(
                                    self.cell_state(r, c),
                                    CellState::Failed | CellState::Blocked
                                ) {
                                    by.entry(self.matrix.rows[r].1.clone())
                                        .or_default()
                                        .push(self.matrix.cols[c].clone());
                                }
                            }
                        }
                        if by.is_empty() {
                            self.message = Some(("no failed cells in view".into(), false));
                        } else {
                            let targets: Vec<(String, Vec<String>)> = by.into_iter().collect();
                            self.mode = Mode::Confirm(self.replay_plan(&targets));
                        }
                    }
                    Action::Open => {
                        let (_, t) = self.matrix.rows[self.cell.0].clone();
                        if self.silver_tables().contains(&t) {
                            // the cell's dead letters: scoped to its partition, every rule
                            let p = self.matrix.cols[self.cell.1].clone();
                            self.dead.table = Some(t);
                            self.dead.partition = Some(p);
                            self.dead.filter = None;
                            self.dead.reasons.clear();
                            self.dead.reason_sel = 0;
                            self.view = View::DeadLetters;
                            self.request_reasons();
                            self.dead.focus = DeadFocus::Rows;
                            self.load_rows();
                        }
                    }
                    _ => {}
                }
            }
            View::DeadLetters => self.dead_action(a),
            View::Lineage => {
                let lines = self.lineage_lines();
                match a {
                    Action::Down => {
                        self.lineage_sel = (self.lineage_sel + 1).min(lines.len().saturating_sub(1))
                    }
                    Action::Up => self.lineage_sel = self.lineage_sel.saturating_sub(1),
                    Action::Top => self.lineage_sel = 0,
                    Action::Bottom => self.lineage_sel = lines.len().saturating_sub(1),
                    Action::Open => {
                        if let Some((_, n)) = lines.get(self.lineage_sel) {
                            self.lineage_focus = Some(n.clone());
                            self.lineage_sel = 0;
                        }
                    }
                    Action::NextTable | Action::PrevTable => {
                        let nodes: Vec<Node> = self
                            .snapshot
                            .as_ref()
                            .map(|s| s.lineage.nodes.clone())
                            .unwrap_or_default();
                        if nodes.is_empty() {
                            return;
                        }
                        let cur = self
                            .lineage_focus
                            .as_ref()
                            .and_then(|f| nodes.iter().position(|n| n == f))
                            .unwrap_or(0);
                        let next = if a == Action::NextTable {
                            (cur + 1) % nodes.len()
                        } else {
                            (cur + nodes.len() - 1) % nodes.len()
                        };
                        self.lineage_focus = Some(nodes[next].clone());
                        self.lineage_sel = 0;
                    }
                    _ => {}
                }
            }
            View::Schema => {
                let n = self.schema_versions().len();
                match a {
                    Action::Down => {
                        self.schema_sel = (self.schema_sel + 1).min(n.saturating_sub(1))
                    }
                    Action::Up => self.schema_sel = self.schema_sel.saturating_sub(1),
                    Action::Top => self.schema_sel = 0,
                    Action::Bottom => self.schema_sel = n.saturating_sub(1),
                    Action::Mark => {
                        if let Some(i) =
                            self.schema_marks.iter().position(|m| *m == self.schema_sel)
                        {
                            self.schema_marks.remove(i);
                        } else {
                            self.schema_marks.push(self.schema_sel);
                            if self.schema_marks.len() > 2 {
                                self.schema_marks.remove(0);
                            }
                        }
                    }
                    Action::NextTable | Action::PrevTable => {
                        let ns = self
                            .snapshot
                            .as_ref()
                            .map(|s| s.sources.len())
                            .unwrap_or(0)
                            .max(1);
                        self.schema_source = if a == Action::NextTable {
                            (self.schema_source + 1) % ns
                        } else {
                            (self.schema_source + ns - 1) % ns
                        };
                        self.schema_marks.clear();
                        self.schema_sel = self.latest_schema_change();
                    }
                    _ => {}
                }
            }
            View::Runs => {
                let n = self.timeline().len();
                match a {
                    Action::Down => self.runs_sel = (self.runs_sel + 1).min(n.saturating_sub(1)),
                    Action::Up => self.runs_sel = self.runs_sel.saturating_sub(1),
                    Action::PageDown => {
                        self.runs_sel = (self.runs_sel + page).min(n.saturating_sub(1))
                    }
                    Action::PageUp => self.runs_sel = self.runs_sel.saturating_sub(page),
                    Action::Top => self.runs_sel = 0,
                    Action::Bottom => self.runs_sel = n.saturating_sub(1),
                    _ => {}
                }
            }
        }
    }

    fn dead_action(&mut self, a: Action) {
        let page = self.page.max(1);
        match (self.dead.focus, a) {
            (_, Action::NextTable) | (_, Action::PrevTable) => {
                let ts = self.silver_tables();
                if ts.is_empty() {
                    return;
                }
                let cur = self
                    .dead
                    .table
                    .as_ref()
                    .and_then(|t| ts.iter().position(|x| x == t))
                    .unwrap_or(0);
                let next = if a == Action::NextTable {
                    (cur + 1) % ts.len()
                } else {
                    (cur + ts.len() - 1) % ts.len()
                };
                self.dead.table = Some(ts[next].clone());
                self.dead.reasons.clear();
                self.dead.reason_sel = 0;
                self.dead.rows.clear();
                self.dead.partition = None;
                self.dead.filter = None;
                self.dead.focus = DeadFocus::Reasons;
                self.request_reasons();
            }
            (DeadFocus::Reasons, Action::Down) => {
                self.dead.reason_sel =
                    (self.dead.reason_sel + 1).min(self.dead.reasons.len().saturating_sub(1))
            }
            (DeadFocus::Reasons, Action::Up) => {
                self.dead.reason_sel = self.dead.reason_sel.saturating_sub(1)
            }
            (DeadFocus::Reasons, Action::Open) | (DeadFocus::Reasons, Action::Right) => {
                self.dead.filter = None;
                self.dead.focus = DeadFocus::Rows;
                self.load_rows();
            }
            (DeadFocus::Rows, Action::Down) => {
                self.dead.row_sel =
                    (self.dead.row_sel + 1).min(self.dead.rows.len().saturating_sub(1))
            }
            (DeadFocus::Rows, Action::Up) => {
                self.dead.row_sel = self.dead.row_sel.saturating_sub(1)
            }
            (DeadFocus::Rows, Action::PageDown) => {
                self.dead.row_sel =
                    (self.dead.row_sel + page).min(self.dead.rows.len().saturating_sub(1))
            }
            (DeadFocus::Rows, Action::PageUp) => {
                self.dead.row_sel = self.dead.row_sel.saturating_sub(page)
            }
            (DeadFocus::Rows, Action::Top) => self.dead.row_sel = 0,
            (DeadFocus::Rows, Action::Bottom) => {
                self.dead.row_sel = self.dead.rows.len().saturating_sub(1)
            }
            (DeadFocus::Rows, Action::Open) if !self.dead.rows.is_empty() => {
                self.dead.focus = DeadFocus::Detail;
            }
            (DeadFocus::Rows, Action::Left) => self.dead.focus = DeadFocus::Reasons,
            (_, Action::Export) => {
                if let Some(t) = self.dead.table.clone() {
                    if self.dead.rows.is_empty() {
                        self.message = Some((
                            "no rows in view: pick a reason with Enter first".into(),
                            true,
                        ));
                    } else {
                        let (partition, filter) = (self.dead.partition.clone(), self.rows_filter());
                        let mut command = format!("karat dead-letters {t}");
                        if let Some(p) = &partition {
                            command.push_str(&format!(" --partition {p}"));
                        }
                        if let Some(f) = filter.as_ref().filter(|f| !f.starts_with("rule:")) {
                            command.push_str(&format!(" --reason {f:?}"));
                        }
                        self.log_action(format!("{command} --export FILE"));
                        self.outbox.push(Request::Export {
                            table: t,
                            partition,
                            filter,
                        });
                    }
                }
            }
            _ => {}
        }
        if self.dead.focus == DeadFocus::Rows {
            self.more_rows_if_needed();
        }
    }

    /// The selected cells as (table, partitions).
    fn selected_targets(&self) -> Vec<(String, Vec<String>)> {
        let (r0, c0) = self.anchor.unwrap_or(self.cell);
        let (r1, c1) = self.cell;
        let mut out = Vec::new();
        for r in r0.min(r1)..=r0.max(r1) {
            let t = self.matrix.rows[r].1.clone();
            let ps: Vec<String> = (c0.min(c1)..=c0.max(c1))
                .filter(|c| self.matrix.cells.contains_key(&(r, *c)))
                .map(|c| self.matrix.cols[c].clone())
                .collect();
            if !ps.is_empty() {
                out.push((t, ps));
            }
        }
        out
    }

    /// Asks the engine what replaying these targets would rewrite; the confirmation shows it
    /// when it arrives.
    pub fn replay_plan(&mut self, targets: &[(String, Vec<String>)]) -> ReplayPlan {
        let replays = targets.iter().map(|(t, ps)| replay_target(t, ps)).collect();
        self.outbox.push(Request::PreviewReplay(replays));
        ReplayPlan {
            targets: targets.to_vec(),
            preview: None,
        }
    }

    fn start_replay(&mut self, plan: ReplayPlan) {
        let downstream = plan
            .preview
            .iter()
            .flatten()
            .flatten()
            .flat_map(|p| &p.gold)
            .map(|g| {
                let ps: Vec<String> = if g.whole.is_some() {
                    vec![WHOLE_TABLE.to_string()]
                } else {
                    g.partitions.iter().cloned().collect()
                };
                (g.table.clone(), ps)
            })
            .collect::<Vec<_>>();
        for (t, ps) in plan.targets.iter().chain(downstream.iter()) {
            for p in ps {
                self.running
                    .insert((t.clone(), p.clone()), CellState::Running);
            }
        }
        self.anchor = None;
        for (t, ps) in plan.targets {
            let target = replay_target(&t, &ps);
            self.log_action(target.command());
            self.outbox.push(Request::Replay(target));
        }
    }

    /// Lines of the lineage tree of the focused node: (depth marker text, node).
    pub fn lineage_lines(&self) -> Vec<(String, Node)> {
        let (Some(s), Some(f)) = (&self.snapshot, &self.lineage_focus) else {
            return vec![];
        };
        let mut out = vec![(String::new(), f.clone())];
        fn up(l: &crate::lineage::Lineage, n: &Node, depth: usize, out: &mut Vec<(String, Node)>) {
            for u in l.upstream(n) {
                out.push((format!("{}↑ ", "  ".repeat(depth)), u.clone()));
                up(l, u, depth + 1, out);
            }
        }
        fn down(
            l: &crate::lineage::Lineage,
            n: &Node,
            depth: usize,
            out: &mut Vec<(String, Node)>,
        ) {
            for d in l.downstream(n) {
                out.push((format!("{}↓ ", "  ".repeat(depth)), d.clone()));
                down(l, d, depth + 1, out);
            }
        }
        up(&s.lineage, f, 1, &mut out);
        down(&s.lineage, f, 1, &mut out);
        out
    }

    /// Index of the newest version of the selected source whose schema changed (else the newest).
    fn latest_schema_change(&self) -> usize {
        let v = self.schema_versions();
        v.iter()
            .rposition(|x| !x.diff.is_empty())
            .unwrap_or(v.len().saturating_sub(1))
    }

    /// Schema versions of the selected source.
    pub fn schema_versions(&self) -> Vec<crate::schema::SchemaVersion> {
        let Some(s) = &self.snapshot else {
            return vec![];
        };
        s.sources
            .get(self.schema_source)
            .and_then(|src| s.schemas.get(src))
            .cloned()
            .unwrap_or_default()
    }

    /// The run/event log: (time, kind, text, is_problem), newest first, filtered.
    pub fn timeline(&self) -> Vec<(String, &'static str, String, bool)> {
        let Some(s) = &self.snapshot else {
            return vec![];
        };
        let mut out: Vec<(String, &'static str, String, bool)> = Vec::new();
        for r in &s.runs {
            out.push((
                r.started_at.clone(),
                "run",
                format!(
                    "{} [{}] rows {} dead {} failed {}   $ {}",
                    r.status, r.trigger, r.rows_in, r.dead, r.partitions_failed, r.command
                ),
                r.status == "failed",
            ));
        }
        for st in &s.steps {
            if st.zone == Zone::Bronze && st.status == PartitionStatus::Failed {
                out.push((
                    st.finished_at.clone(),
                    "batch",
                    format!(
                        "bronze {} batch failed: {}: {}",
                        st.table,
                        st.partition,
                        st.messages.clone().unwrap_or_default()
                    ),
                    true,
                ));
            } else if st.zone != Zone::Bronze && !st.status.promoted() {
                out.push((
                    st.finished_at.clone(),
                    "gate",
                    format!(
                        "{} {} {} {}: {}",
                        st.zone,
                        st.table,
                        st.partition,
                        st.status.as_str(),
                        st.messages
                            .clone()
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or("")
                    ),
                    true,
                ));
            } else if st.zone == Zone::Silver && st.rows_in > 0 && st.dead * 100 >= st.rows_in * 3 {
                out.push((
                    st.finished_at.clone(),
                    "spike",
                    format!(
                        "dead-letter spike: silver {} {}: {} of {} rows",
                        st.table, st.partition, st.dead, st.rows_in
                    ),
                    false,
                ));
            }
        }
        for d in &s.drift {
            let diff = crate::bronze::SchemaDiff {
                added: serde_json::from_str(&d.added).unwrap_or_default(),
                removed: serde_json::from_str(&d.removed).unwrap_or_default(),
                changed: serde_json::from_str(&d.changed).unwrap_or_default(),
            };
            out.push((
                d.ingested_at.clone(),
                "drift",
                format!(
                    "schema drift in {} ({}): {}",
                    d.source,
                    d.batch_id,
                    diff.summary()
                ),
                false,
            ));
        }
        for (t, c) in &self.log {
            out.push((t.to_rfc3339(), "action", format!("dashboard: $ {c}"), false));
        }
        // newest first; entries of one instant keep their recorded order, newest first too
        // (steps recorded in the same microsecond must not swap from one read to the next)
        out.reverse();
        out.sort_by(|a, b| b.0.cmp(&a.0));
        if let Some(f) = &self.filter {
            let f = f.to_lowercase();
            out.retain(|e| e.2.to_lowercase().contains(&f) || e.1.contains(&f));
        }
        out
    }
}

/// A duration in seconds as `5m`, `3h`, `2d`.
pub use crate::summary::human_age as age;

fn replay_target(table: &str, partitions: &[String]) -> ReplayTarget {
    ReplayTarget::Partitions {
        table: table.to_string(),
        partitions: partitions.to_vec(),
    }
}
