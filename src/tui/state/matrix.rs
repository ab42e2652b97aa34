//! The partitions matrix the dashboard shows, built once per lake snapshot: cell states,
//! the breach groups, where the cursor goes (the most urgent cell, `n`/`N` to the next failed
//! one) and the cells selected for a replay.

use super::*;

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

/// The partitions screen's status filter (`f`): which partitions it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    All,
    /// Partitions where a table failed or is gate-blocked.
    Broken,
    /// Partitions where a table warned or dead-lettered rows.
    Warned,
    /// Partitions where a table is stale.
    Stale,
}

impl StatusFilter {
    pub fn next(self) -> StatusFilter {
        match self {
            StatusFilter::All => StatusFilter::Broken,
            StatusFilter::Broken => StatusFilter::Warned,
            StatusFilter::Warned => StatusFilter::Stale,
            StatusFilter::Stale => StatusFilter::All,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StatusFilter::All => "all",
            StatusFilter::Broken => "failed / blocked",
            StatusFilter::Warned => "warn / rejects",
            StatusFilter::Stale => "stale",
        }
    }

    pub fn matches(self, state: CellState) -> bool {
        match self {
            StatusFilter::All => true,
            StatusFilter::Broken => matches!(state, CellState::Failed | CellState::Blocked),
            StatusFilter::Warned => matches!(state, CellState::Warn | CellState::OkRejects),
            StatusFilter::Stale => state == CellState::Stale,
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

impl App {
    /// Recomputes the derived views of the snapshot (matrix, breaches, SLIs).
    pub(super) fn rebuild(&mut self) {
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
        self.slis = Some(crate::ledger::sli::compute(
            &s.status,
            &s.runs,
            &s.steps,
            s.loaded_at,
        ));
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

    pub(super) fn place_cursor_on_breach(&mut self) {
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

    pub(super) fn jump_to(&mut self, table: &str, partition: Option<&str>) {
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
        if !self.running.is_empty() {
            let (_, t) = &self.matrix.rows[r];
            let p = &self.matrix.cols[c];
            if let Some(st) = self.running.get(&(t.clone(), p.clone())) {
                return *st;
            }
        }
        self.matrix
            .cells
            .get(&(r, c))
            .map(|c| c.state)
            .unwrap_or(CellState::Missing)
    }

    /// The matrix columns the status filter lets through, oldest first: every column, or
    /// those where some table's cell is in the filter's class.
    pub fn visible_cols(&self) -> Vec<usize> {
        let (nr, nc) = (self.matrix.rows.len(), self.matrix.cols.len());
        if self.status_filter == StatusFilter::All {
            return (0..nc).collect();
        }
        (0..nc)
            .filter(|c| (0..nr).any(|r| self.status_filter.matches(self.cell_state(r, *c))))
            .collect()
    }

    // ---------------------------------------------------------------- user actions

    /// `f`: the next status filter; the cursor moves onto a shown partition.
    pub(super) fn cycle_status_filter(&mut self) {
        self.status_filter = self.status_filter.next();
        let visible = self.visible_cols();
        if visible.is_empty() {
            self.message = Some((
                format!("no partition is {}", self.status_filter.label()),
                false,
            ));
            return;
        }
        if !visible.contains(&self.cell.1) {
            let after = visible.iter().find(|c| **c > self.cell.1);
            self.cell.1 = *after.unwrap_or(visible.last().expect("not empty"));
        }
    }

    /// Left / right on the partitions screen: the previous / next shown partition.
    pub(super) fn step_column(&mut self, forward: bool) {
        let visible = self.visible_cols();
        let to = if forward {
            visible.iter().find(|c| **c > self.cell.1)
        } else {
            visible.iter().rev().find(|c| **c < self.cell.1)
        };
        if let Some(c) = to {
            self.cell.1 = *c;
        }
    }

    /// `n`/`N` on the partitions screen: the next (previous) failed or blocked cell, row by
    /// row, in the tables whose name contains the `/` filter when there is one.
    pub(super) fn next_match(&mut self, forward: bool) {
        if self.view != View::Partitions {
            return;
        }
        let filter = self.filter.as_ref().map(|f| f.to_lowercase());
        let shown = self.visible_cols();
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
            if table_ok && broken && shown.contains(&c) {
                self.cell = (r, c);
                return;
            }
        }
        self.message = Some(("no failed or blocked partition in view".into(), false));
    }

    /// The selected cells as (table, partitions).
    pub(super) fn selected_targets(&self) -> Vec<(String, Vec<String>)> {
        let (r0, c0) = self.anchor.unwrap_or(self.cell);
        let (r1, c1) = self.cell;
        let shown = self.visible_cols();
        let mut out = Vec::new();
        for r in r0.min(r1)..=r0.max(r1) {
            let t = self.matrix.rows[r].1.clone();
            let ps: Vec<String> = (c0.min(c1)..=c0.max(c1))
                .filter(|c| shown.contains(c) && self.matrix.cells.contains_key(&(r, *c)))
                .map(|c| self.matrix.cols[c].clone())
                .collect();
            if !ps.is_empty() {
                out.push((t, ps));
            }
        }
        out
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
}
