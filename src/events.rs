//! Progress events the engine emits while it works. The CLI turns them into progress bars or log
//! lines, the dashboard into live state; the engine never prints.

use tokio::sync::mpsc::UnboundedSender;

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Bronze,
    Silver,
    Gold,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Bronze => "bronze",
            Stage::Silver => "silver",
            Stage::Gold => "gold",
        })
    }
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// Work on `name` (a source or table) began; `total` rows or units when known.
    Started {
        stage: Stage,
        name: String,
        total: Option<u64>,
    },
    /// `rows` more rows were processed.
    Progress {
        stage: Stage,
        name: String,
        rows: u64,
    },
    /// Work on `name` ended.
    Finished {
        stage: Stage,
        name: String,
        rows: u64,
        ok: bool,
        detail: String,
    },
    /// A partition reached its final state in this run.
    Partition {
        table: String,
        partition: String,
        status: String,
    },
    /// A human-readable note (warnings, skipped batches).
    Note { message: String },
}

/// Where events go; silent when nobody listens.
#[derive(Debug, Clone, Default)]
pub struct Events(Option<UnboundedSender<Event>>);

impl Events {
    pub fn new(tx: UnboundedSender<Event>) -> Events {
        Events(Some(tx))
    }

    pub fn none() -> Events {
        Events(None)
    }

    pub fn send(&self, e: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }

    pub fn note(&self, message: impl Into<String>) {
        self.send(Event::Note {
            message: message.into(),
        });
    }
}
