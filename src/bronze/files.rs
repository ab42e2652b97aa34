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

/// Feeds a unit (gzip or plain bytes) into a batch writer, gunzipped and split into lines (NDJSON)
/// or rows (CSV) as it streams: memory holds one line or row, not the decompressed unit.
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
            let (input, gz) = decoded(bytes);
            super::csv_rows::stamp_csv(input, gz, limits, writer, path)
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
    let (inner, gz) = decoded(bytes);
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

/// The unit's bytes, gunzipped as they are read when they are gzip (told by the magic number),
/// and whether they were.
fn decoded(bytes: &[u8]) -> (Box<dyn Read + '_>, bool) {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        (Box::new(flate2::read::MultiGzDecoder::new(bytes)), true)
    } else {
        (Box::new(bytes), false)
    }
}
