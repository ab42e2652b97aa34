//! The rows of the ledger tables (`_karat/runs`, `_karat/steps`, `_karat/silver_batches`,
//! `_karat/contracts`, `_karat/versions`, `_karat/actions`, `_karat/alerts`, `_karat/drift`) and
//! their Arrow schemas. Rows go to Arrow and back through arrow-json's serde bridge, so the structs
//! below are the single definition of each table.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::config::Zone;
use crate::silver::PartitionStatus;
use crate::silver::contract::timestamp_type;

/// Who (or what) started a run or wrote a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Cli,
    Schedule,
    Replay,
    Dashboard,
    Demo,
    Bench,
    /// `karat restore` (and the partition states it puts back).
    Restore,
    /// `karat maintain`.
    Maintain,
    /// `karat ack`.
    Ack,
    /// `karat verify` (its outcome; it writes nothing else).
    Verify,
    /// `karat rebuild` (in the lake it rebuilds into).
    Rebuild,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Replay => "replay",
            Trigger::Dashboard => "dashboard",
            Trigger::Demo => "demo",
            Trigger::Bench => "bench",
            Trigger::Restore => "restore",
            Trigger::Maintain => "maintain",
            Trigger::Ack => "ack",
            Trigger::Verify => "verify",
            Trigger::Rebuild => "rebuild",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `trigger == "replay"` reads as the ledger and the JSON documents spell it.
impl PartialEq<&str> for Trigger {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    /// Everything promoted, some with warnings.
    Warn,
    /// A partition, batch or table failed.
    Failed,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Warn => "warn",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status == "failed"` reads as the ledger and the JSON documents spell it.
impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One pipeline run (a `karat run`, a replay, a scheduled run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: String,
    /// What was asked, e.g. `replay orders --partition 2026-03-28`.
    pub command: String,
    pub error: Option<String>,
    pub rows_in: i64,
    pub dead: i64,
    pub partitions_failed: i64,
}

impl RunRecord {
    /// An operation on the lake that moves no rows (a restore, a maintenance), finished now.
    pub fn operation(run_id: &str, trigger: Trigger, started_at: &str, command: &str) -> RunRecord {
        RunRecord {
            run_id: run_id.to_string(),
            trigger,
            status: RunStatus::Ok,
            started_at: started_at.to_string(),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            command: command.to_string(),
            error: None,
            rows_in: 0,
            dead: 0,
            partitions_failed: 0,
        }
    }
}

/// One unit of work: a bronze batch, or a (table, partition) in silver or gold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub run_id: String,
    pub trigger: Trigger,
    pub zone: Zone,
    /// Source name for bronze, table name otherwise.
    pub table: String,
    /// Partition value, `*` for an unpartitioned gold table, the batch id (or origin) for bronze.
    pub partition: String,
    pub status: PartitionStatus,
    pub started_at: String,
    pub finished_at: String,
    pub rows_in: i64,
    pub rows_out: i64,
    pub dead: i64,
    pub duplicates: i64,
    /// Failure reasons and warnings, one per line.
    pub messages: Option<String>,
    /// JSON object rule → dead-letter count.
    pub dead_by_rule: Option<String>,
    pub schema_fingerprint: Option<String>,
    pub delta_version: Option<i64>,
}

impl StepRecord {
    /// A step of run `r` in `zone`'s `table` and `partition`, ended at `at` with `status`, no
    /// rows and no messages: for tests to adjust.
    #[cfg(test)]
    pub(crate) fn example(
        zone: crate::config::Zone,
        table: &str,
        partition: &str,
        status: crate::silver::PartitionStatus,
        at: &str,
    ) -> StepRecord {
        StepRecord {
            run_id: "r".into(),
            trigger: Trigger::Cli,
            zone,
            table: table.into(),
            partition: partition.into(),
            status,
            started_at: at.into(),
            finished_at: at.into(),
            rows_in: 0,
            rows_out: 0,
            dead: 0,
            duplicates: 0,
            messages: None,
            dead_by_rule: None,
            schema_fingerprint: None,
            delta_version: None,
        }
    }

    /// `dead_by_rule` as a map (empty when there were none, or the text is not a JSON object).
    pub fn dead_by_rule_map(&self) -> std::collections::BTreeMap<String, i64> {
        self.dead_by_rule
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default()
    }
}

/// A bronze batch processed into a silver table, and the contract it was processed with
/// (`contract_of(batch)` of the silver semantics): the latest record per (table, batch) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub table: String,
    pub batch_id: String,
    /// Contract fingerprint.
    pub contract: String,
    pub run_id: String,
    pub processed_at: String,
}

/// The Delta version of one of the lake's tables before and after a run: what `karat restore`
/// returns to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub run_id: String,
    /// The table's folder in the lake (`silver/orders`, `dead_letters/orders`, …).
    pub table: String,
    pub before: Option<i64>,
    pub after: Option<i64>,
}

/// A version of a silver table's contract, recorded by the first run that used it: the schema
/// view diffs the current contract against the version before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractRecord {
    pub table: String,
    pub fingerprint: String,
    /// The [`crate::schema::contract::ContractDoc`] as JSON.
    pub doc: String,
    pub run_id: String,
    pub recorded_at: String,
}

/// A breach notification sent (or attempted) to an `[[alert]]` receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub at: String,
    /// The `[[alert]]` name.
    pub alert: String,
    /// The breach group's correlation key (the same grouping as the dashboard's breaches).
    pub key: String,
    /// `firing`, `resolved` or `suppressed`.
    pub status: String,
    pub severity: String,
    pub summary: String,
    pub zone: String,
    pub table: String,
    /// HTTP attempts made.
    pub attempts: i64,
    /// Whether the receiver accepted it (2xx).
    pub delivered: bool,
    pub error: Option<String>,
    /// The run after which it was sent, if any.
    pub run_id: Option<String>,
}

impl AlertRecord {
    /// Held back while an approved replay ran (never sent).
    pub fn suppressed(&self) -> bool {
        self.status == "suppressed"
    }

    /// `sent to oncall`, `held back from oncall`, `NOT delivered to oncall (4 attempts): …`.
    pub fn delivery(&self) -> String {
        if self.delivered {
            format!("sent to {}", self.alert)
        } else if self.suppressed() {
            format!("held back from {}", self.alert)
        } else {
            format!(
                "NOT delivered to {} ({} attempts): {}",
                self.alert,
                self.attempts,
                self.error.as_deref().unwrap_or("")
            )
        }
    }
}

/// A replay someone approved (`karat replay --approve`, or the dashboard's typed confirmation):
/// while the writer lease it was recorded under is held, alerts on the partitions it rewrites
/// are suppressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub at: String,
    pub user: String,
    pub host: String,
    /// The `karat replay …` command.
    pub command: String,
    /// The writer lease the replay runs under (its `id`).
    pub lease_id: String,
    /// Records the replay's plan reprocesses (when computed), and the budget it was approved over.
    pub records: Option<i64>,
    pub budget: Option<i64>,
    /// JSON: table → the partitions it rewrites (`["*"]`: the whole table).
    pub scope: String,
}

impl ApprovalRecord {
    /// The tables and partitions the approved replay rewrites.
    pub fn scope(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        serde_json::from_str(&self.scope).unwrap_or_default()
    }

    /// Whether it rewrites `partition` of `table` (`None`: any partition of it).
    pub fn covers(&self, table: &str, partition: Option<&str>) -> bool {
        self.scope().get(table).is_some_and(|ps| match partition {
            None => true,
            Some(p) => ps.iter().any(|x| x == "*" || x == p),
        })
    }
}

/// Something a person did from the dashboard, with the equivalent command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub at: String,
    pub user: String,
    pub host: String,
    /// The `karat …` command that does the same.
    pub command: String,
}

/// A schema change between consecutive bronze batches of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRecord {
    pub source: String,
    pub batch_id: String,
    pub previous_batch_id: String,
    pub ingested_at: String,
    /// JSON arrays.
    pub added: String,
    pub removed: String,
    pub changed: String,
    pub run_id: String,
}

fn s(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}
fn i(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}
fn ts(name: &str) -> Field {
    Field::new(name, timestamp_type(), true)
}

pub fn runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("run_id", true),
        s("trigger", true),
        s("status", true),
        ts("started_at"),
        ts("finished_at"),
        s("command", true),
        s("error", true),
        i("rows_in", true),
        i("dead", true),
        i("partitions_failed", true),
    ]))
}

pub fn steps_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("run_id", true),
        s("trigger", true),
        s("zone", true),
        s("table", true),
        s("partition", true),
        s("status", true),
        ts("started_at"),
        ts("finished_at"),
        i("rows_in", true),
        i("rows_out", true),
        i("dead", true),
        i("duplicates", true),
        s("messages", true),
        s("dead_by_rule", true),
        s("schema_fingerprint", true),
        i("delta_version", true),
    ]))
}

pub fn batches_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("table", true),
        s("batch_id", true),
        s("contract", true),
        s("run_id", true),
        ts("processed_at"),
    ]))
}

pub fn versions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("run_id", true),
        s("table", true),
        i("before", true),
        i("after", true),
    ]))
}

pub fn contracts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("table", true),
        s("fingerprint", true),
        s("doc", true),
        s("run_id", true),
        ts("recorded_at"),
    ]))
}

pub fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        ts("at"),
        s("alert", true),
        s("key", true),
        s("status", true),
        s("severity", true),
        s("summary", true),
        s("zone", true),
        s("table", true),
        i("attempts", true),
        Field::new("delivered", DataType::Boolean, true),
        s("error", true),
        s("run_id", true),
    ]))
}

pub fn approvals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        ts("at"),
        s("user", true),
        s("host", true),
        s("command", true),
        s("lease_id", true),
        i("records", true),
        i("budget", true),
        s("scope", true),
    ]))
}

pub fn actions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        ts("at"),
        s("user", true),
        s("host", true),
        s("command", true),
    ]))
}

pub fn drift_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("source", true),
        s("batch_id", true),
        s("previous_batch_id", true),
        ts("ingested_at"),
        s("added", true),
        s("removed", true),
        s("changed", true),
        s("run_id", true),
    ]))
}
