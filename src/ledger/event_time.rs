//! Event-time freshness (the seed's M2 as consumers feel it): for each table with an
//! `event_time` column, the newest event it holds and how long ago that was — beside the
//! write-time freshness of the status report. For a gold table that is the newest event that
//! reached gold: a failed or blocked partition upstream holds it back. Read from the Delta
//! statistics of the table's files (only promoted partitions are written), never from the data.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::config::{Config, Zone};
use crate::error::KaratResult;
use crate::lake::{Lake, layout, stats};

/// One table's event-time freshness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventLag {
    pub zone: Zone,
    pub table: String,
    pub column: String,
    /// The newest event time the table holds (`None`: nothing yet).
    pub newest: Option<String>,
    /// now − newest, in seconds.
    pub lag_seconds: Option<i64>,
}

/// Parses a date (`2026-03-28`, as its midnight UTC) or an RFC 3339 timestamp.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<DateTime<Utc>>().ok().or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    })
}

/// Every table with an `event_time`, now: for silver what it holds, for gold what reached it.
pub async fn lags(config: &Config, lake: &Lake, now: DateTime<Utc>) -> KaratResult<Vec<EventLag>> {
    let mut out = Vec::new();
    for t in &config.tables {
        let Some(column) = &t.event_time else {
            continue;
        };
        let folder = layout::table(t.zone, &t.name);
        let newest = stats::max_of(&lake.url_of(&folder), &folder, column).await?;
        let lag_seconds = newest
            .as_deref()
            .and_then(instant)
            .map(|n| (now - n).num_seconds().max(0));
        out.push(EventLag {
            zone: t.zone,
            table: t.name.clone(),
            column: column.clone(),
            newest,
            lag_seconds,
        });
    }
    Ok(out)
}

/// The newest event per partition of each table with an `event_time`: (zone, table) →
/// partition → newest, from the Delta statistics (a gold table without `partition_by` has none).
pub async fn newest_by_partition(
    config: &Config,
    lake: &Lake,
) -> KaratResult<BTreeMap<(Zone, String), BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for t in &config.tables {
        let Some(column) = &t.event_time else {
            continue;
        };
        let partition = match (t.silver(), t.gold()) {
            (Some(s), _) => s.partition_column().to_string(),
            (None, Some(g)) => match &g.partition_by {
                Some(p) => p.clone(),
                None => continue,
            },
            _ => continue,
        };
        let folder = layout::table(t.zone, &t.name);
        let newest =
            stats::max_by_partition(&lake.url_of(&folder), &folder, column, &partition).await?;
        out.insert((t.zone, t.name.clone()), newest);
    }
    Ok(out)
}

/// now − `newest` in seconds (a date counts from its midnight UTC).
pub fn lag_of(newest: &str, now: DateTime<Utc>) -> Option<i64> {
    instant(newest).map(|n| (now - n).num_seconds().max(0))
}
