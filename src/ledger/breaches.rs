//! Breaches grouped by cause: what is broken right now, one line per cause rather than one per
//! partition. Failed and blocked partitions of one table and zone whose reasons differ only in
//! their numbers and partition values are one group (`silver flights: 366 partitions failed —
//! reject rate …% exceeds … (2013-01-01 … 2014-01-01)`); a stale table is a group of its own.
//! The dashboard's banner, `karat status` and the alerts share this grouping.

use std::collections::BTreeMap;

use crate::config::Zone;
use crate::config::alert::Severity;

use super::status::{FailedPartition, Freshness, StatusReport, TableStatus, human_age};

/// What kind of breach, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreachKind {
    /// A gate failed: the partition is not promoted.
    Failed,
    /// Not promoted because something upstream failed.
    Blocked,
    /// Older than the table's error SLO.
    Stale,
    /// Older than the table's warn SLO.
    GettingStale,
}

impl BreachKind {
    /// The glyph the dashboard shows.
    pub fn mark(self) -> &'static str {
        match self {
            BreachKind::Failed => "✗",
            BreachKind::Blocked => "⊘",
            BreachKind::Stale | BreachKind::GettingStale => "◐",
        }
    }

    /// Errors (failed, stale) rather than warnings.
    pub fn is_error(self) -> bool {
        matches!(self, BreachKind::Failed | BreachKind::Stale)
    }

    /// Failures and stale tables are errors, blocks and getting stale warnings.
    pub fn severity(self) -> Severity {
        if self.is_error() {
            Severity::Error
        } else {
            Severity::Warn
        }
    }

    /// The partition status it stands for (`failed`, `blocked`), or the staleness.
    pub fn as_str(self) -> &'static str {
        self.verb()
    }

    fn verb(self) -> &'static str {
        match self {
            BreachKind::Failed => "failed",
            BreachKind::Blocked => "blocked",
            BreachKind::Stale => "stale",
            BreachKind::GettingStale => "getting stale",
        }
    }
}

/// One partition of a group, with its own first reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BreachMember {
    pub partition: String,
    pub reason: String,
}

/// Identifies a group across refreshes (e.g. to keep it expanded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub kind: BreachKind,
    pub zone: Zone,
    pub table: String,
    pub cause: String,
}

impl GroupKey {
    /// The key alerts correlate by: one per table, step and cause, stable across runs.
    pub fn correlation(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.zone,
            self.table,
            self.kind.as_str().replace(' ', "_"),
            self.cause
        )
    }
}

/// Breaches of one table and zone with one cause.
#[derive(Debug, Clone, PartialEq)]
pub struct BreachGroup {
    pub key: GroupKey,
    /// The reason as the newest member states it.
    pub example: String,
    /// Oldest partition first; empty for a stale table.
    pub members: Vec<BreachMember>,
    /// Downstream (gold) partitions blocked because of this group's partitions.
    pub blocks: usize,
}

impl BreachGroup {
    pub fn table(&self) -> &str {
        &self.key.table
    }

    pub fn zone(&self) -> Zone {
        self.key.zone
    }

    pub fn kind(&self) -> BreachKind {
        self.key.kind
    }

    /// The partition to open first: the newest.
    pub fn newest(&self) -> Option<&BreachMember> {
        self.members.last()
    }

    /// The group in one line.
    pub fn headline(&self) -> String {
        let (zone, table, verb) = (self.zone(), self.table(), self.key.kind.verb());
        match self.members.as_slice() {
            [] => format!("{zone} {table} is {verb}: {}", self.example),
            [one] => format!(
                "{zone} {table} {} {verb}: {}",
                shown(zone, &one.partition),
                one.reason
            ),
            [first, .., last] => format!(
                "{zone} {table}: {} partitions {verb} — {} ({} … {})",
                self.members.len(),
                self.example,
                shown(zone, &first.partition),
                shown(zone, &last.partition)
            ),
        }
    }
}

/// Bronze "partitions" are source files: the file name, the path is in the log.
fn shown(zone: Zone, partition: &str) -> &str {
    if zone == Zone::Bronze {
        partition.rsplit('/').next().unwrap_or(partition)
    } else {
        partition
    }
}

/// Every breach of the report, grouped by cause, most urgent first: failures before blocks
/// before staleness; within a kind, the groups blocking the most downstream partitions, then
/// the biggest, then bronze → silver → gold.
pub fn group(report: &StatusReport) -> Vec<BreachGroup> {
    let mut groups: BTreeMap<GroupKey, BreachGroup> = BTreeMap::new();
    for t in &report.tables {
        for f in &t.failed {
            add_partition(&mut groups, t, f);
        }
        if let Some(g) = staleness(t) {
            groups.insert(g.key.clone(), g);
        }
    }
    let mut out: Vec<BreachGroup> = groups.into_values().collect();
    count_blocked(&mut out);
    out.sort_by(|a, b| {
        (
            a.kind(),
            std::cmp::Reverse(a.blocks),
            std::cmp::Reverse(a.members.len()),
        )
            .cmp(&(
                b.kind(),
                std::cmp::Reverse(b.blocks),
                std::cmp::Reverse(b.members.len()),
            ))
            .then_with(|| a.zone().cmp(&b.zone()))
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

fn add_partition(
    groups: &mut BTreeMap<GroupKey, BreachGroup>,
    t: &TableStatus,
    f: &FailedPartition,
) {
    let kind = if f.status == "blocked" {
        BreachKind::Blocked
    } else {
        BreachKind::Failed
    };
    let reason = f.messages.first().cloned().unwrap_or_default();
    let key = GroupKey {
        kind,
        zone: t.zone,
        table: t.name.clone(),
        cause: cause_of(&reason, &f.partition),
    };
    let group = groups.entry(key.clone()).or_insert_with(|| BreachGroup {
        key,
        example: String::new(),
        members: Vec::new(),
        blocks: 0,
    });
    group.members.push(BreachMember {
        partition: f.partition.clone(),
        reason: reason.clone(),
    });
    group.members.sort_by(|a, b| a.partition.cmp(&b.partition));
    if group.newest().is_some_and(|m| m.partition == f.partition) {
        group.example = reason;
    }
}

fn staleness(t: &TableStatus) -> Option<BreachGroup> {
    let (kind, limit, word) = match t.freshness {
        Freshness::Error => (BreachKind::Stale, t.error_after_seconds, "error"),
        Freshness::Warn => (BreachKind::GettingStale, t.warn_after_seconds, "warn"),
        _ => return None,
    };
    if t.stale_because.is_some() {
        // stale by data because its newest partition failed or is blocked: that partition is
        // already a breach of its own
        return None;
    }
    let example = format!(
        "last success {} ago ({word} after {})",
        human_age(t.age_seconds),
        human_age(limit.map(|s| s as i64))
    );
    Some(BreachGroup {
        key: GroupKey {
            kind,
            zone: t.zone,
            table: t.name.clone(),
            cause: String::new(),
        },
        example,
        members: Vec::new(),
        blocks: 0,
    })
}

/// Blocked partitions name what blocked them (`upstream silver orders partition P failed`):
/// credit each to the failed group of that table holding P, else (a run names one failed
/// partition for all it blocks) to that table's biggest failed group.
fn count_blocked(groups: &mut [BreachGroup]) {
    let blocked: Vec<String> = groups
        .iter()
        .filter(|g| g.kind() == BreachKind::Blocked)
        .flat_map(|g| g.members.iter().map(|m| m.reason.clone()))
        .collect();
    let failed: Vec<usize> = (0..groups.len())
        .filter(|&i| groups[i].kind() == BreachKind::Failed)
        .collect();
    for reason in &blocked {
        let named = |g: &BreachGroup| {
            reason
                .strip_prefix(&format!("upstream {} {} partition ", g.zone(), g.table()))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        };
        let of_table: Vec<usize> = failed
            .iter()
            .copied()
            .filter(|&i| named(&groups[i]).is_some())
            .collect();
        let holding = of_table.iter().copied().find(|&i| {
            let p = named(&groups[i]);
            groups[i]
                .members
                .iter()
                .any(|m| Some(&m.partition) == p.as_ref())
        });
        let biggest = of_table
            .iter()
            .copied()
            .max_by_key(|&i| groups[i].members.len());
        if let Some(i) = holding.or(biggest) {
            groups[i].blocks += 1;
        }
    }
}

/// A reason with its partition value and numbers (dates, counts, rates) blanked to `#`, so that
/// the same failure on many partitions is one cause, whichever partition each message names.
pub fn cause_of(reason: &str, partition: &str) -> String {
    let reason = if partition.is_empty() || partition == "*" {
        reason.to_string()
    } else {
        reason.replace(partition, "#")
    };
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        if c.is_ascii_digit() || (in_number && (c == '.' || c == '-' || c == ':')) {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::status::{FailedPartition, Freshness, StatusReport, TableStatus};

    fn table(zone: Zone, name: &str, failed: Vec<FailedPartition>) -> TableStatus {
        TableStatus {
            name: name.into(),
            zone,
            owner: None,
            last_success: None,
            age_seconds: Some(60),
            freshness: Freshness::Ok,
            newest_partition: None,
            stale_because: None,
            warn_after_seconds: None,
            error_after_seconds: None,
            rows: 0,
            partitions_ok: 0,
            partitions_failed: failed.len(),
            duplicates: 0,
            dead: 0,
            error_rate_last: None,
            error_rate_history: Vec::new(),
            last_status: None,
            failed,
        }
    }

    fn failed(partition: &str, status: &str, why: &str) -> FailedPartition {
        FailedPartition {
            partition: partition.into(),
            status: status.into(),
            run_id: "r".into(),
            at: "2026-03-28T00:00:00Z".into(),
            messages: vec![why.into()],
            rows_in: 0,
            dead: 0,
        }
    }

    fn report(tables: Vec<TableStatus>) -> StatusReport {
        StatusReport {
            project: "p".into(),
            generated_at: "2026-03-28T00:00:00Z".into(),
            last_run: None,
            tables,
        }
    }

    fn day(i: usize) -> String {
        (chrono::NaiveDate::from_ymd_opt(2013, 1, 1).unwrap() + chrono::Days::new(i as u64))
            .to_string()
    }

    #[test]
    fn a_year_failing_for_one_cause_is_one_line() {
        let silver: Vec<FailedPartition> = (0..366)
            .map(|i| {
                let why = format!(
                    "reject rate {}.5% ({} of 900 rows) exceeds max_reject_rate 5.0%",
                    10 + i % 80,
                    100 + i
                );
                failed(&day(i), "failed", &why)
            })
            .collect();
        let gold: Vec<FailedPartition> = (0..366)
            .map(|i| {
                let why = format!("upstream silver flights partition {} failed", day(i));
                failed(&day(i), "blocked", &why)
            })
            .collect();
        let groups = group(&report(vec![
            table(Zone::Gold, "delays", gold),
            table(Zone::Silver, "flights", silver),
        ]));
        assert_eq!(groups.len(), 2, "{groups:#?}");
        let first = &groups[0];
        assert_eq!(first.kind(), BreachKind::Failed);
        assert_eq!(first.blocks, 366, "it blocks every gold partition");
        assert_eq!(
            first.headline(),
            "silver flights: 366 partitions failed — reject rate 55.5% (465 of 900 rows) \
             exceeds max_reject_rate 5.0% (2013-01-01 … 2014-01-01)"
        );
        assert_eq!(first.newest().unwrap().partition, "2014-01-01");
        assert_eq!(groups[1].kind(), BreachKind::Blocked);
        assert_eq!(groups[1].members.len(), 366);
    }

    /// Silver orders failing three days: one for nulls, two for the reject rate.
    fn three_failed_days() -> Vec<FailedPartition> {
        vec![
            failed("2026-03-27", "failed", "column currency: 12 null values"),
            failed(
                "2026-03-28",
                "failed",
                "reject rate 42.2% exceeds max_reject_rate 5.0%",
            ),
            failed(
                "2026-03-29",
                "failed",
                "reject rate 12.0% exceeds max_reject_rate 5.0%",
            ),
        ]
    }

    #[test]
    fn different_causes_stay_apart_and_the_biggest_impact_comes_first() {
        let silver = three_failed_days();
        let gold = vec![
            failed(
                "2026-03-28",
                "blocked",
                "upstream silver orders partition 2026-03-28 failed",
            ),
            failed(
                "2026-03-29",
                "blocked",
                "upstream silver orders partition 2026-03-29 failed",
            ),
        ];
        let mut stale = table(Zone::Gold, "revenue", Vec::new());
        stale.freshness = Freshness::Error;
        stale.error_after_seconds = Some(3600);
        stale.age_seconds = Some(7300);
        let groups = group(&report(vec![
            stale,
            table(Zone::Gold, "daily", gold),
            table(Zone::Silver, "orders", silver),
        ]));
        let lines: Vec<String> = groups.iter().map(|g| g.headline()).collect();
        assert_eq!(
            lines,
            [
                "silver orders: 2 partitions failed — reject rate 12.0% exceeds \
                 max_reject_rate 5.0% (2026-03-28 … 2026-03-29)",
                "silver orders 2026-03-27 failed: column currency: 12 null values",
                "gold daily: 2 partitions blocked — upstream silver orders partition 2026-03-29 \
                 failed (2026-03-28 … 2026-03-29)",
                "gold revenue is stale: last success 2h ago (error after 60m)",
            ]
        );
    }

    #[test]
    fn blocks_naming_one_failed_partition_are_credited_to_its_table() {
        // a run names the first failed upstream partition for every partition it blocks
        let silver = three_failed_days();
        let why = "upstream silver orders partition 2026-03-27 failed";
        let gold = vec![
            failed("2026-03-28", "blocked", why),
            failed("2026-03-29", "blocked", why),
            failed(
                "2026-03-30",
                "blocked",
                "upstream silver other partition 2026-03-30 failed",
            ),
        ];
        let groups = group(&report(vec![
            table(Zone::Gold, "daily", gold),
            table(Zone::Silver, "orders", silver),
        ]));
        let blocks: Vec<(usize, usize)> = groups
            .iter()
            .filter(|g| g.kind() == BreachKind::Failed)
            .map(|g| (g.members.len(), g.blocks))
            .collect();
        assert_eq!(blocks, [(1, 2), (2, 0)], "{groups:#?}");
    }

    #[test]
    fn a_cause_blanks_numbers_and_the_partition() {
        assert_eq!(
            cause_of(
                "upstream silver orders partition 2026-03-28 failed",
                "2026-03-28"
            ),
            "upstream silver orders partition # failed"
        );
        assert_eq!(
            cause_of("reject rate 42.2% (845 of 2000 rows)", "x"),
            "reject rate #% (# of # rows)"
        );
    }
}
