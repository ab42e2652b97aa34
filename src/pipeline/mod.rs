//! The pipeline: the plan (checked config), runs (bronze → silver → gold with gates), replays of
//! chosen partitions, and the report a run produces.

pub mod ack;
pub mod key_change;
pub mod maintain;
pub mod open_failures;
pub mod plan;
pub mod preview;
pub mod rebuild;
pub mod replay;
pub mod report;
pub mod restore;
pub mod run;
pub mod verify;

pub use crate::ledger::{RunStatus, Trigger};
pub use maintain::{MaintenanceReport, maintain};
pub use plan::Plan;
pub use preview::{ReplayPreview, preview};
pub use rebuild::{RebuildReport, rebuild};
pub use replay::{Approval, ReplayTarget, replay, replay_approved, within_budget};
pub use report::RunReport;
pub use restore::{RestoreReport, restore};
pub use run::{RunOptions, run};
pub use verify::{Verification, verify};
