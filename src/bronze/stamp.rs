//! Turning a source unit's records into one bronze batch: every record is stamped with
//! `_batch_id`, `_ingested_at`, `_source`, `_file`, `_line`; lines that are not JSON objects are
//! kept verbatim under `_raw` with the parse error in `_error`; the batch's schema (field → JSON
//! types) is inferred on the way. Output is gzip NDJSON.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::record::{JsonKind, Parsed, kind_of_raw, kind_of_value, parse_object};

/// gzip level of bronze objects: 1 is ~3x faster than the default 6 for ~15% more bytes, and
/// bronze is written once and read a few times.
pub const GZIP_LEVEL: u32 = 1;

/// Where a record's own fields named like karat's stamps are kept.
pub const SOURCE_FIELDS: &str = "_source_fields";

/// Field names karat writes into bronze records: provenance, and for lines that are not JSON
/// objects the raw text and the parse error.
pub const STAMPS: [&str; 7] = [
    "_batch_id",
    "_ingested_at",
    "_source",
    "_file",
    "_line",
    "_raw",
    "_error",
];

/// Prefix of a `_raw` value holding bytes that are not UTF-8, base64-encoded.
pub const RAW_BASE64: &str = "base64:";

/// True for a source field named like karat's own: it is renamed on landing (kept under
/// [`SOURCE_FIELDS`]).
pub fn reserved(field: &str) -> bool {
    field == SOURCE_FIELDS || STAMPS.contains(&field)
}

/// The stamp every record of a batch carries.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub batch_id: String,
    pub ingested_at: String,
    pub source: String,
    pub origin: String,
}

/// A finished batch.
#[derive(Debug)]
pub struct Stamped {
    pub gz: Vec<u8>,
    pub records: u64,
    pub invalid: u64,
    pub blank: u64,
    pub schema: BTreeMap<String, String>,
}

fn kind_bit(kind: JsonKind) -> u8 {
    1 << kind as u8
}

/// Accumulates stamped records into a gzip buffer.
pub struct BatchWriter {
    enc: Compressor,
    prefix: String,
    /// Each field seen and the JSON types it had, in first-seen order.
    kinds: Vec<(String, u8)>,
    /// For each position of the previous record's fields, its entry in `kinds` (records of a
    /// source nearly always list their fields in the same order).
    slots: Vec<usize>,
    records: u64,
    invalid: u64,
    blank: u64,
    line: String,
}

impl Stamp {
    /// The text every record of the batch starts with: its stamp, up to the value of `_line`.
    pub fn prefix(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("string serialises");
        format!(
            "{{\"_batch_id\":{},\"_ingested_at\":{},\"_source\":{},\"_file\":{},\"_line\":",
            q(&self.batch_id),
            q(&self.ingested_at),
            q(&self.source),
            q(&self.origin)
        )
    }
}

impl BatchWriter {
    pub fn new(stamp: &Stamp, size_hint: usize) -> BatchWriter {
        BatchWriter {
            enc: Compressor::new(size_hint / 4),
            prefix: stamp.prefix(),
            kinds: Vec::new(),
            slots: Vec::new(),
            records: 0,
            invalid: 0,
            blank: 0,
            line: String::with_capacity(512),
        }
    }

    /// Notes that the field at position `pos` of a record had JSON type `kind`.
    fn note_kind(&mut self, pos: usize, field: &str, kind: JsonKind) {
        let bit = kind_bit(kind);
        if let Some(&i) = self.slots.get(pos)
            && self.kinds[i].0 == field
        {
            self.kinds[i].1 |= bit;
            return;
        }
        let i = match self.kinds.iter().position(|(f, _)| f == field) {
            Some(i) => i,
            None => {
                self.kinds.push((field.to_string(), 0));
                self.kinds.len() - 1
            }
        };
        self.kinds[i].1 |= bit;
        if pos >= self.slots.len() {
            self.slots.resize(pos + 1, i);
        }
        self.slots[pos] = i;
    }

    fn emit(&mut self) {
        self.line.push('\n');
        self.enc.write(self.line.as_bytes());
        self.line.clear();
    }

    /// Adds one line of NDJSON text (line numbers are 1-based).
    pub fn push_line(&mut self, line_no: u64, text: &str) {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            self.blank += 1;
            return;
        }
        self.records += 1;
        match parse_object(trimmed) {
            Parsed::Object(fields) => {
                for (pos, (k, v)) in fields.0.iter().enumerate() {
                    self.note_kind(pos, k, kind_of_raw(v));
                }
                if fields.0.iter().any(|(k, _)| reserved(k)) {
                    let map = fields
                        .0
                        .iter()
                        .map(|(k, v)| {
                            let v =
                                serde_json::from_str(v.get()).unwrap_or(serde_json::Value::Null);
                            (k.to_string(), v)
                        })
                        .collect();
                    self.stamp_map(line_no, map);
                } else {
                    self.stamp_object_text(line_no, trimmed);
                }
            }
            Parsed::OwnedObject(map) => {
                for (pos, (k, v)) in map.iter().enumerate() {
                    self.note_kind(pos, k, kind_of_value(v));
                }
                self.stamp_map(line_no, map);
            }
            Parsed::Invalid(reason) => self.stamp_invalid(line_no, text.as_bytes(), &reason),
        }
    }

    /// Adds a record that is not one: its bytes kept exactly under `_raw` (as text, or as
    /// `base64:…` when they are not UTF-8) with why under `_error`; silver dead-letters it.
    pub fn push_invalid(&mut self, line_no: u64, raw: &[u8], reason: &str) {
        self.records += 1;
        self.stamp_invalid(line_no, raw, reason);
    }

    fn stamp_invalid(&mut self, line_no: u64, raw: &[u8], reason: &str) {
        use base64::Engine;
        self.invalid += 1;
        let (raw, reason) = match std::str::from_utf8(raw) {
            Ok(text) => (text.to_string(), reason.to_string()),
            Err(_) => (
                format!(
                    "{RAW_BASE64}{}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ),
                format!("{reason} (raw bytes kept as base64)"),
            ),
        };
        self.line.push_str(&self.prefix);
        std::fmt::Write::write_fmt(&mut self.line, format_args!("{line_no}"))
            .expect("writing to a String cannot fail");
        self.line.push_str(",\"_raw\":");
        self.line
            .push_str(&serde_json::to_string(&raw).expect("string serialises"));
        self.line.push_str(",\"_error\":");
        self.line
            .push_str(&serde_json::to_string(&reason).expect("string serialises"));
        self.line.push('}');
        self.emit();
    }

    /// Adds one record that arrived already parsed (CSV rows, HTTP API records).
    pub fn push_value(&mut self, line_no: u64, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                self.records += 1;
                for (pos, (k, v)) in map.iter().enumerate() {
                    self.note_kind(pos, k, kind_of_value(v));
                }
                self.stamp_map(line_no, map.clone());
            }
            other => {
                let text = serde_json::to_string(other).expect("value serialises");
                self.push_line(line_no, &text);
            }
        }
    }

    /// Stamps a record given as a map; fields named like karat's own stamps are moved under
    /// `_source_fields`, so data can never override where a record came from or when.
    fn stamp_map(&mut self, line_no: u64, map: serde_json::Map<String, serde_json::Value>) {
        let mut record = serde_json::Map::new();
        let mut forged = serde_json::Map::new();
        for (k, v) in map {
            if reserved(&k) {
                forged.insert(k, v);
            } else {
                record.insert(k, v);
            }
        }
        if !forged.is_empty() {
            record.insert(SOURCE_FIELDS.into(), serde_json::Value::Object(forged));
        }
        let text =
            serde_json::to_string(&serde_json::Value::Object(record)).expect("value serialises");
        self.stamp_object_text(line_no, &text);
    }

    fn stamp_object_text(&mut self, line_no: u64, object_text: &str) {
        let inner = object_text[1..].trim_start();
        self.line.push_str(&self.prefix);
        std::fmt::Write::write_fmt(&mut self.line, format_args!("{line_no}"))
            .expect("writing to a String cannot fail");
        if inner.starts_with('}') {
            self.line.push('}');
        } else {
            self.line.push(',');
            self.line.push_str(inner);
        }
        self.emit();
    }

    /// Finishes the gzip stream.
    pub fn finish(self) -> Stamped {
        let gz = self.enc.finish();
        let schema = self
            .kinds
            .into_iter()
            .map(|(field, bits)| (field, render_kinds(bits)))
            .collect();
        Stamped {
            gz,
            records: self.records,
            invalid: self.invalid,
            blank: self.blank,
            schema,
        }
    }
}

/// Bytes handed to the compressing thread at a time.
const COMPRESS_BLOCK: usize = 1 << 20;

/// A gzip stream written on a thread of its own: stamping the next lines and compressing the
/// previous ones use two cores.
struct Compressor {
    pending: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Compressor {
    fn new(capacity: usize) -> Compressor {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            let mut enc =
                GzEncoder::new(Vec::with_capacity(capacity), Compression::new(GZIP_LEVEL));
            for block in rx {
                enc.write_all(&block)
                    .expect("writing to an in-memory gzip buffer cannot fail");
            }
            enc.finish()
                .expect("finishing an in-memory gzip buffer cannot fail")
        });
        Compressor {
            pending: Vec::with_capacity(COMPRESS_BLOCK),
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= COMPRESS_BLOCK {
            self.send();
        }
    }

    fn send(&mut self) {
        let block = std::mem::replace(&mut self.pending, Vec::with_capacity(COMPRESS_BLOCK));
        if let Some(tx) = &self.tx {
            tx.send(block)
                .expect("the compressing thread lives until finish");
        }
    }

    /// The whole gzip stream.
    fn finish(mut self) -> Vec<u8> {
        self.send();
        self.tx = None;
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the compressing thread does not panic")
    }
}

/// `number|string`, with `null` only when nothing else was seen.
fn render_kinds(bits: u8) -> String {
    let null = kind_bit(JsonKind::Null);
    let bits = if bits & !null != 0 {
        bits & !null
    } else {
        bits
    };
    JsonKind::ALL
        .iter()
        .filter(|k| bits & kind_bit(**k) != 0)
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stamps_valid_and_keeps_invalid_lines() {
        let stamp = Stamp {
            batch_id: "b1".into(),
            ingested_at: "2026-01-01T00:00:00Z".into(),
            source: "s".into(),
            origin: "f.json".into(),
        };
        let mut w = BatchWriter::new(&stamp, 100);
        w.push_line(1, r#"{"a":1,"b":"x"}"#);
        w.push_line(2, r#"{"a":"2"}"#);
        w.push_line(3, r#"{"a":3"#);
        w.push_line(4, "   ");
        w.push_line(5, "{}");
        let out = w.finish();
        assert_eq!((out.records, out.invalid, out.blank), (4, 1, 1));
        assert_eq!(out.schema["a"], "string|number");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out.gz[..])
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["a"], 1);
        assert_eq!(lines[0]["_batch_id"], "b1");
        assert_eq!(lines[2]["_raw"], r#"{"a":3"#);
        assert_eq!(lines[2]["_line"], 3);
        assert_eq!(lines[3]["_line"], 5);
    }
}
