//! CSV units streamed into a batch: rows named by the header, gunzipped and parsed as the bytes
//! flow, so memory holds the row being read (at most `max_line_bytes`) and the parser's read
//! buffer, never the decompressed unit. A row that is not a record (wrong field count, not
//! UTF-8) keeps its exact text; line numbers are where each row starts, quoted newlines included.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use crate::config::UnitLimits;

use super::stamp::BatchWriter;

/// Bytes the CSV parser may have read ahead of the row it is on (its buffer is 8 KiB).
const READ_AHEAD: u64 = 1 << 16;

/// Streams the CSV rows of `input` (already gunzipped) into `writer`.
pub(super) fn stamp_csv(
    input: impl Read,
    gz: bool,
    limits: UnitLimits,
    writer: &mut BatchWriter,
    path: &Path,
) -> Result<(), String> {
    let window = Rc::new(RefCell::new(Window::default()));
    let mut input = BufReader::new(input.take(limits.max_unit_bytes + 1));
    let bom = skip_bom(&mut input).map_err(|e| read_error(&e, gz, path, 1, limits))?;
    let recorder = Recorder {
        inner: input,
        window: window.clone(),
        max_held: limits.max_line_bytes + READ_AHEAD,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(recorder);
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) if e.is_io_error() => return Err(csv_error(e, gz, path, 1, limits)),
        Err(e) => return Err(format!("{}: CSV header: {e}", path.display())),
    };
    window.borrow_mut().forget_before(rdr.position().byte());
    let mut rec = csv::ByteRecord::new();
    loop {
        let start = rdr.position().clone();
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let end = rdr.position().byte();
                let at = rec.position().cloned().unwrap_or(start);
                csv_row(
                    writer,
                    &headers,
                    &rec,
                    at.line(),
                    window.borrow().row(at.byte(), end),
                );
                window.borrow_mut().forget_before(end);
            }
            Err(e) => return Err(csv_error(e, gz, path, start.line(), limits)),
        }
    }
    // the byte order mark counts towards the unit's size too
    let read = window.borrow().read_total() + bom;
    if read > limits.max_unit_bytes {
        return Err(format!(
            "decompresses to more than max_unit_bytes = {} bytes (a gzip bomb, or raise the limit)",
            limits.max_unit_bytes
        ));
    }
    Ok(())
}

/// A UTF-8 byte order mark is an encoding artifact, not part of the header: skipped, and its
/// length returned.
fn skip_bom(input: &mut impl BufRead) -> std::io::Result<u64> {
    if input.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
        return Ok(3);
    }
    Ok(0)
}

/// The unit's bytes from the start of the row being read up to what the parser has read.
#[derive(Default)]
struct Window {
    /// Offset of `bytes[0]` in the unit (after any BOM).
    base: u64,
    bytes: Vec<u8>,
}

impl Window {
    /// The bytes `[start, end)` of the unit, without the line ending.
    fn row(&self, start: u64, end: u64) -> &[u8] {
        let at = |offset: u64| (offset.saturating_sub(self.base) as usize).min(self.bytes.len());
        let (lo, hi) = (at(start), at(end));
        let row = &self.bytes[lo.min(hi)..hi];
        let row = row.strip_suffix(b"\n").unwrap_or(row);
        row.strip_suffix(b"\r").unwrap_or(row)
    }

    fn forget_before(&mut self, offset: u64) {
        let n = (offset.saturating_sub(self.base) as usize).min(self.bytes.len());
        self.bytes.drain(..n);
        self.base += n as u64;
    }

    fn read_total(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
}

/// The unit's bytes, copied into the window as the parser pulls them; fails the read rather
/// than hold one row over `max_held` bytes.
struct Recorder<R> {
    inner: R,
    window: Rc<RefCell<Window>>,
    max_held: u64,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.window.borrow().bytes.len() as u64 > self.max_held {
            return Err(std::io::Error::other(RowTooLong));
        }
        let n = self.inner.read(buf)?;
        self.window.borrow_mut().bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// A row that has grown past `max_line_bytes` without ending.
#[derive(Debug)]
struct RowTooLong;

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("row too long")
    }
}

impl std::error::Error for RowTooLong {}

/// The unit's failure for a parser error (with a flexible byte reader only reading can fail).
fn csv_error(e: csv::Error, gz: bool, path: &Path, line: u64, limits: UnitLimits) -> String {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => read_error(&e, gz, path, line, limits),
        other => format!("{} line {line}: CSV: {other:?}", path.display()),
    }
}

fn read_error(e: &std::io::Error, gz: bool, path: &Path, line: u64, limits: UnitLimits) -> String {
    if e.get_ref().is_some_and(|inner| inner.is::<RowTooLong>()) {
        format!(
            "{} line {line}: a CSV row over max_line_bytes = {}",
            path.display(),
            limits.max_line_bytes
        )
    } else if gz {
        format!("corrupt gzip data: {e}")
    } else {
        format!("{}: {e}", path.display())
    }
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
