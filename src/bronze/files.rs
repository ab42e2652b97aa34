//! `kind = "files"` sources: a glob of NDJSON, gzip NDJSON or CSV files. Decoding is per file,
//! so a corrupt file fails only its own batch.

use std::io::{BufRead, Read};
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

/// Feeds a unit (gzip or plain bytes) into a batch writer. NDJSON is gunzipped and split into
/// lines as it streams, so memory holds one line, not the decompressed unit; CSV (whose failed
/// rows keep their exact text) is decompressed whole, within `max_unit_bytes`.
pub fn stamp_unit(
    bytes: &[u8],
    limits: UnitLimits,
    format: FileFormat,
    writer: &mut BatchWriter,
    path: &Path,
) -> Result<(), String> {
    match format {
        FileFormat::Ndjson => stamp_ndjson(bytes, limits, writer, path),
        FileFormat::Csv => {
            let text = decompress(bytes, limits)?;
            // a UTF-8 byte order mark is an encoding artifact, not part of the first record
            let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
            stamp_csv(text, writer, path)
        }
    }
}

/// NDJSON lines, streamed out of the (gzip) unit one at a time.
fn stamp_ndjson(
    bytes: &[u8],
    limits: UnitLimits,
    writer: &mut BatchWriter,
    path: &Path,
) -> Result<(), String> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let max = limits.max_unit_bytes;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, inner.take(max + 1));
    let mut line = Vec::new();
    let mut total = 0u64;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(limits.max_line_bytes + 2)
            .read_until(b'\n', &mut line)
            .map_err(|e| {
                if gz {
                    format!("corrupt gzip data: {e}")
                } else {
                    format!("{}: {e}", path.display())
                }
            })?;
        total += n as u64;
        if total > max {
            return Err(format!(
                "decompresses to more than max_unit_bytes = {max} bytes (a gzip bomb, or raise the limit)"
            ));
        }
        line_no += 1;
        let ended = line.last() == Some(&b'\n');
        let mut text: &[u8] = line.strip_suffix(b"\n").unwrap_or(&line);
        if line_no == 1 {
            // a UTF-8 byte order mark is an encoding artifact, not part of the first record
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        if text.len() as u64 > limits.max_line_bytes {
            // measure the rest of the line without holding it
            let rest = if ended {
                0
            } else {
                reader.skip_until(b'\n').unwrap_or(0)
            };
            total += rest as u64;
            if total > max {
                return Err(format!(
                    "decompresses to more than max_unit_bytes = {max} bytes (a gzip bomb, or raise the limit)"
                ));
            }
            let len = text.len() + rest - usize::from(rest > 0);
            return Err(format!(
                "{} line {line_no}: {len} bytes, over max_line_bytes = {}",
                path.display(),
                limits.max_line_bytes
            ));
        }
        match std::str::from_utf8(text) {
            Ok(s) => writer.push_line(line_no, s),
            Err(e) => writer.push_invalid(
                line_no,
                text.strip_suffix(b"\r").unwrap_or(text),
                &format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            ),
        }
        if !ended {
            return Ok(());
        }
    }
}

/// CSV rows become records named by the header. A row that is not one (wrong field count,
/// not UTF-8, unreadable) keeps its exact text; line numbers are where each row starts, quoted
/// newlines included.
fn stamp_csv(text: &[u8], writer: &mut BatchWriter, path: &Path) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text);
    let headers = rdr
        .headers()
        .map_err(|e| format!("{}: CSV header: {e}", path.display()))?
        .clone();
    let mut rec = csv::ByteRecord::new();
    let mut start = rdr.position().clone();
    loop {
        let read = rdr.read_byte_record(&mut rec);
        let end = rdr.position().byte() as usize;
        let raw = row_text(text, start.byte() as usize, end);
        match read {
            Ok(false) => break,
            Ok(true) => {
                let at = rec.position().cloned().unwrap_or_else(|| start.clone());
                let line_no = at.line();
                let raw = row_text(text, at.byte() as usize, end);
                csv_row(writer, &headers, &rec, line_no, raw);
            }
            Err(e) => {
                writer.push_invalid(start.line(), raw, &format!("unreadable CSV row: {e}"));
                if end <= start.byte() as usize {
                    break;
                }
            }
        }
        start = rdr.position().clone();
    }
    Ok(())
}

/// The bytes of one CSV row, without its line ending.
fn row_text(text: &[u8], start: usize, end: usize) -> &[u8] {
    let row = &text[start.min(text.len())..end.min(text.len())];
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    row.strip_suffix(b"\r").unwrap_or(row)
}

fn csv_row(
    writer: &mut BatchWriter,
    headers: &csv::StringRecord,
    rec: &csv::ByteRecord,
    line_no: u64,
    raw: &[u8],
) {
    if rec.len() != headers.len() {
        let reason = format!(
            "CSV row has {} fields, header has {}",
            rec.len(),
            headers.len()
        );
        return writer.push_invalid(line_no, raw, &reason);
    }
    let mut map = serde_json::Map::new();
    for (h, v) in headers.iter().zip(rec.iter()) {
        let Ok(v) = std::str::from_utf8(v) else {
            return writer.push_invalid(line_no, raw, &format!("invalid UTF-8 in field {h}"));
        };
        let v = if v.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(v.to_string())
        };
        map.insert(h.to_string(), v);
    }
    writer.push_value(line_no, &serde_json::Value::Object(map));
}
