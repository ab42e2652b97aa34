//! How a key's action changes the state: global actions first, then the current view's.

use super::*;

impl App {
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
                self.confirm_replay(plan);
            }
            (Mode::Confirm(_), _) => {
                self.mode = Mode::Normal;
                self.message = Some(("replay cancelled".into(), false));
            }
            (Mode::ConfirmRestore(run_id), Action::Confirm) => {
                let run_id = run_id.clone();
                self.mode = Mode::Normal;
                self.log_action(format!("karat restore --run {run_id}"));
                self.outbox.push(Request::Restore(run_id));
            }
            (Mode::ConfirmRestore(_), _) => {
                self.mode = Mode::Normal;
                self.message = Some(("restore cancelled".into(), false));
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

    pub(super) fn view_action(&mut self, a: Action) {
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
                    Action::Left => self.step_column(false),
                    Action::Right => self.step_column(true),
                    Action::Top | Action::PageUp => self.cell.0 = 0,
                    Action::Bottom | Action::PageDown => self.cell.0 = nr - 1,
                    Action::NextMatch => self.next_match(true),
                    Action::PrevMatch => self.next_match(false),
                    Action::ToggleDense => self.dense = !self.dense,
                    Action::CycleStatusFilter => self.cycle_status_filter(),
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
                        let shown = self.visible_cols();
                        for r in 0..nr {
                            for &c in &shown {
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
                    Action::Restore => {
                        let selected = self.timeline().into_iter().nth(self.runs_sel);
                        match selected.and_then(|e| e.replay_run) {
                            Some(id) => {
                                self.outbox.push(Request::DiffReplay(id.clone()));
                                self.restore_diff = None;
                                self.mode = Mode::ConfirmRestore(id);
                            }
                            None => {
                                self.message = Some(("select a replay run to undo it".into(), true))
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub(super) fn show(&mut self, v: View) {
        self.view = v;
        self.filter = None;
        if v == View::DeadLetters {
            self.request_reasons();
        }
    }

    pub(super) fn back(&mut self) {
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
}
