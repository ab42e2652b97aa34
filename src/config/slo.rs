//! `[[table.slo]]`: a service level objective on one of a table's indicators — which SLI, the
//! share of good events it promises (`objective = 99.5`, percent) and over what window
//! (`window = "28d"`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The indicators an SLO can be set on (the seed's M1–M5, M7), each counted as good / total events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SliKind {
    /// Minutes the table was within its `freshness.error_after` (or `warn_after`).
    Freshness,
    /// Records valid under the contract / records processed.
    SchemaCompliance,
    /// Records not superseded by a re-send of their key / records processed.
    DuplicateRate,
    /// Partitions whose volume is within 3 standard deviations of the 14 before them.
    Completeness,
    /// Bronze batches of the table's source landed / attempted.
    IngestSuccess,
    /// The table's steps promoted / steps run.
    JobFailure,
}

impl SliKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SliKind::Freshness => "freshness",
            SliKind::SchemaCompliance => "schema_compliance",
            SliKind::DuplicateRate => "duplicate_rate",
            SliKind::Completeness => "completeness",
            SliKind::IngestSuccess => "ingest_success",
            SliKind::JobFailure => "job_failure",
        }
    }
}

/// `[[table.slo]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub sli: SliKind,
    /// Percent of good events, e.g. 99.5.
    pub objective: Spanned<f64>,
    /// Default `28d`.
    pub window: Option<Spanned<String>>,
}

/// A resolved SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub sli: SliKind,
    /// The promised share of good events, 0 < objective < 1.
    pub objective: f64,
    pub window: Duration,
}
