//! Completeness against what sources declared (M7 for a source with `expected_count_field`):
//! the records that landed in each bronze batch against the count the source said it sent,
//! read from the batch manifests, and summed per source and ingest date as observed/expected.
//! A batch that came short is named with its origin, so the missing rows can be asked for.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::error::KaratResult;
use crate::lake::Lake;

/// One bronze batch of a source that declares its counts (whether this batch declared one or not).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeclaredBatch {
    pub source: String,
    pub batch_id: String,
    pub origin: String,
    pub ingested_at: String,
    pub ingest_date: String,
    /// Records that landed (valid JSON or kept as `_raw`).
    pub records: u64,
    /// Records the source declared (0 when it declared nothing for this batch).
    pub expected: u64,
    /// Whether the source declared a count for this batch (its manifest was there and readable).
    pub declared: bool,
}

impl DeclaredBatch {
    /// Records declared but not received.
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.records)
    }

    /// Complete: declared, and every declared record arrived.
    pub fn complete(&self) -> bool {
        self.declared && self.missing() == 0
    }
}

/// Observed against expected records of one ingest date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayCount {
    pub ingest_date: String,
    pub records: u64,
    pub expected: u64,
}

/// A source's completeness over every declared batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceCompleteness {
    pub source: String,
    pub records: u64,
    pub expected: u64,
    /// Oldest first.
    pub days: Vec<DayCount>,
    /// The batches with fewer records than declared, oldest first.
    pub short: Vec<DeclaredBatch>,
    /// Batches that landed without a declaration (no manifest beside the file, or none readable).
    pub undeclared: usize,
}

impl SourceCompleteness {
    /// `declared 990/1000 records (1 batch(es) short, latest orders-2.ndjson: 90/100)`.
    pub fn describe(&self) -> String {
        let mut text = format!("declared {}/{} records", self.records, self.expected);
        if let Some(last) = self.short.last() {
            // the file (or URL) the source sent short, by its last path segment
            let name = last
                .origin
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or(&last.origin);
            text.push_str(&format!(
                " ({} batch(es) short, latest {name}: {}/{})",
                self.short.len(),
                last.records,
                last.expected
            ));
        }
        if self.undeclared > 0 {
            text.push_str(&format!(", {} batch(es) undeclared", self.undeclared));
        }
        text
    }

    /// Something is short or undeclared.
    pub fn incomplete(&self) -> bool {
        !self.short.is_empty() || self.undeclared > 0
    }
}

/// Every batch of every source that declares its counts, oldest first per source.
pub async fn batches(config: &Config, lake: &Lake) -> KaratResult<Vec<DeclaredBatch>> {
    let mut out = Vec::new();
    for s in config
        .sources
        .iter()
        .filter(|s| s.expected_count_field.is_some())
    {
        for m in crate::bronze::manifest::list(lake, &s.name).await? {
            out.push(DeclaredBatch {
                source: m.source,
                batch_id: m.batch_id,
                origin: m.origin,
                ingested_at: m.ingested_at,
                ingest_date: m.ingest_date,
                records: m.records,
                expected: m.expected_records.unwrap_or(0),
                declared: m.expected_records.is_some(),
            });
        }
    }
    Ok(out)
}

/// Per source: the totals, the counts per ingest date and the short batches.
pub fn summarize(batches: &[DeclaredBatch]) -> Vec<SourceCompleteness> {
    let mut per: BTreeMap<&str, SourceCompleteness> = BTreeMap::new();
    for b in batches {
        let s = per
            .entry(b.source.as_str())
            .or_insert_with(|| SourceCompleteness {
                source: b.source.clone(),
                records: 0,
                expected: 0,
                days: Vec::new(),
                short: Vec::new(),
                undeclared: 0,
            });
        if !b.declared {
            s.undeclared += 1;
            continue;
        }
        s.records += b.records;
        s.expected += b.expected;
        match s.days.iter_mut().find(|d| d.ingest_date == b.ingest_date) {
            Some(d) => {
                d.records += b.records;
                d.expected += b.expected;
            }
            None => s.days.push(DayCount {
                ingest_date: b.ingest_date.clone(),
                records: b.records,
                expected: b.expected,
            }),
        }
        if b.missing() > 0 {
            s.short.push(b.clone());
        }
    }
    let mut out: Vec<SourceCompleteness> = per.into_values().collect();
    for s in &mut out {
        s.days.sort_by(|a, b| a.ingest_date.cmp(&b.ingest_date));
        s.short.sort_by(|a, b| a.ingested_at.cmp(&b.ingested_at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, date: &str, records: u64, expected: u64) -> DeclaredBatch {
        DeclaredBatch {
            source: "orders".into(),
            batch_id: id.into(),
            origin: format!("{id}.ndjson"),
            ingested_at: format!("{date}T00:00:00Z"),
            ingest_date: date.into(),
            records,
            expected,
            declared: true,
        }
    }

    #[test]
    fn days_sum_their_batches_and_short_batches_are_named() {
        let s = summarize(&[
            b("a", "2026-03-27", 10, 10),
            b("b", "2026-03-28", 9, 10),
            b("c", "2026-03-28", 5, 5),
        ]);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].records, s[0].expected), (24, 25));
        assert_eq!(
            s[0].days,
            vec![
                DayCount {
                    ingest_date: "2026-03-27".into(),
                    records: 10,
                    expected: 10
                },
                DayCount {
                    ingest_date: "2026-03-28".into(),
                    records: 14,
                    expected: 15
                },
            ]
        );
        assert_eq!(s[0].short.len(), 1);
        assert!(
            s[0].describe().ends_with("short, latest b.ndjson: 9/10)"),
            "{}",
            s[0].describe()
        );
    }
}
