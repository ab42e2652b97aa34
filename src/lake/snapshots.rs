//! Delta table states read once a process, then brought forward.
//!
//! Opening a Delta table reads its log from the last checkpoint and lists every live file with
//! its statistics: 10–17 ms for silver, its dead letters or superseded rows at thirty days of
//! the daily bench. A run opens each of them five or six times (the merge's lookup, the writes,
//! the counts after them, the accounting, gold's inputs) and each ledger table twice, so these
//! opens grew with history to a quarter of a second of a late daily run. Here the state an
//! open read last is kept per table address, and the next open brings it forward with
//! delta-rs's incremental update: it lists the log past the kept version and merges only the
//! commits since (or reads a checkpoint written since) with the kept file list. What it returns
//! is what a fresh open returns: the table's latest version, commits of other processes
//! included.
//!
//! A kept state is used only while it is still its table's: the commit of its version must
//! be the file seen when it was kept (same size and entity tag, which on a local lake holds
//! the file's inode and modification time), before and after it is brought forward. A table
//! deleted and written again at the same address, or whose old commits were cleaned up, is
//! opened afresh. The cache is bounded by the files the kept states list ([`FILES`]): a table
//! listing more is not kept, and past the budget the cache starts over.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use deltalake::DeltaTable;
use deltalake::logstore::commit_uri_from_version;
use object_store::ObjectStoreExt;
use url::Url;

/// Files listed by the kept states at most, over every table (each with its statistics, a
/// few hundred bytes).
pub const FILES: usize = 200_000;

/// The commit file a kept state was read at, as the store described it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CommitSeen {
    version: u64,
    size: u64,
    e_tag: Option<String>,
}

/// A table's state as read last, the commit it was read at and how many files it lists.
struct Kept {
    table: DeltaTable,
    commit: CommitSeen,
    files: usize,
}

#[derive(Default)]
struct Cache {
    by_table: HashMap<String, Kept>,
    files: usize,
}

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    super::process_wide(&CACHE)
}

/// The cache's key for `url`: its address without a trailing slash.
fn address(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// How the store describes the commit of `version` of `table` now (None: not readable).
async fn commit_at(table: &DeltaTable, version: u64) -> Option<CommitSeen> {
    let store = table.log_store().object_store(None);
    let meta = store
        .head(&commit_uri_from_version(Some(version)))
        .await
        .ok()?;
    Some(CommitSeen {
        version,
        size: meta.size,
        e_tag: meta.e_tag,
    })
}

/// Keeps `table`'s state as the latest one read of the table at `url`.
pub async fn keep(url: &Url, table: &DeltaTable) {
    let seen = match table.version() {
        Some(v) => commit_at(table, v).await,
        None => None,
    };
    match seen {
        Some(commit) => keep_seen(url, table, commit),
        None => forget(url),
    }
}

/// Keeps `table`, read at `commit`, unless a later version of it is kept already (another
/// task's open or write of the same table).
fn keep_seen(url: &Url, table: &DeltaTable, commit: CommitSeen) {
    let files = table
        .snapshot()
        .map(|s| s.log_data().num_files())
        .unwrap_or(usize::MAX);
    let mut all = cache();
    let key = address(url);
    if all
        .by_table
        .get(&key)
        .is_some_and(|k| k.commit.version > commit.version)
    {
        return;
    }
    if let Some(old) = all.by_table.remove(&key) {
        all.files -= old.files;
    }
    if files > FILES {
        return;
    }
    // past the budget, start over; the states are dropped once the lock is released
    let dropped = if all.files + files > FILES {
        std::mem::take(&mut *all)
    } else {
        Cache::default()
    };
    all.files += files;
    let table = table.clone();
    all.by_table.insert(
        key,
        Kept {
            table,
            commit,
            files,
        },
    );
    drop(all);
    drop(dropped);
}

/// Drops what is kept of the table at `url` (it is gone, or could not be brought forward).
pub fn forget(url: &Url) {
    let mut all = cache();
    if let Some(old) = all.by_table.remove(&address(url)) {
        all.files -= old.files;
    }
}

/// The table at `url` at its latest version, brought forward from the state kept of it;
/// None when nothing is kept, the kept state is no longer its table's, or the update failed
/// (the caller then opens the table afresh).
pub async fn brought_forward(url: &Url) -> Option<DeltaTable> {
    let kept = cache()
        .by_table
        .get(&address(url))
        .map(|k| (k.table.clone(), k.commit.clone()));
    let (mut table, commit) = kept?;
    let still_its_table = |now: Option<CommitSeen>| now.as_ref() == Some(&commit);
    if !still_its_table(commit_at(&table, commit.version).await) {
        forget(url);
        return None;
    }
    let updated = table.update_incremental(None).await;
    // and still after the update: a table written again meanwhile would have had its commits
    // applied to the kept state
    if updated.is_err() || !still_its_table(commit_at(&table, commit.version).await) {
        forget(url);
        return None;
    }
    if table.version() == Some(commit.version) {
        keep_seen(url, &table, commit);
    } else {
        keep(url, &table).await;
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::lake::delta;

    /// Commits `values` to the table at `url` through a handle of its own, as another process
    /// would (not through [`delta::open`]).
    async fn commit_elsewhere(url: &Url, values: &[i64]) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let rows = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .unwrap();
        std::fs::create_dir_all(url.to_file_path().unwrap()).unwrap();
        let table = DeltaTable::try_from_url(url.clone()).await.unwrap();
        table.write(vec![rows]).await.unwrap();
    }

    /// What a reader opening the table sees: its version and rows.
    async fn seen(url: &Url) -> (Option<u64>, i64) {
        let table = delta::open(url, "t").await.unwrap().unwrap();
        let ctx = delta::session();
        delta::register_table(&ctx, "t", table.clone(), "t")
            .await
            .unwrap();
        let out = delta::query(&ctx, "SELECT COUNT(*) AS n FROM t", "test")
            .await
            .unwrap();
        let n = out[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        (table.version(), n)
    }

    #[tokio::test]
    async fn an_open_sees_other_writers_commits_and_a_table_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path().join("t")).unwrap();
        commit_elsewhere(&url, &[1, 2]).await;
        assert_eq!(seen(&url).await, (Some(0), 2));
        assert!(
            cache().by_table.contains_key(&address(&url)),
            "the state read is kept"
        );
        // another writer's commit: brought forward from the kept state
        commit_elsewhere(&url, &[3]).await;
        assert_eq!(seen(&url).await, (Some(1), 3));
        // the table deleted and written again up to the same version: the kept state is not
        // its state any more (brought forward, it would still count 3 rows)
        std::fs::remove_dir_all(dir.path().join("t")).unwrap();
        commit_elsewhere(&url, &[7]).await;
        commit_elsewhere(&url, &[8, 9, 10, 11]).await;
        assert_eq!(seen(&url).await, (Some(1), 5));
        // and gone: nothing to open, nothing kept
        std::fs::remove_dir_all(dir.path().join("t")).unwrap();
        assert!(delta::open(&url, "t").await.unwrap().is_none());
        assert!(!cache().by_table.contains_key(&address(&url)));
    }
}
