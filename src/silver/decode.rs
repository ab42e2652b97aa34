//! Decoding bronze lines into Arrow: each contract field as raw text (a Utf8 column, `null` when
//! absent or JSON null), plus the provenance stamped in bronze. Typing and validation happen
//! afterwards on whole columns (see [`super::validate`]).

use std::borrow::Cow;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::value::RawValue;

use crate::bronze::record::{Fields, Parsed, parse_object};

/// Provenance and bookkeeping columns of a decoded chunk, in order after the contract fields:
/// the fields bronze stamps on every record.
pub const PROVENANCE: [&str; 7] = crate::bronze::stamp::STAMPS;

/// The schema of a decoded chunk for these contract source fields.
pub fn chunk_schema(fields: &[String]) -> SchemaRef {
    let mut fs: Vec<Field> = fields
        .iter()
        .enumerate()
        .map(|(i, _)| Field::new(format!("c{i}"), DataType::Utf8, true))
        .collect();
    for p in PROVENANCE {
        let dt = if p == "_line" {
            DataType::Int64
        } else {
            DataType::Utf8
        };
        fs.push(Field::new(p, dt, true));
    }
    Arc::new(Schema::new(fs))
}

/// Builds one chunk of decoded rows.
pub struct ChunkBuilder {
    fields: Vec<String>,
    cols: Vec<StringBuilder>,
    batch_id: StringBuilder,
    ingested_at: StringBuilder,
    source: StringBuilder,
    file: StringBuilder,
    line: Int64Builder,
    raw: StringBuilder,
    error: StringBuilder,
    rows: usize,
    capacity: usize,
    /// Where each contract field, then each of [`PROVENANCE`], was in the previous record.
    hints: Vec<usize>,
}

/// Unquotes a raw JSON value into text: strings lose their quotes (and escapes), null is None,
/// everything else (numbers, booleans, objects, arrays) is kept as JSON text.
pub fn raw_text(v: &RawValue) -> Option<Cow<'_, str>> {
    let s = v.get();
    match s.as_bytes().first() {
        Some(b'n') => None,
        // a string without escapes is its text between the quotes (serde_json checked it)
        Some(b'"') if !s.contains('\\') => Some(Cow::Borrowed(&s[1..s.len() - 1])),
        Some(b'"') => match serde_json::from_str::<&str>(s) {
            Ok(b) => Some(Cow::Borrowed(b)),
            Err(_) => serde_json::from_str::<String>(s).ok().map(Cow::Owned),
        },
        _ => Some(Cow::Borrowed(s)),
    }
}

fn value_text(v: &serde_json::Value) -> Option<Cow<'_, str>> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

impl ChunkBuilder {
    pub fn new(fields: Vec<String>, capacity: usize) -> ChunkBuilder {
        let cols = fields
            .iter()
            .map(|_| StringBuilder::with_capacity(capacity, capacity * 12))
            .collect();
        let hints = (0..fields.len() + PROVENANCE.len()).collect();
        ChunkBuilder {
            fields,
            cols,
            batch_id: StringBuilder::with_capacity(capacity, capacity * 22),
            ingested_at: StringBuilder::with_capacity(capacity, capacity * 27),
            source: StringBuilder::with_capacity(capacity, capacity * 8),
            file: StringBuilder::with_capacity(capacity, capacity * 40),
            line: Int64Builder::with_capacity(capacity),
            raw: StringBuilder::with_capacity(capacity, capacity * 160),
            error: StringBuilder::new(),
            rows: 0,
            capacity,
            hints,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds one bronze line. Returns false for a line that is not a bronze record at all
    /// (never produced by karat; counted by the caller as an error).
    pub fn push(&mut self, line: &str) -> bool {
        match parse_object(line) {
            Parsed::Object(f) => {
                self.push_fields(&f, line);
                true
            }
            Parsed::OwnedObject(m) => {
                for (i, name) in self.fields.iter().enumerate() {
                    let v = m.get(name).and_then(value_text);
                    self.cols[i].append_option(v);
                }
                let s = |k: &str| m.get(k).and_then(|v| v.as_str().map(str::to_string));
                self.batch_id.append_option(s("_batch_id"));
                self.ingested_at.append_option(s("_ingested_at"));
                self.source.append_option(s("_source"));
                self.file.append_option(s("_file"));
                self.line
                    .append_option(m.get("_line").and_then(|v| v.as_i64()));
                self.raw.append_value(line);
                self.error.append_null();
                self.rows += 1;
                true
            }
            Parsed::Invalid(_) => false,
        }
    }

    fn push_fields(&mut self, f: &Fields<'_>, line: &str) {
        let nf = self.fields.len();
        let (field_hints, prov_hints) = self.hints.split_at_mut(nf);
        let [
            batch_h,
            ingested_h,
            source_h,
            file_h,
            line_h,
            raw_h,
            error_h,
        ] = prov_hints
        else {
            unreachable!("one hint per provenance column")
        };
        let invalid = f.get_hinted("_error", error_h);
        for (i, name) in self.fields.iter().enumerate() {
            if invalid.is_some() {
                self.cols[i].append_null();
            } else {
                let v = f.get_hinted(name, &mut field_hints[i]).and_then(raw_text);
                self.cols[i].append_option(v);
            }
        }
        let s = |k: &str, h: &mut usize| f.get_hinted(k, h).and_then(raw_text);
        self.batch_id.append_option(s("_batch_id", batch_h));
        self.ingested_at
            .append_option(s("_ingested_at", ingested_h));
        self.source.append_option(s("_source", source_h));
        self.file.append_option(s("_file", file_h));
        self.line.append_option(
            f.get_hinted("_line", line_h)
                .and_then(|v| v.get().parse::<i64>().ok()),
        );
        match invalid {
            Some(err) => {
                self.raw.append_option(s("_raw", raw_h));
                self.error.append_option(raw_text(err));
            }
            None => {
                self.raw.append_value(line);
                self.error.append_null();
            }
        }
        self.rows += 1;
    }

    /// Finishes the chunk as a record batch with [`chunk_schema`]; the builder starts the next
    /// chunk with its buffers sized again (a finished Arrow builder keeps no capacity).
    pub fn finish(&mut self) -> RecordBatch {
        let next = ChunkBuilder::new(self.fields.clone(), self.capacity);
        let hints = std::mem::take(&mut self.hints);
        let mut done = std::mem::replace(self, ChunkBuilder { hints, ..next });
        done.finish_columns()
    }

    fn finish_columns(&mut self) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        cols.push(Arc::new(self.batch_id.finish()));
        cols.push(Arc::new(self.ingested_at.finish()));
        cols.push(Arc::new(self.source.finish()));
        cols.push(Arc::new(self.file.finish()));
        cols.push(Arc::new(self.line.finish()));
        cols.push(Arc::new(self.raw.finish()));
        cols.push(Arc::new(self.error.finish()));
        self.rows = 0;
        RecordBatch::try_new(chunk_schema(&self.fields), cols)
            .expect("decoded columns match their schema")
    }
}
