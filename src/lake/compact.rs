//! Compacting a table's crowded partitions right after karat appends to it, as Delta's
//! auto-compaction does. The ledger's tables gain a file every run, and the dead letters a file
//! in every partition a run's rejected rows fall in (with re-sends, most of them): left alone,
//! a daily run reads hundreds of small files after a month (432 dead-letter files on day 30 of
//! the 30 × 100k bench), and every read pays per file. Silver and the superseded rows bound
//! their own files when they delete in place ([`super::deletion`]); `karat maintain` compacts
//! everything.
//!
//! The compaction is delta-rs's OPTIMIZE limited to the crowded partitions: a commit of its own
//! that changes no rows (`dataChange: false`), so a crash before or after it leaves the same
//! rows, and a reader at any version sees each row once.

use std::collections::BTreeMap;

use deltalake::kernel::LogicalFileView;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::{FilterOp, FilterValue};
use futures::TryStreamExt;
use url::Url;

use super::{delta, encoding};
use crate::error::{KaratError, KaratResult};

/// Files a partition (or an unpartitioned table) holds before an append compacts it.
pub const CROWDED: usize = 8;

/// Compacts the partitions of the table at `url` that hold [`CROWDED`] files or more (the
/// whole table when it is not partitioned), the commit carrying `metadata`; the version of that
/// commit (None: none was crowded, or the table is partitioned by more than one column).
pub async fn crowded_partitions(
    url: &Url,
    label: &str,
    metadata: Vec<(String, serde_json::Value)>,
) -> KaratResult<Option<i64>> {
    let err = |e| KaratError::delta(format!("{label}: compacting"), e);
    let Some(table) = delta::open(url, label).await? else {
        return Ok(None);
    };
    let snapshot = table.snapshot().map_err(err)?.snapshot().clone();
    let columns = snapshot.metadata().partition_columns().to_vec();
    if columns.len() > 1 {
        return Ok(None);
    }
    let files: Vec<LogicalFileView> = snapshot
        .file_views(table.log_store().as_ref(), None)
        .try_collect()
        .await
        .map_err(err)?;
    let mut per_partition: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for f in &files {
        let value = columns
            .first()
            .and_then(|c| f.partition_values_map().get(c).cloned().flatten());
        *per_partition.entry(value).or_default() += 1;
    }
    // a null partition cannot be named in a filter: it waits for `karat maintain`
    let crowded: Vec<&str> = per_partition
        .iter()
        .filter(|(_, n)| **n >= CROWDED)
        .filter_map(|(v, _)| v.as_deref())
        .collect();
    let filters = match columns.first() {
        None if per_partition.values().any(|n| *n >= CROWDED) => Vec::new(),
        Some(c) if !crowded.is_empty() => {
            vec![(c.as_str(), FilterOp::In, FilterValue::Set(crowded))]
        }
        _ => return Ok(None),
    };
    let schema = snapshot.arrow_schema();
    let (table, _) = table
        .optimize()
        .with_filters(&filters)
        .with_writer_properties(encoding::writer_properties(&schema))
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await
        .map_err(err)?;
    Ok(table.version().map(|v| v as i64))
}
