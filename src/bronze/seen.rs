//! The files a `kind = "files"` source's runs have read, known by path, size and modification
//! time (rsync's quick check): a run skips such a file without reading or hashing it again, so
//! its cost does not grow with the files the source folder keeps (a year of daily files was a
//! year of bytes hashed by every run). It is a cache, in `_karat/`: lost or stale, files are
//! read and hashed again, and the same bytes still land once, by their hash.
//!
//! File times are coarse (a clock tick; two seconds on some file systems), so a file whose time
//! is less than [`RACY`] before it was read could have been rewritten since under the same
//! time: it is read again by the next run, which then knows it (git's "racily clean" entries).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{KaratError, KaratResult};
use crate::lake::{Lake, layout};

/// How long before it was read a file must have been modified for its time to be trusted.
pub const RACY: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// One file as a run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFile {
    pub size: u64,
    /// Its modification time (RFC 3339, nanoseconds).
    pub modified: String,
    /// The batch its bytes are.
    pub batch_id: String,
    /// When it was read (RFC 3339), before its bytes were.
    pub read_at: String,
}

/// The files of one source, by path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SeenFiles {
    files: BTreeMap<String, SeenFile>,
    #[serde(skip)]
    changed: bool,
}

impl SeenFiles {
    /// The files `source`'s runs read (none when there is no cache yet).
    pub async fn load(lake: &Lake, source: &str) -> KaratResult<SeenFiles> {
        let path = layout::bronze_files_seen(source);
        let Some(bytes) = lake.get_opt(&path).await? else {
            return Ok(SeenFiles::default());
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| KaratError::Other(format!("reading {path}: {e}")))
    }

    /// Writes the cache back when a run read a file it did not know.
    pub async fn save(&self, lake: &Lake, source: &str) -> KaratResult<()> {
        if !self.changed {
            return Ok(());
        }
        let path = layout::bronze_files_seen(source);
        let bytes = serde_json::to_vec(self)
            .map_err(|e| KaratError::Other(format!("writing {path}: {e}")))?;
        lake.put(&path, bytes.into()).await
    }

    /// Whether the file at `path`, of `size` bytes modified at `modified`, is one read before
    /// whose bytes are a batch of `known`; the batch then.
    pub fn unchanged(
        &self,
        path: &str,
        size: u64,
        modified: Option<&str>,
        known: &HashSet<String>,
    ) -> Option<&str> {
        let f = self.files.get(path)?;
        let trusted = f.size == size
            && Some(f.modified.as_str()) == modified
            && known.contains(&f.batch_id)
            && settled(&f.modified, &f.read_at);
        trusted.then_some(f.batch_id.as_str())
    }

    /// Records that the file at `path` was read at `read_at` and its bytes are `batch_id`.
    pub fn read(
        &mut self,
        path: &str,
        size: u64,
        modified: Option<String>,
        batch_id: &str,
        read_at: DateTime<Utc>,
    ) {
        let Some(modified) = modified else {
            return;
        };
        let f = SeenFile {
            size,
            modified,
            batch_id: batch_id.to_string(),
            read_at: read_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        if self.files.get(path) != Some(&f) {
            self.files.insert(path.to_string(), f);
            self.changed = true;
        }
    }
}

/// A file's modification time as [`SeenFile::modified`] records it (None where the platform
/// has none).
pub fn modified(meta: &std::fs::Metadata) -> Option<String> {
    let t: DateTime<Utc> = meta.modified().ok()?.into();
    Some(t.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

/// Whether a file modified at `modified` was read at `read_at` at least [`RACY`] later.
fn settled(modified: &str, read_at: &str) -> bool {
    match (
        DateTime::parse_from_rfc3339(modified),
        DateTime::parse_from_rfc3339(read_at),
    ) {
        (Ok(m), Ok(r)) => m + RACY <= r,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    const MODIFIED: &str = "2026-01-01T00:00:00.000000001Z";

    fn seen(read_at: &str) -> (SeenFiles, HashSet<String>) {
        let mut s = SeenFiles::default();
        s.read("in/a.json", 10, Some(MODIFIED.into()), "b1", at(read_at));
        (s, HashSet::from(["b1".to_string()]))
    }

    #[test]
    fn a_file_read_well_after_its_time_is_known_by_path_size_and_time_only() {
        let (s, known) = seen("2026-01-01T01:00:00Z");
        assert!(s.changed);
        assert_eq!(
            s.unchanged("in/a.json", 10, Some(MODIFIED), &known),
            Some("b1")
        );
        assert_eq!(s.unchanged("in/b.json", 10, Some(MODIFIED), &known), None);
        assert_eq!(s.unchanged("in/a.json", 11, Some(MODIFIED), &known), None);
        let later = "2026-01-01T00:00:00.000000002Z";
        assert_eq!(s.unchanged("in/a.json", 10, Some(later), &known), None);
        assert_eq!(s.unchanged("in/a.json", 10, None, &known), None);
        assert_eq!(
            s.unchanged("in/a.json", 10, Some(MODIFIED), &HashSet::new()),
            None
        );
    }

    #[test]
    fn a_file_read_within_a_clock_tick_of_its_time_is_not_trusted() {
        let (s, known) = seen("2026-01-01T00:00:01Z");
        assert_eq!(s.unchanged("in/a.json", 10, Some(MODIFIED), &known), None);
    }

    #[test]
    fn reading_a_file_as_it_was_recorded_changes_nothing() {
        let (mut s, _) = seen("2026-01-01T01:00:00Z");
        s.changed = false;
        s.read(
            "in/a.json",
            10,
            Some(MODIFIED.into()),
            "b1",
            at("2026-01-01T01:00:00Z"),
        );
        assert!(!s.changed);
    }
}
