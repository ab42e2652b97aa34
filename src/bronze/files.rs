//! `kind = "files"` sources: a glob of NDJSON, gzip NDJSON or CSV files. Decoding is per file,
//! so a corrupt file fails only its own batch.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::{FileFormat, UnitLimits};
use crate::error::{KaratError, KaratResult};

use super::stamp::BatchWriter;

/// The files a glob matches, sorted by path.
pub fn matching(glob: &str, source: &str) -> KaratResult<Vec<PathBuf>> {
    let paths = glob::glob(glob).map_err(|e| KaratError::Source {
        source_name: source.to_string(),
        message: format!("bad glob {glob}: {e}"),
    })?;
    let mut out = Vec::new();
    for p in paths {
        match p {
            Ok(p) if p.is_file() => out.push(p),
            Ok(_) => {}
            Err(e) => {
                return Err(KaratError::Source {
                    source_name: source.to_string(),
                    message: format!("listing {glob}: {e}"),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The format of a file: explicit, or from its name (`.csv`, `.csv.gz` are CSV; anything else
/// is NDJSON).
pub fn format_of(path: &Path, explicit: Option<FileFormat>) -> FileFormat {
    if let Some(f) = explicit {
        return f;
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        FileFormat::Csv
    } else {
        FileFormat::Ndjson
    }
}

/// Uncompresses gzip bytes (detected by their magic number) or passes plain bytes through.
pub fn decompress(bytes: &[u8], limits: UnitLimits) -> Result<Vec<u8>, String> {
    let max = limits.max_unit_bytes;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity((bytes.len() * 5).min(max as usize));
        flate2::read::MultiGzDecoder::new(bytes)
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt gzip data: {e}"))?;
        if out.len() as u64 > max {
            return Err(format!(
                "decompresses to more than max_unit_bytes = {max} bytes (a gzip bomb, or raise the limit)"
            ));
        }
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// A unit's size before reading it: over the limit, it fails without being read.
pub fn check_size(len: u64, limits: UnitLimits) -> Result<(), String> {
    if len > limits.max_unit_bytes {
        return Err(format!(
            "{len} bytes, over max_unit_bytes = {} (not read; raise the limit or split the file)",
            limits.max_unit_bytes
        ));
    }
    Ok(())
}

/// Feeds a decoded file into a batch writer.
pub fn stamp_file(
    text: &[u8],
    limits: UnitLimits,
    format: FileFormat,
    writer: &mut BatchWriter,
    path: &Path,
) -> Result<(), String> {
    // a UTF-8 byte order mark is an encoding artifact, not part of the first record
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    match format {
        FileFormat::Ndjson => {
            for (i, line) in text.split(|b| *b == b'\n').enumerate() {
                if line.len() as u64 > limits.max_line_bytes {
                    return Err(format!(
                        "{} line {}: {} bytes, over max_line_bytes = {}",
                        path.display(),
                        i + 1,
                        line.len(),
                        limits.max_line_bytes
                    ));
                }
                let line = match std::str::from_utf8(line) {
                    Ok(s) => std::borrow::Cow::Borrowed(s),
                    Err(_) => String::from_utf8_lossy(line),
                };
                writer.push_line(i as u64 + 1, &line);
            }
            Ok(())
        }
        FileFormat::Csv => {
            let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text);
            let headers = rdr
                .headers()
                .map_err(|e| format!("{}: CSV header: {e}", path.display()))?
                .clone();
            for (i, rec) in rdr.records().enumerate() {
                // line 1 is the header
                let line_no = i as u64 + 2;
                match rec {
                    Ok(rec) => {
                        let mut map = serde_json::Map::new();
                        for (h, v) in headers.iter().zip(rec.iter()) {
                            let v = if v.is_empty() {
                                serde_json::Value::Null
                            } else {
                                serde_json::Value::String(v.to_string())
                            };
                            map.insert(h.to_string(), v);
                        }
                        if rec.len() != headers.len() {
                            // keep it whole: silver dead-letters it with this reason
                            writer.push_line(
                                line_no,
                                &format!(
                                    "CSV row has {} fields, header has {}: {}",
                                    rec.len(),
                                    headers.len(),
                                    rec.iter().collect::<Vec<_>>().join(",")
                                ),
                            );
                        } else {
                            writer.push_value(line_no, &serde_json::Value::Object(map));
                        }
                    }
                    Err(e) => writer.push_line(line_no, &format!("unreadable CSV row: {e}")),
                }
            }
            Ok(())
        }
    }
}
