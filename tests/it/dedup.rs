//! Window dedup of an event stream against a hand-computed table: versions of an event id in the
//! same (tumbling, UTC) window are duplicates — the newest kept, the other counted as superseded —
//! in different windows both are kept, late and out-of-order arrivals included; a row without
//! its time is a dead letter; per batch the accounting balances, the lake equals its rebuild,
//! and a replay under a new window re-derives every version.

use crate::util::{Scratch, open, rows, run, scalar, sql};

const CONFIG: &str = r#"[lake]
url = "lake"
[defaults]
max_reject_rate = 1.0
[[source]]
name = "events"
kind = "files"
path = "data/*.ndjson"
[[table]]
name = "events"
zone = "silver"
from = "events"
partition_by = "event_ts"
dedup = { key = ["event_id"], window = "24h", time = "event_ts" }
[table.columns]
event_id = { type = "string", nullable = false }
event_ts = { type = "timestamp", nullable = false }
n = { type = "int64" }
"#;

fn land(dir: &std::path::Path, name: &str, rows: &[(&str, &str, i64)]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, ts, n)| {
            if ts.is_empty() {
                format!(r#"{{"event_id":"{id}","n":{n}}}"#)
            } else {
                format!(r#"{{"event_id":"{id}","event_ts":"2026-03-{ts}:00Z","n":{n}}}"#)
            }
        })
        .collect();
    std::fs::write(dir.join("data").join(name), lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_the_window_is_superseded_and_one_outside_it_is_kept() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    let cfg = s.join("karat.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let (plan, lake) = open(&cfg).await;
    land(
        s.path(),
        "b1.ndjson",
        &[("e1", "01T10:00", 1), ("e2", "01T12:00", 2)],
    );
    run(&plan, &lake).await;
    land(
        s.path(),
        "b2.ndjson",
        &[
            ("e1", "01T11:00", 3), // same window as b1's e1: a duplicate, the newest wins
            ("e1", "02T09:00", 4), // the next day's window: kept
            ("e2", "03T12:00", 5), // kept
            ("e4", "", 6),         // no time: a dead letter
        ],
    );
    run(&plan, &lake).await;
    // late and out of order: tumbling days (UTC), so 23:30 and 00:30 fall in two windows, both
    // kept; e2 at 11:00 arrives after e2 at 12:00 of the same window: the newest arrival wins
    land(
        s.path(),
        "b3.ndjson",
        &[
            ("e3", "01T23:30", 7),
            ("e3", "02T00:30", 8),
            ("e2", "03T11:00", 9),
        ],
    );
    run(&plan, &lake).await;

    let lake_dir = s.join("lake");
    assert_eq!(
        texts(&lake_dir, "silver/events", "SELECT event_id || '@' || substr(CAST(event_ts AS VARCHAR), 9, 8) || '=' || CAST(n AS VARCHAR) FROM t ORDER BY 1").await,
        [
            "e1@01T11:00=3",
            "e1@02T09:00=4",
            "e2@01T12:00=2",
            "e2@03T11:00=9",
            "e3@01T23:30=7",
            "e3@02T00:30=8",
        ]
    );
    assert_eq!(
        texts(
            &lake_dir,
            "_karat/superseded/events",
            "SELECT CAST(n AS VARCHAR) FROM t ORDER BY 1"
        )
        .await,
        ["1", "5"],
        "b1's e1 lost to b2's, b2's e2 to b3's, each in its window"
    );
    let dead = scalar(
        &sql(
            &lake_dir,
            "dead_letters/events",
            "SELECT array_to_string(rules, ',') FROM t",
        )
        .await,
    );
    assert_eq!(dead, "event_ts.required");
    // 2 + 4 + 2 records = 6 rows + 1 dead letter + 1 superseded, batch by batch
    crate::util::assert_verified_and_rebuilt(&plan, &lake, &s.join("rebuilt")).await;

    // an hour's window, replayed: every version falls in a window of its own, none superseded
    std::fs::write(&cfg, CONFIG.replace("window = \"24h\"", "window = \"1h\"")).unwrap();
    let (plan, lake) = open(&cfg).await;
    let target = karat::pipeline::ReplayTarget::Range {
        table: "events".into(),
        from: "0000".into(),
        to: "9999".into(),
    };
    karat::pipeline::replay(&plan, &lake, target, &karat::events::Events::none())
        .await
        .unwrap();
    assert_eq!(
        texts(
            &lake_dir,
            "silver/events",
            "SELECT CAST(n AS VARCHAR) FROM t ORDER BY 1"
        )
        .await,
        ["1", "2", "3", "4", "5", "7", "8", "9"]
    );
    assert!(
        texts(
            &lake_dir,
            "_karat/superseded/events",
            "SELECT CAST(n AS VARCHAR) FROM t"
        )
        .await
        .is_empty()
    );
    let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
    assert!(v.ok(), "{}", v.lines().join("\n"));
}

/// The first column of `query` over the table at `rel`, as text.
async fn texts(lake_dir: &std::path::Path, rel: &str, query: &str) -> Vec<String> {
    rows(lake_dir, rel, query)
        .await
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_dedup_is_checked_where_it_is_written() {
    crate::util::assert_refused(
        CONFIG,
        &[
            (
                (
                    "partition_by = \"event_ts\"",
                    "partition_by = \"event_ts\"\nkey = [\"event_id\"]",
                ),
                "dedup replaces `key`",
            ),
            (
                ("window = \"24h\"", "window = \"soon\""),
                "window \"soon\" is not a duration",
            ),
            (
                ("time = \"event_ts\"", "time = \"n\""),
                "time \"n\" must be a date or timestamp column",
            ),
            (
                (
                    "event_ts = { type = \"timestamp\", nullable = false }",
                    "event_ts = { type = \"timestamp\" }",
                ),
                "with nullable = false",
            ),
        ],
    )
    .await;
}
