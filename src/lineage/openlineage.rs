//! OpenLineage events (spec 2-0-2) for a run: START and COMPLETE / FAIL for the run itself and
//! for every step (a source's ingest, a silver table, a gold table), each step's run pointing at
//! the pipeline run through the `parent` facet. Datasets are named in the lake's namespace
//! (`file` + path, `s3://bucket` + key). Outputs carry the `schema` facet, gold outputs
//! `columnLineage` (from the gold SQL's logical plan); inputs carry `dataQualityMetrics` (rows,
//! and nulls per column from the Delta statistics) and, for silver, `dataQualityAssertions`
//! (each contract rule: did any record break it). Sent with the HTTP transport to
//! `<url>/api/v1/lineage` after every run and replay.

use std::collections::BTreeMap;

use deltalake::arrow::datatypes::SchemaRef;
use serde_json::{Value, json};

use crate::config::{OpenLineage, SourceSpec, Zone};
use crate::error::KaratResult;
use crate::lake::{Lake, layout, stats};
use crate::pipeline::{Plan, RunReport};
use crate::silver::PartitionOutcome;

const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const FACETS: &str = "https://openlineage.io/spec/facets";

fn producer() -> String {
    format!(
        "https://github.com/karat-data/karat/tree/v{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// A facet: its fields plus `_producer` and `_schemaURL`.
fn facet(schema: &str, fields: Value) -> Value {
    let mut v = fields;
    v["_producer"] = json!(producer());
    v["_schemaURL"] = json!(format!("{FACETS}/{schema}"));
    v
}

/// A dataset's (namespace, name) for a lake folder.
fn dataset_id(lake: &Lake, folder: &str) -> (String, String) {
    let url = lake.url_of(folder);
    let path = url.path().trim_end_matches('/').to_string();
    match url.scheme() {
        "file" => ("file".into(), path),
        scheme => (
            format!("{scheme}://{}", url.host_str().unwrap_or("")),
            path.trim_start_matches('/').to_string(),
        ),
    }
}

fn schema_facet(schema: &SchemaRef) -> Value {
    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    facet(
        "1-0-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
        json!({ "fields": fields }),
    )
}

/// What the events of one step say.
struct Step {
    job: String,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    /// Why it failed (`None`: it completed).
    failure: Option<String>,
}

/// Builds and sends the events of `report`; returns how many the receiver accepted and the
/// first error. Nothing is sent without `[openlineage]`.
pub async fn emit(
    plan: &Plan,
    lake: &Lake,
    report: &RunReport,
) -> KaratResult<(usize, Option<String>)> {
    let Some(ol) = &plan.config.openlineage else {
        return Ok((0, None));
    };
    let events = events(plan, lake, ol, report).await?;
    let mut endpoint = ol.url.clone();
    endpoint.set_path(&format!(
        "{}/api/v1/lineage",
        ol.url.path().trim_end_matches('/')
    ));
    let headers: Vec<(String, String)> = ol
        .api_key
        .iter()
        .map(|k| ("Authorization".to_string(), format!("Bearer {k}")))
        .collect();
    let mut sent = 0;
    let mut first_error = None;
    for e in &events {
        let outcome = crate::webhook::post_json("openlineage", &endpoint, &headers, e).await;
        match outcome.error {
            None => sent += 1,
            Some(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    Ok((sent, first_error))
}

/// Every event of `report`: the run's START, each step's START and COMPLETE / FAIL, the run's
/// COMPLETE / FAIL.
pub async fn events(
    plan: &Plan,
    lake: &Lake,
    ol: &OpenLineage,
    report: &RunReport,
) -> KaratResult<Vec<Value>> {
    let job = plan.config.project.clone();
    let mut steps = Vec::new();
    steps.extend(bronze_steps(plan, lake, report));
    steps.extend(silver_steps(plan, lake, report));
    steps.extend(gold_steps(plan, lake, report).await?);
    let mut out = vec![event(
        "START",
        &report.started_at,
        &report.run_id,
        &ol.namespace,
        &job,
        json!({}),
        vec![],
        vec![],
    )];
    let parent = facet(
        "1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
        json!({
            "run": {"runId": report.run_id},
            "job": {"namespace": ol.namespace, "name": job},
        }),
    );
    for s in steps {
        let step_job = format!("{job}.{}", s.job);
        out.extend(step_events(s, report, ol, &step_job, &parent));
    }
    out.push(run_end(report, ol, &job));
    Ok(out)
}

/// A step's START and its COMPLETE / FAIL, as a child run of the pipeline run.
fn step_events(
    s: Step,
    report: &RunReport,
    ol: &OpenLineage,
    job: &str,
    parent: &Value,
) -> [Value; 2] {
    let run_id = uuid::Uuid::now_v7().to_string();
    let facets = json!({ "parent": parent.clone() });
    let bare = |v: &Vec<Value>| -> Vec<Value> {
        v.iter()
            .map(|d| json!({"namespace": d["namespace"], "name": d["name"]}))
            .collect()
    };
    let start = event(
        "START",
        &report.started_at,
        &run_id,
        &ol.namespace,
        job,
        facets.clone(),
        bare(&s.inputs),
        bare(&s.outputs),
    );
    let mut end_facets = facets;
    let kind = match &s.failure {
        None => "COMPLETE",
        Some(message) => {
            end_facets["errorMessage"] = error_facet(message);
            "FAIL"
        }
    };
    let end = event(
        kind,
        &report.finished_at,
        &run_id,
        &ol.namespace,
        job,
        end_facets,
        s.inputs,
        s.outputs,
    );
    [start, end]
}

/// The pipeline run's COMPLETE, or FAIL with what failed.
fn run_end(report: &RunReport, ol: &OpenLineage, job: &str) -> Value {
    let failed = report.status == crate::ledger::RunStatus::Failed;
    let mut facets = json!({});
    if failed {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.table, e.error))
            .collect();
        let message = if errors.is_empty() {
            format!("{} partition(s) or batch(es) failed", report.failures())
        } else {
            errors.join("; ")
        };
        facets["errorMessage"] = error_facet(&message);
    }
    event(
        if failed { "FAIL" } else { "COMPLETE" },
        &report.finished_at,
        &report.run_id,
        &ol.namespace,
        job,
        facets,
        vec![],
        vec![],
    )
}

fn error_facet(message: &str) -> Value {
    facet(
        "1-0-0/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
        json!({"message": message, "programmingLanguage": "rust"}),
    )
}

#[allow(clippy::too_many_arguments)]
fn event(
    kind: &str,
    at: &str,
    run_id: &str,
    namespace: &str,
    job: &str,
    run_facets: Value,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
) -> Value {
    json!({
        "eventType": kind,
        "eventTime": at,
        "producer": producer(),
        "schemaURL": RUN_EVENT,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": namespace, "name": job},
        "inputs": inputs,
        "outputs": outputs,
    })
}

fn dataset(lake: &Lake, folder: &str, facets: Value) -> Value {
    let (namespace, name) = dataset_id(lake, folder);
    json!({"namespace": namespace, "name": name, "facets": facets})
}

/// A source's ingest: the source's files or endpoint → its bronze batches.
fn bronze_steps(plan: &Plan, lake: &Lake, report: &RunReport) -> Vec<Step> {
    report
        .bronze
        .iter()
        .map(|b| {
            let input = match plan.config.source(&b.source).map(|s| &s.spec) {
                Some(SourceSpec::Files { glob, .. }) => json!({"namespace": "file", "name": glob}),
                Some(SourceSpec::Http(h)) => {
                    let u = url::Url::parse(&h.url).ok();
                    let ns = u
                        .as_ref()
                        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
                        .unwrap_or_else(|| "http".into());
                    let name = u
                        .map(|u| u.path().to_string())
                        .unwrap_or_else(|| h.url.clone());
                    json!({"namespace": ns, "name": name})
                }
                None => json!({"namespace": "unknown", "name": b.source}),
            };
            let failure = (!b.failed.is_empty()).then(|| {
                b.failed
                    .iter()
                    .map(|f| format!("{}: {}", f.origin, f.error))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            Step {
                job: format!("bronze.{}", b.source),
                inputs: vec![input],
                outputs: vec![dataset(lake, &layout::bronze_source(&b.source), json!({}))],
                failure,
            }
        })
        .collect()
}

/// Why some partitions were not promoted, in one line.
fn failures(partitions: &[PartitionOutcome]) -> Option<String> {
    let failed: Vec<String> = partitions
        .iter()
        .filter(|p| !p.status.promoted())
        .map(|p| {
            format!(
                "{} {}: {}",
                p.partition,
                p.status.as_str(),
                p.messages.first().cloned().unwrap_or_default()
            )
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// A silver table: its bronze batches (with the contract's assertions) → silver and dead letters.
fn silver_steps(plan: &Plan, lake: &Lake, report: &RunReport) -> Vec<Step> {
    report
        .silver
        .iter()
        .filter_map(|r| {
            let contract = plan.contracts.get(&r.table)?;
            let mut dead: BTreeMap<&str, u64> = BTreeMap::new();
            for p in &r.partitions {
                for (rule, n) in &p.dead_by_rule {
                    *dead.entry(rule.as_str()).or_default() += n;
                }
            }
            let rows_in: u64 = r.partitions.iter().map(|p| p.rows_in).sum();
            let assertions: Vec<Value> = assertions_of(contract)
                .into_iter()
                .map(|(id, column)| {
                    json!({
                        "assertion": id,
                        "success": dead.get(id.as_str()).copied().unwrap_or(0) == 0,
                        "column": column,
                        "severity": "error",
                    })
                })
                .collect();
            let mut input = dataset(lake, &layout::bronze_source(&contract.spec.from), json!({}));
            input["inputFacets"] = json!({
                "dataQualityAssertions": facet(
                    "1-2-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet",
                    json!({"assertions": assertions}),
                ),
                "dataQualityMetrics": facet(
                    "1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet",
                    json!({"rowCount": rows_in, "columnMetrics": {}}),
                ),
            });
            let silver = dataset(
                lake,
                &layout::table(Zone::Silver, &r.table),
                json!({"schema": schema_facet(&contract.silver_schema)}),
            );
            let dead_letters = dataset(
                lake,
                &layout::dead_letters(&r.table),
                json!({"schema": schema_facet(&crate::silver::contract::dead_letter_schema())}),
            );
            Some(Step {
                job: format!("silver.{}", r.table),
                inputs: vec![input],
                outputs: vec![silver, dead_letters],
                failure: failures(&r.partitions),
            })
        })
        .collect()
}

/// Every check a contract makes, as (assertion id, column): types, required values, rules.
fn assertions_of(contract: &crate::silver::contract::Contract) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, c) in contract.spec.columns.iter().enumerate() {
        out.push((format!("{}.type", c.name), c.name.clone()));
        if contract.required(i) {
            out.push((format!("{}.required", c.name), c.name.clone()));
        }
    }
    for r in &contract.rules {
        let column = contract.spec.columns[r.column].name.clone();
        out.push((r.id.clone(), column));
    }
    out
}

/// A gold table: its input tables (with their Delta statistics) → the gold table, with the
/// lineage of every column.
async fn gold_steps(plan: &Plan, lake: &Lake, report: &RunReport) -> KaratResult<Vec<Step>> {
    let mut out = Vec::new();
    for g in &report.gold {
        let Some(gp) = plan.gold_plan(&g.table) else {
            continue;
        };
        let mut inputs = Vec::new();
        let mut folders: BTreeMap<String, String> = BTreeMap::new();
        for name in &gp.inputs {
            let zone = plan
                .config
                .table(name)
                .map(|t| t.zone)
                .unwrap_or(Zone::Silver);
            let folder = layout::table(zone, name);
            folders.insert(name.clone(), folder.clone());
            let mut input = dataset(lake, &folder, json!({}));
            if let Some(stats) = stats::stats(&lake.url_of(&folder), &folder).await? {
                let columns: BTreeMap<&String, Value> = stats
                    .nulls
                    .iter()
                    .map(|(c, n)| (c, json!({"nullCount": n})))
                    .collect();
                input["inputFacets"] = json!({
                    "dataQualityMetrics": facet(
                        "1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet",
                        json!({"rowCount": stats.rows, "fileCount": stats.files, "columnMetrics": columns}),
                    ),
                });
            }
            inputs.push(input);
        }
        let mut fields = serde_json::Map::new();
        for c in &gp.columns {
            let input_fields: Vec<Value> = c
                .inputs
                .iter()
                .filter_map(|i| {
                    let (namespace, name) = dataset_id(lake, folders.get(&i.table)?);
                    Some(json!({"namespace": namespace, "name": name, "field": i.column}))
                })
                .collect();
            fields.insert(c.column.clone(), json!({ "inputFields": input_fields }));
        }
        let output = dataset(
            lake,
            &layout::table(Zone::Gold, &g.table),
            json!({
                "schema": schema_facet(&gp.schema),
                "columnLineage": facet(
                    "1-1-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
                    json!({ "fields": fields }),
                ),
            }),
        );
        out.push(Step {
            job: format!("gold.{}", g.table),
            inputs,
            outputs: vec![output],
            failure: failures(&g.partitions),
        });
    }
    Ok(out)
}
