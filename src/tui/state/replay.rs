//! Replays from the dashboard: the confirmation (with the pipeline's own preview of what the
//! replay would rewrite) and starting it.

use super::*;

/// A replay awaiting confirmation: what was asked, and what the pipeline computed it would
/// rewrite (`pipeline::preview`, the same as `karat replay --dry-run`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPlan {
    /// (table, partitions) asked for.
    pub targets: Vec<(String, Vec<String>)>,
    /// `None` while it is being computed.
    pub preview: Option<Result<Vec<ReplayPreview>, String>>,
}

impl ReplayPlan {
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
        }
    }

    pub(super) fn start_replay(&mut self, plan: ReplayPlan) {
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
}

pub(super) fn replay_target(table: &str, partitions: &[String]) -> ReplayTarget {
    ReplayTarget::Partitions {
        table: table.to_string(),
        partitions: partitions.to_vec(),
    }
}
