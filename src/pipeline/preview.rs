//! `karat replay --dry-run`: what a replay would rewrite, computed the way the replay computes
//! it (the same target resolution, the same silver merge, the same gold derivation) and
//! written nowhere — the silver partitions and where their re-processed records would go, the
//! gold partitions downstream (or the whole table, and why), and the Delta version of every
//! table it would replace. The dashboard's replay confirmation shows the same preview.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::bronze::manifest;
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::gold::{self, GoldPlan};
use crate::lake::{Lake, delta, layout};
use crate::silver::preview::SilverPreview;
use crate::silver::store::Store;
use crate::silver::{self, Changed};

use super::plan::Plan;
use super::replay::{ReplayTarget, resolve, work_of};
use super::run::SilverMode;

/// A replay not made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayPreview {
    /// The replay's command line.
    pub command: String,
    pub silver: Vec<SilverTablePreview>,
    pub gold: Vec<GoldTablePreview>,
}

/// One silver table of a preview.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SilverTablePreview {
    pub table: String,
    /// The partitions asked for.
    pub asked: BTreeSet<String>,
    #[serde(flatten)]
    pub preview: SilverPreview,
    /// The version the rewrite would replace.
    pub delta_version: Option<i64>,
}

/// One gold table of a preview.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoldTablePreview {
    pub table: String,
    /// Partitions recomputed (empty when `whole`).
    pub partitions: BTreeSet<String>,
    /// Why the whole table would be recomputed, when it would.
    pub whole: Option<String>,
    pub delta_version: Option<i64>,
}

impl ReplayPreview {
    /// Bronze records the replay reprocesses (what `[defaults] replay_budget_rows` caps).
    pub fn records(&self) -> u64 {
        self.silver.iter().map(|s| s.preview.records).sum()
    }

    /// The preview in lines, for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("{} would rewrite:", self.command)];
        for s in &self.silver {
            let p = &s.preview;
            out.push(format!(
                "  silver {}: {} partition(s) {} (Delta version {}); {} bronze batch(es), {} record(s) → {} valid, {} dead letters; {} version(s) superseded",
                s.table,
                p.partitions.len(),
                span(&p.partitions),
                version(s.delta_version),
                p.batches.len(),
                p.records,
                p.valid,
                p.dead,
                p.superseded
            ));
        }
        for g in &self.gold {
            let what = match &g.whole {
                Some(why) => format!("the whole table ({why})"),
                None => format!(
                    "{} partition(s) {}",
                    g.partitions.len(),
                    span(&g.partitions)
                ),
            };
            out.push(format!(
                "  gold {}: {what} (Delta version {})",
                g.table,
                version(g.delta_version)
            ));
        }
        out
    }
}

fn span(partitions: &BTreeSet<String>) -> String {
    match (partitions.first(), partitions.last()) {
        (Some(a), Some(b)) if a == b => a.clone(),
        (Some(a), Some(b)) => format!("{a} … {b}"),
        _ => "-".into(),
    }
}

fn version(v: Option<i64>) -> String {
    v.map_or_else(|| "none yet".into(), |v| v.to_string())
}

/// Previews the replay of `target`.
pub async fn preview(
    plan: &Plan,
    lake: &Lake,
    target: &ReplayTarget,
) -> KaratResult<ReplayPreview> {
    let wanted = resolve(plan, lake, target).await?;
    let work = work_of(plan, lake, wanted).await?;
    let mut silver = Vec::new();
    let mut changes: BTreeMap<String, Changed> = BTreeMap::new();
    for (table, mode) in &work.silver {
        let SilverMode::Partitions { partitions, .. } = mode else {
            continue;
        };
        let s = silver_table(plan, lake, table, partitions).await?;
        changes.insert(table.clone(), s.preview.changed.clone());
        silver.push(s);
    }
    let gold = gold_tables(plan, lake, &changes, &work.gold_forced).await?;
    Ok(ReplayPreview {
        command: target.command(),
        silver,
        gold,
    })
}

async fn silver_table(
    plan: &Plan,
    lake: &Lake,
    table: &str,
    partitions: &BTreeSet<String>,
) -> KaratResult<SilverTablePreview> {
    let contract = plan
        .contracts
        .get(table)
        .cloned()
        .ok_or_else(|| KaratError::Usage(format!("{table} is not a silver table")))?;
    let ids = Store::open(lake, contract.clone())
        .await?
        .contributors(partitions)
        .await?;
    let batches = manifest::list(lake, &contract.spec.from)
        .await?
        .into_iter()
        .filter(|m| ids.contains(&m.batch_id))
        .collect();
    let preview = silver::preview::preview(lake, contract, batches, partitions).await?;
    Ok(SilverTablePreview {
        table: table.to_string(),
        asked: partitions.clone(),
        preview,
        delta_version: current_version(lake, Zone::Silver, table).await?,
    })
}

/// The gold tables the silver changes (or the replay itself) would recompute, in dependency
/// order, derived as a run derives them.
async fn gold_tables(
    plan: &Plan,
    lake: &Lake,
    changes: &BTreeMap<String, Changed>,
    forced: &BTreeMap<String, Option<BTreeSet<String>>>,
) -> KaratResult<Vec<GoldTablePreview>> {
    let mut touched: BTreeSet<&str> = changes.keys().map(String::as_str).collect();
    let mut out = Vec::new();
    for g in &plan.gold {
        let inputs: BTreeMap<String, Changed> = g
            .inputs
            .iter()
            .filter_map(|i| Some((i.clone(), changes.get(i)?.clone())))
            .collect();
        let gold_input = g
            .inputs
            .iter()
            .find(|i| touched.contains(i.as_str()) && !changes.contains_key(*i));
        let asked = forced.get(&g.name);
        if asked.is_none() && inputs.is_empty() && gold_input.is_none() {
            continue;
        }
        let (partitions, whole) = gold_scope(plan, lake, g, &inputs, gold_input, asked).await?;
        touched.insert(&g.name);
        out.push(GoldTablePreview {
            table: g.name.clone(),
            partitions,
            whole,
            delta_version: current_version(lake, Zone::Gold, &g.name).await?,
        });
    }
    Ok(out)
}

async fn gold_scope(
    plan: &Plan,
    lake: &Lake,
    g: &GoldPlan,
    inputs: &BTreeMap<String, Changed>,
    gold_input: Option<&String>,
    asked: Option<&Option<BTreeSet<String>>>,
) -> KaratResult<(BTreeSet<String>, Option<String>)> {
    if let Some(None) = asked {
        return Ok((BTreeSet::new(), Some("a replay of the whole table".into())));
    }
    if let Some(i) = gold_input {
        return Ok((BTreeSet::new(), Some(format!("its input gold {i} changed"))));
    }
    if !g.incremental {
        return Ok((BTreeSet::new(), Some("not partitioned by date".into())));
    }
    let derived = gold::affected(lake, &plan.config, g, inputs).await?;
    if derived.whole.is_some() {
        return Ok((BTreeSet::new(), derived.whole));
    }
    let mut ps = derived.recompute;
    ps.extend(derived.blocked);
    if let Some(Some(f)) = asked {
        ps.extend(f.iter().cloned());
    }
    Ok((ps, None))
}

async fn current_version(lake: &Lake, zone: Zone, table: &str) -> KaratResult<Option<i64>> {
    let url = lake.url_of(&layout::table(zone, table));
    Ok(delta::open(&url, table)
        .await?
        .and_then(|t| t.version())
        .map(|v| v as i64))
}
