//! SLOs computed from the ledger: for every `[[table.slo]]`, the SLI's good and total events
//! over its window, the attainment against the objective, the error budget left, and the burn
//! rate over the last hour and six hours (bad share ÷ allowed bad share, as in the multi-window
//! burn-rate alerts of the SRE workbook: 1 spends the budget exactly over the window).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::declared::DeclaredBatch;
use super::records::StepRecord;
use crate::config::slo::{SliKind, Slo};
use crate::config::{Config, Table, Zone};
use crate::silver::PartitionStatus;

/// One SLO now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub table: String,
    pub zone: Zone,
    pub sli: SliKind,
    /// The promised share of good events.
    pub objective: f64,
    pub window_days: f64,
    pub good: i64,
    pub total: i64,
    /// good / total over the window (`None`: no events yet).
    pub attainment: Option<f64>,
    /// 1 − bad / allowed bad; negative once overspent.
    pub budget_remaining: Option<f64>,
    pub burn_1h: Option<f64>,
    pub burn_6h: Option<f64>,
}

impl SloStatus {
    /// Meeting its objective (no events yet counts as meeting).
    pub fn met(&self) -> bool {
        self.attainment.is_none_or(|a| a >= self.objective)
    }
}

/// Good and total events of an SLI in `[from, to)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Count {
    good: i64,
    total: i64,
}

fn parse(at: &str) -> Option<DateTime<Utc>> {
    at.parse().ok()
}

fn steps_in<'a>(
    steps: &'a [StepRecord],
    zone: Zone,
    table: &'a str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> impl Iterator<Item = &'a StepRecord> + 'a {
    steps.iter().filter(move |s| {
        s.zone == zone
            && s.table == table
            && parse(&s.finished_at).is_some_and(|t| t >= from && t < to)
    })
}

/// What the SLIs are counted from.
#[derive(Debug, Clone, Copy)]
struct Inputs<'a> {
    steps: &'a [StepRecord],
    declared: &'a [DeclaredBatch],
}

/// Counts `sli` of table `t` over `[from, to)`.
fn count(t: &Table, sli: SliKind, inputs: Inputs, from: DateTime<Utc>, to: DateTime<Utc>) -> Count {
    let steps = inputs.steps;
    let mine = || steps_in(steps, t.zone, &t.name, from, to);
    match sli {
        SliKind::SchemaCompliance => mine().fold(Count::default(), |c, s| Count {
            good: c.good + s.rows_in - s.dead,
            total: c.total + s.rows_in,
        }),
        SliKind::DuplicateRate => mine().fold(Count::default(), |c, s| Count {
            good: c.good + s.rows_in - s.duplicates,
            total: c.total + s.rows_in,
        }),
        SliKind::JobFailure => mine().fold(Count::default(), |c, s| Count {
            good: c.good + i64::from(s.status.promoted()),
            total: c.total + 1,
        }),
        SliKind::IngestSuccess => {
            let source = t.silver().map(|s| s.from.as_str()).unwrap_or(&t.name);
            steps_in(steps, Zone::Bronze, source, from, to).fold(Count::default(), |c, s| Count {
                good: c.good + i64::from(s.status != PartitionStatus::Failed),
                total: c.total + 1,
            })
        }
        SliKind::Completeness => {
            let source = t.silver().map(|s| s.from.as_str()).unwrap_or(&t.name);
            let declared: Vec<&DeclaredBatch> = inputs
                .declared
                .iter()
                .filter(|b| b.source == source)
                .collect();
            if declared.is_empty() {
                completeness(t, steps, from, to)
            } else {
                declared_completeness(&declared, from, to)
            }
        }
        SliKind::Freshness => freshness(t, steps, from, to),
    }
}

/// Partitions first arriving in `[from, to)` whose volume is within 3 standard deviations of the
/// (up to) 14 partitions before them.
fn completeness(t: &Table, steps: &[StepRecord], from: DateTime<Utc>, to: DateTime<Utc>) -> Count {
    let mut volume: BTreeMap<&str, (i64, DateTime<Utc>)> = BTreeMap::new();
    for s in steps
        .iter()
        .filter(|s| s.zone == t.zone && s.table == t.name && s.trigger != super::Trigger::Replay)
    {
        let Some(at) = parse(&s.finished_at) else {
            continue;
        };
        let e = volume.entry(s.partition.as_str()).or_insert((0, at));
        e.0 += s.rows_in;
        e.1 = e.1.min(at);
    }
    let all: Vec<(i64, DateTime<Utc>)> = volume.into_values().collect();
    let mut c = Count::default();
    for (i, (records, first)) in all.iter().enumerate() {
        if *first < from || *first >= to || i < 3 {
            continue;
        }
        let before: Vec<f64> = all[i.saturating_sub(14)..i]
            .iter()
            .map(|(n, _)| *n as f64)
            .collect();
        let mean = before.iter().sum::<f64>() / before.len() as f64;
        let sd = (before.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
            / (before.len() - 1) as f64)
            .sqrt();
        let ok = if sd > 0.0 {
            ((*records as f64 - mean) / sd).abs() <= super::sli::ANOMALY_Z
        } else {
            (*records as f64 - mean).abs() < f64::EPSILON
        };
        c.good += i64::from(ok);
        c.total += 1;
    }
    c
}

/// Batches landing in `[from, to)` that declared a count and hold every record of it (one
/// without a declaration counts as bad: completeness cannot be told).
fn declared_completeness(
    batches: &[&DeclaredBatch],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Count {
    batches
        .iter()
        .filter(|b| parse(&b.ingested_at).is_some_and(|t| t >= from && t < to))
        .fold(Count::default(), |c, b| Count {
            good: c.good + i64::from(b.complete()),
            total: c.total + 1,
        })
}

/// Minutes of `[from, to)` in which the table's newest promotion was within its freshness limit.
fn freshness(t: &Table, steps: &[StepRecord], from: DateTime<Utc>, to: DateTime<Utc>) -> Count {
    let limit = t
        .freshness
        .and_then(|f| f.error_after.or(f.warn_after))
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let minutes = (to - from).num_minutes().max(0);
    let Some(limit) = limit else {
        return Count::default();
    };
    let mut promoted: Vec<DateTime<Utc>> = steps
        .iter()
        .filter(|s| s.zone == t.zone && s.table == t.name && s.status.promoted())
        .filter_map(|s| parse(&s.finished_at))
        .filter(|at| *at < to)
        .collect();
    promoted.sort();
    // stale from `promotion + limit` until the next promotion (or the window's end)
    let mut stale = chrono::Duration::zero();
    let mut fresh_until = promoted
        .iter()
        .rev()
        .find(|p| **p < from)
        .map(|p| *p + limit)
        .unwrap_or(from);
    for p in promoted.iter().filter(|p| **p >= from) {
        if *p > fresh_until {
            stale += *p - fresh_until.max(from);
        }
        fresh_until = fresh_until.max(*p + limit);
    }
    if to > fresh_until {
        stale += to - fresh_until.max(from);
    }
    Count {
        good: minutes - stale.num_minutes().min(minutes),
        total: minutes,
    }
}

fn burn(c: Count, objective: f64) -> Option<f64> {
    (c.total > 0).then(|| ((c.total - c.good) as f64 / c.total as f64) / (1.0 - objective))
}

fn status_of(t: &Table, slo: &Slo, inputs: Inputs, now: DateTime<Utc>) -> SloStatus {
    let window = chrono::Duration::from_std(slo.window).unwrap_or(chrono::Duration::days(28));
    let c = count(t, slo.sli, inputs, now - window, now);
    let attainment = (c.total > 0).then(|| c.good as f64 / c.total as f64);
    let allowed = (1.0 - slo.objective) * c.total as f64;
    SloStatus {
        table: t.name.clone(),
        zone: t.zone,
        sli: slo.sli,
        objective: slo.objective,
        window_days: slo.window.as_secs_f64() / 86_400.0,
        good: c.good,
        total: c.total,
        attainment,
        budget_remaining: (c.total > 0)
            .then(|| 1.0 - (c.total - c.good) as f64 / allowed.max(f64::MIN_POSITIVE)),
        burn_1h: burn(
            count(t, slo.sli, inputs, now - chrono::Duration::hours(1), now),
            slo.objective,
        ),
        burn_6h: burn(
            count(t, slo.sli, inputs, now - chrono::Duration::hours(6), now),
            slo.objective,
        ),
    }
}

/// Every SLO of the config, now: from the ledger's steps, and for `completeness` from the
/// counts sources declared when they declare them.
pub fn compute(
    config: &Config,
    steps: &[StepRecord],
    declared: &[DeclaredBatch],
    now: DateTime<Utc>,
) -> Vec<SloStatus> {
    let inputs = Inputs { steps, declared };
    config
        .tables
        .iter()
        .flat_map(|t| t.slos.iter().map(move |s| status_of(t, s, inputs, now)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Trigger;

    fn config(slo: &str) -> Config {
        let text = format!(
            "[lake]\nurl = \"lake\"\n[[source]]\nname = \"orders\"\nkind = \"files\"\npath = \"d/*.ndjson\"\n\
             [[table]]\nname = \"orders\"\nzone = \"silver\"\nfrom = \"orders\"\npartition_by = \"_ingest_date\"\n\
             freshness = {{ error_after = \"1h\" }}\n[table.columns]\nid = {{ type = \"string\" }}\n{slo}"
        );
        let dir = std::env::temp_dir().join(format!("karat-slo-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("karat.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        c
    }

    fn step(at: &str, rows_in: i64, dead: i64, status: PartitionStatus) -> StepRecord {
        StepRecord {
            trigger: Trigger::Schedule,
            rows_in,
            rows_out: rows_in - dead,
            dead,
            ..StepRecord::example(Zone::Silver, "orders", &at[..10], status, at)
        }
    }

    #[test]
    fn a_bad_hour_burns_fast_and_a_steady_trickle_burns_slowly() {
        let c = config(
            "[[table.slo]]\nsli = \"schema_compliance\"\nobjective = 99.0\nwindow = \"7d\"\n",
        );
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        // six days of clean hourly batches, then a bad last hour: 20% rejects
        let mut steps: Vec<StepRecord> = (1..144)
            .map(|h| {
                let at = now - chrono::Duration::hours(h);
                step(&at.to_rfc3339(), 1000, 0, PartitionStatus::Ok)
            })
            .collect();
        steps.push(step(
            &(now - chrono::Duration::minutes(10)).to_rfc3339(),
            1000,
            200,
            PartitionStatus::Failed,
        ));
        let s = &compute(&c, &steps, &[], now)[0];
        assert_eq!(s.total, 144_000);
        // the last hour: its two batches, 200 of 2,000 records bad = 10% against 1% allowed
        let b = s.burn_1h.unwrap();
        assert!((9.99..10.01).contains(&b), "{s:?}");
        assert!(s.met(), "one bad hour in a week still meets 99%: {s:?}");
        assert!(s.budget_remaining.unwrap() < 1.0);
        // a slow burn: 1.5% rejects every hour, over objective but never a fast burn
        let slow: Vec<StepRecord> = (0..144)
            .map(|h| {
                let at = now - chrono::Duration::hours(h) - chrono::Duration::minutes(5);
                step(&at.to_rfc3339(), 1000, 15, PartitionStatus::Ok)
            })
            .collect();
        let s = &compute(&c, &slow, &[], now)[0];
        assert!(!s.met() && s.budget_remaining.unwrap() < 0.0, "{s:?}");
        let b = s.burn_1h.unwrap();
        assert!((1.4..1.6).contains(&b), "{b}");
    }

    #[test]
    fn freshness_counts_the_minutes_past_the_limit() {
        let c = config("[[table.slo]]\nsli = \"freshness\"\nobjective = 99.9\nwindow = \"1d\"\n");
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        // promoted every 30 minutes except a 3-hour gap ending 6 hours ago
        let steps: Vec<StepRecord> = (0..48)
            .map(|i| now - chrono::Duration::minutes(30 * i + 1))
            .filter(|at| {
                !(*at > now - chrono::Duration::hours(9) && *at < now - chrono::Duration::hours(6))
            })
            .map(|at| step(&at.to_rfc3339(), 10, 0, PartitionStatus::Ok))
            .collect();
        let s = &compute(&c, &steps, &[], now)[0];
        assert_eq!(s.total, 24 * 60);
        // stale 29 min at the start (nothing promoted before the window; the first at −1411 min)
        // and 150 min in the gap (promotions at −541 and −331 min: 210 min apart, 60 allowed)
        assert_eq!(s.total - s.good, 29 + 150);
        assert!(!s.met());
        assert_eq!(s.burn_1h, Some(0.0));
    }
}
