//! Enforcing a contract on one decoded chunk, column-at-a-time: normalise, cast (a value that
//! does not cast is a type error), check required values, evaluate rules and expectations as
//! vectorised expressions, and split the chunk into silver rows and dead letters. Every rule a
//! row breaks is recorded, not only the first.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt32Array,
};
use deltalake::arrow::compute::{self, CastOptions, filter_record_batch};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::util::display::FormatOptions;

use super::contract::{Contract, RuleKind, dead_letter_schema, timestamp_type};
use crate::config::{INGEST_DATE, OnFail};
use crate::error::{KaratError, KaratResult};

/// Partition label of rows without a usable partition value (invalid JSON, a missing or
/// malformed date). They are dead letters; [`super::process_batch`] files them under the
/// partition most rows of their bronze batch went to, so one bad line does not make a
/// partition of its own.
pub const UNPLACED: &str = "\u{0}unplaced";

/// Counters of expectations that did not drop rows, keyed by (partition, expectation index).
pub type ExpectationCounts = HashMap<(String, usize), u64>;

/// A validated chunk.
#[derive(Debug)]
pub struct Validated {
    /// Accepted rows, in the silver schema.
    pub silver: RecordBatch,
    /// Partition of each accepted row.
    pub silver_partitions: StringArray,
    /// Rejected rows, in the dead-letter schema (partition is its first column).
    pub dead: RecordBatch,
    /// Rows in, per partition.
    pub rows_in: HashMap<String, u64>,
    /// `warn` expectation failures.
    pub warned: ExpectationCounts,
    /// `fail` expectation failures.
    pub failed: ExpectationCounts,
}

const DAYS_TO_UNIX_EPOCH: i32 = 719_163;

fn date32_of(date: &str) -> Option<i32> {
    use chrono::Datelike;
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .map(|d| d.num_days_from_ce() - DAYS_TO_UNIX_EPOCH)
}

/// The day of each timestamp (microseconds, UTC) in `tz` (UTC when None).
pub fn day_of(ts: &ArrayRef, tz: Option<&str>) -> KaratResult<Date32Array> {
    use chrono::{Offset, TimeZone};
    let tz: Option<deltalake::arrow::array::timezone::Tz> = tz
        .map(|t| t.parse())
        .transpose()
        .map_err(|e| KaratError::arrow("partition_timezone", e))?;
    let ts = ts.as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
    const DAY_MICROS: i64 = 86_400_000_000;
    Ok(ts
        .iter()
        .map(|v| {
            v.map(|micros| {
                let offset = match &tz {
                    Some(tz) => {
                        let utc = chrono::DateTime::from_timestamp_micros(micros)
                            .unwrap_or_default()
                            .naive_utc();
                        tz.offset_from_utc_datetime(&utc).fix().local_minus_utc() as i64
                    }
                    None => 0,
                };
                (micros + offset * 1_000_000).div_euclid(DAY_MICROS) as i32
            })
        })
        .collect())
}

/// Casts a text column whose values come in runs of one value (a batch's stamp, repeated on
/// each of its rows): each run's value is cast once, then repeated, as casting every row
/// would give.
fn cast_by_runs(
    a: &ArrayRef,
    to: &DataType,
    opts: &CastOptions,
) -> Result<ArrayRef, deltalake::arrow::error::ArrowError> {
    let Some(s) = a.as_string_opt::<i32>() else {
        return compute::cast_with_options(a, to, opts);
    };
    let same = |i: usize, j: usize| {
        s.is_valid(i) == s.is_valid(j) && (s.is_null(i) || s.value(i) == s.value(j))
    };
    let mut firsts: Vec<u32> = Vec::new();
    let mut run_of: Vec<u32> = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        if i == 0 || !same(i - 1, i) {
            firsts.push(i as u32);
        }
        run_of.push(firsts.len() as u32 - 1);
    }
    if firsts.len() == s.len() {
        return compute::cast_with_options(a, to, opts);
    }
    let values = compute::take(a, &UInt32Array::from(firsts), None)?;
    let cast = compute::cast_with_options(&values, to, opts)?;
    compute::take(&cast, &UInt32Array::from(run_of), None)
}

/// Shows a raw value in a reason: quoted, escaped, at most 60 characters.
fn show(v: &str) -> String {
    let mut s: String = v.chars().take(60).collect();
    if v.chars().count() > 60 {
        s.push('…');
    }
    format!("{s:?}")
}

/// Validates one chunk of decoded rows from a batch ingested on `ingest_date`. Rows without a
/// partition value get [`UNPLACED`].
pub fn validate(
    contract: &Contract,
    chunk: &RecordBatch,
    ingest_date: &str,
    run_id: &str,
) -> KaratResult<Validated> {
    let n = chunk.num_rows();
    let table = &contract.table;
    let ctx = |what: &str| format!("table {table}: {what}");
    let ncols = contract.spec.columns.len();
    let prov = |name: &str| -> ArrayRef {
        chunk
            .column_by_name(name)
            .cloned()
            .expect("decoded chunk has provenance columns")
    };
    let errors = prov("_error");
    let errors = errors.as_string::<i32>();
    let mut reasons: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    for (i, rs) in reasons.iter_mut().enumerate() {
        if errors.is_valid(i) {
            rs.push((
                "_record.json".into(),
                format!("record is not valid JSON: {}", errors.value(i)),
            ));
        }
    }
    let invalid_json = |i: usize| errors.is_valid(i);

    // 1. normalise and cast every contract column
    let cast_opts = CastOptions {
        safe: true,
        format_options: FormatOptions::default(),
    };
    let mut typed: Vec<ArrayRef> = Vec::with_capacity(contract.silver_schema.fields().len());
    let mut raw_texts: Vec<ArrayRef> = Vec::with_capacity(ncols);
    for (i, col) in contract.spec.columns.iter().enumerate() {
        let raw = chunk.column(i).clone();
        let normalized = match &contract.normalizers[i] {
            Some(expr) => expr
                .evaluate(chunk)
                .and_then(|v| v.into_array(n))
                .map_err(|e| KaratError::sql(ctx(&format!("normalizing {}", col.name)), e))?,
            None => raw.clone(),
        };
        let target = col.ty.arrow();
        let cast = if matches!(target, DataType::Timestamp(..)) {
            // strings without an offset are read as UTC
            compute::cast_with_options(&normalized, &timestamp_type(), &cast_opts)
        } else {
            compute::cast_with_options(&normalized, &target, &cast_opts)
        }
        .map_err(|e| KaratError::arrow(ctx(&format!("casting {}", col.name)), e))?;
        let raw_s = raw.as_string::<i32>();
        // "NaN" and "inf" parse as floats, but no rule can judge them: a type error
        let non_finite = |r: usize| {
            cast.data_type() == &DataType::Float64
                && cast.is_valid(r)
                && !cast
                    .as_primitive::<deltalake::arrow::datatypes::Float64Type>()
                    .value(r)
                    .is_finite()
        };
        for (r, rs) in reasons.iter_mut().enumerate() {
            if invalid_json(r) {
                continue;
            }
            let bad_type = raw_s.is_valid(r) && cast.is_null(r);
            if bad_type || non_finite(r) {
                rs.push((
                    format!("{}.type", col.name),
                    format!(
                        "{}: expected {}, got {}{}",
                        col.name,
                        col.ty,
                        show(raw_s.value(r)),
                        if bad_type {
                            ""
                        } else {
                            " (not a finite number)"
                        }
                    ),
                ));
            } else if cast.is_null(r) && contract.required(i) {
                rs.push((
                    format!("{}.required", col.name),
                    format!("{}: required value is missing", col.name),
                ));
            }
        }
        typed.push(cast);
        raw_texts.push(raw);
    }

    // 2. provenance columns of the silver row
    let ingest_day = date32_of(ingest_date)
        .ok_or_else(|| KaratError::Other(format!("bad ingest date {ingest_date}")))?;
    if contract.spec.partition_by == INGEST_DATE {
        typed.push(Arc::new(Date32Array::from(vec![ingest_day; n])));
    } else if contract.spec.partitioned_by_timestamp() {
        let ts = typed[contract.partition_by_index].clone();
        typed.push(Arc::new(day_of(
            &ts,
            contract.spec.partition_timezone.as_deref(),
        )?));
    }
    if let Some(d) = &contract.spec.dedup {
        typed.push(Arc::new(
            dedup_windows(&typed, contract, d)
                .map_err(|e| KaratError::arrow(ctx("dedup window"), e))?,
        ));
    }
    let batch_ids = prov("_batch_id");
    typed.push(batch_ids.clone());
    let ingested_at = cast_by_runs(&prov("_ingested_at"), &timestamp_type(), &cast_opts)
        .map_err(|e| KaratError::arrow(ctx("_ingested_at"), e))?;
    typed.push(ingested_at.clone());
    let lines = prov("_line");
    typed.push(lines.clone());
    let typed = RecordBatch::try_new(contract.silver_schema.clone(), typed)
        .map_err(|e| KaratError::arrow(ctx("building typed rows"), e))?;

    // 3. partition of every row
    let pcol = typed.column(contract.partition_index);
    let pdates = match pcol.data_type() {
        DataType::Date32 => pcol.clone(),
        _ => compute::cast(pcol, &DataType::Date32)
            .map_err(|e| KaratError::arrow(ctx("partition column"), e))?,
    };
    let (partitions, rows_in) =
        placed(&pdates).map_err(|e| KaratError::arrow(ctx("partition column"), e))?;

    // 4. column rules
    for rule in &contract.rules {
        let res = rule
            .expr
            .evaluate(&typed)
            .and_then(|v| v.into_array(n))
            .map_err(|e| KaratError::sql(ctx(&format!("rule {}", rule.id)), e))?;
        let res = res.as_boolean();
        let col = &contract.spec.columns[rule.column];
        let raw = raw_texts[rule.column].as_string::<i32>();
        for (r, rs) in reasons.iter_mut().enumerate() {
            if res.is_valid(r) && !res.value(r) && !invalid_json(r) {
                let v = if raw.is_valid(r) {
                    match col.mask {
                        Some(m) => show(&super::mask::apply(m, raw.value(r))),
                        None => show(raw.value(r)),
                    }
                } else {
                    "null".into()
                };
                let reason = match &rule.kind {
                    RuleKind::Min(m) => format!("{}: {v} is below min {m}", col.name),
                    RuleKind::Max(m) => format!("{}: {v} is above max {m}", col.name),
                    RuleKind::OneOf(vals) => {
                        format!(
                            "{}: unknown value {v} (expected one of {})",
                            col.name,
                            vals.join(", ")
                        )
                    }
                    RuleKind::Regex(re) => format!("{}: {v} does not match /{re}/", col.name),
                    RuleKind::MaxLength(m) => {
                        format!("{}: {v} is longer than {m} characters", col.name)
                    }
                };
                rs.push((rule.id.clone(), reason));
            }
        }
    }

    // 5. expectations: drop ones first, then warn/fail counted on rows that are still valid
    let mut warned = ExpectationCounts::new();
    let mut failed = ExpectationCounts::new();
    let mut pending: Vec<(usize, Vec<usize>)> = Vec::new();
    for (ei, e) in contract.expectations.iter().enumerate() {
        let res = e
            .expr
            .evaluate(&typed)
            .and_then(|v| v.into_array(n))
            .map_err(|err| KaratError::sql(ctx(&format!("expectation {}", e.name)), err))?;
        let res = res.as_boolean();
        let failing: Vec<usize> = (0..n)
            .filter(|r| !invalid_json(*r) && res.is_valid(*r) && !res.value(*r))
            .collect();
        match e.on_fail {
            OnFail::Drop => {
                for r in failing {
                    reasons[r].push((
                        format!("expect.{}", e.name),
                        format!("expectation {} failed: {}", e.name, e.sql),
                    ));
                }
            }
            OnFail::Warn | OnFail::Fail => pending.push((ei, failing)),
        }
    }
    for (ei, failing) in pending {
        let counts = if contract.expectations[ei].on_fail == OnFail::Warn {
            &mut warned
        } else {
            &mut failed
        };
        for r in failing {
            if reasons[r].is_empty() {
                *counts
                    .entry((partitions.value(r).to_string(), ei))
                    .or_default() += 1;
            }
        }
    }

    // 6. mask what the rules have judged, then split
    let typed = masked(contract, typed)?;
    let accepted: BooleanArray = reasons.iter().map(|r| Some(r.is_empty())).collect();
    let silver = filter_record_batch(&typed, &accepted)
        .map_err(|e| KaratError::arrow(ctx("filtering rows"), e))?;
    let silver_partitions = compute::filter(&partitions, &accepted)
        .map_err(|e| KaratError::arrow(ctx("filtering rows"), e))?
        .as_string::<i32>()
        .clone();
    let dead = dead_letters(contract, chunk, &reasons, &partitions, &ingested_at, run_id)?;
    Ok(Validated {
        silver,
        silver_partitions,
        dead,
        rows_in,
        warned,
        failed,
    })
}

/// Each row's partition label ([`UNPLACED`] without a date), and rows per label.
fn placed(
    dates: &ArrayRef,
) -> Result<(StringArray, HashMap<String, u64>), deltalake::arrow::error::ArrowError> {
    let labels = super::labels::of(dates)?;
    let mut out = StringBuilder::with_capacity(labels.len(), labels.len() * 10);
    let mut rows_in: HashMap<String, u64> = HashMap::new();
    let mut run: Option<(&str, u64)> = None;
    for label in labels.iter() {
        let label = label.unwrap_or(UNPLACED);
        out.append_value(label);
        match &mut run {
            Some((l, n)) if *l == label => *n += 1,
            _ => {
                if let Some((l, n)) = run.replace((label, 1)) {
                    *rows_in.entry(l.to_string()).or_default() += n;
                }
            }
        }
    }
    if let Some((l, n)) = run {
        *rows_in.entry(l.to_string()).or_default() += n;
    }
    Ok((out.finish(), rows_in))
}

/// Typed rows with the masked columns masked.
fn masked(contract: &Contract, typed: RecordBatch) -> KaratResult<RecordBatch> {
    if !super::mask::any(contract) {
        return Ok(typed);
    }
    let mut cols = typed.columns().to_vec();
    for (i, c) in contract.spec.columns.iter().enumerate() {
        if let Some(m) = c.mask {
            cols[i] = super::mask::column(m, &cols[i]);
        }
    }
    RecordBatch::try_new(typed.schema(), cols)
        .map_err(|e| KaratError::arrow(format!("table {}: masking", contract.table), e))
}

fn dead_letters(
    contract: &Contract,
    chunk: &RecordBatch,
    reasons: &[Vec<(String, String)>],
    partitions: &StringArray,
    ingested_at: &ArrayRef,
    run_id: &str,
) -> KaratResult<RecordBatch> {
    let dead_count = reasons.iter().filter(|r| !r.is_empty()).count();
    let masks = super::mask::any(contract);
    let s = |name: &str| {
        chunk
            .column_by_name(name)
            .expect("provenance")
            .as_string::<i32>()
            .clone()
    };
    let (batch, source, file) = (s("_batch_id"), s("_source"), s("_file"));
    let raw = chunk
        .column_by_name("_raw")
        .expect("provenance")
        .as_string_view()
        .clone();
    let line = chunk
        .column_by_name("_line")
        .expect("provenance")
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("_line is int64")
        .clone();
    let ts = ingested_at.as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
    let mut b_part = StringBuilder::with_capacity(dead_count, dead_count * 10);
    let mut b_run = StringBuilder::with_capacity(dead_count, dead_count * 36);
    let mut b_rules = ListBuilder::new(StringBuilder::new());
    let mut b_reasons = ListBuilder::new(StringBuilder::new());
    let mut b_raw = StringBuilder::new();
    let mut b_batch = StringBuilder::new();
    let mut b_source = StringBuilder::new();
    let mut b_file = StringBuilder::new();
    let mut b_line = deltalake::arrow::array::Int64Builder::with_capacity(dead_count);
    let mut b_ts = TimestampMicrosecondBuilder::with_capacity(dead_count).with_timezone("UTC");
    for (r, rs) in reasons.iter().enumerate() {
        if rs.is_empty() {
            continue;
        }
        b_part.append_value(partitions.value(r));
        b_run.append_value(run_id);
        for (rule, reason) in rs {
            b_rules.values().append_value(rule);
            b_reasons.values().append_value(reason);
        }
        b_rules.append(true);
        b_reasons.append(true);
        let opt = |a: &StringArray| {
            if a.is_valid(r) {
                Some(a.value(r).to_string())
            } else {
                None
            }
        };
        let text = raw.is_valid(r).then(|| raw.value(r).to_string());
        b_raw.append_option(text.map(|r| {
            if masks {
                super::mask::raw(contract, &r)
            } else {
                r
            }
        }));
        b_batch.append_option(opt(&batch));
        b_source.append_option(opt(&source));
        b_file.append_option(opt(&file));
        b_line.append_option(if line.is_valid(r) {
            Some(line.value(r))
        } else {
            None
        });
        b_ts.append_option(if ts.is_valid(r) {
            Some(ts.value(r))
        } else {
            None
        });
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(b_part.finish()),
        Arc::new(b_run.finish()),
        Arc::new(b_rules.finish()),
        Arc::new(b_reasons.finish()),
        Arc::new(b_raw.finish()),
        Arc::new(b_batch.finish()),
        Arc::new(b_source.finish()),
        Arc::new(b_file.finish()),
        Arc::new(b_line.finish()),
        Arc::new(b_ts.finish()),
    ];
    RecordBatch::try_new(dead_letter_schema(), cols)
        .map_err(|e| KaratError::arrow("building dead letters", e))
}

/// Each row's tumbling dedup window: its `time` in microseconds since the epoch, divided by the
/// window (null where the time is: such a row is a dead letter, `time` being required).
fn dedup_windows(
    typed: &[ArrayRef],
    contract: &Contract,
    d: &crate::config::WindowDedup,
) -> Result<deltalake::arrow::array::Int64Array, deltalake::arrow::error::ArrowError> {
    let i = contract
        .spec
        .columns
        .iter()
        .position(|c| c.name == d.time)
        .expect("dedup time is a contract column (checked at load)");
    let micros = match typed[i].data_type() {
        DataType::Date32 => {
            let days = compute::cast(&typed[i], &DataType::Int64)?;
            compute::kernels::numeric::mul(
                &days,
                &deltalake::arrow::array::Int64Array::new_scalar(86_400_000_000),
            )?
        }
        _ => compute::cast(
            &compute::cast(
                &typed[i],
                &DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, None),
            )?,
            &DataType::Int64,
        )?,
    };
    let window = i64::try_from(d.window.as_micros()).unwrap_or(i64::MAX);
    Ok(micros
        .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
        .iter()
        .map(|m| m.map(|m| m.div_euclid(window)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casting_by_runs_equals_casting_every_row() {
        let opts = CastOptions {
            safe: true,
            format_options: FormatOptions::default(),
        };
        let stamp = "2026-03-28T10:00:00.000001Z";
        let other = "2026-03-29T00:00:00Z";
        let cases: Vec<Vec<Option<&str>>> = vec![
            vec![Some(stamp); 5],
            vec![
                Some(stamp),
                Some(stamp),
                None,
                None,
                Some(other),
                Some(stamp),
            ],
            vec![Some("not a time"), Some("not a time"), Some(stamp)],
            vec![Some(stamp), Some(other)],
            vec![],
        ];
        for values in cases {
            let a: ArrayRef = Arc::new(StringArray::from(values.clone()));
            let by_runs = cast_by_runs(&a, &timestamp_type(), &opts).unwrap();
            let every = compute::cast_with_options(&a, &timestamp_type(), &opts).unwrap();
            assert_eq!(&by_runs, &every, "{values:?}");
        }
    }
}
