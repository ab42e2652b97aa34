//! A source's own declaration of how many records it sent (`expected_count_field`): a field of
//! a JSON manifest beside a file (`<file>.manifest.json`), or of the first HTTP response body.
//! The bronze manifest keeps it next to the records that landed, so completeness is observed
//! against expected per batch. A declaration that cannot be read never stops the batch: it lands
//! without one and the reason is said.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The manifest a files source declares a file's count in.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

/// The non-negative integer at a dot-separated `field` (`meta.total`) of `value`.
pub fn count_at(value: &Value, field: &str) -> Option<u64> {
    field
        .split('.')
        .try_fold(value, |v, k| v.get(k))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
}

/// The count declared beside the file at `path`: `Ok(None)` when it has no manifest, `Err`
/// naming the manifest and field when the manifest does not declare one.
pub fn beside_file(path: &Path, field: &str) -> Result<Option<u64>, String> {
    let side = sidecar(path);
    let bytes = match std::fs::read(&side) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", side.display())),
    };
    in_json(&bytes, field).map_err(|m| format!("{}: {m}", side.display()))
}

/// The count declared in a JSON document (a manifest, a response body).
pub fn in_json(bytes: &[u8], field: &str) -> Result<Option<u64>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match count_at(&value, field) {
        Some(n) => Ok(Some(n)),
        None => Err(format!(
            "expected_count_field \"{field}\" is not a non-negative integer there"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_field_reads_numbers_and_numeric_strings() {
        let v: Value = serde_json::json!({"meta": {"total": 42, "s": " 7 "}, "n": -1});
        assert_eq!(count_at(&v, "meta.total"), Some(42));
        assert_eq!(count_at(&v, "meta.s"), Some(7));
        assert_eq!(count_at(&v, "n"), None);
        assert_eq!(count_at(&v, "meta.none"), None);
        assert!(in_json(b"{\"count\": \"x\"}", "count").is_err());
        assert_eq!(
            sidecar(Path::new("/d/a.ndjson")),
            Path::new("/d/a.ndjson.manifest.json")
        );
    }
}
