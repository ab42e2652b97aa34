//! What the user can ask for (actions, produced by the keymap or the command prompt), the views,
//! and the requests the dashboard sends to the engine worker.

use crate::pipeline::ReplayTarget;

/// The six views, in number-key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum View {
    Overview,
    Partitions,
    DeadLetters,
    Lineage,
    Schema,
    Runs,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Overview,
        View::Partitions,
        View::DeadLetters,
        View::Lineage,
        View::Schema,
        View::Runs,
    ];

    pub fn title(&self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Partitions => "Partitions",
            View::DeadLetters => "Dead letters",
            View::Lineage => "Lineage",
            View::Schema => "Schema",
            View::Runs => "Runs",
        }
    }

    /// Name used by `--view`, `:view` and snapshot file names.
    pub fn slug(&self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Partitions => "partitions",
            View::DeadLetters => "dead-letters",
            View::Lineage => "lineage",
            View::Schema => "schema",
            View::Runs => "runs",
        }
    }

    pub fn from_slug(s: &str) -> Option<View> {
        View::ALL
            .into_iter()
            .find(|v| v.slug() == s || v.title().eq_ignore_ascii_case(s))
    }

    pub fn index(&self) -> usize {
        View::ALL.iter().position(|v| v == self).expect("listed")
    }
}

/// A user intent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Quit,
    Show(View),
    NextView,
    PrevView,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Open the `/` filter.
    Filter,
    NextMatch,
    PrevMatch,
    /// Esc: close a pane, clear a filter, go back.
    Back,
    /// Enter: open / drill down / jump.
    Open,
    /// Open the `:` prompt.
    Prompt,
    Help,
    /// Run the pipeline now.
    RunNow,
    /// Replay the selected partition(s).
    Replay,
    /// Replay every failed cell in view.
    ReplayFailed,
    /// Start / stop a multi-selection.
    MultiSelect,
    /// Export the rows in view.
    Export,
    /// Write the current view as SVG.
    Snapshot,
    /// Mark a schema version for the diff.
    Mark,
    /// Next / previous table.
    NextTable,
    PrevTable,
    Refresh,
    /// Undo the selected replay (restore the tables it rewrote).
    Restore,
    /// Partitions: the dense view (every partition, one character each) or the grid.
    ToggleDense,
    /// Partitions: show every partition, or only those with a cell in the next status class.
    CycleStatusFilter,
    Confirm,
    Cancel,
}

impl Action {
    /// True for actions that write to the lake (hidden and refused in a read-only dashboard).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Action::RunNow | Action::Replay | Action::ReplayFailed | Action::Restore
        )
    }
}

/// A replay over `[defaults] replay_budget_rows` approved by typing `approve`: the engine
/// records it as `karat replay … --approve` does.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    /// What its preview said it reprocesses (`None`: the preview failed).
    pub records: Option<u64>,
}

/// Work the dashboard asks of the engine worker.
#[derive(Debug, Clone)]
pub enum Request {
    /// Reload everything the views show.
    Refresh,
    /// Run the pipeline (`Dashboard` when asked for, `Schedule` from `[schedule]`).
    Run(crate::pipeline::Trigger),
    /// Replay partitions (with the approval typed for a replay over the budget).
    Replay(ReplayTarget, Option<Approved>),
    /// Restore the tables a replay rewrote to their versions before it.
    Restore(String),
    /// Record in the ledger an action taken from the dashboard (its `karat …` command).
    LogAction(String),
    /// What replaying these would rewrite (a dry run: reads only).
    PreviewReplay(Vec<ReplayTarget>),
    /// What a replay changed (`karat diff --replay RUN` of each table it wrote).
    DiffReplay(String),
    /// Dead-letter reasons of a table (of one partition).
    Reasons {
        table: String,
        partition: Option<String>,
    },
    /// One page of dead letters (of one partition).
    DeadLetters {
        table: String,
        partition: Option<String>,
        filter: Option<String>,
        offset: usize,
        limit: usize,
        generation: u64,
    },
    /// Write every dead letter the rows pane selects (not only the loaded page) to an NDJSON
    /// file, streamed.
    Export {
        table: String,
        partition: Option<String>,
        filter: Option<String>,
    },
    /// Write text to a file (snapshots).
    WriteFile {
        path: std::path::PathBuf,
        contents: String,
    },
}
