//! What the lineage, schema and runs screens show, derived from the lake snapshot.

use super::*;
use crate::ledger::status::Freshness;

/// A hop on the way to why a table is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Fine,
    /// Stale or blocked itself: look further up.
    Stale,
    /// Its newest partition failed its gate: the cause.
    Cause,
}

/// One line of the Runs screen.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub at: String,
    /// run, gate, batch, spike, drift, action.
    pub kind: &'static str,
    pub text: String,
    pub problem: bool,
    /// The run id, when the line is a replay run (which `u` can undo).
    pub replay_run: Option<String>,
}

impl App {
    /// Lines of the lineage tree of the focused node: (depth marker text, node).
    pub fn lineage_lines(&self) -> Vec<(String, Node)> {
        let (Some(s), Some(f)) = (&self.snapshot, &self.lineage_focus) else {
            return vec![];
        };
        let mut out = vec![(String::new(), f.clone())];
        fn up(l: &crate::lineage::Lineage, n: &Node, depth: usize, out: &mut Vec<(String, Node)>) {
            for u in l.upstream(n) {
                out.push((format!("{}↑ ", "  ".repeat(depth)), u.clone()));
                up(l, u, depth + 1, out);
            }
        }
        fn down(
            l: &crate::lineage::Lineage,
            n: &Node,
            depth: usize,
            out: &mut Vec<(String, Node)>,
        ) {
            for d in l.downstream(n) {
                out.push((format!("{}↓ ", "  ".repeat(depth)), d.clone()));
                down(l, d, depth + 1, out);
            }
        }
        up(&s.lineage, f, 1, &mut out);
        down(&s.lineage, f, 1, &mut out);
        out
    }

    /// Why the focused table is stale: the chain upstream, each hop annotated, followed through
    /// hops that are stale or blocked themselves and ending at a failed hop (the cause) or at
    /// healthy ones. Empty when the focus is fresh.
    pub fn why_stale(&self) -> Vec<String> {
        let (Some(s), Some(f)) = (&self.snapshot, &self.lineage_focus) else {
            return vec![];
        };
        let hop = |n: &Node| -> (Hop, String) {
            let name = format!("{} {}", n.zone, n.name);
            let Some(t) = s
                .status
                .tables
                .iter()
                .find(|t| t.name == n.name && t.zone == n.zone)
            else {
                return (Hop::Fine, format!("● {name}"));
            };
            let newest_failed = t
                .failed
                .iter()
                .find(|p| Some(&p.partition) == t.newest_partition.as_ref())
                .filter(|p| p.status == "failed");
            match (&t.stale_because, newest_failed, t.freshness) {
                (Some(why), Some(_), _) => (Hop::Cause, format!("✗ {name}: {why}  ← the cause")),
                (Some(why), None, _) => (Hop::Stale, format!("⊘ {name}: {why}")),
                (None, _, Freshness::Error | Freshness::Warn) => (
                    Hop::Stale,
                    format!("◐ {name}: last success {} ago", age(t.age_seconds)),
                ),
                _ if t.partitions_failed > 0 => (
                    Hop::Fine,
                    format!(
                        "● {name}: fresh ({} failed unit(s) of its own)",
                        t.partitions_failed
                    ),
                ),
                _ => (Hop::Fine, format!("● {name}: fresh")),
            }
        };
        let (first, line) = hop(f);
        if first == Hop::Fine {
            return vec![];
        }
        // depth first, each hop under the one it feeds, each node once
        fn up(
            s: &Snapshot,
            n: &Node,
            depth: usize,
            hop: &dyn Fn(&Node) -> (Hop, String),
            seen: &mut BTreeSet<Node>,
            out: &mut Vec<String>,
        ) {
            for u in s.lineage.upstream(n) {
                if !seen.insert(u.clone()) {
                    continue;
                }
                let (h, line) = hop(u);
                out.push(format!("{}↑ {line}", "  ".repeat(depth)));
                if h == Hop::Stale {
                    up(s, u, depth + 1, hop, seen, out);
                }
            }
        }
        let mut out = vec![line];
        let mut seen = BTreeSet::from([f.clone()]);
        up(s, f, 1, &hop, &mut seen, &mut out);
        out
    }

    /// Index of the newest version of the selected source whose schema changed (else the newest).
    pub(super) fn latest_schema_change(&self) -> usize {
        let v = self.schema_versions();
        v.iter()
            .rposition(|x| !x.diff.is_empty())
            .unwrap_or(v.len().saturating_sub(1))
    }

    /// Schema versions of the selected source.
    pub fn schema_versions(&self) -> Vec<crate::schema::SchemaVersion> {
        let Some(s) = &self.snapshot else {
            return vec![];
        };
        s.sources
            .get(self.schema_source)
            .and_then(|src| s.schemas.get(src))
            .cloned()
            .unwrap_or_default()
    }

    /// The run/event log: (time, kind, text, is_problem), newest first, filtered.
    pub fn timeline(&self) -> Vec<TimelineEntry> {
        let Some(s) = &self.snapshot else {
            return vec![];
        };
        let mut out: Vec<(String, &'static str, String, bool)> = Vec::new();
        // a replay's line carries its run id (for `u`), matched by its place in the list
        let mut replays: Vec<(usize, String)> = Vec::new();
        for r in &s.runs {
            let text = format!(
                "{} [{}] rows {} dead {} failed {}   $ {}",
                r.status, r.trigger, r.rows_in, r.dead, r.partitions_failed, r.command
            );
            if r.trigger == crate::ledger::Trigger::Replay {
                replays.push((out.len(), r.run_id.clone()));
            }
            out.push((
                r.started_at.clone(),
                "run",
                text,
                r.status == crate::ledger::RunStatus::Failed,
            ));
        }
        for st in &s.steps {
            if st.zone == Zone::Bronze && st.status == PartitionStatus::Failed {
                out.push((
                    st.finished_at.clone(),
                    "batch",
                    format!(
                        "bronze {} batch failed: {}: {}",
                        st.table,
                        st.partition,
                        st.messages.clone().unwrap_or_default()
                    ),
                    true,
                ));
            } else if st.zone != Zone::Bronze && !st.status.promoted() {
                out.push((
                    st.finished_at.clone(),
                    "gate",
                    format!(
                        "{} {} {} {}: {}",
                        st.zone,
                        st.table,
                        st.partition,
                        st.status.as_str(),
                        st.messages
                            .clone()
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or("")
                    ),
                    true,
                ));
            } else if st.zone == Zone::Silver && st.rows_in > 0 && st.dead * 100 >= st.rows_in * 3 {
                out.push((
                    st.finished_at.clone(),
                    "spike",
                    format!(
                        "dead-letter spike: silver {} {}: {} of {} rows",
                        st.table, st.partition, st.dead, st.rows_in
                    ),
                    false,
                ));
            }
        }
        for d in &s.drift {
            let diff = crate::bronze::SchemaDiff {
                added: serde_json::from_str(&d.added).unwrap_or_default(),
                removed: serde_json::from_str(&d.removed).unwrap_or_default(),
                changed: serde_json::from_str(&d.changed).unwrap_or_default(),
            };
            out.push((
                d.ingested_at.clone(),
                "drift",
                format!(
                    "schema drift in {} ({}): {}",
                    d.source,
                    d.batch_id,
                    diff.summary()
                ),
                false,
            ));
        }
        for a in &s.alerts {
            let delivery = a.delivery();
            out.push((
                a.at.clone(),
                "alert",
                format!("{} {} {delivery}: {}", a.severity, a.status, a.summary),
                !a.delivered && !a.suppressed(),
            ));
        }
        for a in &s.actions {
            let who = format!("{}@{}", a.user, a.host);
            out.push((
                a.at.clone(),
                "action",
                format!("dashboard {who}: $ {}", a.command),
                false,
            ));
        }
        // taken here and not yet in the ledger's snapshot
        for (t, c) in &self.log {
            out.push((
                t.to_rfc3339(),
                "action",
                format!("dashboard (here): $ {c}"),
                false,
            ));
        }
        let mut out: Vec<TimelineEntry> = out
            .into_iter()
            .enumerate()
            .map(|(i, (at, kind, text, problem))| TimelineEntry {
                replay_run: replays
                    .iter()
                    .find(|(at_index, _)| *at_index == i)
                    .map(|(_, id)| id.clone()),
                at,
                kind,
                text,
                problem,
            })
            .collect();
        // newest first; entries of one instant keep their recorded order, newest first too
        // (steps recorded in the same microsecond must not swap from one read to the next)
        out.reverse();
        out.sort_by(|a, b| b.at.cmp(&a.at));
        if let Some(f) = &self.filter {
            let f = f.to_lowercase();
            out.retain(|e| e.text.to_lowercase().contains(&f) || e.kind.contains(&f));
        }
        out
    }
}
