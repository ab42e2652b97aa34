//! The check, right after a keyed update writes, that no key it looked up is held twice,
//! reading only what the update could have changed.
//!
//! A daily run's lookup reads every live file of silver for the new rows' keys
//! ([`super::store::Store::versions`]), so it knows every stored row of those keys and its
//! place (file and row). Every row of such a key in the table as written is then either one of
//! those rows that no deletion vector of the new version deletes, or a row of a file that was
//! not live when the lookup read (the update's own appends, or anything else added since).
//! So the check reads the new version's file list and deletion vectors, and the key columns of
//! the files added since; a key met twice among those rows is held twice, and a key held twice
//! is met twice. This replaced a second scan of every key the table holds after each run (as
//! long as the lookup's, and growing with history); `karat verify` still scans them all.
//!
//! Later groups of the same run cannot make an earlier group's key twice without holding it
//! among their own keys, which their own check covers.

use std::collections::BTreeSet;
use std::sync::Arc;

use deltalake::arrow::array::{BooleanArray, RecordBatch, UInt64Array};
use deltalake::arrow::compute::take_record_batch;

use super::contract::Contract;
use super::key_check::{KeyCheck, arrow};
use super::store::Store;
use crate::error::{KaratError, KaratResult};
use crate::lake::lookup::{self, Found};

/// The stored rows of some keys as a lookup of every live file found them, before a write.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    /// Every file the lookup read, by name.
    pub files: BTreeSet<String>,
    /// The rows of the keys looked up, with their key columns, file by file.
    pub found: Vec<FoundKeys>,
}

/// The rows of one file a lookup found, and their key columns (a batch in the rows' order).
#[derive(Debug, Clone)]
pub struct FoundKeys {
    /// The file's name ([`lookup::file_name`]).
    pub file: String,
    /// The rows found (physical, from 0), ascending.
    pub rows: Vec<u64>,
    /// Their key columns, a row each.
    pub keys: RecordBatch,
}

impl Scanned {
    /// What a lookup of `files` found: the key columns of `found`'s whole rows.
    pub fn of(
        contract: &Contract,
        files: BTreeSet<String>,
        found: &[Found],
    ) -> KaratResult<Scanned> {
        let found = found
            .iter()
            .map(|f| {
                let keys = f.values.project(&contract.key_indexes).map_err(|e| {
                    KaratError::arrow(format!("key columns of {}", contract.table), e)
                })?;
                Ok(FoundKeys {
                    file: lookup::file_name(&f.at.file.path()).to_string(),
                    rows: f.at.rows.clone(),
                    keys,
                })
            })
            .collect::<KaratResult<Vec<_>>>()?;
        Ok(Scanned { files, found })
    }
}

/// Keys among those `scanned` looked up (and any the files added since hold) that the silver
/// table as `after` opened it holds more than once, rendered as
/// [`super::accounting::TableBalance::duplicate_keys`]; None when silver cannot be read file
/// by file (the caller then scans every key).
pub async fn held_twice(
    after: &Store,
    contract: &Contract,
    scanned: Scanned,
) -> KaratResult<Option<Vec<String>>> {
    let (Some(reading), Some(check)) = (after.reading(), KeyCheck::new(contract)?) else {
        return Ok(None);
    };
    let files = reading.files(None).await?;
    let live = lookup::names(&files);
    let mut deleted = reading.deleted().await?;
    let mut keys = Vec::new();
    for f in scanned.found.into_iter().filter(|f| live.contains(&f.file)) {
        let gone: BTreeSet<u64> = deleted
            .remove(&f.file)
            .unwrap_or_default()
            .iter()
            .copied()
            .collect();
        keys.push(still_there(&f, &gone).map_err(arrow(&contract.table))?);
    }
    let added: Vec<_> = files
        .into_iter()
        .filter(|f| !scanned.files.contains(lookup::file_name(&f.path())))
        .collect();
    let names = super::store::key_names(contract);
    let every: lookup::Wanted =
        Arc::new(|b: &RecordBatch| Ok(BooleanArray::from(vec![true; b.num_rows()])));
    for f in reading
        .find_deleting(added, deleted, &names, every, false)
        .await?
    {
        keys.push(f.values);
    }
    check
        .duplicates_among(after.session(), &contract.table, &keys)
        .await
        .map(Some)
}

/// The found rows of `f` that `gone` (the file's deletion vector now) does not delete.
fn still_there(
    f: &FoundKeys,
    gone: &BTreeSet<u64>,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let kept: Vec<u64> = (0..f.rows.len() as u64)
        .filter(|i| !gone.contains(&f.rows[*i as usize]))
        .collect();
    take_record_batch(&f.keys, &UInt64Array::from(kept))
}
