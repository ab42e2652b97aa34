//! `karat maintain`: keeps the lake's Delta tables cheap to read. Every run appends small files
//! (a replace-where rewrites a partition, each ledger write adds one); maintenance compacts
//! them with Delta OPTIMIZE, purges the deletion vectors OPTIMIZE leaves (a partition of one
//! file, or a file above the target size: their partitions are rewritten without the rows the
//! vectors delete, as Delta's `REORG TABLE … APPLY (PURGE)` does), and removes the files no
//! version younger than `[maintenance] vacuum_after` needs with VACUUM — silver, dead letters,
//! superseded rows, gold and the ledger's own tables. It holds the writer lease and is
//! recorded in the ledger as a run with each table's versions before and after (so `karat
//! restore` of an older replay is refused rather than half-done; restoring past the vacuum
//! horizon is not possible).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use deltalake::DeltaTable;
use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::error::{KaratError, KaratResult};
use crate::gold::fold;
use crate::lake::lookup::Reading;
use crate::lake::rewrite::{self, Keep, Rewrite};
use crate::lake::{Lake, deletion, delta, layout, lease};
use crate::ledger::{Ledger, RunRecord};

use super::plan::Plan;

/// What maintenance did (or, dry, would do) to one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableMaintenance {
    /// The table's folder in the lake.
    pub table: String,
    pub files_before: usize,
    pub files_after: usize,
    /// Files OPTIMIZE merged away (dry run: files in partitions holding more than one).
    pub files_compacted: u64,
    /// Files whose deletion vectors were purged, their partitions rewritten without the rows
    /// the vectors delete (dry run: files holding a vector now).
    pub files_purged: usize,
    /// Files VACUUM deleted (dry run: would delete).
    pub files_vacuumed: usize,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
}

/// The report of `karat maintain`.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceReport {
    pub run_id: String,
    pub dry_run: bool,
    pub tables: Vec<TableMaintenance>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Every Delta table of the lake that maintenance looks after.
fn folders(plan: &Plan) -> Vec<String> {
    let mut out = plan.data_tables();
    out.extend(crate::ledger::TABLES.iter().map(|n| layout::ledger(n)));
    out
}

/// Compacts and vacuums every table, holding the writer lease.
pub async fn maintain(plan: &Plan, lake: &Lake, dry_run: bool) -> KaratResult<MaintenanceReport> {
    let command = if dry_run {
        "karat maintain --dry-run"
    } else {
        "karat maintain"
    };
    lease::holding(
        lake,
        command,
        maintain_holding(plan, lake, dry_run, command),
    )
    .await
}

async fn maintain_holding(
    plan: &Plan,
    lake: &Lake,
    dry_run: bool,
    command: &str,
) -> KaratResult<MaintenanceReport> {
    let started_at = now();
    let run_id = uuid::Uuid::now_v7().to_string();
    let baselines = gold_versions(plan, lake).await;
    let mut tables = Vec::new();
    for folder in folders(plan) {
        if let Some(t) = maintain_table(lake, &folder, plan.config.vacuum_after, dry_run).await? {
            tables.push(t);
        }
    }
    if !dry_run {
        carry_baselines(plan, lake, baselines).await;
        record(lake, &run_id, &tables, &started_at, command).await?;
    }
    Ok(MaintenanceReport {
        run_id,
        dry_run,
        tables,
    })
}

/// The versions of each gold table and its inputs before maintenance (those that cannot be
/// read are left out: their baselines are not carried).
async fn gold_versions(plan: &Plan, lake: &Lake) -> Vec<(usize, fold::Versions)> {
    let mut out = Vec::new();
    for (i, g) in plan.gold.iter().enumerate() {
        if let Ok(v) = fold::Baseline::versions_of(lake, &plan.config, g).await {
            out.push((i, v));
        }
    }
    out
}

/// Carries each gold table's baseline over maintenance, which changes no rows (compaction,
/// purged deletion vectors, vacuum), so the next run folds its changes in rather than
/// recomputing the table whole.
async fn carry_baselines(plan: &Plan, lake: &Lake, before: Vec<(usize, fold::Versions)>) {
    let events = crate::events::Events::none();
    for (i, versions) in before {
        fold::Baseline::carry_over(lake, &plan.config, &plan.gold[i], &versions, &events).await;
    }
}

/// One table: OPTIMIZE, then VACUUM; `None` when the table does not exist yet.
async fn maintain_table(
    lake: &Lake,
    folder: &str,
    vacuum_after: std::time::Duration,
    dry_run: bool,
) -> KaratResult<Option<TableMaintenance>> {
    let url = lake.url_of(folder);
    let Some(table) = delta::open(&url, folder).await? else {
        return Ok(None);
    };
    let err = |e| KaratError::delta(folder, e);
    let files_before = table.get_file_uris().map_err(err)?.count();
    let version_before = table.version().map(|v| v as i64);
    let retention = chrono::Duration::from_std(vacuum_after)
        .map_err(|e| KaratError::Other(format!("[maintenance] vacuum_after: {e}")))?;
    if dry_run {
        let compactable = compactable_files(&table)?;
        let purgeable = with_vectors(&table, folder)
            .await?
            .map_or(0, |(_, w)| w.files);
        let (_, vacuum) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_dry_run(true)
            .await
            .map_err(err)?;
        return Ok(Some(TableMaintenance {
            table: folder.to_string(),
            files_before,
            files_after: files_before,
            files_compacted: compactable,
            files_purged: purgeable,
            files_vacuumed: vacuum.files_deleted.len(),
            version_before,
            version_after: version_before,
        }));
    }
    let schema = table.snapshot().map_err(err)?.snapshot().arrow_schema();
    let (table, optimized) = table
        .optimize()
        .with_writer_properties(crate::lake::encoding::writer_properties(&schema))
        .await
        .map_err(err)?;
    let (table, purged) = purge_vectors(table, &url, folder).await?;
    let (table, vacuum) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await
        .map_err(err)?;
    Ok(Some(TableMaintenance {
        table: folder.to_string(),
        files_before,
        files_after: table.get_file_uris().map_err(err)?.count(),
        files_compacted: optimized.num_files_removed,
        files_purged: purged,
        files_vacuumed: vacuum.files_deleted.len(),
        version_before,
        version_after: table.version().map(|v| v as i64),
    }))
}

/// The live files of a table that carry a deletion vector, and their partitions.
#[derive(Debug, Default)]
struct WithVectors {
    files: usize,
    partitions: BTreeSet<String>,
}

/// [`WithVectors`] of `table`, with a reading of it; None unless it is a plain table
/// partitioned by one column with deletion vectors on (the only tables karat writes vectors
/// into).
async fn with_vectors(
    table: &DeltaTable,
    folder: &str,
) -> KaratResult<Option<(Reading, WithVectors)>> {
    if !deletion::enabled(table) {
        return Ok(None);
    }
    let Some(reading) = Reading::of_table(table.clone(), folder) else {
        return Ok(None);
    };
    let mut out = WithVectors::default();
    for file in reading.files(None).await? {
        let partition = reading.partition_of(&file);
        if let (Some(_), Some(p)) = (file.deletion_vector_descriptor(), partition) {
            out.files += 1;
            out.partitions.insert(p);
        }
    }
    Ok(Some((reading, out)))
}

/// Rewrites, in one commit, the partitions of `table` (at `url`) whose files still carry a
/// deletion vector, keeping every live row: the files then hold exactly the table's rows and
/// readers apply no vector. The table after it, and how many files had a vector.
async fn purge_vectors(
    table: DeltaTable,
    url: &url::Url,
    folder: &str,
) -> KaratResult<(DeltaTable, usize)> {
    let Some((reading, found)) = with_vectors(&table, folder).await? else {
        return Ok((table, 0));
    };
    if found.partitions.is_empty() {
        return Ok((table, 0));
    }
    let every_row: Keep =
        Arc::new(|b: &RecordBatch| Ok(BooleanArray::from(vec![true; b.num_rows()])));
    let rewrite = Rewrite {
        partitions: found.partitions,
        keep: every_row,
        added: BTreeMap::new(),
        found: None,
    };
    let metadata = vec![(
        "karat.operation".to_string(),
        serde_json::json!("maintain: purge deletion vectors"),
    )];
    rewrite::replace_partitions(
        table,
        folder,
        &reading.schema,
        &reading.partition_by,
        rewrite,
        metadata,
    )
    .await?;
    let table = delta::open(url, folder)
        .await?
        .ok_or_else(|| KaratError::Other(format!("{folder}: gone during maintenance")))?;
    Ok((table, found.files))
}

/// Files in partitions that hold more than one (what OPTIMIZE would merge).
fn compactable_files(table: &deltalake::DeltaTable) -> KaratResult<u64> {
    let mut per_dir: BTreeMap<String, u64> = BTreeMap::new();
    let uris = table
        .get_file_uris()
        .map_err(|e| KaratError::delta("listing files", e))?;
    for uri in uris {
        let dir = uri
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        *per_dir.entry(dir).or_default() += 1;
    }
    Ok(per_dir.values().filter(|n| **n > 1).sum())
}

/// The maintenance run in the ledger, with the versions it made.
async fn record(
    lake: &Lake,
    run_id: &str,
    tables: &[TableMaintenance],
    started_at: &str,
    command: &str,
) -> KaratResult<()> {
    let ledger = Ledger::new(lake);
    let versions: Vec<crate::ledger::VersionRecord> = tables
        .iter()
        .filter(|t| t.version_after != t.version_before && !t.table.starts_with("_karat/"))
        .map(|t| crate::ledger::VersionRecord {
            run_id: run_id.to_string(),
            table: t.table.clone(),
            before: t.version_before,
            after: t.version_after,
        })
        .collect();
    ledger.append_versions(&versions).await?;
    ledger
        .append_run(&RunRecord::operation(
            run_id,
            crate::ledger::Trigger::Maintain,
            started_at,
            command,
        ))
        .await
}
