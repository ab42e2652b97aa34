//! The seed's paging rules: what is breached now, how urgent each breach is, whose it is, and the
//! correlation key it shares with the dashboard (one per root cause).
//!
//! Page (`error`): rows lost — `karat verify` failing (it recomputes the accounting from the
//! Delta tables and the manifests: the only place a loss shows); a
//! source with no successful ingest for its window (the stale tables it feeds are the same
//! cause, not pages of their own); a failed silver partition or a stale table; a gold table's
//! SLO breached (consumers read gold); any SLO burning its budget faster than 2x over an hour.
//! Ticket (`warn`): bronze drift absorbed; a partition a replay failed (a backfill error); a
//! blocked partition or a table getting stale; a silver SLO breached or burning faster than 1x
//! over six hours.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{FAST_BURN, Open};
use crate::config::alert::Severity;
use crate::config::{Config, Zone};
use crate::ledger::breaches::{BreachGroup, BreachKind};
use crate::ledger::records::{DriftRecord, RunRecord, RunStatus, StepRecord, Trigger};
use crate::ledger::slo::SloStatus;
use crate::ledger::status::StatusReport;
use crate::silver::PartitionStatus;

/// How long absorbed drift keeps its ticket open.
pub const DRIFT_TICKET_HOURS: i64 = 24;

/// What the rules read: one read of the ledger.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub status: &'a StatusReport,
    pub runs: &'a [RunRecord],
    pub steps: &'a [StepRecord],
    pub drift: &'a [DriftRecord],
    pub slos: &'a [SloStatus],
    /// Each gold table and the tables its query reads (the plan's).
    pub gold_inputs: &'a [(String, Vec<String>)],
    pub now: DateTime<Utc>,
}

/// Every breach now, with its severity and owner, one per correlation key.
pub fn breaches(x: &Inputs) -> Vec<Open> {
    let mut out = verify_failing(x.runs).into_iter().collect::<Vec<_>>();
    let silent = no_ingest(x);
    let fed_by_silent = downstream(
        x,
        silent
            .iter()
            .flat_map(|o| tables_reading(x.config, &o.table))
            .collect(),
    );
    out.extend(silent.iter().cloned());
    for g in crate::ledger::breaches::group(x.status) {
        let caused_by_source = matches!(g.kind(), BreachKind::Stale | BreachKind::GettingStale)
            && fed_by_silent.contains(g.table());
        if !caused_by_source {
            out.push(of_group(&g, x));
        }
    }
    out.extend(drift_absorbed(x.drift, x.now));
    out.extend(x.slos.iter().filter_map(of_slo));
    for o in &mut out {
        o.owner = owner_of(x.config, &o.zone, &o.table);
        o.runbook = x
            .config
            .table(&o.table)
            .and_then(|t| t.runbook_for(&o.summary))
            .map(str::to_string);
    }
    out
}

/// The owner of a table, or of a source (bronze).
fn owner_of(config: &Config, zone: &str, name: &str) -> Option<String> {
    if zone == Zone::Bronze.to_string() {
        config.source(name).and_then(|s| s.owner.clone())
    } else {
        config.table(name).and_then(|t| t.owner.clone())
    }
}

/// `tables` and every gold table downstream of them (through `gold_inputs`).
fn downstream<'a>(x: &'a Inputs, mut tables: BTreeSet<&'a str>) -> BTreeSet<&'a str> {
    loop {
        let before = tables.len();
        for (gold, inputs) in x.gold_inputs {
            if inputs.iter().any(|i| tables.contains(i.as_str())) {
                tables.insert(gold.as_str());
            }
        }
        if tables.len() == before {
            return tables;
        }
    }
}

/// Silver tables reading `source`.
fn tables_reading<'a>(config: &'a Config, source: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    config
        .tables
        .iter()
        .filter(move |t| t.silver().is_some_and(|s| s.from == source))
        .map(|t| t.name.as_str())
}

/// A breach group: failures page, except a partition only a replay failed (a backfill error,
/// a ticket).
fn of_group(g: &BreachGroup, x: &Inputs) -> Open {
    let mut o = Open::of_group(g);
    if g.kind() == BreachKind::Failed && failed_only_in_replays(g, x) {
        o.severity = Severity::Warn;
        o.summary = format!("{} (a replay failed it: backfill error)", o.summary);
    }
    o
}

/// Whether every partition of `g` failed in a replay run.
fn failed_only_in_replays(g: &BreachGroup, x: &Inputs) -> bool {
    let Some(t) = x
        .status
        .tables
        .iter()
        .find(|t| t.zone == g.zone() && t.name == g.table())
    else {
        return false;
    };
    g.members.iter().all(|m| {
        t.failed
            .iter()
            .find(|f| f.partition == m.partition)
            .and_then(|f| x.runs.iter().find(|r| r.run_id == f.run_id))
            .is_some_and(|r| r.trigger == Trigger::Replay)
    })
}

/// An SLO: burning faster than [`FAST_BURN`]x over the last hour, or breached on a gold table,
/// pages; burning faster than 1x over six hours, or breached elsewhere, opens a ticket.
pub fn of_slo(s: &SloStatus) -> Option<Open> {
    let fast = s.burn_1h.is_some_and(|b| b > FAST_BURN);
    let slow = s.burn_6h.is_some_and(|b| b > 1.0);
    let breached = !s.met();
    let gold = s.zone == Zone::Gold;
    let severity = if fast || (breached && gold) {
        Severity::Error
    } else if slow || breached {
        Severity::Warn
    } else {
        return None;
    };
    let how = if fast {
        format!(
            "burning its error budget {:.1}x over the last hour",
            s.burn_1h?
        )
    } else if slow {
        format!("burning its error budget {:.1}x over six hours", s.burn_6h?)
    } else {
        format!("breached at {:.2}%", s.attainment.unwrap_or(0.0) * 100.0)
    };
    Some(Open {
        key: format!("{}/{}/slo/{}", s.zone, s.table, s.sli.as_str()),
        severity,
        summary: format!(
            "{} {}: SLO {} ≥ {:.1}% {how} ({} of the budget left)",
            s.zone,
            s.table,
            s.sli.as_str(),
            s.objective * 100.0,
            s.budget_remaining
                .map(|b| format!("{:.0}%", b * 100.0))
                .unwrap_or_else(|| "all".into())
        ),
        zone: s.zone.to_string(),
        table: s.table.clone(),
        partitions: 0,
        members: Vec::new(),
        // a freshness SLO burns for the same cause as a stale table
        stale: s.sli == crate::config::slo::SliKind::Freshness,
        owner: None,
        runbook: None,
    })
}

/// The newest `karat verify` failed: rows may be lost or counted twice.
fn verify_failing(runs: &[RunRecord]) -> Option<Open> {
    let last = runs.iter().rev().find(|r| r.trigger == Trigger::Verify)?;
    (last.status != RunStatus::Ok).then(|| Open {
        key: "lake/verify".into(),
        severity: Severity::Error,
        summary: format!(
            "rows lost or counted twice: karat verify failed at {}: {}",
            last.finished_at,
            last.error.as_deref().unwrap_or("see karat verify")
        ),
        zone: "lake".into(),
        table: "*".into(),
        partitions: 0,
        members: Vec::new(),
        stale: false,
        owner: None,
        runbook: None,
    })
}

/// Sources whose newest landed batch is older than the tightest `error_after` of the tables
/// reading them (a source no table promises freshness for has no window).
fn no_ingest(x: &Inputs) -> Vec<Open> {
    let mut out = Vec::new();
    for s in &x.config.sources {
        let window = x
            .config
            .tables
            .iter()
            .filter(|t| t.silver().is_some_and(|sp| sp.from == s.name))
            .filter_map(|t| t.freshness.and_then(|f| f.error_after))
            .min();
        let Some(window) = window.and_then(|w| chrono::Duration::from_std(w).ok()) else {
            continue;
        };
        let last = x
            .steps
            .iter()
            .filter(|st| {
                st.zone == Zone::Bronze
                    && st.table == s.name
                    && st.status != PartitionStatus::Failed
            })
            .filter_map(|st| st.finished_at.parse::<DateTime<Utc>>().ok())
            .max();
        let since = match last {
            Some(t) if x.now - t <= window => continue,
            Some(t) => format!("since {}", t.to_rfc3339()),
            None => "ever".into(),
        };
        let fed: Vec<&str> = tables_reading(x.config, &s.name).collect();
        out.push(Open {
            key: format!("bronze/{}/no-ingest", s.name),
            severity: Severity::Error,
            summary: format!(
                "bronze {}: no batch landed {since} (window {}); stale because of it: {}",
                s.name,
                crate::ledger::status::human_age(Some(window.num_seconds())),
                fed.join(", ")
            ),
            zone: Zone::Bronze.to_string(),
            table: s.name.clone(),
            partitions: 0,
            members: Vec::new(),
            stale: false,
            owner: None,
            runbook: None,
        });
    }
    out
}

/// Schema drift bronze absorbed in the last [`DRIFT_TICKET_HOURS`]: a ticket per source.
fn drift_absorbed(drift: &[DriftRecord], now: DateTime<Utc>) -> Vec<Open> {
    let since = now - chrono::Duration::hours(DRIFT_TICKET_HOURS);
    let mut latest: std::collections::BTreeMap<&str, (&DriftRecord, usize)> = Default::default();
    for d in drift.iter().filter(|d| {
        d.ingested_at
            .parse::<DateTime<Utc>>()
            .is_ok_and(|t| t >= since)
    }) {
        let e = latest.entry(d.source.as_str()).or_insert((d, 0));
        e.1 += 1;
        if d.ingested_at > e.0.ingested_at {
            e.0 = d;
        }
    }
    latest
        .into_values()
        .map(|(d, n)| Open {
            key: format!("bronze/{}/drift", d.source),
            severity: Severity::Warn,
            summary: format!(
                "bronze {}: schema drift absorbed in {n} batch(es) in {DRIFT_TICKET_HOURS}h, \
                 latest {}: added {} removed {} changed {}",
                d.source, d.batch_id, d.added, d.removed, d.changed
            ),
            zone: Zone::Bronze.to_string(),
            table: d.source.clone(),
            partitions: 0,
            members: Vec::new(),
            stale: false,
            owner: None,
            runbook: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::slo::SliKind;

    fn config() -> Config {
        let text = "[lake]\nurl = \"lake\"\n\
             [[source]]\nname = \"orders\"\nkind = \"files\"\npath = \"d/*.ndjson\"\nowner = \"ingest-team\"\n\
             [[table]]\nname = \"orders\"\nzone = \"silver\"\nfrom = \"orders\"\npartition_by = \"_ingest_date\"\n\
             owner = \"sales\"\nfreshness = { error_after = \"1h\" }\n[table.columns]\nid = { type = \"string\" }\n";
        let dir = std::env::temp_dir().join(format!("karat-rules-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("karat.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        c
    }

    fn step(zone: Zone, partition: &str, at: DateTime<Utc>, trigger: Trigger) -> StepRecord {
        let ok = PartitionStatus::Ok;
        StepRecord {
            run_id: format!("run-{partition}-{trigger}"),
            trigger,
            rows_in: 10,
            rows_out: 10,
            ..StepRecord::example(zone, "orders", partition, ok, &at.to_rfc3339())
        }
    }

    fn run_of(s: &StepRecord, status: RunStatus) -> RunRecord {
        let mut r = RunRecord::operation(&s.run_id, s.trigger, &s.started_at, "karat run");
        r.status = status;
        r
    }

    fn opens(
        c: &Config,
        runs: &[RunRecord],
        steps: &[StepRecord],
        drift: &[DriftRecord],
        slos: &[SloStatus],
        now: DateTime<Utc>,
    ) -> Vec<Open> {
        let status = crate::ledger::status::compute(c, runs, steps, now);
        breaches(&Inputs {
            config: c,
            status: &status,
            runs,
            steps,
            drift,
            slos,
            gold_inputs: &[],
            now,
        })
    }

    fn key<'a>(o: &'a [Open], k: &str) -> Option<&'a Open> {
        o.iter().find(|x| x.key.ends_with(k))
    }

    #[test]
    fn a_silent_source_pages_once_for_itself_and_the_tables_it_leaves_stale() {
        let c = config();
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let old = now - chrono::Duration::hours(3);
        let steps = vec![
            step(Zone::Bronze, "batch-1", old, Trigger::Schedule),
            step(Zone::Silver, "2026-11-23", old, Trigger::Schedule),
        ];
        let runs: Vec<RunRecord> = steps.iter().map(|s| run_of(s, RunStatus::Ok)).collect();
        let o = opens(&c, &runs, &steps, &[], &[], now);
        let silent = key(&o, "orders/no-ingest").expect("no ingest");
        assert_eq!(silent.severity, Severity::Error);
        assert_eq!(silent.owner.as_deref(), Some("ingest-team"));
        assert!(
            silent.summary.contains("stale because of it: orders"),
            "{}",
            silent.summary
        );
        assert!(
            o.iter().all(|x| !x.key.contains("stale")),
            "one root cause, one page: {o:#?}"
        );
        // a batch landed within the window: quiet
        let fresh = vec![
            step(Zone::Bronze, "batch-2", now, Trigger::Schedule),
            step(Zone::Silver, "2026-11-23", now, Trigger::Schedule),
        ];
        assert!(opens(&c, &runs, &fresh, &[], &[], now).is_empty());
    }

    #[test]
    fn a_failing_verify_pages_as_rows_lost_until_a_later_one_passes() {
        let c = config();
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let steps = vec![
            step(Zone::Bronze, "b", now, Trigger::Schedule),
            step(Zone::Silver, "2026-11-23", now, Trigger::Schedule),
        ];
        let mut verify =
            RunRecord::operation("v1", Trigger::Verify, &now.to_rfc3339(), "karat verify");
        verify.status = RunStatus::Failed;
        verify.error = Some("orders: 1 unbalanced".into());
        let o = opens(&c, std::slice::from_ref(&verify), &steps, &[], &[], now);
        assert_eq!(
            key(&o, "lake/verify").map(|x| x.severity),
            Some(Severity::Error)
        );
        // a later verify passes: that page resolves
        let ok = RunRecord::operation("v2", Trigger::Verify, &now.to_rfc3339(), "karat verify");
        let o = opens(&c, &[verify, ok], &steps, &[], &[], now);
        assert!(key(&o, "lake/verify").is_none());
    }

    #[test]
    fn drift_and_a_failed_replay_open_tickets_and_gold_slo_breaches_page() {
        let c = config();
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let mut failed = step(Zone::Silver, "2026-11-22", now, Trigger::Replay);
        failed.status = PartitionStatus::Failed;
        failed.messages = Some("reject rate 40% exceeds 5%".into());
        let steps = vec![
            step(Zone::Bronze, "b", now, Trigger::Schedule),
            failed.clone(),
        ];
        let runs = vec![run_of(&failed, RunStatus::Failed)];
        let drift = vec![DriftRecord {
            source: "orders".into(),
            batch_id: "b".into(),
            previous_batch_id: "a".into(),
            ingested_at: (now - chrono::Duration::hours(2)).to_rfc3339(),
            added: "[\"coupon\"]".into(),
            removed: "[]".into(),
            changed: "[]".into(),
            run_id: "r".into(),
        }];
        let o = opens(&c, &runs, &steps, &drift, &[], now);
        let backfill = o
            .iter()
            .find(|x| x.summary.contains("backfill error"))
            .expect("replay failure");
        assert_eq!(backfill.severity, Severity::Warn);
        assert_eq!(backfill.owner.as_deref(), Some("sales"));
        let d = key(&o, "orders/drift").expect("drift ticket");
        assert_eq!(d.severity, Severity::Warn);
        // the same failure in a scheduled run pages
        let mut sched = failed.clone();
        sched.trigger = Trigger::Schedule;
        sched.run_id = "run-s".into();
        let o = opens(
            &c,
            &[run_of(&sched, RunStatus::Failed)],
            &[steps[0].clone(), sched],
            &[],
            &[],
            now,
        );
        assert!(
            o.iter()
                .any(|x| x.severity == Severity::Error && x.summary.contains("reject rate")),
            "{o:#?}"
        );

        let slo = |zone: Zone, attainment: f64| SloStatus {
            table: "t".into(),
            zone,
            sli: SliKind::Freshness,
            objective: 0.99,
            window_days: 28.0,
            good: 0,
            total: 1,
            attainment: Some(attainment),
            budget_remaining: Some(-1.0),
            burn_1h: Some(0.0),
            burn_6h: Some(0.0),
        };
        assert_eq!(
            of_slo(&slo(Zone::Gold, 0.9)).map(|o| o.severity),
            Some(Severity::Error)
        );
        assert_eq!(
            of_slo(&slo(Zone::Silver, 0.9)).map(|o| o.severity),
            Some(Severity::Warn)
        );
        assert_eq!(of_slo(&slo(Zone::Gold, 0.999)), None);
    }

    #[test]
    fn alerts_route_by_owner() {
        let mut a = crate::config::alert::Alert {
            name: "sales".into(),
            url: url::Url::parse("http://127.0.0.1:1/").unwrap(),
            headers: vec![],
            min_severity: Severity::Warn,
            format: crate::config::alert::AlertFormat::Json,
            repeat: std::time::Duration::from_secs(60),
            owners: vec!["sales".into()],
        };
        let mut o = of_slo(&SloStatus {
            table: "t".into(),
            zone: Zone::Gold,
            sli: SliKind::Freshness,
            objective: 0.99,
            window_days: 28.0,
            good: 0,
            total: 1,
            attainment: Some(0.5),
            budget_remaining: Some(-1.0),
            burn_1h: None,
            burn_6h: None,
        })
        .unwrap();
        assert!(!a.wants(&o), "no owner: not a team's receiver");
        o.owner = Some("sales".into());
        assert!(a.wants(&o));
        o.owner = Some("finance".into());
        assert!(!a.wants(&o));
        a.owners.clear();
        assert!(a.wants(&o), "no owners: every breach");
    }
}
