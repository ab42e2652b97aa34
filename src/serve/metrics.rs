//! The Prometheus metrics of a lake, computed from its ledger (so every machine serving the same
//! lake exports the same numbers) and encoded by `prometheus-client`. Labels are per table and
//! zone, never per partition: the cardinality stays bounded by the config, not by the data.

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::Zone;
use crate::lake::lease::LeaseInfo;
use crate::ledger::breaches::BreachGroup;
use crate::ledger::declared::SourceCompleteness;
use crate::ledger::event_time::EventLag;
use crate::ledger::sli::Slis;
use crate::ledger::slo::SloStatus;
use crate::ledger::status::{StatusReport, latest_partition_states};
use crate::ledger::{RunRecord, StepRecord};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    zone: String,
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SloLabels {
    zone: String,
    table: String,
    level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    table: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    zone: String,
    table: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreachLabels {
    zone: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SloLabelSet {
    zone: String,
    table: String,
    sli: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BurnLabels {
    zone: String,
    table: String,
    sli: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeclaredLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HolderLabels {
    holder: String,
}

/// What the metrics are computed from: one read of the ledger and the lease.
pub struct MetricsInput<'a> {
    pub status: &'a StatusReport,
    pub breaches: &'a [BreachGroup],
    pub runs: &'a [RunRecord],
    pub steps: &'a [StepRecord],
    pub lease: Option<&'a LeaseInfo>,
    pub slis: &'a Slis,
    pub slos: &'a [SloStatus],
    pub event_lags: &'a [EventLag],
    pub declared: &'a [SourceCompleteness],
}

fn table(zone: Zone, name: &str) -> TableLabels {
    TableLabels {
        zone: zone.to_string(),
        table: name.to_string(),
    }
}

fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let a = DateTime::parse_from_rfc3339(from).ok()?;
    let b = DateTime::parse_from_rfc3339(to).ok()?;
    Some(((b - a).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// The metrics in the Prometheus text format.
pub fn encode(input: &MetricsInput) -> String {
    let mut registry = Registry::with_prefix("karat");
    freshness(&mut registry, input.status);
    row_counters(&mut registry, input.steps);
    partition_states(&mut registry, input.steps);
    breaches(&mut registry, input.breaches);
    durations(&mut registry, input.runs, input.steps);
    lease(&mut registry, input.lease);
    slis(&mut registry, input.slis);
    slos(&mut registry, input.slos);
    event_lags(&mut registry, input.event_lags);
    declared(&mut registry, input.declared);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// Per table: freshness and its SLO, rows now, last success.
fn freshness(registry: &mut Registry, status: &StatusReport) {
    let age = Family::<TableLabels, FloatGauge>::default();
    let slo = Family::<SloLabels, FloatGauge>::default();
    let rows = Family::<TableLabels, Gauge>::default();
    let last = Family::<TableLabels, FloatGauge>::default();
    for t in &status.tables {
        let l = table(t.zone, &t.name);
        if let Some(a) = t.age_seconds {
            age.get_or_create(&l).set(a as f64);
        }
        for (level, v) in [
            ("warn", t.warn_after_seconds),
            ("error", t.error_after_seconds),
        ] {
            if let Some(v) = v {
                let l = SloLabels {
                    zone: l.zone.clone(),
                    table: l.table.clone(),
                    level: level.into(),
                };
                slo.get_or_create(&l).set(v as f64);
            }
        }
        rows.get_or_create(&l).set(t.rows);
        let at = t
            .last_success
            .as_deref()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok());
        if let Some(at) = at {
            last.get_or_create(&l)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }
    registry.register(
        "table_freshness_seconds",
        "Age of the newest promoted, complete partition (stale by data counts as its age)",
        age,
    );
    registry.register(
        "table_freshness_slo_seconds",
        "The table's freshness SLO thresholds",
        slo,
    );
    registry.register("table_rows", "Rows the table holds now", rows);
    registry.register(
        "table_last_success_timestamp_seconds",
        "When the table last promoted a partition",
        last,
    );
}

/// Rows landed / promoted / dead-lettered / superseded over the ledger's history.
fn row_counters(registry: &mut Registry, steps: &[StepRecord]) {
    let landed = Family::<TableLabels, Counter>::default();
    let promoted = Family::<TableLabels, Counter>::default();
    let dead = Family::<TableLabels, Counter>::default();
    let superseded = Family::<TableLabels, Counter>::default();
    let pos = |v: i64| v.max(0) as u64;
    for s in steps {
        let l = table(s.zone, &s.table);
        match s.zone {
            Zone::Bronze => {
                landed.get_or_create(&l).inc_by(pos(s.rows_out));
            }
            Zone::Silver | Zone::Gold => {
                if s.status.promoted() {
                    promoted.get_or_create(&l).inc_by(pos(s.rows_out));
                }
                dead.get_or_create(&l).inc_by(pos(s.dead));
                superseded.get_or_create(&l).inc_by(pos(s.duplicates));
            }
        }
    }
    registry.register("rows_landed", "Records landed in bronze", landed);
    registry.register(
        "rows_promoted",
        "Rows written to promoted silver and gold partitions (replays count again)",
        promoted,
    );
    registry.register("rows_dead_lettered", "Rows sent to dead letters", dead);
    registry.register(
        "rows_superseded",
        "Rows superseded by a newer version of their key",
        superseded,
    );
}

/// Partitions by their latest state, and dead letters by rule, per table.
fn partition_states(registry: &mut Registry, steps: &[StepRecord]) {
    let states = Family::<StateLabels, Gauge>::default();
    let by_rule = Family::<RuleLabels, Gauge>::default();
    for ((zone, t, _), s) in latest_partition_states(steps) {
        if zone == Zone::Bronze {
            continue;
        }
        let l = StateLabels {
            zone: zone.to_string(),
            table: t.clone(),
            state: s.status.as_str().to_string(),
        };
        states.get_or_create(&l).inc();
        for (rule, n) in s.dead_by_rule_map() {
            let l = RuleLabels {
                table: t.clone(),
                rule,
            };
            by_rule.get_or_create(&l).inc_by(n);
        }
    }
    registry.register("partitions", "Partitions by their latest state", states);
    registry.register(
        "dead_letters",
        "Dead letters per failed rule, over the partitions' latest states",
        by_rule,
    );
}

/// Open breaches (grouped by cause, as the dashboard shows them) by kind.
fn breaches(registry: &mut Registry, groups: &[BreachGroup]) {
    let family = Family::<BreachLabels, Gauge>::default();
    for g in groups {
        let l = BreachLabels {
            zone: g.zone().to_string(),
            kind: g.kind().as_str().replace(' ', "_"),
        };
        family.get_or_create(&l).inc();
    }
    registry.register(
        "breaches",
        "Open breach groups (one per table, step and cause)",
        family,
    );
}

/// Run and step durations.
fn durations(registry: &mut Registry, runs: &[RunRecord], steps: &[StepRecord]) {
    let buckets = || Histogram::new(exponential_buckets(0.05, 2.0, 14));
    let run = Family::<TriggerLabels, Histogram>::new_with_constructor(buckets);
    for r in runs {
        if let Some(s) = seconds_between(&r.started_at, &r.finished_at) {
            let l = TriggerLabels {
                trigger: r.trigger.to_string(),
            };
            run.get_or_create(&l).observe(s);
        }
    }
    let step = Family::<ZoneLabels, Histogram>::new_with_constructor(buckets);
    for s in steps {
        if let Some(d) = seconds_between(&s.started_at, &s.finished_at) {
            let l = ZoneLabels {
                zone: s.zone.to_string(),
            };
            step.get_or_create(&l).observe(d);
        }
    }
    registry.register("run_duration_seconds", "How long runs took", run);
    registry.register(
        "step_duration_seconds",
        "How long steps (a batch, a table's partitions) took",
        step,
    );
}

/// Who holds the writer lease (1), if anyone.
fn lease(registry: &mut Registry, lease: Option<&LeaseInfo>) {
    let family = Family::<HolderLabels, Gauge>::default();
    if let Some(l) = lease {
        let holder = format!("{}@{} pid {}", l.command, l.host, l.pid);
        family.get_or_create(&HolderLabels { holder }).set(1);
    }
    registry.register(
        "lease_held",
        "1 while a writer holds the lake's lease, labelled by who",
        family,
    );
}

/// The seed's SLIs (M1, M3–M8; M2 is `karat_table_freshness_seconds`).
fn slis(registry: &mut Registry, slis: &Slis) {
    let ingest = Family::<TableLabels, FloatGauge>::default();
    let compliance = Family::<TableLabels, FloatGauge>::default();
    let duplicates = Family::<TableLabels, FloatGauge>::default();
    let z = Family::<TableLabels, FloatGauge>::default();
    let dead = Family::<RuleLabels, FloatGauge>::default();
    for t in &slis.tables {
        let l = table(t.zone, &t.table);
        let set = |f: &Family<TableLabels, FloatGauge>, v: Option<f64>| {
            if let Some(v) = v {
                f.get_or_create(&l).set(v);
            }
        };
        set(&ingest, t.ingest_success);
        set(&compliance, t.schema_compliance);
        set(&duplicates, t.duplicate_rate);
        set(&z, t.completeness.as_ref().map(|c| c.z));
        for (rule, v) in &t.dead_letter_rate {
            let l = RuleLabels {
                table: t.table.clone(),
                rule: rule.clone(),
            };
            dead.get_or_create(&l).set(*v);
        }
    }
    let failures = FloatGauge::default();
    failures.set(slis.job_failure_rate.unwrap_or(0.0));
    let replay = FloatGauge::default();
    replay.set(slis.replay_records_per_run.unwrap_or(0.0));
    let window = format!(" over the last {} days", slis.window_days);
    registry.register(
        "sli_ingest_success_ratio",
        format!("M1: bronze batches landed / attempted{window}"),
        ingest,
    );
    registry.register(
        "sli_schema_compliance_ratio",
        format!("M3: valid / total records{window}"),
        compliance,
    );
    registry.register(
        "sli_duplicate_ratio",
        format!("M4: superseded / total records{window}"),
        duplicates,
    );
    registry.register(
        "sli_job_failure_ratio",
        format!("M5: failed runs / runs{window}"),
        failures,
    );
    registry.register(
        "sli_replay_records_per_run",
        format!("M6: records reprocessed per replay{window}"),
        replay,
    );
    registry.register(
        "sli_completeness_zscore",
        "M7: the newest partition's records against the trailing 14 partitions (|z| > 3: anomaly)",
        z,
    );
    registry.register(
        "sli_dead_letter_ratio",
        format!("M8: dead letters per rule / total records{window}"),
        dead,
    );
}

/// Every `[[table.slo]]`: objective, attainment, budget left and burn rates.
fn slos(registry: &mut Registry, slos: &[SloStatus]) {
    let objective = Family::<SloLabelSet, FloatGauge>::default();
    let attainment = Family::<SloLabelSet, FloatGauge>::default();
    let budget = Family::<SloLabelSet, FloatGauge>::default();
    let burn = Family::<BurnLabels, FloatGauge>::default();
    for s in slos {
        let l = SloLabelSet {
            zone: s.zone.to_string(),
            table: s.table.clone(),
            sli: s.sli.as_str().into(),
        };
        objective.get_or_create(&l).set(s.objective);
        if let Some(a) = s.attainment {
            attainment.get_or_create(&l).set(a);
        }
        if let Some(b) = s.budget_remaining {
            budget.get_or_create(&l).set(b);
        }
        for (window, v) in [("1h", s.burn_1h), ("6h", s.burn_6h)] {
            if let Some(v) = v {
                let l = BurnLabels {
                    zone: l.zone.clone(),
                    table: l.table.clone(),
                    sli: l.sli.clone(),
                    window: window.into(),
                };
                burn.get_or_create(&l).set(v);
            }
        }
    }
    registry.register(
        "slo_objective_ratio",
        "The SLO's promised share of good events",
        objective,
    );
    registry.register(
        "slo_attainment_ratio",
        "Good / total events over the SLO's window",
        attainment,
    );
    registry.register(
        "slo_error_budget_remaining_ratio",
        "Share of the error budget left (negative: overspent)",
        budget,
    );
    registry.register(
        "slo_burn_rate",
        "Bad share over the last hour / six hours divided by the allowed bad share",
        burn,
    );
}

/// Event-time freshness of the silver tables with an `event_time` (M2 as consumers feel it).
fn event_lags(registry: &mut Registry, lags: &[EventLag]) {
    let family = Family::<TableLabels, FloatGauge>::default();
    for l in lags {
        if let Some(s) = l.lag_seconds {
            family.get_or_create(&table(l.zone, &l.table)).set(s as f64);
        }
    }
    registry.register(
        "table_event_lag_seconds",
        "Now minus the newest event time a table holds (its event_time column; for gold: what reached it)",
        family,
    );
}

/// Completeness against the counts sources declared (`expected_count_field`).
fn declared(registry: &mut Registry, declared: &[SourceCompleteness]) {
    let expected = Family::<DeclaredLabels, Gauge>::default();
    let received = Family::<DeclaredLabels, Gauge>::default();
    let short = Family::<DeclaredLabels, Gauge>::default();
    for d in declared {
        let l = DeclaredLabels {
            source: d.source.clone(),
        };
        expected
            .get_or_create(&l)
            .set(i64::try_from(d.expected).unwrap_or(i64::MAX));
        received
            .get_or_create(&l)
            .set(i64::try_from(d.records).unwrap_or(i64::MAX));
        short.get_or_create(&l).set(d.short.len() as i64);
    }
    registry.register(
        "source_declared_records",
        "Records the source declared it sent, over its declared batches",
        expected,
    );
    registry.register(
        "source_received_records",
        "Records that landed in bronze from the source's declared batches",
        received,
    );
    registry.register(
        "source_short_batches",
        "Bronze batches with fewer records than their source declared",
        short,
    );
}
