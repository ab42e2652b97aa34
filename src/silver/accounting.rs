//! Row accounting per bronze batch, recomputed from the Delta tables and the bronze manifests
//! alone: for every batch a silver table has processed,
//! `manifest records = silver rows from it + dead letters from it + its rows superseded`,
//! and no key is held twice. This is what `karat verify` and the end of every run check.
//!
//! A file holding one batch alone (every file an append writes for a run of one batch, and
//! every file a deletion vector leaves in place) is counted from the Delta log: its record
//! count less the rows its vector deletes. Files holding several batches are read for their
//! batch column (or, when they are much of the table, the batches they may hold are counted
//! by a query); so a daily run's check reads little data of earlier days.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

use super::contract::Contract;
use super::key_check::KeyCheck;
use super::store::sql_list;
use crate::bronze::Manifest;
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::lake::{Lake, layout};
use crate::lake::{delta, stats};

/// Where the records of one bronze batch are, for one silver table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchBalance {
    pub batch_id: String,
    /// Records in the bronze manifest.
    pub records: u64,
    pub silver: u64,
    pub dead: u64,
    pub superseded: u64,
}

impl BatchBalance {
    pub fn balanced(&self) -> bool {
        self.records == self.silver + self.dead + self.superseded
    }

    /// The failure, worded for an error or a report.
    pub fn problem(&self) -> String {
        format!(
            "manifest has {} record(s), but silver {} + dead letters {} + superseded {} = {}",
            self.records,
            self.silver,
            self.dead,
            self.superseded,
            self.silver + self.dead + self.superseded
        )
    }
}

/// The accounting of one silver table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableBalance {
    pub table: String,
    pub batches: Vec<BatchBalance>,
    /// Keys held more than once, rendered `k1=v1,k2=v2 (n rows)`; at most 20.
    pub duplicate_keys: Vec<String>,
}

impl TableBalance {
    pub fn ok(&self) -> bool {
        self.duplicate_keys.is_empty() && self.batches.iter().all(BatchBalance::balanced)
    }

    /// Every failure as a typed error naming the table and the batch.
    pub fn errors(&self) -> Vec<KaratError> {
        let mut out: Vec<KaratError> = self
            .batches
            .iter()
            .filter(|b| !b.balanced())
            .map(|b| KaratError::Accounting {
                table: self.table.clone(),
                batch: b.batch_id.clone(),
                detail: b.problem(),
            })
            .collect();
        for k in &self.duplicate_keys {
            out.push(KaratError::Other(format!(
                "table {}: key {k} is held more than once",
                self.table
            )));
        }
        out
    }
}

/// Which keys [`balance`] checks for being held twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysChecked {
    /// Every key the table holds (`karat verify`).
    All,
    /// None: the caller checks the keys it changed ([`duplicates_of`], a run).
    ByCaller,
}

/// Counts rows per batch in a table's silver, dead-letter and superseded tables and compares
/// them with the manifests; with [`KeysChecked::All`], also checks that the table holds no
/// key twice.
pub async fn balance(
    lake: &Lake,
    contract: &Arc<Contract>,
    manifests: &[Manifest],
    keys: KeysChecked,
) -> KaratResult<TableBalance> {
    let table = &contract.table;
    let ctx = delta::session();
    let ids: BTreeSet<String> = manifests.iter().map(|m| m.batch_id.clone()).collect();
    let silver_path = layout::table(Zone::Silver, table);
    let dead_path = layout::dead_letters(table);
    let sup_path = layout::superseded(table);
    // three tables, counted side by side
    let (silver, dead, sup) = futures::try_join!(
        per_batch_of(&ctx, lake, &silver_path, "s", "_batch_id", &ids, table),
        per_batch_of(&ctx, lake, &dead_path, "d", "batch_id", &ids, table),
        per_batch_of(&ctx, lake, &sup_path, "u", "_batch_id", &ids, table),
    )?;
    let has_silver = silver.is_some();
    let silver = silver.unwrap_or_default();
    let (dead, sup) = (dead.unwrap_or_default(), sup.unwrap_or_default());
    let batches = manifests
        .iter()
        .map(|m| BatchBalance {
            batch_id: m.batch_id.clone(),
            records: m.records,
            silver: silver.get(&m.batch_id).copied().unwrap_or(0),
            dead: dead.get(&m.batch_id).copied().unwrap_or(0),
            superseded: sup.get(&m.batch_id).copied().unwrap_or(0),
        })
        .collect();
    let duplicate_keys =
        if keys == KeysChecked::All && has_silver && !contract.key_indexes.is_empty() {
            duplicate_keys(&ctx, contract).await?
        } else {
            Vec::new()
        };
    Ok(TableBalance {
        table: table.clone(),
        batches,
        duplicate_keys,
    })
}

/// Keys among those of `keys` that the silver table holds more than once; at most
/// [`super::key_check::SHOWN`], rendered as in [`TableBalance::duplicate_keys`].
pub async fn duplicates_of(
    lake: &Lake,
    contract: &Contract,
    keys: KeyCheck,
) -> KaratResult<Vec<String>> {
    let ctx = delta::session();
    let url = lake.url_of(&layout::table(Zone::Silver, &contract.table));
    if keys.is_empty() || !delta::register(&ctx, "s", &url).await? {
        return Ok(Vec::new());
    }
    keys.duplicates(&ctx, &contract.table).await
}

/// Rows per batch among `ids` in one of a silver table's Delta tables (`path` in the lake,
/// registered in `ctx` as `name`; `column` its batch column); `None` without the table. From
/// the Delta log where a file holds one batch alone ([`stats::counts_by_value`]), by a query
/// for the batches it leaves unknown.
async fn per_batch_of(
    ctx: &SessionContext,
    lake: &Lake,
    path: &str,
    name: &str,
    column: &str,
    ids: &BTreeSet<String>,
    table: &str,
) -> KaratResult<Option<BTreeMap<String, u64>>> {
    let Some(delta_table) = delta::open(&lake.url_of(path), path).await? else {
        return Ok(None);
    };
    let log = stats::counts_by_value(&delta_table, path, column, ids).await?;
    delta::register_table(ctx, name, delta_table, path).await?;
    let mut counts = log.counted;
    if !log.unknown.is_empty() {
        let q = format!(
            "SELECT {column}, COUNT(*) FROM {name} WHERE {column} IN ({}) GROUP BY 1",
            sql_list(&log.unknown)
        );
        let rows = delta::query(ctx, &q, &format!("accounting of {table}")).await?;
        counts.extend(per_batch(&rows));
    }
    Ok(Some(counts))
}

fn per_batch(rows: &[RecordBatch]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for b in rows {
        let ids = delta::utf8(b.column(0));
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_string(), n.value(i) as u64);
        }
    }
    out
}

/// Keys the silver table (registered as `s`) holds more than once, looked for in the whole
/// table; at most [`super::key_check::SHOWN`].
async fn duplicate_keys(ctx: &SessionContext, contract: &Contract) -> KaratResult<Vec<String>> {
    match KeyCheck::new(contract)? {
        Some(check) => check.duplicates_in_table(ctx, &contract.table).await,
        None => Ok(Vec::new()),
    }
}
