//! Decoding bronze lines into Arrow: each contract field as raw text (a Utf8 column, `null` when
//! absent or JSON null), plus the provenance stamped in bronze. Typing and validation happen
//! afterwards on whole columns (see [`super::validate`]).
//!
//! Two shortcuts keep this cheap, each falling back to the plain path when it does not apply:
//! a line that starts with its batch's own stamp (as every line bronze writes does) has only
//! its `_line` and its record's fields parsed, the stamp columns being the batch's values
//! repeated; and fields are found where they were in the previous record when it had the same
//! keys (see [`Layout`]).

use std::borrow::Cow;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringArray, StringBuilder, StringViewBuilder,
};
use deltalake::arrow::buffer::Buffer;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::value::RawValue;

use crate::bronze::record::{Fields, Parsed, parse_object};
use crate::bronze::stamp::Stamp;

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
        let dt = match p {
            "_line" => DataType::Int64,
            // views into the block of lines the chunk was decoded from
            "_raw" => DataType::Utf8View,
            _ => DataType::Utf8,
        };
        fs.push(Field::new(p, dt, true));
    }
    Arc::new(Schema::new(fs))
}

/// Builds one chunk of decoded rows.
pub struct ChunkBuilder {
    fields: Vec<String>,
    cols: Vec<StringBuilder>,
    /// The batch's stamp, when its lines are known to start with it.
    known: Option<Arc<KnownStamp>>,
    stamps: StampColumns,
    line: Int64Builder,
    /// Each line as a view into its block (no copy), or its own text.
    raw: StringViewBuilder,
    /// The block of lines being decoded.
    block: Option<BlockAt>,
    error: StringBuilder,
    rows: usize,
    capacity: usize,
    layout: Layout,
    /// A record's own fields as an object, for the stamped shortcut.
    scratch: String,
}

/// A block of lines held by a chunk's `_raw`: its index among the column's buffers, and where
/// its text is in memory.
#[derive(Debug, Clone, Copy)]
struct BlockAt {
    index: u32,
    at: usize,
    len: usize,
}

/// A batch's stamp, and the text its lines start with.
struct KnownStamp {
    prefix: String,
    /// `_batch_id`, `_ingested_at`, `_source`, `_file`.
    values: [String; 4],
}

/// The `_batch_id`, `_ingested_at`, `_source` and `_file` columns of a chunk: the batch's stamp
/// repeated while every row carries it, one value per row from the first row that does not.
enum StampColumns {
    Repeated(usize),
    PerRow(Box<[StringBuilder; 4]>),
}

/// Fields looked up in every record ([`ChunkBuilder`]'s contract fields, then
/// [`PROVENANCE`]): where they were in the previous record, and that record's keys. Records of
/// a batch nearly always have the same keys in the same order, so a lookup costs one
/// comparison of the keys per record; the first of repeated keys counts.
#[derive(Default)]
struct Layout {
    keys: Vec<String>,
    at: Vec<Option<usize>>,
}

impl Layout {
    /// The position of each of `names` in `f`.
    fn resolve<'n>(
        &mut self,
        f: &Fields<'_>,
        names: impl Iterator<Item = &'n str>,
    ) -> &[Option<usize>] {
        let same =
            self.keys.len() == f.0.len() && self.keys.iter().zip(&f.0).all(|(a, (b, _))| a == b);
        if !same {
            self.keys = f.0.iter().map(|(k, _)| k.to_string()).collect();
            self.at = names
                .map(|n| f.0.iter().position(|(k, _)| *k == n))
                .collect();
        }
        &self.at
    }
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

fn stamp_builders(capacity: usize) -> [StringBuilder; 4] {
    [22, 27, 8, 40].map(|width| StringBuilder::with_capacity(capacity, capacity * width))
}

impl ChunkBuilder {
    pub fn new(fields: Vec<String>, capacity: usize) -> ChunkBuilder {
        let cols = fields
            .iter()
            .map(|_| StringBuilder::with_capacity(capacity, capacity * 12))
            .collect();
        ChunkBuilder {
            fields,
            cols,
            known: None,
            stamps: StampColumns::PerRow(Box::new(stamp_builders(capacity))),
            line: Int64Builder::with_capacity(capacity),
            raw: StringViewBuilder::with_capacity(capacity),
            block: None,
            error: StringBuilder::new(),
            rows: 0,
            capacity,
            layout: Layout::default(),
            scratch: String::with_capacity(512),
        }
    }

    /// Decodes lines of a batch stamped with `stamp` (lines that do not start with it take the
    /// plain path). Not for contracts reading a stamp field as a source field.
    pub fn stamped_by(mut self, stamp: &Stamp) -> ChunkBuilder {
        let reads_stamp = self.fields.iter().any(|f| PROVENANCE.contains(&f.as_str()));
        if !reads_stamp && self.rows == 0 {
            self.known = Some(Arc::new(KnownStamp {
                prefix: stamp.prefix(),
                values: [
                    stamp.batch_id.clone(),
                    stamp.ingested_at.clone(),
                    stamp.source.clone(),
                    stamp.origin.clone(),
                ],
            }));
            self.stamps = StampColumns::Repeated(0);
        }
        self
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
        if self.push_stamped(line) {
            return true;
        }
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
                let stamps = self.per_row_stamps();
                for (b, k) in stamps.iter_mut().zip(PROVENANCE) {
                    b.append_option(s(k));
                }
                self.line
                    .append_option(m.get("_line").and_then(|v| v.as_i64()));
                self.push_line(line);
                self.error.append_null();
                self.rows += 1;
                true
            }
            Parsed::Invalid(_) => false,
        }
    }

    /// The shortcut for a line starting with the batch's stamp: parses its `_line` and its
    /// record's own fields. False (nothing added) when the line is not such a line.
    fn push_stamped(&mut self, line: &str) -> bool {
        let Some(known) = self.known.clone() else {
            return false;
        };
        let Some(rest) = line.strip_prefix(known.prefix.as_str()) else {
            return false;
        };
        // a JSON integer: digits, no leading zero
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 1 && rest.starts_with('0') {
            return false;
        }
        let Ok(line_no) = rest[..digits].parse::<i64>() else {
            return false;
        };
        let mut object = std::mem::take(&mut self.scratch);
        object.clear();
        object.push('{');
        match rest.as_bytes().get(digits) {
            // `,}` is a trailing comma in the whole line: not JSON, so no shortcut
            Some(b',') if rest[digits + 1..].trim_start().starts_with('}') => {}
            Some(b',') => object.push_str(&rest[digits + 1..]),
            Some(b'}') => object.push_str(&rest[digits..]),
            _ => {}
        }
        let done = match parse_object(&object) {
            Parsed::Object(f) if object.len() > 1 => {
                self.push_record(&f, line, line_no, &known);
                true
            }
            _ => false,
        };
        self.scratch = object;
        done
    }

    /// A stamped line's record: its contract fields, the batch's stamp, `line_no`.
    fn push_record(&mut self, f: &Fields<'_>, line: &str, line_no: i64, known: &KnownStamp) {
        let [.., raw, error] = self.push_contract_fields(f);
        match &mut self.stamps {
            StampColumns::Repeated(n) => *n += 1,
            StampColumns::PerRow(b) => {
                for (b, v) in b.iter_mut().zip(&known.values) {
                    b.append_value(v);
                }
            }
        }
        self.line.append_value(line_no);
        self.push_raw(line, error, raw);
        self.rows += 1;
    }

    /// Appends the contract fields of a record (nulls for a line bronze could not read) and
    /// returns its [`PROVENANCE`] fields.
    fn push_contract_fields<'f>(&mut self, f: &Fields<'f>) -> [Option<&'f RawValue>; 7] {
        let names = self.fields.iter().map(String::as_str).chain(PROVENANCE);
        let at = self.layout.resolve(f, names);
        let nf = self.fields.len();
        let get = |i: usize| at[i].map(|p| f.0[p].1);
        let provenance: [Option<&RawValue>; 7] = std::array::from_fn(|k| get(nf + k));
        let unreadable = provenance[6].is_some();
        for (i, col) in self.cols.iter_mut().enumerate() {
            if unreadable {
                col.append_null();
            } else {
                col.append_option(get(i).and_then(raw_text));
            }
        }
        provenance
    }

    /// The `_raw` and `_error` of a row: the line itself, or for a line bronze could not read
    /// its kept text and why.
    fn push_raw(&mut self, line: &str, error: Option<&RawValue>, raw: Option<&RawValue>) {
        match error {
            Some(err) => {
                self.raw.append_option(raw.and_then(raw_text));
                self.error.append_option(raw_text(err));
            }
            None => {
                self.push_line(line);
                self.error.append_null();
            }
        }
    }

    /// Decodes the lines of `text` next: a line pushed from it is kept as a view into it.
    /// Returns the text, to take the lines from.
    pub fn start_block(&mut self, text: Buffer) -> Buffer {
        let (at, len) = (text.as_ptr() as usize, text.len());
        let index = self.raw.append_block(text.clone());
        self.block = Some(BlockAt { index, at, len });
        text
    }

    /// A line as `_raw`: a view when it lies in the current block, else a copy.
    fn push_line(&mut self, line: &str) {
        let at = line.as_ptr() as usize;
        if let Some(block) = self.block
            && at >= block.at
            && at + line.len() <= block.at + block.len
            && self
                .raw
                .try_append_view(block.index, (at - block.at) as u32, line.len() as u32)
                .is_ok()
        {
            return;
        }
        self.raw.append_value(line);
    }

    /// The stamp columns as one value per row (the repeated stamp written out so far).
    fn per_row_stamps(&mut self) -> &mut [StringBuilder; 4] {
        if let StampColumns::Repeated(n) = self.stamps {
            let mut b = stamp_builders(self.capacity);
            if let Some(known) = &self.known {
                for (b, v) in b.iter_mut().zip(&known.values) {
                    (0..n).for_each(|_| b.append_value(v));
                }
            }
            self.stamps = StampColumns::PerRow(Box::new(b));
        }
        match &mut self.stamps {
            StampColumns::PerRow(b) => b,
            StampColumns::Repeated(_) => unreachable!("just written out"),
        }
    }

    fn push_fields(&mut self, f: &Fields<'_>, line: &str) {
        let provenance = self.push_contract_fields(f);
        let stamps = self.per_row_stamps();
        for (b, v) in stamps.iter_mut().zip(provenance) {
            b.append_option(v.and_then(raw_text));
        }
        let [.., line_no, raw, error] = provenance;
        self.line
            .append_option(line_no.and_then(|v| v.get().parse::<i64>().ok()));
        self.push_raw(line, error, raw);
        self.rows += 1;
    }

    /// Finishes the chunk as a record batch with [`chunk_schema`]; the builder starts the next
    /// chunk with its buffers sized again (a finished Arrow builder keeps no capacity).
    pub fn finish(&mut self) -> RecordBatch {
        let mut next = ChunkBuilder::new(self.fields.clone(), self.capacity);
        if self.known.is_some() {
            next.stamps = StampColumns::Repeated(0);
        }
        next.known = self.known.clone();
        next.layout = std::mem::take(&mut self.layout);
        let mut done = std::mem::replace(self, next);
        done.finish_columns()
    }

    fn finish_columns(&mut self) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        match &mut self.stamps {
            StampColumns::Repeated(n) => {
                // only a builder that knows its batch's stamp repeats it
                let known = self.known.as_ref().expect("a repeated stamp is known");
                for v in &known.values {
                    cols.push(Arc::new(StringArray::new_repeated(v, *n)));
                }
            }
            StampColumns::PerRow(b) => {
                for b in b.iter_mut() {
                    cols.push(Arc::new(b.finish()));
                }
            }
        }
        cols.push(Arc::new(self.line.finish()));
        cols.push(Arc::new(self.raw.finish()));
        cols.push(Arc::new(self.error.finish()));
        self.rows = 0;
        RecordBatch::try_new(chunk_schema(&self.fields), cols)
            .expect("decoded columns match their schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bronze::stamp::BatchWriter;
    use deltalake::arrow::array::AsArray;
    use std::io::Read;

    fn stamp(batch: &str) -> Stamp {
        Stamp {
            batch_id: batch.into(),
            ingested_at: "2026-01-01T00:00:00Z".into(),
            source: "s".into(),
            origin: "data/a \"quoted\".json".into(),
        }
    }

    /// The lines bronze writes for `records` under `stamp`.
    fn bronze_lines(stamp: &Stamp, records: &[&str]) -> Vec<String> {
        let mut w = BatchWriter::new(stamp, 1000);
        for (i, r) in records.iter().enumerate() {
            w.push_line(i as u64 + 1, r);
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(&w.finish().gz[..])
            .read_to_string(&mut text)
            .unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn decode(builder: ChunkBuilder, lines: &[String]) -> RecordBatch {
        let mut b = builder;
        for l in lines {
            assert!(b.push(l), "{l}");
        }
        b.finish()
    }

    #[test]
    fn lines_of_a_block_are_kept_as_views_into_it_and_equal_copied_ones() {
        let ours = stamp("b1");
        let lines = bronze_lines(
            &ours,
            &[r#"{"id":1,"name":"a long enough name"}"#, "{\"id\":2"],
        );
        let fields: Vec<String> = ["id", "name"].map(String::from).to_vec();
        let copied = decode(ChunkBuilder::new(fields.clone(), 4), &lines);
        let mut b = ChunkBuilder::new(fields, 4).stamped_by(&ours);
        let text = b.start_block(Buffer::from(format!("{}\n", lines.join("\n")).into_bytes()));
        let text = std::str::from_utf8(text.as_slice()).unwrap();
        text.lines().for_each(|l| assert!(b.push(l)));
        // a line from elsewhere is copied
        assert!(b.push(&lines[0].clone()));
        let viewed = b.finish();
        let raw = viewed.column_by_name("_raw").unwrap().as_string_view();
        assert_eq!(
            raw.data_buffers().len(),
            2,
            "the block, and the copied line"
        );
        assert_eq!(raw.value(2), lines[0]);
        assert_eq!(viewed.slice(0, 2), copied);
    }

    #[test]
    fn the_stamped_shortcut_decodes_exactly_like_the_plain_path() {
        let ours = stamp("b1");
        let mut lines = bronze_lines(
            &ours,
            &[
                r#"{"id":1,"name":"a\"b","n":null,"o":{"x":[1]}}"#,
                r#"{"name":"z","id":"2"}"#,
                r#"{"id":3,"id":4}"#,
                r#"{"id":5"#,
                r#"{"_batch_id":"forged","id":6}"#,
                r#"{}"#,
                r#"{"id":7,"name":"\u00e9"}"#,
            ],
        );
        // a line of another batch (never written by bronze into this one) takes the plain path
        lines.insert(2, bronze_lines(&stamp("b2"), &[r#"{"id":8}"#]).remove(0));
        let fields: Vec<String> = ["id", "name", "n", "o"].map(String::from).to_vec();
        let plain = decode(ChunkBuilder::new(fields.clone(), 4), &lines);
        let fast = decode(
            ChunkBuilder::new(fields.clone(), 4).stamped_by(&ours),
            &lines,
        );
        assert_eq!(fast, plain);
        let only_ours: Vec<String> = lines
            .iter()
            .filter(|l| !l.contains("b2"))
            .cloned()
            .collect();
        let mut b = ChunkBuilder::new(fields.clone(), 4).stamped_by(&ours);
        only_ours.iter().for_each(|l| assert!(b.push(l)));
        assert!(
            matches!(b.stamps, StampColumns::Repeated(n) if n == only_ours.len()),
            "every line of the batch took the shortcut"
        );
        let plain = decode(ChunkBuilder::new(fields.clone(), 4), &only_ours);
        let fast = decode(ChunkBuilder::new(fields, 4).stamped_by(&ours), &only_ours);
        assert_eq!(fast, plain, "stamp columns built as one repeated value");
        let ids = fast
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(ids.value(2), "3", "the first of repeated keys");
    }

    #[test]
    fn a_line_that_is_not_json_is_refused_on_both_paths() {
        let ours = stamp("b1");
        let fields: Vec<String> = vec!["id".into()];
        for tail in ["5,}", "5, }", "05}", "5,\"id\":1}x"] {
            let line = format!("{}{tail}", ours.prefix());
            assert!(!ChunkBuilder::new(fields.clone(), 4).push(&line), "{line}");
            let mut fast = ChunkBuilder::new(fields.clone(), 4).stamped_by(&ours);
            assert!(!fast.push(&line), "{line}");
        }
    }

    #[test]
    fn a_contract_reading_a_stamp_field_takes_the_plain_path() {
        let ours = stamp("b1");
        let lines = bronze_lines(&ours, &[r#"{"id":1}"#]);
        let fields: Vec<String> = ["id", "_file"].map(String::from).to_vec();
        let fast = decode(
            ChunkBuilder::new(fields.clone(), 4).stamped_by(&ours),
            &lines,
        );
        let plain = decode(ChunkBuilder::new(fields, 4), &lines);
        assert_eq!(fast, plain);
        assert!(!lines[0].is_empty());
    }
}
