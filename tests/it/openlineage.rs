//! OpenLineage events as a lineage backend receives them: the demo's days run by `karat run`
//! processes post to a receiver on loopback, then the fix and `karat replay --failed`. Every
//! event is validated against the OpenLineage JSON schemas vendored under
//! `tests/openlineage/spec` (the core RunEvent and each facet's own schema), and the events say
//! what happened: the failed silver partition is a FAIL with its reason, the replay a COMPLETE,
//! gold columns trace back to silver columns.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{Receiver, Scratch, finish, spawn_karat};

/// The vendored schemas by every URL they are referenced by.
struct Spec {
    schemas: HashMap<String, Value>,
}

impl jsonschema::Retrieve for Spec {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().split('#').next().unwrap_or("");
        self.schemas
            .get(key)
            .cloned()
            .ok_or_else(|| format!("not vendored: {uri}").into())
    }
}

fn spec_file(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openlineage/spec")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Validators: the core event, and each facet by the name it is attached under.
pub struct Validators {
    event: jsonschema::Validator,
    facets: HashMap<&'static str, jsonschema::Validator>,
}

impl Validators {
    pub fn new() -> Validators {
        let core = spec_file("OpenLineage.json");
        let facet_files = [
            ("schema", "SchemaDatasetFacet.json"),
            ("columnLineage", "ColumnLineageDatasetFacet.json"),
            (
                "dataQualityMetrics",
                "DataQualityMetricsInputDatasetFacet.json",
            ),
            (
                "dataQualityAssertions",
                "DataQualityAssertionsDatasetFacet.json",
            ),
            ("parent", "ParentRunFacet.json"),
            ("errorMessage", "ErrorMessageRunFacet.json"),
        ];
        let mut schemas = HashMap::new();
        for v in ["1-0-2", "2-0-2", "2-0-7"] {
            schemas.insert(
                format!("https://openlineage.io/spec/{v}/OpenLineage.json"),
                core.clone(),
            );
        }
        let mut facet_schemas = Vec::new();
        for (name, file) in facet_files {
            let s = spec_file(file);
            schemas.insert(s["$id"].as_str().unwrap().to_string(), s.clone());
            facet_schemas.push((name, s));
        }
        let build = |schema: &Value| {
            jsonschema::options()
                .should_validate_formats(true)
                .with_retriever(Spec {
                    schemas: schemas.clone(),
                })
                .build(schema)
                .expect("the vendored schema compiles")
        };
        Validators {
            event: build(&core),
            facets: facet_schemas
                .iter()
                .map(|(name, s)| (*name, build(s)))
                .collect(),
        }
    }

    /// Every violation in `event`, the core schema's and each known facet's.
    pub fn errors(&self, event: &Value) -> Vec<String> {
        let mut out: Vec<String> = self
            .event
            .iter_errors(event)
            .map(|e| format!("event: {e} at {}", e.instance_path()))
            .collect();
        let mut facets: Vec<(&str, &Value)> = Vec::new();
        let maps = [&event["run"]["facets"], &event["job"]["facets"]];
        for m in maps {
            if let Some(o) = m.as_object() {
                facets.extend(o.iter().map(|(k, v)| (k.as_str(), v)));
            }
        }
        for d in event["inputs"]
            .as_array()
            .into_iter()
            .chain(event["outputs"].as_array())
            .flatten()
        {
            for key in ["facets", "inputFacets", "outputFacets"] {
                if let Some(o) = d[key].as_object() {
                    facets.extend(o.iter().map(|(k, v)| (k.as_str(), v)));
                }
            }
        }
        for (name, value) in facets {
            match self.facets.get(name) {
                Some(v) => out.extend(
                    v.iter_errors(&json!({ name: value }))
                        .map(|e| format!("facet {name}: {e} at {}", e.instance_path())),
                ),
                None => out.push(format!("facet {name}: no vendored schema to check it")),
            }
        }
        out
    }
}

fn karat(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    finish(spawn_karat(
        dir,
        args,
        &[("KARAT_TEST_OL_KEY", "ol-s3cret")],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_emits_schema_valid_openlineage_events() {
    let s = Scratch::new();
    let receiver = Receiver::start(0);
    let days = karat::demo::generate(s.path(), 120).expect("demo data");
    let cfg = s.join("karat.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[openlineage]\nurl = \"http://127.0.0.1:{}\"\napi_key = \"${{KARAT_TEST_OL_KEY}}\"\nnamespace = \"shop\"\n",
        receiver.port
    ));
    std::fs::write(&cfg, &text).unwrap();
    for d in &days {
        karat::demo::arrive(s.path(), d).unwrap();
        let (code, out) = karat(s.path(), &["run"]);
        assert!(matches!(code, Some(0 | 1)), "{out}");
    }
    let fixed = text.replace(
        "currency = { type = \"string\", nullable = false,",
        "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"],",
    );
    assert_ne!(fixed, text);
    std::fs::write(&cfg, fixed).unwrap();
    let (code, out) = karat(s.path(), &["replay", "--failed"]);
    assert!(matches!(code, Some(0 | 1)), "{out}");

    let seen = receiver.seen.lock().unwrap().clone();
    assert!(seen.len() > 20, "{} events", seen.len());
    assert!(
        seen.iter().all(|(h, _)| h.contains("Bearer ol-s3cret")),
        "{:?}",
        seen[0].0
    );
    let v = Validators::new();
    for (_, e) in &seen {
        let errors = v.errors(e);
        assert!(errors.is_empty(), "{errors:#?}\n{e:#}");
    }
    // a check that can fail: the same validators reject a broken event and a broken facet
    let mut broken = seen[0].1.clone();
    broken["run"]["runId"] = json!("not a uuid");
    assert!(
        !v.errors(&broken).is_empty(),
        "a runId that is no uuid passed"
    );
    let mut broken = seen
        .iter()
        .map(|(_, e)| e.clone())
        .find(|e| e["outputs"][0]["facets"]["columnLineage"].is_object())
        .expect("a gold event");
    broken["outputs"][0]["facets"]["columnLineage"]["fields"]["revenue"] =
        json!({"inputFields": [{"name": "silver/orders"}]});
    let errors = v.errors(&broken);
    assert!(
        errors.iter().any(|e| e.starts_with("facet columnLineage")),
        "an input field without namespace and field passed: {errors:?}"
    );

    let events: Vec<&Value> = seen.iter().map(|(_, e)| e).collect();
    let of = |job: &str, kind: &str| -> Vec<&Value> {
        events
            .iter()
            .copied()
            .filter(|e| e["job"]["name"] == job && e["eventType"] == kind)
            .collect()
    };
    // the failed day: silver orders FAILs with the gate's reason, and its assertions say which
    let fails = of("demo-shop.silver.orders", "FAIL");
    assert!(!fails.is_empty());
    let message = fails[0]["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("reject rate"), "{message}");
    let assertions = fails[0]["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
        .as_array()
        .unwrap();
    assert!(
        assertions
            .iter()
            .any(|a| a["assertion"] == "currency.one_of" && a["success"] == false),
        "{assertions:#?}"
    );
    // the replay after the fix completes, under the pipeline run as its parent
    let last = of("demo-shop.silver.orders", "COMPLETE");
    let summary: Vec<String> = events
        .iter()
        .filter(|e| e["job"]["name"] == "demo-shop.silver.orders" && e["eventType"] != "START")
        .map(|e| {
            format!(
                "{} {}",
                e["eventType"], e["run"]["facets"]["errorMessage"]["message"]
            )
        })
        .collect();
    let last = last
        .last()
        .unwrap_or_else(|| panic!("a COMPLETE after the replay: {summary:#?}\n{out}"));
    assert!(last["run"]["facets"]["parent"]["run"]["runId"].is_string());
    // gold revenue comes from silver orders' amount, and its inputs carry their statistics
    let gold = of("demo-shop.gold.daily_revenue", "COMPLETE");
    let gold = gold.last().expect("gold completes after the replay");
    let revenue =
        &gold["outputs"][0]["facets"]["columnLineage"]["fields"]["revenue"]["inputFields"];
    assert!(
        revenue
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "amount"
                && f["name"].as_str().unwrap().ends_with("silver/orders")),
        "{revenue:#}"
    );
    let metrics = &gold["inputs"][0]["inputFacets"]["dataQualityMetrics"];
    assert!(metrics["rowCount"].as_i64().unwrap() > 0, "{metrics:#}");
    assert!(
        metrics["columnMetrics"]["amount"]["nullCount"].is_i64(),
        "{metrics:#}"
    );
    assert_eq!(gold["job"]["namespace"], "shop");
}
