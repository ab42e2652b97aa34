//! The dead-letters screen's state: its reasons (by rule and offending value) and rows, paged
//! in from the lake as the cursor moves, and its keys.

use super::*;

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

impl App {
    pub(super) fn request_reasons(&mut self) {
        if let Some(t) = self.dead.table.clone() {
            self.dead.reasons_loading = true;
            self.outbox.push(Request::Reasons {
                table: t,
                partition: self.dead.partition.clone(),
            });
        }
    }

    pub(super) fn load_rows(&mut self) {
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
    pub(super) fn rows_filter(&self) -> Option<String> {
        let d = &self.dead;
        match (&d.filter, d.reasons.get(d.reason_sel)) {
            (Some(f), _) => Some(f.clone()),
            (None, Some((rule, _))) => Some(format!("rule:{rule}")),
            _ => None,
        }
    }

    pub(super) fn more_rows_if_needed(&mut self) {
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

    pub(super) fn dead_action(&mut self, a: Action) {
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
}
