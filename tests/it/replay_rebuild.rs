//! The oracle of `DESIGN-silver.md`: after any sequence of runs, contract edits and replays,
//! silver, dead letters, superseded rows and gold equal `rebuild(batches, contract_of)`,
//! computed here by a plain in-memory model from the records the test wrote — not by karat's
//! code path — and, at the end of every sequence, equal `karat rebuild` (karat's own code path
//! on an empty lake), which also covers an SCD2 dimension of the table. proptest generates the
//! sequences (keys repeating across batches and days, late rows, invalid rows, renamed fields,
//! deletion vectors turned on and off) and shrinks a failure to the shortest one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use karat::events::Events;
use karat::lake::Lake;
use karat::pipeline::{Plan, ReplayTarget};
use proptest::prelude::*;

use crate::util::{Scratch, rows};

const DAYS: [&str; 3] = ["2026-01-01", "2026-01-02", "2026-01-03"];

/// A contract version: the field the day is read from, and the smallest valid amount.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Contract {
    day_field: &'static str,
    min: i64,
}

const CONTRACTS: [Contract; 4] = [
    Contract {
        day_field: "day",
        min: 0,
    },
    Contract {
        day_field: "day",
        min: -50,
    },
    Contract {
        day_field: "date",
        min: 0,
    },
    Contract {
        day_field: "date",
        min: -50,
    },
];

#[derive(Debug, Clone)]
struct Rec {
    id: u8,
    day_field: &'static str,
    day: Option<usize>,
    amount: i64,
}

#[derive(Debug, Clone)]
enum Step {
    Land(Vec<Rec>),
    Edit(usize),
    /// The silver table's `deletion_vectors` set to this (how rows are deleted, not which).
    Storage(bool),
    Replay(usize),
    ReplayAll,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        0u8..6,
        prop_oneof![9 => Just("day"), 1 => Just("date")],
        prop::option::weighted(0.9, 0usize..3),
        -60i64..100,
    )
        .prop_map(|(id, day_field, day, amount)| Rec {
            id,
            day_field,
            day,
            amount,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop::collection::vec(rec(), 1..6).prop_map(Step::Land),
        2 => (0usize..4).prop_map(Step::Edit),
        1 => any::<bool>().prop_map(Step::Storage),
        2 => (0usize..3).prop_map(Step::Replay),
        1 => Just(Step::ReplayAll),
    ]
}

/// A landed batch as the model knows it.
#[derive(Debug, Clone)]
struct Batch {
    id: String,
    ingested_at: String,
    ingest_date: String,
    records: Vec<Rec>,
    contract: Contract,
}

/// The model: every landed batch and the contract it was last processed with.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<Batch>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    ingested_at: String,
    batch: String,
    line: i64,
    day: String,
    amount: i64,
}

/// The lake as the model says it must be.
#[derive(Debug, PartialEq, Default)]
struct Expected {
    /// (id, batch, line, day)
    silver: BTreeSet<(String, String, i64, String)>,
    /// (batch, line, partition)
    dead: BTreeSet<(String, i64, String)>,
    /// (batch, line, superseded by)
    superseded: BTreeSet<(String, i64, String)>,
    /// day → (rows, total)
    gold: BTreeMap<String, (i64, i64)>,
    /// (batch of a superseded row, day of its winner): not stored as such, for replays.
    superseded_home: BTreeSet<(String, String)>,
}

impl Model {
    fn valid(r: &Rec, c: Contract) -> Option<String> {
        let day = r
            .day
            .filter(|_| r.day_field == c.day_field)
            .map(|d| DAYS[d].to_string())?;
        (r.amount >= c.min).then_some(day)
    }

    /// Where a batch's rows without a day are filed: its most common day, else its ingest date.
    fn home(b: &Batch) -> String {
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for r in &b.records {
            if let Some(d) = r.day.filter(|_| r.day_field == b.contract.day_field) {
                *n.entry(DAYS[d].to_string()).or_default() += 1;
            }
        }
        let best = n.values().max().copied();
        n.into_iter()
            .find(|(_, c)| Some(*c) == best)
            .map(|(d, _)| d)
            .unwrap_or_else(|| b.ingest_date.clone())
    }

    fn rebuild(&self) -> Expected {
        let mut e = Expected::default();
        let mut by_key: BTreeMap<u8, Vec<Version>> = BTreeMap::new();
        for b in &self.batches {
            for (i, r) in b.records.iter().enumerate() {
                let line = i as i64 + 1;
                match Self::valid(r, b.contract) {
                    Some(day) => by_key.entry(r.id).or_default().push(Version {
                        ingested_at: b.ingested_at.clone(),
                        batch: b.id.clone(),
                        line,
                        day,
                        amount: r.amount,
                    }),
                    None => {
                        let label = r
                            .day
                            .filter(|_| r.day_field == b.contract.day_field)
                            .map(|d| DAYS[d].to_string())
                            .unwrap_or_else(|| Self::home(b));
                        e.dead.insert((b.id.clone(), line, label));
                    }
                }
            }
        }
        for (id, mut versions) in by_key {
            versions.sort();
            let w = versions.pop().expect("a version");
            for l in versions {
                e.superseded_home.insert((l.batch.clone(), w.day.clone()));
                e.superseded.insert((l.batch, l.line, w.batch.clone()));
            }
            let g = e.gold.entry(w.day.clone()).or_default();
            g.0 += 1;
            g.1 += w.amount;
            e.silver.insert((format!("k{id}"), w.batch, w.line, w.day));
        }
        e
    }

    /// Batches that contributed to partition `p`: winners there, dead letters filed there,
    /// superseded versions of its keys.
    fn contributors(&self, p: &str) -> BTreeSet<String> {
        let e = self.rebuild();
        let mut out = BTreeSet::new();
        out.extend(e.silver.iter().filter(|s| s.3 == p).map(|s| s.1.clone()));
        out.extend(e.dead.iter().filter(|d| d.2 == p).map(|d| d.0.clone()));
        out.extend(
            e.superseded_home
                .iter()
                .filter(|s| s.1 == p)
                .map(|s| s.0.clone()),
        );
        out
    }
}

fn config(c: Contract, deletion_vectors: bool) -> String {
    format!(
        r#"[lake]
url = "lake"
[defaults]
max_reject_rate = 1.0
[[source]]
name = "items"
kind = "files"
path = "data/*.ndjson"
[[table]]
name = "items"
zone = "silver"
from = "items"
partition_by = "day"
key = ["id"]
deletion_vectors = {}
[table.columns]
id = {{ type = "string", nullable = false }}
day = {{ type = "date", nullable = false, source_field = "{}" }}
amount = {{ type = "int64", nullable = false, min = {} }}
[[table]]
name = "daily"
zone = "gold"
partition_by = "day"
sql = "SELECT day, COUNT(*) AS n, SUM(amount) AS total FROM items GROUP BY day"
[[table]]
name = "items_history"
zone = "gold"
kind = "scd2"
from = "items"
track = ["amount", "day"]
"#,
        deletion_vectors, c.day_field, c.min
    )
}

fn record_json(r: &Rec) -> String {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), format!("k{}", r.id).into());
    if let Some(d) = r.day {
        m.insert(r.day_field.into(), DAYS[d].into());
    }
    m.insert("amount".into(), r.amount.into());
    serde_json::Value::Object(m).to_string()
}

async fn observed(lake_dir: &Path) -> Expected {
    let mut e = Expected::default();
    let n = |v: &String| v.parse::<i64>().unwrap();
    for r in rows(
        lake_dir,
        "silver/items",
        "SELECT id, _batch_id, _line, day FROM t",
    )
    .await
    {
        e.silver
            .insert((r[0].clone(), r[1].clone(), n(&r[2]), r[3].clone()));
    }
    for r in rows(
        lake_dir,
        "dead_letters/items",
        "SELECT batch_id, line, partition FROM t",
    )
    .await
    {
        e.dead.insert((r[0].clone(), n(&r[1]), r[2].clone()));
    }
    for r in rows(
        lake_dir,
        "_karat/superseded/items",
        "SELECT _batch_id, _line, _superseded_by FROM t",
    )
    .await
    {
        e.superseded.insert((r[0].clone(), n(&r[1]), r[2].clone()));
    }
    for r in rows(lake_dir, "gold/daily", "SELECT day, n, total FROM t").await {
        e.gold.insert(r[0].clone(), (n(&r[1]), n(&r[2])));
    }
    e
}

async fn play(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    let cfg = s.join("karat.toml");
    let mut current = CONTRACTS[0];
    let mut deletion_vectors = false;
    std::fs::write(&cfg, config(current, deletion_vectors)).unwrap();
    let mut model = Model::default();
    let lake_dir = s.join("lake");
    for (n, step) in steps.iter().enumerate() {
        let plan = Plan::load(&cfg).await.unwrap();
        let lake = Lake::open(&plan.config.lake_url).unwrap();
        match step {
            Step::Land(recs) => {
                let body: Vec<String> = recs.iter().map(record_json).collect();
                // a unique first line keeps the content (and so the batch id) unique
                let name = format!("b{n}.ndjson");
                std::fs::write(s.join("data").join(&name), body.join("\n") + "\n").unwrap();
                let r = karat::pipeline::run(
                    &plan,
                    &lake,
                    karat::pipeline::RunOptions::new(karat::pipeline::Trigger::Cli),
                    &Events::none(),
                )
                .await
                .unwrap();
                prop_assert!(r.errors.is_empty(), "step {n}: {:?}", r.errors);
                for m in karat::bronze::manifest::list(&lake, "items").await.unwrap() {
                    if !model.batches.iter().any(|b| b.id == m.batch_id) {
                        let recs = if m.origin.ends_with(&name) {
                            recs.clone()
                        } else {
                            continue;
                        };
                        model.batches.push(Batch {
                            id: m.batch_id,
                            ingested_at: m.ingested_at,
                            ingest_date: m.ingest_date,
                            records: recs,
                            contract: current,
                        });
                    }
                }
            }
            Step::Edit(i) => {
                current = CONTRACTS[*i];
                std::fs::write(&cfg, config(current, deletion_vectors)).unwrap();
                continue;
            }
            Step::Storage(on) => {
                deletion_vectors = *on;
                std::fs::write(&cfg, config(current, deletion_vectors)).unwrap();
                continue;
            }
            Step::Replay(d) => {
                let p = DAYS[*d].to_string();
                let who = model.contributors(&p);
                if who.is_empty() {
                    continue;
                }
                let target = ReplayTarget::Partitions {
                    table: "items".into(),
                    partitions: vec![p],
                };
                let r = karat::pipeline::replay(&plan, &lake, target, &Events::none())
                    .await
                    .unwrap();
                prop_assert!(r.errors.is_empty(), "step {n}: {:?}", r.errors);
                for b in &mut model.batches {
                    if who.contains(&b.id) {
                        b.contract = current;
                    }
                }
            }
            Step::ReplayAll => {
                if model.batches.is_empty() {
                    continue;
                }
                let target = ReplayTarget::Range {
                    table: "items".into(),
                    from: "2000-01-01".into(),
                    to: "2100-01-01".into(),
                };
                let r = karat::pipeline::replay(&plan, &lake, target, &Events::none())
                    .await
                    .unwrap();
                prop_assert!(r.errors.is_empty(), "step {n}: {:?}", r.errors);
                for b in &mut model.batches {
                    b.contract = current;
                }
            }
        }
        let want = model.rebuild();
        let got = observed(&lake_dir).await;
        prop_assert_eq!(
            &got.silver,
            &want.silver,
            "silver after step {} of {:?}",
            n,
            steps
        );
        prop_assert_eq!(
            &got.dead,
            &want.dead,
            "dead letters after step {} of {:?}",
            n,
            steps
        );
        prop_assert_eq!(
            &got.superseded,
            &want.superseded,
            "superseded after step {} of {:?}",
            n,
            steps
        );
        prop_assert_eq!(
            &got.gold,
            &want.gold,
            "gold after step {} of {:?}",
            n,
            steps
        );
        let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
        prop_assert!(v.ok(), "verify after step {n}: {}", v.lines().join("\n"));
    }
    // and the second oracle, karat's own code path on an empty lake: `karat rebuild` under the
    // current contract, which the lake equals once every batch was processed under it
    let plan = Plan::load(&cfg).await.unwrap();
    let lake = Lake::open(&plan.config.lake_url).unwrap();
    let into = Lake::open(&url::Url::from_directory_path(s.join("rebuilt")).unwrap()).unwrap();
    let r = karat::pipeline::rebuild(&plan, &lake, &into).await.unwrap();
    let older = model
        .batches
        .iter()
        .filter(|b| b.contract != current)
        .count();
    prop_assert_eq!(
        r.older_contract.first().map_or(0, |(_, n)| *n),
        older,
        "{}",
        r.lines().join("\n")
    );
    if older == 0 {
        prop_assert!(
            r.equal(),
            "rebuild of {:?}:\n{}",
            steps,
            r.lines().join("\n")
        );
    }
    Ok(())
}

/// The rebuild oracle can fail: a silver row changed behind karat's back, a dead letter
/// deleted, and each is a difference `karat rebuild` names (exit 1), where an untouched lake is
/// equal (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_names_a_row_changed_behind_karats_back() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    let cfg = s.join("karat.toml");
    std::fs::write(&cfg, config(CONTRACTS[0], false)).unwrap();
    // k1 twice (the later line wins, the earlier is superseded), k2 under min: a dead letter
    let rec = |id, day, amount| Rec {
        id,
        day_field: "day",
        day: Some(day),
        amount,
    };
    let recs = [rec(1, 0, 5), rec(2, 1, -7), rec(1, 2, 9)];
    let body: Vec<String> = recs.iter().map(record_json).collect();
    std::fs::write(s.join("data/b0.ndjson"), body.join("\n") + "\n").unwrap();
    let rebuild = |dir: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_karat"))
            .args(["rebuild", "--into", dir])
            .current_dir(s.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_karat"))
        .arg("run")
        .current_dir(s.path())
        .output()
        .unwrap();
    assert!(run.status.code().is_some_and(|c| c <= 1), "{run:?}");
    let (code, out) = rebuild("r0");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("equal  silver/items"), "{out}");
    let (code, out) = rebuild("r0");
    assert_eq!(code, Some(2), "never over a non-empty folder: {out}");

    let lake_dir = s.join("lake");
    let open = |rel: &str| {
        let url = url::Url::from_directory_path(lake_dir.join(rel)).unwrap();
        async move { deltalake::open_table(url).await.unwrap() }
    };
    open("silver/items")
        .await
        .update()
        .with_update("amount", "amount + 1")
        .await
        .unwrap();
    open("dead_letters/items").await.delete().await.unwrap();
    let (code, out) = rebuild("r1");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "DIFFER silver/items: 1 row(s), rebuilt 1; 1 only here, 1 only in the rebuild"
        ),
        "{out}"
    );
    assert!(
        out.contains("DIFFER dead_letters/items: 0 row(s), rebuilt 1"),
        "{out}"
    );
}

/// 12 sequences a run (250 passed when measured); random locally, a fixed seed under CI so a
/// submission's result does not depend on the draw.
fn runner_config() -> ProptestConfig {
    ProptestConfig {
        cases: 12,
        max_shrink_iters: 64,
        rng_seed: if std::env::var_os("CI").is_some() {
            proptest::test_runner::RngSeed::Fixed(20_261_122)
        } else {
            proptest::test_runner::RngSeed::Random
        },
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(runner_config())]
    #[test]
    fn replay_equals_rebuild(steps in prop::collection::vec(step(), 1..8)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(play(steps))?;
    }
}
