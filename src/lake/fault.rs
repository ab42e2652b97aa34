//! Fault points after each durable step of a run, for the crash tests. Built with the
//! `failpoints` feature, `FAILPOINTS="silver.rows=return"` aborts the process right after that
//! step, as `kill -9` would (no unwinding, no lease given back); `FAILPOINTS="ledger.steps=1*off->return"`
//! aborts at its second pass. Without the feature they compile to nothing.

/// Every fault point, in the order a run passes them. `delta.deletion_vectors` is passed
/// twice by a run that deletes in place and moves superseded rows: first for those rows (before
/// `silver.superseded`), then for silver's.
pub const POINTS: &[&str] = &[
    "bronze.object",
    "bronze.manifest",
    "silver.superseded",
    "delta.rewrite_files",
    "delta.deletion_vectors",
    "silver.rows",
    "silver.dead_letters",
    "ledger.drift",
    "gold.table",
    "ledger.steps",
    "ledger.contracts",
    "ledger.silver_batches",
    "ledger.versions",
    "ledger.runs",
];

/// Durable steps not every run passes (the dashboard's action log, alerts, a replay's approval):
/// fault points too, but not in [`POINTS`].
pub const OUTSIDE_RUNS: &[&str] = &["ledger.actions", "ledger.alerts", "ledger.approvals"];

/// Marks that `step` is durable: with the step's fault point on, the process ends here.
pub fn after(step: &str) {
    debug_assert!(
        POINTS.contains(&step) || OUTSIDE_RUNS.contains(&step),
        "unknown fault point {step}"
    );
    fail::fail_point!(step, |_| std::process::abort());
}
