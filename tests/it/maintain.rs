//! `karat maintain` on a lake many small runs have written: fewer files in every table, the same
//! rows read back by delta-rs, the accounting still balancing, old files vacuumed from disk, and
//! the maintenance recorded as a run.

use std::path::Path;

use crate::util::{Scratch, finish, pretty, spawn_karat, sql};

fn karat(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    finish(spawn_karat(dir, args, &[]))
}

/// Every file under `dir` (recursively) whose name ends with `.parquet`.
fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_compacts_every_table_and_keeps_every_row() {
    let s = Scratch::new();
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[maintenance]\nvacuum_after = \"0s\"\n");
    std::fs::write(&cfg, text).unwrap();
    // ten small runs: each adds a file of new and re-sent orders
    for i in 0..10 {
        std::fs::write(
            s.join(&format!("data/orders/more-{i}.ndjson")),
            format!(
                "{{\"order_id\":\"o-{}\",\"amount\":{i},\"currency\":\"USD\",\"quantity\":1,\"order_date\":\"2026-03-2{}\"}}\n\
                 {{\"order_id\":\"o-1\",\"amount\":{i},\"currency\":\"EUR\",\"quantity\":2,\"order_date\":\"2026-03-27\"}}\n",
                100 + i,
                i % 3 + 6
            ),
        )
        .unwrap();
        let (code, out) = karat(s.path(), &["run"]);
        assert_eq!(code, Some(0), "{out}");
    }
    let lake = s.join("lake");
    let read = |rel: &'static str, order: &'static str| {
        let lake = lake.clone();
        async move { pretty(&sql(&lake, rel, &format!("SELECT * FROM t ORDER BY {order}")).await) }
    };
    let silver = read("silver/orders", "order_id").await;
    let gold = read("gold/daily_revenue", "order_date, currency").await;
    let run_ids = || {
        let lake = lake.clone();
        async move { pretty(&sql(&lake, "_karat/runs", "SELECT run_id FROM t ORDER BY run_id").await) }
    };
    let runs = run_ids().await;
    let silver_files = parquet_files(&lake.join("silver/orders"));

    let (code, dry) = karat(s.path(), &["maintain", "--dry-run"]);
    assert_eq!(code, Some(0), "{dry}");
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(
        parquet_files(&lake.join("silver/orders")),
        silver_files,
        "a dry run changes nothing"
    );

    let (code, out) = karat(s.path(), &["maintain", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    let tables = report["tables"].as_array().unwrap();
    let of = |name: &str| {
        tables
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}"))
    };
    // every ledger write appended a file: compacted; silver rewrote its partitions whole, so it
    // was compact already (never more files after)
    for name in ["_karat/steps", "_karat/runs", "_karat/silver_batches"] {
        let t = of(name);
        assert!(
            t["files_after"].as_u64() < t["files_before"].as_u64(),
            "{name} has fewer files: {t}"
        );
    }
    for t in tables {
        assert!(
            t["files_after"].as_u64() <= t["files_before"].as_u64(),
            "{t}"
        );
    }
    // vacuumed from disk, not only from the table's current version
    assert!(parquet_files(&lake.join("silver/orders")) < silver_files);
    assert_eq!(read("silver/orders", "order_id").await, silver);
    assert_eq!(
        read("gold/daily_revenue", "order_date, currency").await,
        gold
    );
    let after = run_ids().await;
    for id in runs.lines().filter(|l| l.contains('-')) {
        assert!(after.contains(id), "run {id} kept in the compacted ledger");
    }
    let triggers = pretty(
        &sql(
            &lake,
            "_karat/runs",
            "SELECT trigger FROM t WHERE trigger = 'maintain'",
        )
        .await,
    );
    assert!(
        triggers.contains("maintain"),
        "the maintenance is a run in the ledger"
    );
    let (code, out) = karat(s.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(0), "runs go on after maintenance: {out}");
}

/// Whether any live file of the Delta table at `dir` carries a deletion vector.
async fn holds_a_vector(dir: &Path) -> bool {
    let url = url::Url::from_directory_path(dir).unwrap();
    let table = karat::lake::delta::open(&url, "t").await.unwrap().unwrap();
    let reading = karat::lake::lookup::Reading::of_table(table, "t").expect("a plain table");
    reading
        .files(None)
        .await
        .unwrap()
        .iter()
        .any(|f| f.deletion_vector_descriptor().is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_purges_the_deletion_vectors_optimize_leaves() {
    let s = Scratch::new();
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let with_vectors = text.replacen(
        "key = [\"order_id\"]",
        "deletion_vectors = true\nkey = [\"order_id\"]",
        1,
    );
    assert_ne!(with_vectors, text);
    std::fs::write(&cfg, with_vectors).unwrap();
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(0), "{out}");
    // o-1 moves to another day: a vector deletes it from its old day's only file, which
    // OPTIMIZE leaves alone (a partition of one file)
    std::fs::write(
        s.join("data/orders/moved.ndjson"),
        "{\"order_id\":\"o-1\",\"amount\":7,\"currency\":\"GBP\",\"quantity\":1,\"order_date\":\"2026-03-26\"}\n",
    )
    .unwrap();
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(0), "{out}");
    let lake = s.join("lake");
    let silver_dir = lake.join("silver/orders");
    assert!(
        holds_a_vector(&silver_dir).await,
        "the run deleted in place"
    );
    let silver = pretty(&sql(&lake, "silver/orders", "SELECT * FROM t ORDER BY order_id").await);

    let (code, dry) = karat(s.path(), &["maintain", "--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{dry}");
    let of = |out: &str| -> serde_json::Value {
        let report: serde_json::Value = serde_json::from_str(out).expect("json");
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "silver/orders")
            .cloned()
            .unwrap_or_else(|| panic!("{out}"))
    };
    assert_eq!(of(&dry)["files_purged"], 1, "{dry}");
    assert!(
        holds_a_vector(&silver_dir).await,
        "a dry run changes nothing"
    );

    let (code, out) = karat(s.path(), &["maintain", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(of(&out)["files_purged"], 1, "{out}");
    assert!(
        !holds_a_vector(&silver_dir).await,
        "no file carries a vector after it"
    );
    assert_eq!(
        pretty(&sql(&lake, "silver/orders", "SELECT * FROM t ORDER BY order_id").await),
        silver,
        "the same rows"
    );
    let (code, out) = karat(s.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}");
}

/// Live files of the table in `folder` of `lake_dir`, by partition value (the whole table's under
/// "").
async fn live_files_by_partition(
    lake_dir: &Path,
    folder: &str,
    partition_by: &str,
) -> std::collections::BTreeMap<String, usize> {
    let url = url::Url::from_directory_path(lake_dir.join(folder)).unwrap();
    let table = karat::lake::delta::open(&url, folder)
        .await
        .unwrap()
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for f in karat::lake::lookup::live_files(&table, folder, partition_by, None)
        .await
        .unwrap()
    {
        let p = f
            .partition_values_map()
            .get(partition_by)
            .cloned()
            .flatten()
            .unwrap_or_default();
        *out.entry(p).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_runs_compact_the_ledger_and_dead_letters_as_they_crowd_without_maintain() {
    let s = Scratch::new();
    crate::util::daily_project(s.path(), false);
    let days = karat::lake::compact::CROWDED + 4;
    for day in 0..days {
        // enough re-sends that most earlier days' partitions gain dead letters every day
        crate::util::daily_file(s.path(), day, 20_000);
        let (code, out) = karat(s.path(), &["run"]);
        assert_eq!(code, Some(0), "day {day}: {out}");
    }
    let lake = s.join("lake");
    let steps = live_files_by_partition(&lake, "_karat/steps", "").await;
    let dead = live_files_by_partition(&lake, "dead_letters/orders", "partition").await;
    // every run added a file to the ledger and to most dead-letter partitions
    assert!(
        steps.values().all(|n| *n < karat::lake::compact::CROWDED),
        "{steps:?}"
    );
    assert!(
        dead.values().all(|n| *n < karat::lake::compact::CROWDED),
        "{dead:?}"
    );
    let log = std::fs::read_dir(lake.join("dead_letters/orders/_delta_log"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .filter(|c| c.contains(r#""operation":"OPTIMIZE""#))
        .count();
    assert!(log > 0, "the dead letters were compacted by a run");
    let (code, out) = karat(s.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}");
}
