//! `karat rebuild --into DIR`: the from-scratch rebuild every replay must equal. The lake's
//! bronze batches are copied into an empty lake at DIR and processed there in one run under the
//! current contract — the same code path as any run, on an empty lake — then every silver,
//! dead-letter, superseded and gold table of the two lakes is compared row for row (as
//! multisets, leaving out only which run wrote a dead letter). Equal means the lake is what its
//! bronze and its contracts say it should be: no row lost, none counted twice. A batch last
//! processed under an older contract may legitimately differ until it is replayed: the report
//! counts those per table.

use serde::Serialize;

use super::plan::Plan;
use super::report::RunReport;
use super::run::{SilverMode, Work, execute};
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use deltalake::arrow::datatypes::Schema;

use crate::lake::{Lake, delta, layout};
use crate::ledger::Trigger;

/// Columns that say which run wrote a row, not what the row is.
const VOLATILE: &[&str] = &["run_id"];

/// One table of both lakes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDiff {
    /// The table's folder (`silver/orders`, `dead_letters/orders`, …).
    pub table: String,
    pub rows: u64,
    pub rebuilt_rows: u64,
    /// Rows the lake holds that the rebuild does not (counted with multiplicity).
    pub only_here: u64,
    /// Rows the rebuild holds that the lake does not.
    pub only_rebuilt: u64,
    /// Columns only the lake has (dropped by a later contract: not compared).
    pub columns_only_here: Vec<String>,
    /// Columns only the rebuild has: values the lake lacks (a difference).
    pub columns_only_rebuilt: Vec<String>,
}

impl TableDiff {
    pub fn equal(&self) -> bool {
        self.only_here == 0
            && self.only_rebuilt == 0
            && self.rows == self.rebuilt_rows
            && self.columns_only_rebuilt.is_empty()
    }
}

/// What `karat rebuild` did and found.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub into: String,
    /// Bronze objects copied (batches and their manifests).
    pub objects: usize,
    pub run: RunReport,
    pub tables: Vec<TableDiff>,
    /// Per silver table, the bronze batches last processed under an older contract.
    pub older_contract: Vec<(String, usize)>,
}

impl RebuildReport {
    /// Whether every table equals its rebuild.
    pub fn equal(&self) -> bool {
        self.tables.iter().all(TableDiff::equal)
    }

    /// One line per table.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "rebuilt {} bronze object(s) into {} (run {} {})",
            self.objects,
            self.into,
            self.run.run_id,
            self.run.status.as_str()
        )];
        for (t, n) in &self.older_contract {
            out.push(format!(
                "note   {t}: {n} batch(es) last processed under an older contract: they may \
                 differ from the rebuild until replayed (karat replay {t} --from … --to …)"
            ));
        }
        for t in &self.tables {
            out.push(format!(
                "{} {}: {} row(s), rebuilt {}{}",
                if t.equal() { "equal " } else { "DIFFER" },
                t.table,
                t.rows,
                t.rebuilt_rows,
                if t.only_here == 0 && t.only_rebuilt == 0 {
                    String::new()
                } else {
                    format!(
                        "; {} only here, {} only in the rebuild",
                        t.only_here, t.only_rebuilt
                    )
                }
            ));
            if !t.columns_only_rebuilt.is_empty() {
                out.push(format!(
                    "       columns only in the rebuild: {}",
                    t.columns_only_rebuilt.join(", ")
                ));
            }
            if !t.columns_only_here.is_empty() {
                out.push(format!(
                    "       columns only here (an older contract's, not compared): {}",
                    t.columns_only_here.join(", ")
                ));
            }
        }
        out
    }
}

/// Rebuilds `lake` from its bronze into the empty lake `into` and compares the two.
pub async fn rebuild(plan: &Plan, lake: &Lake, into: &Lake) -> KaratResult<RebuildReport> {
    refuse_non_empty(into).await?;
    let objects = copy_bronze(lake, into).await?;
    let run = execute(
        plan,
        into,
        Trigger::Rebuild,
        "karat rebuild",
        every_batch(plan),
        &Events::none(),
    )
    .await?;
    let mut tables = Vec::new();
    for folder in plan.data_tables() {
        tables.push(compare(lake, into, &folder).await?);
    }
    Ok(RebuildReport {
        into: into.root().to_string(),
        objects,
        run,
        tables,
        older_contract: older_contract(plan, lake).await?,
    })
}

/// Per silver table, batches whose latest processing used another contract than the current.
async fn older_contract(plan: &Plan, lake: &Lake) -> KaratResult<Vec<(String, usize)>> {
    let ledger = crate::ledger::Ledger::new(lake);
    let mut out = Vec::new();
    for (table, contract) in &plan.contracts {
        let mut latest: std::collections::BTreeMap<String, String> = Default::default();
        for b in ledger.batch_history(table).await? {
            latest.insert(b.batch_id, b.contract);
        }
        let n = latest
            .values()
            .filter(|c| **c != contract.fingerprint)
            .count();
        if n > 0 {
            out.push((table.clone(), n));
        }
    }
    Ok(out)
}

/// A rebuild writes only into an empty lake: never over another one.
async fn refuse_non_empty(into: &Lake) -> KaratResult<()> {
    if into.list("").await?.is_empty() {
        return Ok(());
    }
    Err(KaratError::Usage(format!(
        "rebuild --into {}: not empty; a rebuild only writes into an empty folder",
        into.root()
    )))
}

/// Copies every bronze object (batches, manifests, quarantine markers) as it is.
async fn copy_bronze(lake: &Lake, into: &Lake) -> KaratResult<usize> {
    let objects = lake.list(layout::BRONZE).await?;
    for o in &objects {
        let path = o.location.to_string();
        into.put(&path, lake.get(&path).await?).await?;
    }
    Ok(objects.len())
}

/// Every silver table processes every batch it has not seen (here: all of them).
fn every_batch(plan: &Plan) -> Work {
    Work {
        silver: plan
            .silver_tables()
            .map(|t| (t.name.clone(), SilverMode::New))
            .collect(),
        ..Work::default()
    }
}

/// The rows of `folder` in both lakes as multisets over the columns both have (but
/// [`VOLATILE`] ones): counts and `EXCEPT ALL` both ways. A column only the rebuild has is data
/// the lake lacks; one only the lake has is a column an older contract dropped.
async fn compare(lake: &Lake, into: &Lake, folder: &str) -> KaratResult<TableDiff> {
    let ctx = delta::session();
    let (lh, lr) = (format!("{folder} (lake)"), format!("{folder} (rebuild)"));
    let here = delta::register_as(&ctx, "here", &lake.url_of(folder), &lh).await?;
    let there = delta::register_as(&ctx, "rebuilt", &into.url_of(folder), &lr).await?;
    let what = format!("comparing {folder} with its rebuild");
    let count = |table: &'static str, exists: bool| {
        let (ctx, what) = (ctx.clone(), what.clone());
        async move {
            if !exists {
                return Ok::<u64, KaratError>(0);
            }
            let b = delta::query(&ctx, &format!("SELECT COUNT(*) FROM {table}"), &what).await?;
            Ok(delta::first_u64(&b).unwrap_or(0))
        }
    };
    let mut d = TableDiff {
        table: folder.to_string(),
        rows: count("here", here).await?,
        rebuilt_rows: count("rebuilt", there).await?,
        only_here: 0,
        only_rebuilt: 0,
        columns_only_here: Vec::new(),
        columns_only_rebuilt: Vec::new(),
    };
    if !(here && there) {
        (d.only_here, d.only_rebuilt) = (d.rows, d.rebuilt_rows);
        return Ok(d);
    }
    let (sh, sr) = (
        delta::schema_of(&ctx, "here", &lh).await?,
        delta::schema_of(&ctx, "rebuilt", &lr).await?,
    );
    let names = |s: &Schema| -> Vec<String> {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| !VOLATILE.contains(&c.as_str()))
            .collect()
    };
    let (nh, nr) = (names(&sh), names(&sr));
    let common: Vec<String> = nr.iter().filter(|c| nh.contains(c)).cloned().collect();
    d.columns_only_here = nh.iter().filter(|c| !nr.contains(c)).cloned().collect();
    d.columns_only_rebuilt = nr.iter().filter(|c| !nh.contains(c)).cloned().collect();
    d.only_here =
        delta::count_except_all(&ctx, ("here", &sh), ("rebuilt", &sr), &common, &sr, &what).await?;
    d.only_rebuilt =
        delta::count_except_all(&ctx, ("rebuilt", &sr), ("here", &sh), &common, &sr, &what).await?;
    Ok(d)
}
