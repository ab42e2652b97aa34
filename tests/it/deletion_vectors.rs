//! Deletion vectors (a silver table's `deletion_vectors = true`): the stored rows a change drops
//! are marked deleted in the files that hold them, the rows it adds appended, in one commit; a
//! partition crowded with files has its small files merged, or is rewritten whole; rows a
//! lookup found are deleted where it found them; the largest values read past deleted rows. A
//! contract that gained a column: stored rows read it as null, with the setting or without,
//! and a table the setting cannot apply to is rewritten with a note saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use karat::lake::deletion;
use karat::lake::delta;
use karat::lake::lookup;
use karat::lake::rewrite::{Keep, Rewrite};
use karat::lake::stats;

use crate::delta_writes::{
    files_of_day, odd_ids, per_day, rows, rows_of, schema, three_days, three_days_rewritten, write,
};

use crate::util::{Scratch, finish, scalar, spawn_karat, sql};

/// Turns deletion vectors on (a commit) and applies `rewrite`, reading the id column.
async fn replace(dir: &std::path::Path, rewrite: Rewrite) -> karat::KaratResult<i64> {
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let table = delta::open(&url, "t").await.unwrap().unwrap();
    let meta = vec![("karat.operation".to_string(), serde_json::json!("test"))];
    let table = deletion::enable(table, "t", meta.clone()).await.unwrap();
    let reads = ["id".to_string()];
    deletion::delete_and_append(table, "t", &schema(), "day", rewrite, &reads, meta).await
}

/// Replaces `partitions` keeping the odd ids, `row` (of 2024-10-04) added; the commit's log.
async fn odd_ids_kept_and_one_row_added(
    dir: &std::path::Path,
    partitions: BTreeSet<String>,
    row: RecordBatch,
) -> String {
    let rewrite = Rewrite {
        partitions,
        keep: odd_ids(),
        added: BTreeMap::from([("2024-10-04".to_string(), vec![row])]),
        found: None,
    };
    let version = replace(dir, rewrite).await.unwrap();
    std::fs::read_to_string(dir.join(format!("t/_delta_log/{version:020}.json"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_replaces_exactly_its_partitions_in_one_commit() {
    let s = Scratch::new();
    let rewrite = three_days(s.path()).await;
    let version = replace(s.path(), rewrite).await.unwrap();
    assert_eq!(version, 2, "one commit after turning deletion vectors on");
    let on = std::fs::read_to_string(s.join("t/_delta_log/00000000000000000001.json")).unwrap();
    assert!(on.contains(r#""karat.operation":"test""#), "{on}");
    assert!(on.contains(r#""minReaderVersion":3"#), "{on}");
    let log = three_days_rewritten(s.path(), version).await;
    // the two files that lose rows are removed and added again with a deletion vector; the
    // untouched day's file is not named
    assert_eq!(log.matches(r#""remove""#).count(), 2, "{log}");
    assert_eq!(log.matches(r#""deletionVector":{"#).count(), 2, "{log}");
    // their statistics no longer count exactly (the protocol's tightBounds), and the row count
    // karat reports from statistics leaves the deleted rows out
    assert_eq!(log.matches(r#"tightBounds\":false"#).count(), 2, "{log}");
    let url = url::Url::from_directory_path(s.join("t")).unwrap();
    let stats = stats::stats(&url, "t").await.unwrap().unwrap();
    assert_eq!(stats.rows, 5 + 7 + 10 + 1);
    let vectors = std::fs::read_dir(s.join("t"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("deletion_vector_")
        })
        .count();
    assert_eq!(vectors, 1, "one deletion vector file per commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deletion_keeps_the_rows_the_first_deleted_deleted() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 10, 20_000)]).await;
    let day: BTreeSet<String> = ["2024-10-04".to_string()].into();
    replace(
        s.path(),
        Rewrite {
            partitions: day.clone(),
            keep: odd_ids(),
            added: BTreeMap::new(),
            found: None,
        },
    )
    .await
    .unwrap();
    // then the multiples of three go too: 1, 5 and 7 are left, not the even ids back
    let not_threes: Keep = Arc::new(|b: &RecordBatch| {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        Ok(ids.iter().map(|id| id.map(|id| id % 3 != 0)).collect())
    });
    replace(
        s.path(),
        Rewrite {
            partitions: day,
            keep: not_threes,
            added: BTreeMap::from([("2024-10-04".to_string(), vec![rows(41, 42, 20_000)])]),
            found: None,
        },
    )
    .await
    .unwrap();
    let got = rows_of(
        s.path(),
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(SUM(id) AS VARCHAR) FROM t",
    )
    .await;
    assert_eq!(got, vec![vec!["4", "54"]], "1 + 5 + 7 + 41");
    // a deletion that deletes nothing new (the odd ids are left) names no file
    replace(
        s.path(),
        Rewrite {
            partitions: ["2024-10-04".to_string()].into(),
            keep: odd_ids(),
            added: BTreeMap::new(),
            found: None,
        },
    )
    .await
    .unwrap();
    let log = std::fs::read_to_string(s.join("t/_delta_log/00000000000000000004.json")).unwrap();
    assert_eq!(log.matches(r#""remove""#).count(), 0, "{log}");
    let got = sql(s.path(), "t", "SELECT COUNT(*) FROM t").await;
    assert_eq!(scalar(&got), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_crowded_with_files_is_rewritten_whole_instead() {
    let s = Scratch::new();
    let crowded = deletion::COMPACT_FILES as i64 - 1;
    for i in 0..crowded {
        write(s.path(), vec![rows(i * 10, i * 10 + 10, 20_000)]).await;
    }
    write(s.path(), vec![rows(1000, 1010, 20_001)]).await;
    assert_eq!(files_of_day(s.path(), "2024-10-04"), crowded as usize);
    let both: BTreeSet<String> = ["2024-10-04", "2024-10-05"].map(String::from).into();
    let log = odd_ids_kept_and_one_row_added(s.path(), both, rows(501, 502, 20_000)).await;
    // the crowded day: every file removed, its kept rows and the new one in a new file; the
    // other day: its file marked by a deletion vector
    assert_eq!(
        log.matches(r#""remove""#).count(),
        crowded as usize + 1,
        "{log}"
    );
    assert_eq!(log.matches(r#""deletionVector":{"#).count(), 1, "{log}");
    let got = per_day(s.path()).await;
    let odd = (0..crowded * 10).filter(|i| i % 2 == 1);
    let (n, total) = (odd.clone().count() + 1, odd.sum::<i64>() + 501);
    assert_eq!(
        got,
        vec![
            vec!["2024-10-04".to_string(), n.to_string(), total.to_string()],
            vec![
                "2024-10-05".to_string(),
                "5".to_string(),
                "5025".to_string()
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_partitions_small_files_are_merged_and_its_large_file_keeps_its_rows() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 800, 20_000)]).await;
    let small = deletion::COMPACT_FILES as i64 - 2;
    for i in 0..small {
        write(s.path(), vec![rows(800 + i * 10, 810 + i * 10, 20_000)]).await;
    }
    assert_eq!(files_of_day(s.path(), "2024-10-04"), small as usize + 1);
    let day: BTreeSet<String> = ["2024-10-04".to_string()].into();
    let log = odd_ids_kept_and_one_row_added(s.path(), day, rows(1001, 1002, 20_000)).await;
    // the small files removed, the large one removed and added again with its vector, one new
    // file for the small files' kept rows and the new row
    assert_eq!(
        log.matches(r#""remove""#).count(),
        small as usize + 1,
        "{log}"
    );
    assert_eq!(log.matches(r#""add""#).count(), 2, "{log}");
    assert_eq!(log.matches(r#""deletionVector":{"#).count(), 1, "{log}");
    let got = rows_of(
        s.path(),
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(SUM(id) AS VARCHAR) FROM t",
    )
    .await;
    let odd = (0..800 + small * 10).filter(|i| i % 2 == 1);
    let (n, total) = (odd.clone().count() + 1, odd.sum::<i64>() + 1001);
    assert_eq!(got, vec![vec![n.to_string(), total.to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_a_lookup_found_are_deleted_where_it_found_them_without_reading_the_file_again() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 10, 20_000)]).await;
    let url = url::Url::from_directory_path(s.join("t")).unwrap();
    let table = delta::open(&url, "t").await.unwrap().unwrap();
    let reading = Arc::new(lookup::Reading {
        table,
        schema: schema(),
        partition_by: "day".to_string(),
        label: "t".to_string(),
    });
    // the lookup wants ids 2 and 4 only; the rewrite's own rule (keep odd ids) is not applied
    // to a file the lookup has placed rows in
    let wanted: lookup::Wanted = Arc::new(|b: &RecordBatch| {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        Ok(ids
            .iter()
            .map(|id| id.map(|id| id == 2 || id == 4))
            .collect())
    });
    let files = reading.files(None).await.unwrap();
    let found = reading
        .find(files, &["id".to_string()], wanted, true)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].at.rows, vec![2, 4]);
    assert_eq!(found[0].values.num_rows(), 2);
    assert_eq!(
        found[0].values.schema(),
        schema(),
        "whole rows, partition column included"
    );
    replace(
        s.path(),
        Rewrite {
            partitions: ["2024-10-04".to_string()].into(),
            keep: odd_ids(),
            added: BTreeMap::new(),
            found: Some(found.into_iter().map(|f| f.at).collect()),
        },
    )
    .await
    .unwrap();
    let got = rows_of(
        s.path(),
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(SUM(id) AS VARCHAR) FROM t",
    )
    .await;
    assert_eq!(got, vec![vec!["8".to_string(), (45 - 6).to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_values_leave_out_the_rows_a_vector_deletes() {
    let s = Scratch::new();
    // two-digit ids: the largest values compare as text (dates and timestamps sort so)
    write(s.path(), vec![rows(10, 20, 20_000), rows(20, 30, 20_001)]).await;
    let url = url::Url::from_directory_path(s.join("t")).unwrap();
    let max = |column: &'static str| {
        let url = url.clone();
        async move { stats::max_of(&url, "t", column).await.unwrap() }
    };
    assert_eq!(
        max("id").await.as_deref(),
        Some("29"),
        "from the statistics"
    );
    // each day's largest id deleted: the files' statistics still hold them
    let keep: Keep = Arc::new(|b: &RecordBatch| {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        Ok(ids.iter().map(|id| id.map(|id| id % 10 != 9)).collect())
    });
    let rewrite = Rewrite {
        partitions: ["2024-10-04", "2024-10-05"].map(String::from).into(),
        keep,
        added: BTreeMap::new(),
        found: None,
    };
    let version = replace(s.path(), rewrite).await.unwrap();
    let log = std::fs::read_to_string(s.join(&format!("t/_delta_log/{version:020}.json"))).unwrap();
    assert_eq!(log.matches(r#""deletionVector":{"#).count(), 2, "{log}");
    assert_eq!(max("id").await.as_deref(), Some("28"));
    assert_eq!(max("day").await.as_deref(), Some("2024-10-05"));
    let by_day = stats::max_by_partition(&url, "t", "id", "day")
        .await
        .unwrap();
    let want: BTreeMap<String, String> = [("2024-10-04", "18"), ("2024-10-05", "28")]
        .map(|(d, m)| (d.to_string(), m.to_string()))
        .into();
    assert_eq!(by_day, want);
}

/// A bench project run on day 0, then on day 1 (re-sending orders of day 0) with a column
/// added to the contract: the output of the second run, which `verify` then balances.
fn run_with_a_column_added(deletion_vectors: bool) -> String {
    let s = Scratch::new();
    let config = crate::util::daily_project(s.path(), deletion_vectors);
    let day = |n: usize| crate::util::daily_file(s.path(), n, 1_000);
    day(0);
    let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
    assert_eq!(code, Some(0), "{out}");
    // the stored table's schema is no longer the contract's
    let wider = config.replacen(
        "order_date = { type = \"date\", nullable = false }\n",
        "order_date = { type = \"date\", nullable = false }\ncoupon = { type = \"string\" }\n",
        1,
    );
    assert_ne!(wider, config);
    std::fs::write(s.join("karat.toml"), wider).unwrap();
    day(1);
    let (code, run) = finish(spawn_karat(s.path(), &["run"], &[]));
    assert_eq!(code, Some(0), "{run}");
    let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
    assert_eq!(code, Some(0), "{out}");
    let nulls = scalar(&block_on_sql(
        s.path(),
        "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE coupon IS NULL",
    ));
    assert_ne!(nulls, "0", "stored rows read the new column as null");
    run
}

fn block_on_sql(dir: &std::path::Path, query: &str) -> Vec<RecordBatch> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sql(&dir.join("lake"), "silver/orders", query))
}

#[test]
fn a_column_added_to_the_contract_is_null_in_stored_rows_that_a_run_supersedes() {
    let run = run_with_a_column_added(false);
    assert!(!run.contains("deletion_vectors is on"), "{run}");
}

#[test]
fn a_table_the_setting_cannot_apply_to_is_rewritten_and_the_run_says_so() {
    let run = run_with_a_column_added(true);
    assert!(
        run.contains("deletion_vectors is on, but the stored table is not plain"),
        "{run}"
    );
}

/// A bench order line (`karat::bench` contract).
fn order(id: &str, status: &str, date: &str) -> String {
    format!(
        r#"{{"order_id":"{id}","customer_id":"c-1","amount":10.00,"currency":"EUR","quantity":1,"status":"{status}","order_date":"{date}"}}"#
    )
}

/// Writes `lines` as the gzip NDJSON file `data/<name>`.
fn data_file(dir: &std::path::Path, name: &str, lines: &[String]) {
    use std::io::Write;
    let f = std::fs::File::create(dir.join("data").join(name)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// The superseded rows' table as `order_id status _winner_partition` lines, sorted.
async fn superseded_lines(lake_dir: &std::path::Path) -> Vec<String> {
    let rows = sql(
        lake_dir,
        "_karat/superseded/orders",
        "SELECT order_id || ' ' || status || ' ' || _winner_partition FROM t ORDER BY 1",
    )
    .await;
    rows.iter()
        .flat_map(|b| {
            let c = delta::utf8(b.column(0));
            c.iter().flatten().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

/// The newest commit of the superseded rows' table, as its log holds it.
fn last_superseded_commit(lake_dir: &std::path::Path) -> String {
    let log_dir = lake_dir.join("_karat/superseded/orders/_delta_log");
    let last = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()
        .unwrap();
    std::fs::read_to_string(&last).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_versions_follow_their_key_to_its_new_partition_in_place() {
    let s = Scratch::new();
    crate::util::daily_project(s.path(), true);
    let ids: Vec<String> = (1..=9).map(|i| format!("o-{i}")).collect();
    let mut runs: Vec<Vec<String>> = vec![
        ids.iter()
            .map(|id| order(id, "placed", "2026-01-01"))
            .collect(),
    ];
    // each key's first version superseded in its own partition, a run (and a file) each, so
    // that 2026-01-01's superseded rows are crowded into files a change merges
    runs.extend(ids.iter().map(|id| vec![order(id, "paid", "2026-01-01")]));
    // o-1 moves, then moves again: its superseded versions follow it, the others stay
    runs.push(vec![order("o-1", "shipped", "2026-01-03")]);
    runs.push(vec![order("o-1", "cancelled", "2026-01-05")]);
    let lake_dir = s.join("lake");
    for (i, lines) in runs.iter().enumerate() {
        data_file(s.path(), &format!("orders-{i:04}.ndjson.gz"), lines);
        let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
        assert_eq!(code, Some(0), "{out}");
        if i == runs.len() - 2 {
            // moved in place: the commit deletes o-1's first version by deletion vector
            let log = last_superseded_commit(&lake_dir);
            assert!(log.contains(r#""deletionVector":{"#), "{log}");
        }
    }
    let mut want = vec![
        "o-1 paid 2026-01-05".to_string(),
        "o-1 placed 2026-01-05".to_string(),
        "o-1 shipped 2026-01-05".to_string(),
    ];
    want.extend((2..=9).map(|i| format!("o-{i} placed 2026-01-01")));
    assert_eq!(superseded_lines(&lake_dir).await, want);
    // nine runs each added a file to 2026-01-01's superseded rows: merged as they crowded
    let url = url::Url::from_directory_path(lake_dir.join("_karat/superseded/orders")).unwrap();
    let table = delta::open(&url, "superseded").await.unwrap().unwrap();
    let crowded = BTreeSet::from(["2026-01-01".to_string()]);
    let files = lookup::live_files(&table, "superseded", "_winner_partition", Some(&crowded))
        .await
        .unwrap();
    assert!(
        files.len() < deletion::COMPACT_FILES,
        "{} files",
        files.len()
    );
    let (plan, lake) = crate::util::open(&s.join("karat.toml")).await;
    crate::util::assert_verified_and_rebuilt(&plan, &lake, &s.join("rebuilt")).await;
}
