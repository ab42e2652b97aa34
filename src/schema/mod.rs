//! Schemas over time: fingerprints of contracts and gold outputs, a source's schema history
//! (inferred bronze schema per batch, with the diff against the previous batch), and the
//! three-way diff of a silver table (batch vs contract vs previous contract).

pub mod table_diff;
pub mod three_way;

use deltalake::arrow::datatypes::Schema;
use serde::Serialize;

use std::collections::BTreeMap;

use deltalake::arrow::array::{Array, Int64Array};

use crate::bronze::{SchemaDiff, drift, manifest};
use crate::error::{KaratError, KaratResult};
use crate::lake::delta;
use crate::lake::{Lake, layout};
use crate::ledger::Ledger;
use crate::pipeline::Plan;
use crate::silver::contract_doc::ContractDoc;
use three_way::ThreeWay;

/// Short fingerprint of an Arrow schema (names and types).
pub fn contract_fingerprint(schema: &Schema) -> String {
    let map = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    manifest::schema_fingerprint(&map)
}

/// One batch in a source's schema history.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaVersion {
    pub batch_id: String,
    pub ingested_at: String,
    pub origin: String,
    pub fingerprint: String,
    pub fields: Vec<(String, String)>,
    /// Difference from the previous batch (empty for the first).
    pub diff: SchemaDiff,
}

/// The schema history of a source, oldest first.
pub async fn history(lake: &Lake, source: &str) -> KaratResult<Vec<SchemaVersion>> {
    let manifests = manifest::list(lake, source).await?;
    let mut out = Vec::new();
    let mut prev: Option<&manifest::Manifest> = None;
    for m in &manifests {
        out.push(SchemaVersion {
            batch_id: m.batch_id.clone(),
            ingested_at: m.ingested_at.clone(),
            origin: m.origin.clone(),
            fingerprint: m.schema_fingerprint(),
            fields: m
                .schema
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            diff: prev
                .map(|p| drift::diff(&p.schema, &m.schema))
                .unwrap_or_default(),
        });
        prev = Some(m);
    }
    Ok(out)
}

/// The three-way diff of silver `table` for one bronze batch of its source (`None`: the newest):
/// the batch's inferred schema, the current contract and the version recorded before it, with the
/// dead letters of that batch per column.
pub async fn three_way_of(
    plan: &Plan,
    lake: &Lake,
    table: &str,
    batch: Option<&str>,
) -> KaratResult<ThreeWay> {
    let t = plan.config.table_or_err(table)?;
    let spec = t.silver().ok_or_else(|| {
        KaratError::Usage(format!(
            "{table} is a {} table; the three-way schema diff compares a silver contract",
            t.zone
        ))
    })?;
    let manifests = manifest::list(lake, &spec.from).await?;
    let m = match batch {
        Some(id) => manifests.iter().find(|m| m.batch_id == id).ok_or_else(|| {
            KaratError::Usage(format!(
                "source {} of table {table} has no bronze batch {id} ({} batches)",
                spec.from,
                manifests.len()
            ))
        })?,
        None => manifests.last().ok_or_else(|| {
            KaratError::Usage(format!(
                "source {} of table {table} has no bronze batch yet: run first",
                spec.from
            ))
        })?,
    };
    let current = ContractDoc::of(table, spec);
    let records = Ledger::new(lake).contracts().await?;
    let previous = three_way::previous_contract(&records, &current);
    let dead = dead_by_rule_of_batch(lake, table, &m.batch_id).await?;
    Ok(three_way::three_way(
        &m.batch_id,
        &m.schema,
        &current,
        previous.as_ref(),
        &dead,
    ))
}

/// Dead letters of one bronze batch in `table`, per failed rule (a row counts for each rule it
/// broke).
async fn dead_by_rule_of_batch(
    lake: &Lake,
    table: &str,
    batch_id: &str,
) -> KaratResult<BTreeMap<String, i64>> {
    let ctx = delta::session();
    if !delta::register(&ctx, "dl", &lake.url_of(&layout::dead_letters(table))).await? {
        return Ok(BTreeMap::new());
    }
    let sql = format!(
        "SELECT rule, CAST(count(*) AS BIGINT) AS n FROM \
         (SELECT unnest(rules) AS rule FROM dl WHERE batch_id = '{}') GROUP BY rule",
        batch_id.replace('\'', "''")
    );
    let what = format!("counting dead letters of batch {batch_id} in {table}");
    let mut out = BTreeMap::new();
    for b in delta::query(&ctx, &sql, &what).await? {
        let rules = delta::utf8(b.column(0));
        let Some(counts) = b.column(1).as_any().downcast_ref::<Int64Array>() else {
            return Err(KaratError::Other(format!("{what}: counts are not int64")));
        };
        for i in 0..b.num_rows() {
            if rules.is_valid(i) {
                out.insert(rules.value(i).to_string(), counts.value(i));
            }
        }
    }
    Ok(out)
}
