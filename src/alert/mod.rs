//! Alerts: one notification per breach *group* (the dashboard's grouping: table, step, cause),
//! `firing` when it opens, `resolved` when it clears, sent again every `repeat` while it fires.
//! Evaluated after every run — `karat run` from cron as much as `karat serve` — from the ledger
//! alone; every notification, delivered or not, is recorded in `_karat/alerts` (the Runs screen
//! lists them). A notification the receiver refused is tried again at the next evaluation. An
//! SLO burning its error budget is alerted on the same way: a fast burn pages, a slow one opens
//! a ticket. While an approved replay runs (its approval recorded under the writer lease it
//! still holds), breaches on what it rewrites are suppressed — neither sent nor resolved — and
//! the suppression is recorded once, naming the replay; when it ends they are evaluated as usual.

pub mod rules;
pub mod send;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Zone;
use crate::config::alert::{Alert, Severity};
use crate::error::KaratResult;
use crate::lake::Lake;
use crate::ledger::breaches::BreachGroup;
use crate::ledger::records::ApprovalRecord;
use crate::ledger::{AlertRecord, Ledger};
use crate::pipeline::Plan;

/// Whether a notification opens or closes its breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeStatus {
    Firing,
    Resolved,
    /// Not sent: an approved replay of what it is about is running.
    Suppressed,
}

impl NoticeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeStatus::Firing => "firing",
            NoticeStatus::Resolved => "resolved",
            NoticeStatus::Suppressed => "suppressed",
        }
    }
}

/// Something an alert can fire for: a breach group, or an SLO burning its budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    /// The correlation key (stable across runs).
    pub key: String,
    pub severity: Severity,
    pub summary: String,
    pub zone: String,
    pub table: String,
    pub partitions: usize,
    /// The partitions it is about (none: the whole table).
    pub members: Vec<String>,
    /// A table older than its freshness limit (what a running backfill is expected to cause).
    pub stale: bool,
    /// The table's (or source's) `owner`: `[[alert]] owners` routes by it.
    pub owner: Option<String>,
    /// What to do, from the table's `runbook` / `runbooks`.
    pub runbook: Option<String>,
}

impl Open {
    pub fn of_group(g: &BreachGroup) -> Open {
        Open {
            key: g.key.correlation(),
            severity: g.kind().severity(),
            summary: g.headline(),
            zone: g.zone().to_string(),
            table: g.table().to_string(),
            partitions: g.members.len(),
            members: g.members.iter().map(|m| m.partition.clone()).collect(),
            stale: matches!(
                g.kind(),
                crate::ledger::breaches::BreachKind::Stale
                    | crate::ledger::breaches::BreachKind::GettingStale
            ),
            owner: None,
            runbook: None,
        }
    }

    /// The approved replay (among `active`) that rewrites everything this breach is about (a
    /// replay rewrites silver and gold: never what bronze or the whole lake breaches). A breach
    /// of a whole table is held back only by a replay of the whole table — or, for staleness, by
    /// any replay of it (a running backfill is what keeps it stale).
    pub fn suppressed_by<'a>(&self, active: &'a [ApprovalRecord]) -> Option<&'a ApprovalRecord> {
        let rewritable = [Zone::Silver, Zone::Gold].map(|z| z.to_string());
        if !rewritable.contains(&self.zone) {
            return None;
        }
        active
            .iter()
            .find(|a| match (self.members.is_empty(), self.stale) {
                (true, true) => a.covers(&self.table, None),
                (true, false) => a.covers(&self.table, Some(crate::gold::WHOLE_TABLE)),
                (false, _) => self.members.iter().all(|p| a.covers(&self.table, Some(p))),
            })
    }
}

/// A breach held back while an approved replay runs, and the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub breach: Open,
    /// `karat replay … (approved by ana at …)`.
    pub by: String,
}

impl Held {
    fn of(breach: &Open, a: &ApprovalRecord) -> Held {
        Held {
            breach: breach.clone(),
            by: format!("{} (approved by {} at {})", a.command, a.user, a.at),
        }
    }
}

/// The approvals whose replay is running now: recorded under the lease that is still held.
pub fn running_approvals(
    approvals: &[ApprovalRecord],
    lease: Option<&crate::lake::lease::LeaseInfo>,
    now: DateTime<Utc>,
) -> Vec<ApprovalRecord> {
    let Some(lease) = lease.filter(|l| l.live(now)) else {
        return Vec::new();
    };
    approvals
        .iter()
        .filter(|a| !a.lease_id.is_empty() && a.lease_id == lease.id)
        .cloned()
        .collect()
}

/// A burn rate over the last hour above this pages.
pub const FAST_BURN: f64 = 2.0;

/// One notification to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub status: NoticeStatus,
    pub key: String,
    pub severity: String,
    pub summary: String,
    pub zone: String,
    pub table: String,
    /// Partitions in the group (0 for a stale table or a resolution).
    pub partitions: usize,
    /// Sent again because it is still firing after `repeat`.
    pub repeat: bool,
    pub owner: Option<String>,
    pub runbook: Option<String>,
}

impl Notice {
    fn firing(o: &Open, repeat: bool) -> Notice {
        Notice {
            status: NoticeStatus::Firing,
            key: o.key.clone(),
            severity: o.severity.as_str().into(),
            summary: o.summary.clone(),
            zone: o.zone.clone(),
            table: o.table.clone(),
            partitions: o.partitions,
            repeat,
            owner: o.owner.clone(),
            runbook: o.runbook.clone(),
        }
    }

    fn suppressed(h: &Held) -> Notice {
        let mut n = Notice::firing(&h.breach, false);
        n.status = NoticeStatus::Suppressed;
        n.summary = format!(
            "suppressed while an approved replay runs, {}: {}",
            h.by, h.breach.summary
        );
        n
    }

    fn resolved(last: &AlertRecord) -> Notice {
        Notice {
            status: NoticeStatus::Resolved,
            key: last.key.clone(),
            severity: last.severity.clone(),
            summary: format!("resolved: {}", last.summary),
            zone: last.zone.clone(),
            table: last.table.clone(),
            partitions: 0,
            repeat: false,
            owner: None,
            runbook: None,
        }
    }
}

/// The last delivered notification of each breach key of `alert`.
fn open_breaches<'a>(
    alert: &Alert,
    history: &'a [AlertRecord],
) -> BTreeMap<&'a str, &'a AlertRecord> {
    let mut last: BTreeMap<&str, &AlertRecord> = BTreeMap::new();
    for r in history
        .iter()
        .filter(|r| r.alert == alert.name && r.delivered)
    {
        last.insert(r.key.as_str(), r);
    }
    last.retain(|_, r| r.status == NoticeStatus::Firing.as_str());
    last
}

/// What `alert` must send now: a firing for every group at or above its severity that is not
/// open (or open for longer than `repeat`), a resolution for every open key no longer breached;
/// a `held` breach is neither sent nor resolved, only recorded as suppressed (once per replay).
pub fn decide(
    alert: &Alert,
    breaches: &[Open],
    held: &[Held],
    history: &[AlertRecord],
    now: DateTime<Utc>,
) -> Vec<Notice> {
    let open = open_breaches(alert, history);
    let mut out = Vec::new();
    let wanted: Vec<&Open> = breaches.iter().filter(|g| alert.wants(g)).collect();
    for g in &wanted {
        match open.get(g.key.as_str()) {
            None => out.push(Notice::firing(g, false)),
            Some(last) => {
                let sent = last.at.parse::<DateTime<Utc>>().unwrap_or(now);
                let due = chrono::Duration::from_std(alert.repeat).unwrap_or(chrono::Duration::MAX);
                if now - sent >= due {
                    out.push(Notice::firing(g, true));
                }
            }
        }
    }
    for h in held
        .iter()
        .filter(|h| h.breach.severity >= alert.min_severity)
    {
        let n = Notice::suppressed(h);
        // once per breach and approval: the summary's own numbers (ages, burn rates) move
        let said = history.iter().any(|r| {
            r.alert == alert.name && r.key == n.key && r.suppressed() && r.summary.contains(&h.by)
        });
        if !said {
            out.push(n);
        }
    }
    for (key, last) in &open {
        let still = wanted.iter().any(|g| g.key == *key);
        let held_back = held.iter().any(|h| h.breach.key == *key);
        if !still && !held_back {
            out.push(Notice::resolved(last));
        }
    }
    out
}

/// Sends `notice` (unless it is suppressed) and the record of what happened.
async fn record(
    alert: &Alert,
    project: &str,
    notice: &Notice,
    run_id: Option<&str>,
) -> AlertRecord {
    let (attempts, delivered, error) = if notice.status == NoticeStatus::Suppressed {
        (0, false, None)
    } else {
        let outcome = send::deliver(alert, project, notice).await;
        (
            outcome.attempts as i64,
            outcome.error.is_none(),
            outcome.error,
        )
    };
    AlertRecord {
        at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        alert: alert.name.clone(),
        key: notice.key.clone(),
        status: notice.status.as_str().into(),
        severity: notice.severity.clone(),
        summary: notice.summary.clone(),
        zone: notice.zone.clone(),
        table: notice.table.clone(),
        attempts,
        delivered,
        error,
        run_id: run_id.map(str::to_string),
    }
}

/// Evaluates every `[[alert]]` against the lake's breaches now, sends what is due and records
/// it. Returns the records (the caller reports undelivered ones; they never fail a run).
pub async fn notify(
    plan: &Plan,
    lake: &Lake,
    run_id: Option<&str>,
) -> KaratResult<Vec<AlertRecord>> {
    if plan.config.alerts.is_empty() {
        return Ok(Vec::new());
    }
    let ledger = Ledger::new(lake);
    let now = Utc::now();
    let runs = ledger.runs().await?;
    let steps = ledger.steps().await?;
    let declared = crate::ledger::declared::batches(&plan.config, lake).await?;
    let status = crate::ledger::status::compute(&plan.config, &runs, &steps, now);
    let slos = crate::ledger::slo::compute(&plan.config, &steps, &declared, now);
    let drift = ledger.drift().await?;
    let breaches = rules::breaches(&rules::Inputs {
        config: &plan.config,
        status: &status,
        runs: &runs,
        steps: &steps,
        drift: &drift,
        slos: &slos,
        gold_inputs: &plan
            .gold
            .iter()
            .map(|g| (g.name.clone(), g.inputs.clone()))
            .collect::<Vec<_>>(),
        now,
    });
    let lease = crate::lake::lease::current(lake).await?;
    let running = running_approvals(&ledger.approvals().await?, lease.as_ref(), now);
    let (held, breaches): (Vec<Open>, Vec<Open>) = breaches
        .into_iter()
        .partition(|b| b.suppressed_by(&running).is_some());
    let held: Vec<Held> = held
        .iter()
        .filter_map(|b| Some(Held::of(b, b.suppressed_by(&running)?)))
        .collect();
    let history = ledger.alerts().await?;
    let mut records = Vec::new();
    for alert in &plan.config.alerts {
        for notice in decide(alert, &breaches, &held, &history, now) {
            records.push(record(alert, &plan.config.project, &notice, run_id).await);
        }
    }
    ledger.append_alerts(&records).await?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alert::AlertFormat;
    use crate::ledger::breaches::{BreachKind, BreachMember, GroupKey};

    fn alert(min: Severity) -> Alert {
        Alert {
            name: "oncall".into(),
            url: url::Url::parse("http://127.0.0.1:1/hook").unwrap(),
            headers: vec![],
            min_severity: min,
            format: AlertFormat::Json,
            repeat: std::time::Duration::from_secs(4 * 3600),
            owners: vec![],
        }
    }

    fn group(kind: BreachKind, table: &str) -> BreachGroup {
        BreachGroup {
            key: GroupKey {
                kind,
                zone: Zone::Silver,
                table: table.into(),
                cause: "reject rate #% exceeds #%".into(),
            },
            example: "reject rate 40% exceeds 5%".into(),
            members: vec![BreachMember {
                partition: "2026-03-28".into(),
                reason: "reject rate 40% exceeds 5%".into(),
            }],
            blocks: 2,
        }
    }

    fn sent(n: &Notice, at: DateTime<Utc>, delivered: bool) -> AlertRecord {
        AlertRecord {
            at: at.to_rfc3339(),
            alert: "oncall".into(),
            key: n.key.clone(),
            status: n.status.as_str().into(),
            severity: n.severity.clone(),
            summary: n.summary.clone(),
            zone: n.zone.clone(),
            table: n.table.clone(),
            attempts: 1,
            delivered,
            error: None,
            run_id: None,
        }
    }

    #[test]
    fn a_group_fires_once_repeats_after_the_interval_and_resolves_when_gone() {
        let a = alert(Severity::Warn);
        let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
        let groups = vec![Open::of_group(&group(BreachKind::Failed, "orders"))];
        let first = decide(&a, &groups, &[], &[], t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].status, NoticeStatus::Firing);
        assert_eq!(first[0].severity, "error");
        // not delivered: tried again
        let undelivered = vec![sent(&first[0], t0, false)];
        assert_eq!(decide(&a, &groups, &[], &undelivered, t0).len(), 1);
        // delivered: quiet until the repeat is due
        let history = vec![sent(&first[0], t0, true)];
        let hour = chrono::Duration::hours(1);
        assert!(decide(&a, &groups, &[], &history, t0 + hour).is_empty());
        let again = decide(&a, &groups, &[], &history, t0 + hour * 4);
        assert!(again.len() == 1 && again[0].repeat);
        // the breach clears: one resolution, then nothing
        let resolved = decide(&a, &[], &[], &history, t0 + hour);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].status, NoticeStatus::Resolved);
        let mut closed = history.clone();
        closed.push(sent(&resolved[0], t0 + hour, true));
        assert!(decide(&a, &[], &[], &closed, t0 + hour * 2).is_empty());
    }

    #[test]
    fn min_severity_error_skips_warnings() {
        let groups = vec![
            Open::of_group(&group(BreachKind::Blocked, "daily_revenue")),
            Open::of_group(&group(BreachKind::Failed, "orders")),
        ];
        let t0 = Utc::now();
        let only_errors = decide(&alert(Severity::Error), &groups, &[], &[], t0);
        assert_eq!(only_errors.len(), 1);
        assert_eq!(only_errors[0].table, "orders");
        assert_eq!(
            decide(&alert(Severity::Warn), &groups, &[], &[], t0).len(),
            2
        );
    }

    fn approval(scope: &str) -> ApprovalRecord {
        ApprovalRecord {
            at: "2026-11-23T00:30:00Z".into(),
            user: "ana".into(),
            host: "h".into(),
            command: "karat replay orders --partition 2026-03-28".into(),
            lease_id: "lease-1".into(),
            records: Some(10),
            budget: Some(5),
            scope: scope.into(),
        }
    }

    #[test]
    fn a_breach_under_an_approved_replay_is_held_once_and_neither_sent_nor_resolved() {
        let a = alert(Severity::Warn);
        let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
        let hour = chrono::Duration::hours(1);
        let g = Open::of_group(&group(BreachKind::Failed, "orders"));
        let fired = decide(&a, std::slice::from_ref(&g), &[], &[], t0);
        let history = vec![sent(&fired[0], t0, true)];
        // the replay covers the group's partition: held, recorded once, not resolved
        let running = [approval(
            r#"{"orders":["2026-03-28"],"daily_revenue":["*"]}"#,
        )];
        let by = g.suppressed_by(&running).expect("covered");
        let held = vec![Held::of(&g, by)];
        let now = decide(&a, &[], &held, &history, t0 + hour * 5);
        assert_eq!(now.len(), 1, "{now:#?}");
        assert_eq!(now[0].status, NoticeStatus::Suppressed);
        assert!(
            now[0].summary.contains("approved by ana"),
            "{}",
            now[0].summary
        );
        let mut said = history.clone();
        said.push(sent(&now[0], t0 + hour * 5, false));
        assert!(decide(&a, &[], &held, &said, t0 + hour * 6).is_empty());
        // the check can fail: without the approval the same moment repeats the page
        let unheld = decide(&a, std::slice::from_ref(&g), &[], &said, t0 + hour * 6);
        assert!(unheld.len() == 1 && unheld[0].repeat, "{unheld:#?}");
        // another partition, or another table, is not covered
        let other = [approval(r#"{"orders":["2026-03-27"]}"#)];
        assert!(g.suppressed_by(&other).is_none());
        let gold = Open::of_group(&group(BreachKind::Blocked, "daily_revenue"));
        assert!(
            gold.suppressed_by(&running).is_some(),
            "downstream gold: any partition"
        );
        // only the lease the approval was recorded under makes it running
        let lease = |id: &str| crate::lake::lease::LeaseInfo {
            id: id.into(),
            host: "elsewhere".into(),
            pid: 1,
            command: "karat replay".into(),
            acquired_at: t0.to_rfc3339(),
            expires_at: (Utc::now() + hour).to_rfc3339(),
        };
        let now = Utc::now();
        assert_eq!(
            running_approvals(&running, Some(&lease("lease-1")), now).len(),
            1
        );
        assert!(running_approvals(&running, Some(&lease("lease-2")), now).is_empty());
        assert!(running_approvals(&running, None, now).is_empty());
    }
}
