//! Replays from the dashboard: the confirmation (with the pipeline's own preview of what the
//! replay would rewrite, and for a replay over `[defaults] replay_budget_rows` the word
//! `approve` typed, as `--approve` on the command line) and starting it.

use super::*;

/// A replay awaiting confirmation: what was asked, and what the pipeline computed it would
/// rewrite (`pipeline::preview`, the same as `karat replay --dry-run`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPlan {
    /// (table, partitions) asked for.
    pub targets: Vec<(String, Vec<String>)>,
    /// `None` while it is being computed.
    pub preview: Option<Result<Vec<ReplayPreview>, String>>,
    /// `[defaults] replay_budget_rows` when it was asked for.
    pub budget: Option<u64>,
    /// What has been typed to approve it.
    pub typed: String,
}

/// The word that approves a replay over the budget.
pub const APPROVE: &str = "approve";

/// Whether a replay may start on `y` / enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Within the budget, or no budget set.
    Open,
    /// Its cost is still being computed and a budget is set: wait.
    Costing,
    /// Over the budget (or its cost could not be computed): type [`APPROVE`] first.
    Approval { records: Option<u64>, budget: u64 },
}

impl ReplayPlan {
    /// Records the preview says it reprocesses.
    pub fn records(&self) -> Option<u64> {
        match &self.preview {
            Some(Ok(ps)) => Some(ps.iter().map(ReplayPreview::records).sum()),
            _ => None,
        }
    }

    pub fn gate(&self) -> Gate {
        let Some(budget) = self.budget else {
            return Gate::Open;
        };
        match (&self.preview, self.records()) {
            (None, _) => Gate::Costing,
            (Some(Ok(_)), Some(r)) if r <= budget => Gate::Open,
            (_, records) => Gate::Approval { records, budget },
        }
    }

    /// Whether [`APPROVE`] has been typed.
    pub fn approved(&self) -> bool {
        self.typed.trim() == APPROVE
    }

    /// The command line of each replay this would start.
    pub fn commands(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|(t, ps)| replay_target(t, ps).command())
            .collect()
    }
}

impl App {
    /// Asks the engine what replaying these targets would rewrite; the confirmation shows it
    /// when it arrives.
    pub fn replay_plan(&mut self, targets: &[(String, Vec<String>)]) -> ReplayPlan {
        let replays = targets.iter().map(|(t, ps)| replay_target(t, ps)).collect();
        self.outbox.push(Request::PreviewReplay(replays));
        ReplayPlan {
            targets: targets.to_vec(),
            preview: None,
            budget: self.snapshot.as_ref().and_then(|s| s.replay_budget_rows),
            typed: String::new(),
        }
    }

    /// A key typed into an approval (`None`: backspace).
    pub fn confirm_input(&mut self, c: Option<char>) {
        if let Mode::Confirm(plan) = &mut self.mode {
            match c {
                Some(c) => plan.typed.push(c),
                None => {
                    plan.typed.pop();
                }
            }
        }
    }

    /// `y` / enter on the confirmation: starts the replay if its gate lets it.
    pub(super) fn confirm_replay(&mut self, plan: ReplayPlan) {
        match plan.gate() {
            Gate::Open => {
                self.mode = Mode::Normal;
                self.start_replay(plan, None);
            }
            Gate::Costing => {
                self.message = Some((
                    "computing what it would reprocess first: the replay budget needs it".into(),
                    false,
                ));
            }
            Gate::Approval { records, .. } if plan.approved() => {
                self.mode = Mode::Normal;
                self.start_replay(plan, Some(Approved { records }));
            }
            Gate::Approval { budget, .. } => {
                self.message = Some((
                    format!(
                        "over the replay budget ({budget} records): type {APPROVE}, then enter"
                    ),
                    true,
                ));
            }
        }
    }

    fn start_replay(&mut self, plan: ReplayPlan, approved: Option<Approved>) {
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
        let flag = if approved.is_some() { " --approve" } else { "" };
        for (t, ps) in plan.targets {
            let target = replay_target(&t, &ps);
            self.log_action(format!("{}{flag}", target.command()));
            self.outbox.push(Request::Replay(target, approved.clone()));
        }
    }
}

pub(super) fn replay_target(table: &str, partitions: &[String]) -> ReplayTarget {
    ReplayTarget::Partitions {
        table: table.to_string(),
        partitions: partitions.to_vec(),
    }
}
