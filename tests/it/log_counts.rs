//! Rows per bronze batch counted from the Delta log (`stats::counts_by_value`, what the
//! accounting of every run and `karat verify` use): equal to a count of the rows whatever the
//! files hold (one batch, several, nulls, rows a deletion vector deletes), by reading the
//! files holding several batches or leaving their batches to a query; and `verify` still fails
//! when a vector deletes a row behind karat's back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, Date32Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use karat::lake::delta;
use karat::lake::rewrite::{Keep, Rewrite};
use karat::lake::{deletion, stats};

use crate::delta_writes::write_rows;
use crate::util::{Scratch, finish, rows as table_rows, scalar, spawn_karat, sql};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("b", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
        Field::new("day", DataType::Date32, false),
    ]))
}

/// One row per value of `batches` (None: a null batch), ids from `first`, all on `day`.
fn rows(batches: &[Option<&str>], first: i64, day: i32) -> RecordBatch {
    let n = batches.len();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(batches.to_vec())),
            Arc::new(Int64Array::from_iter_values(first..first + n as i64)),
            Arc::new(Date32Array::from(vec![day; n])),
        ],
    )
    .unwrap()
}

/// `n` rows of batch `b`.
fn of(b: &'static str, n: usize) -> Vec<Option<&'static str>> {
    vec![Some(b); n]
}

async fn append(dir: &std::path::Path, batches: Vec<RecordBatch>) {
    write_rows(dir, schema(), batches).await;
}

/// Files of one batch on two days, a small file of two batches and nulls, a file of nulls
/// only, a file of one batch and a null; then every third id deleted by deletion vector on
/// the first two days.
async fn small_shared_files(dir: &std::path::Path) {
    append(dir, vec![rows(&of("b-1", 100), 0, 20_000)]).await;
    append(
        dir,
        vec![
            rows(&of("b-2", 50), 100, 20_000),
            rows(&of("b-2", 30), 150, 20_001),
        ],
    )
    .await;
    let mixed = [of("b-1", 3), of("b-3", 4), vec![None, None]].concat();
    append(dir, vec![rows(&mixed, 200, 20_001)]).await;
    append(dir, vec![rows(&[None; 5], 300, 20_002)]).await;
    append(
        dir,
        vec![rows(&[of("b-4", 6), vec![None]].concat(), 400, 20_002)],
    )
    .await;
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let table = delta::open(&url, "t").await.unwrap().unwrap();
    let meta = vec![("karat.operation".to_string(), serde_json::json!("test"))];
    let table = deletion::enable(table, "t", meta.clone()).await.unwrap();
    let keep: Keep = Arc::new(|b: &RecordBatch| {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        Ok(ids.iter().map(|id| id.map(|id| id % 3 != 0)).collect())
    });
    let rewrite = Rewrite {
        partitions: ["2024-10-04", "2024-10-05"].map(String::from).into(),
        keep,
        added: BTreeMap::new(),
        found: None,
    };
    let reads = ["id".to_string()];
    deletion::delete_and_append(table, "t", &schema(), "day", rewrite, &reads, meta)
        .await
        .unwrap();
}

/// [`small_shared_files`] in a scratch folder, and the table's URL.
async fn small_shared_table() -> (Scratch, url::Url) {
    let s = Scratch::new();
    small_shared_files(s.path()).await;
    let url = url::Url::from_directory_path(s.join("t")).unwrap();
    (s, url)
}

/// Rows per batch, counted by a query: the oracle.
async fn counted_by_query(dir: &std::path::Path) -> BTreeMap<String, u64> {
    table_rows(
        dir,
        "t",
        "SELECT b, CAST(COUNT(*) AS VARCHAR) FROM t WHERE b IS NOT NULL GROUP BY b",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect()
}

async fn from_log(dir: &std::path::Path, wanted: &BTreeSet<String>) -> stats::LogCounts {
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let table = delta::open(&url, "t").await.unwrap().unwrap();
    stats::counts_by_value(&table, "t", "b", wanted)
        .await
        .unwrap()
}

fn wanted(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_from_the_log_and_the_shared_files_equal_a_count_of_the_rows() {
    let s = Scratch::new();
    small_shared_files(s.path()).await;
    let log = std::fs::read_to_string(s.join("t/_delta_log/00000000000000000006.json")).unwrap();
    assert!(log.contains(r#""deletionVector":{"#), "{log}");
    let oracle = counted_by_query(s.path()).await;
    assert_eq!(oracle["b-1"], 100 - 34 + 3 - 1, "{oracle:?}");
    let got = from_log(s.path(), &wanted(&["b-1", "b-2", "b-3", "b-4", "b-9"])).await;
    assert!(got.unknown.is_empty(), "the shared files are read: {got:?}");
    assert_eq!(got.counted, oracle);
    let some = from_log(s.path(), &wanted(&["b-2", "b-4"])).await;
    let want: BTreeMap<String, u64> = oracle
        .iter()
        .filter(|(b, _)| ["b-2", "b-4"].contains(&b.as_str()))
        .map(|(b, n)| (b.clone(), *n))
        .collect();
    assert_eq!(some.counted, want, "only the values asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_files_that_are_much_of_the_table_leave_their_batches_to_a_query() {
    let s = Scratch::new();
    small_shared_files(s.path()).await;
    let large = [of("b-1", 300), of("b-5", 300)].concat();
    append(s.path(), vec![rows(&large, 1_000, 20_003)]).await;
    let oracle = counted_by_query(s.path()).await;
    let asked = wanted(&["b-1", "b-2", "b-3", "b-4", "b-5", "b-6", "b-9"]);
    let got = from_log(s.path(), &asked).await;
    // every shared file's range: b-1..b-3, b-4 alone with a null, b-1..b-5
    assert_eq!(got.unknown, wanted(&["b-1", "b-2", "b-3", "b-4", "b-5"]));
    assert!(got.counted.is_empty(), "{got:?}");
    let list: Vec<String> = got.unknown.iter().map(|b| format!("'{b}'")).collect();
    let queried = table_rows(
        s.path(),
        "t",
        &format!(
            "SELECT b, CAST(COUNT(*) AS VARCHAR) FROM t WHERE b IN ({}) GROUP BY b",
            list.join(", ")
        ),
    )
    .await;
    let mut all = got.counted;
    all.extend(
        queried
            .into_iter()
            .map(|r| (r[0].clone(), r[1].parse().unwrap())),
    );
    assert_eq!(all, oracle);
}

#[test]
fn verify_fails_when_a_vector_deletes_a_row_behind_karats_back() {
    let s = Scratch::new();
    crate::util::daily_project(s.path(), true);
    for day in 0..2 {
        crate::util::daily_file(s.path(), day, 1_000);
        let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
        assert_eq!(code, Some(0), "{out}");
    }
    let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
    assert_eq!(code, Some(0), "{out}");
    let lake = s.join("lake");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = |q: &str| scalar(&rt.block_on(sql(&lake, "silver/orders", q)));
    let victim = first("SELECT order_id FROM t ORDER BY order_id LIMIT 1");
    let batch = first(&format!(
        "SELECT _batch_id FROM t WHERE order_id = '{victim}'"
    ));
    let date = first(&format!(
        "SELECT CAST(order_date AS VARCHAR) FROM t WHERE order_id = '{victim}'"
    ));
    rt.block_on(delete_by_vector(&lake, &victim, &date));
    let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&batch), "the batch is named: {out}");
}

/// Deletes `order_id`'s silver row (of partition `date`) by deletion vector, as another
/// Delta writer could.
async fn delete_by_vector(lake: &std::path::Path, order_id: &str, date: &str) {
    let url = url::Url::from_directory_path(lake.join("silver/orders")).unwrap();
    let table = delta::open(&url, "orders").await.unwrap().unwrap();
    assert!(
        deletion::enabled(&table),
        "the bench table has deletion vectors on"
    );
    let schema = table.snapshot().unwrap().snapshot().arrow_schema();
    let victim = order_id.to_string();
    let keep: Keep = Arc::new(move |b: &RecordBatch| {
        let ids = b.column_by_name("order_id").unwrap().as_string::<i32>();
        Ok(ids
            .iter()
            .map(|id| Some(id != Some(victim.as_str())))
            .collect())
    });
    let rewrite = Rewrite {
        partitions: [date.to_string()].into(),
        keep,
        added: BTreeMap::new(),
        found: None,
    };
    let meta = vec![(
        "operation".to_string(),
        serde_json::json!("behind karat's back"),
    )];
    let reads = ["order_id".to_string()];
    deletion::delete_and_append(
        table,
        "orders",
        &schema,
        "order_date",
        rewrite,
        &reads,
        meta,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statistics_of_a_table_where_only_some_files_have_a_vector_are_read() {
    // delta-rs's flattened table of files failed on such a table: the dashboard's and
    // /metrics's event-time freshness failed with it
    let (s, url) = small_shared_table().await;
    let live = table_rows(
        s.path(),
        "t",
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(MAX(id) AS VARCHAR) FROM t",
    )
    .await;
    let got = stats::stats(&url, "t").await.unwrap().unwrap();
    assert_eq!(got.rows.to_string(), live[0][0]);
    assert_eq!(
        stats::max_of(&url, "t", "id").await.unwrap().as_deref(),
        Some(live[0][1].as_str())
    );
    let by_day = stats::max_by_partition(&url, "t", "id", "day")
        .await
        .unwrap();
    assert_eq!(by_day.get("2024-10-06").map(String::as_str), Some("406"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_counts_leave_out_the_rows_a_vector_deletes() {
    // OpenLineage's dataQualityMetrics: a file's statistics count the nulls it was written
    // with, and the vector deletes one of the mixed file's two nulls (id 207)
    let (s, url) = small_shared_table().await;
    let live = table_rows(
        s.path(),
        "t",
        "SELECT CAST(COUNT(*) - COUNT(b) AS VARCHAR), CAST(COUNT(*) - COUNT(id) AS VARCHAR) FROM t",
    )
    .await;
    assert_eq!(live[0][0], "7", "2 + 5 + 1 written, one deleted");
    let got = stats::stats(&url, "t").await.unwrap().unwrap();
    assert_eq!(
        got.nulls.get("b").map(i64::to_string),
        Some(live[0][0].clone())
    );
    assert_eq!(
        got.nulls.get("id").map(i64::to_string),
        Some(live[0][1].clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_per_partition_from_the_log_equal_a_count_of_the_rows() {
    // what each run's partition counts (its gate's figures) take from the log
    let (s, url) = small_shared_table().await;
    let oracle: BTreeMap<String, u64> = table_rows(
        s.path(),
        "t",
        "SELECT CAST(day AS VARCHAR), CAST(COUNT(*) AS VARCHAR) FROM t GROUP BY day",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect();
    assert_eq!(oracle.len(), 3, "{oracle:?}");
    let table = delta::open(&url, "t").await.unwrap().unwrap();
    let days: BTreeSet<String> = oracle
        .keys()
        .cloned()
        .chain(["2024-12-31".into()])
        .collect();
    let got = stats::rows_by_partition(&table, "t", "day", &days).unwrap();
    assert_eq!(got, Some(oracle.clone()), "a day without rows is absent");
    let first: BTreeSet<String> = oracle.keys().take(1).cloned().collect();
    let got = stats::rows_by_partition(&table, "t", "day", &first)
        .unwrap()
        .unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        first.iter().collect::<Vec<_>>()
    );
}
