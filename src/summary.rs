//! Plain-text summaries for the headless CLI: the per-table table `karat demo`, `karat run` and
//! `karat status` print, and the lines that explain what failed and why.

use crate::ledger::breaches::{self, BreachGroup};
use crate::ledger::status::{Freshness, StatusReport};
use crate::pipeline::RunReport;

pub use crate::ledger::status::human_age;

fn fresh_label(f: Freshness) -> &'static str {
    match f {
        Freshness::Ok => "ok",
        Freshness::Warn => "WARN",
        Freshness::Error => "STALE",
        Freshness::Never => "never",
        Freshness::NoSlo => "-",
    }
}

/// The per-table summary of a status report.
pub fn status_table(s: &StatusReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<7} {:<20} {:>6} {:>6} {:>9} {:>8} {:>6} {:>7} {:>9}  {}\n",
        "zone", "table", "parts", "failed", "rows", "dead", "dups", "err%", "age", "freshness"
    ));
    for t in &s.tables {
        let err = t
            .error_rate_last
            .map(|r| format!("{:.1}", r * 100.0))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<7} {:<20} {:>6} {:>6} {:>9} {:>8} {:>6} {:>7} {:>9}  {}\n",
            t.zone.to_string(),
            t.name,
            t.partitions_ok + t.partitions_failed,
            t.partitions_failed,
            t.rows,
            t.dead,
            t.duplicates,
            err,
            human_age(t.age_seconds),
            fresh_label(t.freshness)
        ));
    }
    let groups: Vec<BreachGroup> = breaches::group(s)
        .into_iter()
        .filter(|g| !g.members.is_empty())
        .collect();
    if !groups.is_empty() {
        out.push_str("\nnot promoted, by cause (`karat status --json` lists every partition):\n");
        for g in groups {
            match g.members.as_slice() {
                [one] => out.push_str(&format!(
                    "  {} {} {} [{}]: {}\n",
                    g.zone(),
                    g.table(),
                    one.partition,
                    g.kind().as_str(),
                    one.reason
                )),
                _ => out.push_str(&format!("  {}\n", g.headline())),
            }
        }
    }
    out
}

/// A few lines about one run.
pub fn run_lines(r: &RunReport) -> String {
    let mut out = String::new();
    let rows_in: u64 = r
        .silver
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.rows_in)
        .sum();
    let dead: u64 = r
        .silver
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.dead)
        .sum();
    let dups: u64 = r
        .silver
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.duplicates)
        .sum();
    let silver: u64 = r
        .silver
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.rows_out)
        .sum();
    let new_batches: usize = r.bronze.iter().map(|b| b.new_batches.len()).sum();
    // the partitions' whole accounting, not only this run's records
    let parts: usize = r.silver.iter().map(|s| s.partitions.len()).sum();
    out.push_str(&format!(
        "run {} [{}] {}: {new_batches} new bronze batch(es); the {parts} silver partition(s) written hold {rows_in} record(s) = valid {silver} + dead {dead} + duplicates {dups}\n",
        r.run_id, r.trigger, r.status
    ));
    for b in &r.bronze {
        for f in &b.failed {
            out.push_str(&format!(
                "  bronze {} batch failed: {}: {}\n",
                b.source, f.origin, f.error
            ));
        }
        for d in &b.drift {
            out.push_str(&format!(
                "  bronze {} schema drift in {}: {}\n",
                b.source,
                d.batch_id,
                d.diff.summary()
            ));
        }
    }
    for (zone, table, p) in r.partitions() {
        if !p.status.promoted() || !p.messages.is_empty() {
            out.push_str(&format!(
                "  {zone} {table} {} [{}]: {}\n",
                p.partition,
                p.status.as_str(),
                p.messages.join("; ")
            ));
        }
    }
    for e in &r.errors {
        out.push_str(&format!("  error in {}: {}\n", e.table, e.error));
    }
    out
}

/// `karat maintain`: per table, files before → after, compacted, purged of deletion vectors
/// and vacuumed.
pub fn maintenance_lines(r: &crate::pipeline::MaintenanceReport) -> String {
    let verb = if r.dry_run { "would" } else { "did" };
    let mut out = format!(
        "maintenance{} ({verb} compact / purge / vacuum):\n{:<36} {:>7} {:>7} {:>10} {:>7} {:>9}\n",
        if r.dry_run { ", dry run" } else { "" },
        "table",
        "files",
        "after",
        "compacted",
        "purged",
        "vacuumed"
    );
    for t in &r.tables {
        out.push_str(&format!(
            "{:<36} {:>7} {:>7} {:>10} {:>7} {:>9}\n",
            t.table,
            t.files_before,
            t.files_after,
            t.files_compacted,
            t.files_purged,
            t.files_vacuumed
        ));
    }
    let (before, after): (usize, usize) = r
        .tables
        .iter()
        .fold((0, 0), |(b, a), t| (b + t.files_before, a + t.files_after));
    out.push_str(&format!(
        "{} table(s): {before} files → {after}\n",
        r.tables.len()
    ));
    out
}

/// One line per notification `karat notify` sent, held back or failed to deliver.
pub fn alert_records(records: &[crate::ledger::AlertRecord]) -> String {
    if records.is_empty() {
        return "no notification due\n".into();
    }
    records
        .iter()
        .map(|r| {
            format!(
                "{} {} {}: {}\n",
                r.severity,
                r.status,
                r.delivery(),
                r.summary
            )
        })
        .collect()
}
