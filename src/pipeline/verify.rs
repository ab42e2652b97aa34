//! `karat verify`: the silver invariants recomputed from the Delta tables and the bronze
//! manifests alone, for every silver table: each processed bronze batch balances
//! (`records = silver + dead letters + superseded`) and no key is held twice.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::bronze::manifest;
use crate::error::KaratResult;
use crate::lake::Lake;
use crate::ledger::{Ledger, RunRecord, RunStatus, Trigger};
use crate::silver::accounting::{self, TableBalance};
use crate::silver::store::Store;

use super::plan::Plan;

/// The verification of a whole lake.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub tables: Vec<TableVerification>,
}

/// One silver table's accounting.
#[derive(Debug, Clone, Serialize)]
pub struct TableVerification {
    #[serde(flatten)]
    pub balance: TableBalance,
    /// Batches landed in bronze that the table has not processed yet (not counted).
    pub pending: usize,
    /// When its key was edited so that the stored rows may hold a key twice: what to do
    /// ([`super::key_change`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_changed: Option<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.balance.ok())
    }

    /// One line per table, then one per problem.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            let b = &t.balance;
            let records: u64 = b.batches.iter().map(|x| x.records).sum();
            let bad = b.batches.iter().filter(|x| !x.balanced()).count();
            out.push(format!(
                "{} {}: {} batch(es), {records} record(s), {bad} unbalanced, {} duplicate key(s){}",
                if b.ok() { "ok    " } else { "FAILED" },
                b.table,
                b.batches.len(),
                b.duplicate_keys.len(),
                if t.pending > 0 {
                    format!(", {} batch(es) not processed yet", t.pending)
                } else {
                    String::new()
                }
            ));
            for e in b.errors() {
                out.push(format!("  {e}"));
            }
            if let Some(why) = &t.key_changed {
                out.push(format!("  {why}"));
            }
        }
        out
    }
}

/// Records the outcome in the ledger's runs (trigger `verify`): a failing verification pages
/// (see [`crate::alert::rules`]) until a later one passes. A pass after a pass writes nothing,
/// so verifying a healthy lake stays a read.
pub async fn record(lake: &Lake, v: &Verification, started_at: &str) -> KaratResult<()> {
    let ledger = Ledger::new(lake);
    if v.ok() {
        let runs = ledger.runs().await?;
        let last = runs.iter().rev().find(|r| r.trigger == Trigger::Verify);
        if last.is_none_or(|r| r.status == RunStatus::Ok) {
            return Ok(());
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let mut run = RunRecord::operation(&id, Trigger::Verify, started_at, "karat verify");
    if !v.ok() {
        run.status = RunStatus::Failed;
        let failed: Vec<String> = v
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("FAILED"))
            .map(|l| l.trim_start_matches("FAILED").trim().to_string())
            .collect();
        run.error = Some(failed.join("; "));
    }
    ledger.append_run(&run).await
}

/// Verifies every silver table of the plan.
pub async fn verify(plan: &Plan, lake: &Lake) -> KaratResult<Verification> {
    let ledger = Ledger::new(lake);
    let mut tables = Vec::new();
    let contracts = ledger.contracts().await?;
    for (name, contract) in &plan.contracts {
        let records = ledger.batches(name).await?;
        let manifests = manifest::list(lake, &contract.spec.from).await?;
        let key = &crate::silver::contract_doc::ContractDoc::of(name, &contract.spec);
        let repeating = super::key_change::repeating(name, key, &records, &contracts, &manifests);
        let key_changed = match repeating {
            Some(r) => {
                let store = Store::open(lake, contract.clone()).await?;
                let partitions = store.partitions().await?;
                Some(super::key_change::refusal(name, key, &r, &partitions).to_string())
            }
            None => None,
        };
        let processed: BTreeSet<String> = records.into_iter().map(|b| b.batch_id).collect();
        let (done, pending): (Vec<_>, Vec<_>) = manifests
            .into_iter()
            .partition(|m| processed.contains(&m.batch_id));
        let balance =
            accounting::balance(lake, contract, &done, accounting::KeysChecked::All).await?;
        tables.push(TableVerification {
            balance,
            pending: pending.len(),
            key_changed,
        });
    }
    Ok(Verification { tables })
}
