//! The partitions failed or blocked now, as the ledger's latest steps (with the steps of the
//! run so far) say. A gold table recomputed in a later run must still not publish what their
//! rows feed, as the run they failed in did not, until a step promotes them (a replay after
//! the fix, new rows that pass, `karat ack`); and its own partitions left blocked are
//! recomputed once nothing failed feeds them.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, Zone};
use crate::events::Events;
use crate::gold::{self, GoldPlan, WHOLE_TABLE};
use crate::lake::Lake;
use crate::ledger::StepRecord;
use crate::ledger::status::latest_partition_states;
use crate::silver::PartitionStatus;

/// A partition whose latest step failed or was blocked, and why what it feeds stays blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub status: PartitionStatus,
    pub why: String,
    /// When its latest step finished (RFC 3339).
    pub since: String,
}

/// Per table (silver or gold), its open partitions.
#[derive(Debug, Default)]
pub struct OpenFailures {
    by_table: BTreeMap<String, BTreeMap<String, Open>>,
}

/// What open partitions of a gold table's inputs feed in it: its partitions (or
/// [`WHOLE_TABLE`]), and why they stay blocked.
#[derive(Debug)]
pub struct Fed {
    pub partitions: BTreeSet<String>,
    pub why: String,
}

impl OpenFailures {
    /// The open partitions of `steps` (the ledger's, then the run's so far): each partition's
    /// latest step, unless promoted; a table-wide failure (`*`) is over once a later step of
    /// its table was promoted. Bronze units are not partitions of a table.
    pub fn of_steps(steps: &[StepRecord]) -> OpenFailures {
        let latest = latest_partition_states(steps);
        let healed = |zone: Zone, table: &str, at: &str| {
            latest.iter().any(|((z, t, _), later)| {
                *z == zone
                    && t == table
                    && later.status.promoted()
                    && later.finished_at.as_str() > at
            })
        };
        let mut by_table: BTreeMap<String, BTreeMap<String, Open>> = BTreeMap::new();
        for ((zone, table, partition), step) in &latest {
            if *zone == Zone::Bronze
                || step.status.promoted()
                || (partition == WHOLE_TABLE && healed(*zone, table, &step.finished_at))
            {
                continue;
            }
            let why = format!(
                "upstream {zone} {table} partition {partition} {} since run {} (replay it \
                 once fixed, or `karat ack` it)",
                step.status.as_str(),
                step.run_id
            );
            let open = Open {
                status: step.status,
                why,
                since: step.finished_at.clone(),
            };
            by_table
                .entry(table.clone())
                .or_default()
                .insert(partition.clone(), open);
        }
        OpenFailures { by_table }
    }

    /// The open partitions of `table`, but those in `promoted` (a gold table's this run).
    pub fn of_table(
        &self,
        table: &str,
        promoted: Option<&BTreeSet<String>>,
    ) -> BTreeMap<String, Open> {
        let mut open = self.by_table.get(table).cloned().unwrap_or_default();
        if let Some(promoted) = promoted {
            open.retain(|p, _| !promoted.contains(p));
        }
        open
    }

    /// [`OpenFailures::of_table`] of each of `g`'s inputs that has any, `promoted` giving each
    /// input's partitions promoted this run.
    pub fn of_inputs<'a>(
        &self,
        g: &GoldPlan,
        promoted: impl Fn(&str) -> Option<&'a BTreeSet<String>>,
    ) -> BTreeMap<String, BTreeMap<String, Open>> {
        g.inputs
            .iter()
            .filter_map(|i| {
                let open = self.of_table(i, promoted(i));
                (!open.is_empty()).then(|| (i.clone(), open))
            })
            .collect()
    }

    /// Partitions of gold table `table` left blocked: once nothing blocks them they missed
    /// what changed meanwhile, and are recomputed (see [`still_blocked`]). One that failed its
    /// own checks waits for its inputs, or a replay, to change; labels that are not dates
    /// (`*`) are not partitions.
    pub fn left_blocked(&self, table: &str) -> BTreeMap<String, Open> {
        self.of_table(table, None)
            .into_iter()
            .filter(|(p, open)| {
                open.status == PartitionStatus::Blocked
                    && chrono::NaiveDate::parse_from_str(p, "%Y-%m-%d").is_ok()
            })
            .collect()
    }
}

/// What the `open` partitions of `g`'s inputs (their rows as they are now) feed in it; None
/// when nothing (their rows gone, or dropped by its query). The whole table when that cannot
/// be told, or telling it failed (noted): blocking is the safe side.
pub async fn fed(
    lake: &Lake,
    config: &Config,
    g: &GoldPlan,
    open: &BTreeMap<String, BTreeMap<String, Open>>,
    events: &Events,
) -> Option<Fed> {
    let why = open.values().flat_map(|ps| ps.values()).next()?.why.clone();
    let partitions = open
        .iter()
        .map(|(input, ps)| (input.clone(), ps.keys().cloned().collect()))
        .collect();
    let whole = || BTreeSet::from([WHOLE_TABLE.to_string()]);
    let fed = match gold::derive::fed_by_earlier_failed(lake, config, g, &partitions).await {
        Ok(Some(fed)) => fed,
        Ok(None) => whole(),
        Err(e) => {
            events.note(format!(
                "gold {}: blocked whole: what upstream partitions left failed feed in it could \
                 not be told: {e}",
                g.name
            ));
            whole()
        }
    };
    (!fed.is_empty()).then_some(Fed {
        partitions: fed,
        why,
    })
}

/// Of the partitions `left` blocked in a gold table by earlier runs, those that stay blocked,
/// and why: while a partition of its inputs is `open` that was failed or blocked already when
/// the gold partition was blocked (it may be what blocked it; what it blocked cannot always
/// be told from its rows now: a day whose rows all became dead letters feeds nothing, a key
/// moved into it left its old day). A failure that began later did not block it.
pub fn still_blocked(
    left: &BTreeMap<String, Open>,
    open: &BTreeMap<String, BTreeMap<String, Open>>,
) -> BTreeMap<String, String> {
    let inputs: Vec<&Open> = open.values().flat_map(|ps| ps.values()).collect();
    left.iter()
        .filter_map(|(p, gold)| {
            let cause = inputs.iter().find(|o| o.since <= gold.since)?;
            Some((p.clone(), cause.why.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(
        zone: Zone,
        table: &str,
        partition: &str,
        status: PartitionStatus,
        at: u32,
    ) -> StepRecord {
        let t = format!("2026-03-01T00:00:{at:02}Z");
        StepRecord {
            run_id: format!("run-{at}"),
            ..StepRecord::example(zone, table, partition, status, &t)
        }
    }

    use PartitionStatus::{Blocked, Failed, Ok as Promoted};
    use Zone::{Bronze, Gold, Silver};

    #[test]
    fn a_partition_is_open_while_its_latest_step_is_not_promoted() {
        let steps = [
            step(Silver, "orders", "2026-03-01", Failed, 1),
            step(Silver, "orders", "2026-03-02", Failed, 1),
            step(Silver, "orders", "2026-03-02", Promoted, 2),
            step(Bronze, "orders", "file.json", Failed, 3),
            step(Gold, "daily", "2026-03-01", Blocked, 1),
        ];
        let open = OpenFailures::of_steps(&steps);
        let orders = open.of_table("orders", None);
        assert_eq!(orders.keys().collect::<Vec<_>>(), ["2026-03-01"]);
        assert!(orders["2026-03-01"].why.contains("failed since run run-1"));
        assert_eq!(open.of_table("daily", None)["2026-03-01"].status, Blocked);
        let promoted = BTreeSet::from(["2026-03-01".to_string()]);
        assert!(open.of_table("daily", Some(&promoted)).is_empty());
    }

    #[test]
    fn a_table_wide_failure_is_over_once_a_later_step_of_the_table_is_promoted() {
        let healed = [
            step(Gold, "daily", "*", Blocked, 1),
            step(Gold, "daily", "2026-03-01", Promoted, 2),
        ];
        assert!(
            OpenFailures::of_steps(&healed)
                .of_table("daily", None)
                .is_empty()
        );
        let earlier = [
            step(Gold, "daily", "2026-03-01", Promoted, 1),
            step(Gold, "daily", "*", Blocked, 2),
        ];
        let open = OpenFailures::of_steps(&earlier).of_table("daily", None);
        assert_eq!(open.keys().collect::<Vec<_>>(), ["*"]);
    }

    #[test]
    fn only_blocked_days_are_left_blocked() {
        let steps = [
            step(Gold, "daily", "2026-03-01", Blocked, 1),
            step(Gold, "daily", "2026-03-03", Failed, 1),
            step(Gold, "daily", "*", Blocked, 1),
        ];
        let open = OpenFailures::of_steps(&steps);
        let left = open.left_blocked("daily");
        assert_eq!(left.keys().collect::<Vec<_>>(), ["2026-03-01"]);
    }

    /// A day left blocked stays blocked while an input partition that was open when it was
    /// blocked still is; one that failed later did not block it.
    #[test]
    fn a_left_blocked_day_waits_for_the_failures_open_when_it_was_blocked() {
        let steps = [
            step(Silver, "orders", "2026-03-02", Failed, 1),
            step(Gold, "daily", "2026-03-01", Blocked, 2),
            step(Gold, "daily", "2026-03-05", Blocked, 2),
            step(Silver, "orders", "2026-03-02", Promoted, 3),
            step(Silver, "orders", "2025-01-01", Failed, 4),
        ];
        let open = OpenFailures::of_steps(&steps);
        let inputs = BTreeMap::from([("orders".to_string(), open.of_table("orders", None))]);
        let left = open.left_blocked("daily");
        assert!(
            still_blocked(&left, &inputs).is_empty(),
            "2025-01-01 failed after"
        );
        let before = [
            &steps[..],
            &[step(Silver, "orders", "2026-03-09", Failed, 2)],
        ]
        .concat();
        let open = OpenFailures::of_steps(&before);
        let inputs = BTreeMap::from([("orders".to_string(), open.of_table("orders", None))]);
        let still = still_blocked(&open.left_blocked("daily"), &inputs);
        assert_eq!(
            still.keys().collect::<Vec<_>>(),
            ["2026-03-01", "2026-03-05"]
        );
        assert!(still["2026-03-01"].contains("2026-03-09"), "{still:?}");
    }
}
