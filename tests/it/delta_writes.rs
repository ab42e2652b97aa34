//! Delta writes as karat makes them: a large append to a partitioned table (or the first write
//! that creates it) is encoded by one writer per core and still lands as one commit holding
//! every row once; a rewrite of some partitions (each streamed through a filter by a writer of
//! its own) replaces exactly those partitions in one commit.

use std::sync::Arc;

use std::collections::BTreeMap;

use deltalake::arrow::array::{AsArray, BooleanArray, Date32Array, Int64Array, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use karat::lake::append::PARALLEL_ROWS;
use karat::lake::delta::{self, Replace};
use karat::lake::rewrite::{self, Rewrite};

use crate::util::{Scratch, rows as table_rows, scalar, sql};

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("day", DataType::Date32, false),
    ]))
}

/// Rows `from..to`, all on `day` (days since 1970-01-01).
pub(crate) fn rows(from: i64, to: i64, day: i32) -> RecordBatch {
    let n = (to - from) as usize;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(from..to)),
            Arc::new(Date32Array::from(vec![day; n])),
        ],
    )
    .unwrap()
}

pub(crate) async fn write(dir: &std::path::Path, batches: Vec<RecordBatch>) -> i64 {
    write_rows(dir, schema(), batches).await
}

/// Appends `batches` (rows of `schema`, partitioned by `day`) to the table `t` in `dir`.
pub(crate) async fn write_rows(
    dir: &std::path::Path,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> i64 {
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let meta = vec![("karat.operation".to_string(), serde_json::json!("test"))];
    delta::write(
        &url,
        "t",
        schema,
        batches,
        Some("day"),
        Replace::Append,
        meta,
    )
    .await
    .unwrap()
}

pub(crate) async fn rows_of(dir: &std::path::Path, query: &str) -> Vec<Vec<String>> {
    table_rows(dir, "t", query).await
}

/// Each day's row count and sum of ids, as text, by day.
pub(crate) async fn per_day(dir: &std::path::Path) -> Vec<Vec<String>> {
    rows_of(
        dir,
        "SELECT CAST(d AS VARCHAR), CAST(n AS VARCHAR), CAST(total AS VARCHAR) FROM \
         (SELECT day AS d, COUNT(*) AS n, SUM(id) AS total FROM t GROUP BY day) ORDER BY d",
    )
    .await
}

pub(crate) fn files_of_day(dir: &std::path::Path, day: &str) -> usize {
    std::fs::read_dir(dir.join("t").join(format!("day={day}")))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_append_to_one_partition_is_written_in_parallel_as_one_commit() {
    let s = Scratch::new();
    assert_eq!(write(s.path(), vec![rows(0, 10, 20_000)]).await, 0);
    // one partition's rows in several batches, more than the parallel threshold
    let per = (PARALLEL_ROWS / 2 + 1000) as i64;
    let batches = vec![
        rows(10, 10 + per, 20_001),
        rows(10 + per, 10 + 2 * per, 20_001),
        rows(10 + 2 * per, 10 + 3 * per, 20_001),
    ];
    assert_eq!(write(s.path(), batches).await, 1);

    let total = 10 + 3 * per;
    let got = rows_of(
        s.path(),
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(DISTINCT id) AS VARCHAR), \
         CAST(MIN(id) AS VARCHAR), CAST(MAX(id) AS VARCHAR) FROM t",
    )
    .await;
    let all = total.to_string();
    let last = (total - 1).to_string();
    assert_eq!(
        got,
        vec![vec![all.as_str(), all.as_str(), "0", last.as_str()]]
    );
    let on_day = sql(
        s.path(),
        "t",
        "SELECT COUNT(*) FROM t WHERE day = '2024-10-05'",
    )
    .await;
    assert_eq!(scalar(&on_day), (3 * per).to_string());
    let cores = karat::lake::append::cores();
    // each core's writer wrote its own file of the day (one file when there is one core)
    assert_eq!(files_of_day(s.path(), "2024-10-05"), cores.min(3));
    let log = std::fs::read_to_string(s.join("t/_delta_log/00000000000000000001.json")).unwrap();
    assert!(log.contains(r#""operation":"WRITE""#), "{log}");
    assert!(log.contains(r#""mode":"Append""#), "{log}");
    assert!(log.contains(r#""karat.operation":"test""#), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_first_write_creates_the_table_empty_then_appends_in_parallel() {
    let s = Scratch::new();
    let per = (PARALLEL_ROWS / 2 + 1000) as i64;
    let batches = vec![rows(0, per, 20_001), rows(per, 2 * per, 20_001)];
    // version 0 creates the table as delta-rs's write does; version 1 holds the rows
    assert_eq!(write(s.path(), batches).await, 1);

    let got = rows_of(
        s.path(),
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(DISTINCT id) AS VARCHAR) FROM t",
    )
    .await;
    let all = (2 * per).to_string();
    assert_eq!(got, vec![vec![all.as_str(), all.as_str()]]);
    assert_eq!(
        files_of_day(s.path(), "2024-10-05"),
        karat::lake::append::cores().min(2)
    );
    let create = std::fs::read_to_string(s.join("t/_delta_log/00000000000000000000.json")).unwrap();
    assert!(create.contains(r#""partitionColumns":["day"]"#), "{create}");
    assert!(
        !create.contains(r#""add""#),
        "the create holds no rows: {create}"
    );
    let append = std::fs::read_to_string(s.join("t/_delta_log/00000000000000000001.json")).unwrap();
    assert!(append.contains(r#""mode":"Append""#), "{append}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_append_keeps_one_file_per_partition() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 10, 20_000)]).await;
    write(s.path(), vec![rows(10, 20, 20_001), rows(20, 30, 20_001)]).await;
    assert_eq!(files_of_day(s.path(), "2024-10-05"), 1);
    let got = sql(s.path(), "t", "SELECT COUNT(DISTINCT id) FROM t").await;
    assert_eq!(scalar(&got), "30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_append_partitioned_unlike_its_table_is_refused_and_writes_nothing() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 10, 20_000)]).await;
    // one id for every row: as a partition column it would qualify by size
    let n = PARALLEL_ROWS / 2 + 1000;
    let same_id = || {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![7; n])),
                Arc::new(Date32Array::from(vec![20_001; n])),
            ],
        )
        .unwrap()
    };
    let url = url::Url::from_directory_path(s.join("t")).unwrap();
    let res = delta::write(
        &url,
        "t",
        schema(),
        vec![same_id(), same_id()],
        Some("id"),
        Replace::Append,
        Vec::new(),
    )
    .await;
    assert!(
        res.is_err(),
        "a write partitioned by id into a table partitioned by day"
    );
    let got = sql(s.path(), "t", "SELECT COUNT(*) FROM t").await;
    assert_eq!(scalar(&got), "10");
}

/// Keeps the rows whose id is odd.
pub(crate) fn odd_ids() -> rewrite::Keep {
    Arc::new(|b: &RecordBatch| {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        Ok(ids
            .iter()
            .map(|id| id.map(|id| id % 2 == 1))
            .collect::<BooleanArray>())
    })
}

async fn replace(dir: &std::path::Path, rewrite: Rewrite) -> karat::KaratResult<i64> {
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let table = delta::open(&url, "t").await.unwrap().unwrap();
    let meta = vec![("karat.operation".to_string(), serde_json::json!("test"))];
    rewrite::replace_partitions(table, "t", &schema(), "day", rewrite, meta).await
}

/// Three days of ten rows written to `dir`, and a rewrite of two of them and of a fourth, new
/// day: odd ids kept, rows added to two days.
pub(crate) async fn three_days(dir: &std::path::Path) -> Rewrite {
    write(
        dir,
        vec![
            rows(0, 10, 20_000),
            rows(10, 20, 20_001),
            rows(20, 30, 20_002),
        ],
    )
    .await;
    Rewrite {
        partitions: ["2024-10-04", "2024-10-05", "2024-10-07"]
            .map(String::from)
            .into(),
        keep: odd_ids(),
        added: BTreeMap::from([
            ("2024-10-05".to_string(), vec![rows(100, 102, 20_001)]),
            ("2024-10-07".to_string(), vec![rows(200, 201, 20_003)]),
        ]),
        found: None,
    }
}

/// The table [`three_days`]' rewrite must leave in `dir`, committed as `version` (a
/// replace-where of the days it names); that commit's log.
pub(crate) async fn three_days_rewritten(dir: &std::path::Path, version: i64) -> String {
    let got = per_day(dir).await;
    assert_eq!(
        got,
        vec![
            vec!["2024-10-04", "5", "25"],   // odd ids of 0..10 kept
            vec!["2024-10-05", "7", "276"],  // odd ids of 10..20, and 100, 101
            vec!["2024-10-06", "10", "245"], // not named: untouched
            vec!["2024-10-07", "1", "200"],  // a new partition
        ]
    );
    let log =
        std::fs::read_to_string(dir.join(format!("t/_delta_log/{version:020}.json"))).unwrap();
    assert!(log.contains(r#""mode":"Overwrite""#), "{log}");
    assert!(
        log.contains("2024-10-05"),
        "the predicate names the days: {log}"
    );
    assert!(log.contains(r#""operationMetrics""#), "{log}");
    assert!(log.contains(r#""karat.operation":"test""#), "{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_replaces_exactly_its_partitions_in_one_commit() {
    let s = Scratch::new();
    let rewrite = three_days(s.path()).await;
    let version = replace(s.path(), rewrite).await.unwrap();
    assert_eq!(version, 1, "one commit");
    let log = three_days_rewritten(s.path(), version).await;
    // the two files replaced are removed; the untouched day's is not
    assert_eq!(log.matches(r#""remove""#).count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_that_keeps_nothing_empties_the_partition() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 10, 20_000), rows(10, 20, 20_001)]).await;
    let none: rewrite::Keep =
        Arc::new(|b: &RecordBatch| Ok(BooleanArray::from(vec![false; b.num_rows()])));
    replace(
        s.path(),
        Rewrite {
            partitions: ["2024-10-04".to_string()].into(),
            keep: none,
            added: BTreeMap::new(),
            found: None,
        },
    )
    .await
    .unwrap();
    let got = sql(
        s.path(),
        "t",
        "SELECT COUNT(*) FROM t WHERE day = '2024-10-04'",
    )
    .await;
    assert_eq!(scalar(&got), "0");
    let got = sql(s.path(), "t", "SELECT COUNT(*) FROM t").await;
    assert_eq!(scalar(&got), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_for_a_partition_the_rewrite_does_not_name_are_refused_and_nothing_changes() {
    let s = Scratch::new();
    write(s.path(), vec![rows(0, 10, 20_000)]).await;
    let err = replace(
        s.path(),
        Rewrite {
            partitions: ["2024-10-04".to_string()].into(),
            keep: odd_ids(),
            added: BTreeMap::from([("2024-10-09".to_string(), vec![rows(50, 51, 20_005)])]),
            found: None,
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("2024-10-09"), "{err}");
    let got = sql(s.path(), "t", "SELECT COUNT(*) FROM t").await;
    assert_eq!(scalar(&got), "10");
    assert!(!s.join("t/_delta_log/00000000000000000001.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_karat_creates_is_checkpointed_every_ten_commits() {
    let s = Scratch::new();
    let every = delta::CHECKPOINT_INTERVAL as i64;
    for v in 0..=every {
        write(s.path(), vec![rows(v * 10, v * 10 + 10, 20_000)]).await;
    }
    let log = s.join("t/_delta_log");
    let create = std::fs::read_to_string(log.join("00000000000000000000.json")).unwrap();
    assert!(
        create.contains(r#""delta.checkpointInterval":"10""#),
        "{create}"
    );
    // no commit is deleted behind the checkpoints: every version stays readable
    assert!(
        create.contains(r#""delta.enableExpiredLogCleanup":"false""#),
        "{create}"
    );
    // delta-rs checkpoints the commit that completes an interval: versions 9, 19, …
    let checkpoint = log.join(format!("{:020}.checkpoint.parquet", every - 1));
    assert!(
        checkpoint.exists(),
        "no checkpoint at version {}",
        every - 1
    );
    let got = sql(s.path(), "t", "SELECT COUNT(*) FROM t").await;
    assert_eq!(scalar(&got), ((every + 1) * 10).to_string());
    let url = url::Url::from_directory_path(s.join("t")).unwrap();
    assert_eq!(delta::latest_version(&url, "t").await.unwrap(), Some(every));
}

/// The encodings of the `_line` column chunks of every live file of the table at `dir`.
fn line_encodings(dir: &std::path::Path) -> Vec<Vec<deltalake::parquet::basic::Encoding>> {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = url::Url::from_directory_path(dir).unwrap();
    let table = rt
        .block_on(delta::open(&url, "t"))
        .unwrap()
        .expect("a table");
    let uris: Vec<String> = table.get_file_uris().unwrap().collect();
    assert!(!uris.is_empty(), "{}", dir.display());
    let mut out = Vec::new();
    for uri in uris {
        let path = url::Url::parse(&uri)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| uri.into());
        let file = std::fs::File::open(&path).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        for rg in reader.metadata().row_groups() {
            let line = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "_line")
                .unwrap_or_else(|| panic!("{}: no _line", path.display()));
            assert_eq!(line.dictionary_page_offset(), None, "{}", path.display());
            out.push(line.encodings().collect());
        }
    }
    out
}

#[test]
fn line_numbers_are_delta_encoded_in_every_file_runs_and_maintenance_write() {
    use crate::util::{finish, spawn_karat};
    use deltalake::parquet::basic::Encoding;
    let s = Scratch::new();
    crate::util::daily_project(s.path(), true);
    let mut steps = vec!["run", "run", "maintain"].into_iter();
    for day in 0..2 {
        crate::util::daily_file(s.path(), day, 2_000);
        let (code, out) = finish(spawn_karat(s.path(), &[steps.next().unwrap()], &[]));
        assert_eq!(code, Some(0), "{out}");
    }
    let check = || {
        for table in ["silver/orders", "_karat/superseded/orders"] {
            for encodings in line_encodings(&s.join("lake").join(table)) {
                assert!(
                    encodings.contains(&Encoding::DELTA_BINARY_PACKED),
                    "{table}: {encodings:?}"
                );
            }
        }
    };
    check();
    let (code, out) = finish(spawn_karat(s.path(), &[steps.next().unwrap()], &[]));
    assert_eq!(code, Some(0), "{out}");
    check();
    let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
    assert_eq!(code, Some(0), "{out}");
}
