//! The ledger: karat's own history, stored in the lake as Delta tables under `_karat/` so every
//! machine pointed at the same lake sees the same runs. Writing is append-only; reading goes
//! through DataFusion.

pub mod breaches;
pub mod declared;
pub mod event_time;
pub mod records;
pub mod replay_cost;
pub mod sli;
pub mod slo;
pub mod status;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::arrow::json::{ArrayWriter, ReaderBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{KaratError, KaratResult};
use crate::lake::delta::{self, Replace};
use crate::lake::{Lake, layout};
pub use records::{
    ActionRecord, AlertRecord, ApprovalRecord, BatchRecord, ContractRecord, DriftRecord, RunRecord,
    RunStatus, StepRecord, Trigger, VersionRecord,
};

/// Every ledger table (`_karat/<name>`).
pub const TABLES: &[&str] = &[
    "runs",
    "steps",
    "silver_batches",
    "contracts",
    "versions",
    "actions",
    "approvals",
    "alerts",
    "drift",
];

/// Access to the ledger tables of a lake.
#[derive(Debug, Clone)]
pub struct Ledger {
    lake: Lake,
}

fn to_batch<T: Serialize>(rows: &[T], schema: SchemaRef, what: &str) -> KaratResult<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(|e| KaratError::arrow(format!("ledger {what}"), e))?;
    decoder
        .serialize(rows)
        .map_err(|e| KaratError::arrow(format!("ledger {what}"), e))?;
    Ok(decoder
        .flush()
        .map_err(|e| KaratError::arrow(format!("ledger {what}"), e))?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

fn from_batches<T: DeserializeOwned>(batches: &[RecordBatch], what: &str) -> KaratResult<Vec<T>> {
    let mut w = ArrayWriter::new(Vec::new());
    for b in batches {
        w.write(b)
            .map_err(|e| KaratError::arrow(format!("ledger {what}"), e))?;
    }
    w.finish()
        .map_err(|e| KaratError::arrow(format!("ledger {what}"), e))?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| KaratError::Other(format!("ledger {what}: {e}")))?;
    // the timestamp columns (only those: a text column may look like a time, or a path)
    let timestamps: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .filter(|f| matches!(f.data_type(), DataType::Timestamp(..)))
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    values
        .into_iter()
        .map(|mut v| {
            // arrow-json writes UTC timestamps without a trailing Z; keep them RFC 3339
            if let serde_json::Value::Object(m) = &mut v {
                for (k, x) in m.iter_mut() {
                    if let serde_json::Value::String(s) = x
                        && timestamps.contains(k)
                        && !s.ends_with('Z')
                        && !s.contains('+')
                    {
                        s.push('Z');
                    }
                }
            }
            serde_json::from_value(v).map_err(|e| KaratError::Other(format!("ledger {what}: {e}")))
        })
        .collect()
}

impl Ledger {
    pub fn new(lake: &Lake) -> Ledger {
        Ledger { lake: lake.clone() }
    }

    async fn append<T: Serialize>(
        &self,
        name: &str,
        rows: &[T],
        schema: SchemaRef,
    ) -> KaratResult<()> {
        if rows.is_empty() {
            // nothing to write: the step is as durable as it gets (the fault point still fires,
            // so a crash here is tested whether or not this run had rows for the table)
            crate::lake::fault::after(&format!("ledger.{name}"));
            return Ok(());
        }
        let batch = to_batch(rows, schema.clone(), name)?;
        let url = self.lake.url_of(&layout::ledger(name));
        let label = format!("_karat.{name}");
        delta::write(
            &url,
            &label,
            schema,
            vec![batch],
            None,
            Replace::Append,
            vec![],
        )
        .await?;
        // a file a run: merged every few runs, so reading the ledger stays cheap. The rows are
        // committed: a compaction that fails (racing another) is left to a later append or to
        // `karat maintain`
        let meta = vec![("karat.operation".to_string(), serde_json::json!("compact"))];
        let _ = crate::lake::compact::crowded_partitions(&url, &label, meta).await;
        crate::lake::fault::after(&format!("ledger.{name}"));
        Ok(())
    }

    async fn read<T: DeserializeOwned>(&self, name: &str, filter: &str) -> KaratResult<Vec<T>> {
        let ctx = delta::session();
        if !delta::register(&ctx, "t", &self.lake.url_of(&layout::ledger(name))).await? {
            return Ok(Vec::new());
        }
        let batches = delta::query(
            &ctx,
            &format!("SELECT * FROM t {filter}"),
            &format!("reading ledger {name}"),
        )
        .await?;
        from_batches(&batches, name)
    }

    pub async fn append_run(&self, run: &RunRecord) -> KaratResult<()> {
        self.append("runs", std::slice::from_ref(run), records::runs_schema())
            .await
    }

    pub async fn append_steps(&self, steps: &[StepRecord]) -> KaratResult<()> {
        self.append("steps", steps, records::steps_schema()).await
    }

    pub async fn append_batches(&self, rows: &[BatchRecord]) -> KaratResult<()> {
        self.append("silver_batches", rows, records::batches_schema())
            .await
    }

    pub async fn append_versions(&self, rows: &[VersionRecord]) -> KaratResult<()> {
        self.append("versions", rows, records::versions_schema())
            .await
    }

    /// Every processing record of a silver table's batches, oldest first (a batch is
    /// re-recorded each time a replay re-processes it).
    pub async fn batch_history(&self, table: &str) -> KaratResult<Vec<BatchRecord>> {
        let t = table.replace('\'', "''");
        let mut rows: Vec<BatchRecord> = self
            .read("silver_batches", &format!("WHERE \"table\" = '{t}'"))
            .await?;
        rows.sort_by(|a, b| a.processed_at.cmp(&b.processed_at));
        Ok(rows)
    }

    /// The table versions a run recorded.
    pub async fn versions(&self, run_id: &str) -> KaratResult<Vec<VersionRecord>> {
        let id = run_id.replace('\'', "''");
        self.read(
            "versions",
            &format!("WHERE run_id = '{id}' ORDER BY \"table\""),
        )
        .await
    }

    pub async fn append_contracts(&self, rows: &[ContractRecord]) -> KaratResult<()> {
        self.append("contracts", rows, records::contracts_schema())
            .await
    }

    /// Every recorded contract version, oldest first.
    pub async fn contracts(&self) -> KaratResult<Vec<ContractRecord>> {
        let mut v: Vec<ContractRecord> = self.read("contracts", "").await?;
        v.sort_by(|a, b| a.recorded_at.cmp(&b.recorded_at));
        Ok(v)
    }

    pub async fn append_alerts(&self, rows: &[AlertRecord]) -> KaratResult<()> {
        self.append("alerts", rows, records::alerts_schema()).await
    }

    /// Every notification sent or attempted, oldest first.
    pub async fn alerts(&self) -> KaratResult<Vec<AlertRecord>> {
        let mut v: Vec<AlertRecord> = self.read("alerts", "").await?;
        v.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(v)
    }

    pub async fn append_approval(&self, approval: &ApprovalRecord) -> KaratResult<()> {
        self.append(
            "approvals",
            std::slice::from_ref(approval),
            records::approvals_schema(),
        )
        .await
    }

    /// Every approved replay, oldest first.
    pub async fn approvals(&self) -> KaratResult<Vec<ApprovalRecord>> {
        let mut v: Vec<ApprovalRecord> = self.read("approvals", "").await?;
        v.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(v)
    }

    pub async fn append_action(&self, action: &ActionRecord) -> KaratResult<()> {
        self.append(
            "actions",
            std::slice::from_ref(action),
            records::actions_schema(),
        )
        .await
    }

    /// Every action taken from a dashboard, oldest first.
    pub async fn actions(&self) -> KaratResult<Vec<ActionRecord>> {
        let mut v: Vec<ActionRecord> = self.read("actions", "").await?;
        v.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(v)
    }

    pub async fn append_drift(&self, rows: &[DriftRecord]) -> KaratResult<()> {
        self.append("drift", rows, records::drift_schema()).await
    }

    /// Every run, oldest first.
    pub async fn runs(&self) -> KaratResult<Vec<RunRecord>> {
        let mut v: Vec<RunRecord> = self.read("runs", "").await?;
        v.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok(v)
    }

    /// Every step, oldest first.
    pub async fn steps(&self) -> KaratResult<Vec<StepRecord>> {
        let mut v: Vec<StepRecord> = self.read("steps", "").await?;
        v.sort_by(|a, b| {
            (&a.finished_at, &a.table, &a.partition).cmp(&(&b.finished_at, &b.table, &b.partition))
        });
        Ok(v)
    }

    /// The batches a silver table has processed, each with the contract of its latest
    /// processing.
    pub async fn batches(&self, table: &str) -> KaratResult<Vec<BatchRecord>> {
        let t = table.replace('\'', "''");
        let rows: Vec<BatchRecord> = self
            .read("silver_batches", &format!("WHERE \"table\" = '{t}'"))
            .await?;
        let mut latest: std::collections::BTreeMap<String, BatchRecord> = Default::default();
        for r in rows {
            match latest.get(&r.batch_id) {
                Some(old) if old.processed_at >= r.processed_at => {}
                _ => {
                    latest.insert(r.batch_id.clone(), r);
                }
            }
        }
        Ok(latest.into_values().collect())
    }

    /// Every drift event, oldest first.
    pub async fn drift(&self) -> KaratResult<Vec<DriftRecord>> {
        let mut v: Vec<DriftRecord> = self.read("drift", "").await?;
        v.sort_by(|a, b| a.ingested_at.cmp(&b.ingested_at));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Zone;
    use crate::silver::PartitionStatus;

    #[test]
    fn text_that_looks_like_a_time_round_trips_unchanged() {
        let step = StepRecord {
            run_id: "r".into(),
            trigger: crate::ledger::Trigger::Cli,
            zone: Zone::Bronze,
            table: "orders".into(),
            // the 11th character is a T, as in a time: still not a timestamp column
            partition: "/tmp/.tmpATxyzw/data/orders-2026-03-27.ndjson.gz".into(),
            status: PartitionStatus::Failed,
            started_at: "2026-11-23T01:02:03.000004Z".into(),
            finished_at: "2026-11-23T01:02:04.000005Z".into(),
            rows_in: 1,
            rows_out: 0,
            dead: 0,
            duplicates: 0,
            messages: Some("2026-11-23T01:02:03 something".into()),
            dead_by_rule: None,
            schema_fingerprint: None,
            delta_version: None,
        };
        let batch = to_batch(
            std::slice::from_ref(&step),
            records::steps_schema(),
            "steps",
        )
        .unwrap();
        let back: Vec<StepRecord> = from_batches(&[batch], "steps").unwrap();
        assert_eq!(back, vec![step]);
    }
}
