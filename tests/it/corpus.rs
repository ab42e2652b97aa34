//! The bad-input corpus: every kind of broken or hostile file a source can send, landed in one
//! run. Each input is accounted for — its records are silver rows, dead letters with a reason,
//! or superseded (`karat verify` balances every batch against its manifest), or the whole unit
//! is a recorded failure — and nothing crashes.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;

use crate::util::{Scratch, finish, open, run, spawn_karat, sql};

/// What an input must become.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A batch whose manifest counts this many records.
    Records(u64),
    /// A failed unit, recorded with its reason.
    Failed,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The corpus: file name, bytes, what it must become.
fn corpus() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let ok = |id: &str| format!("{{\"id\":\"{id}\",\"amount\":1.5,\"day\":\"2026-03-01\"}}\n");
    let three = format!("{}{}{}", ok("g1"), ok("g2"), ok("g3"));
    let whole = gzip(three.as_bytes());
    let deep = format!(
        "{{\"id\":\"deep\",\"x\":{}1{}}}\n",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let long = format!(
        "{{\"id\":\"long\",\"amount\":1,\"day\":\"2026-03-01\",\"pad\":\"{}\"}}\n",
        "x".repeat(10 << 20)
    );
    vec![
        ("corrupt.ndjson.gz", vec![0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad], Expect::Failed),
        ("truncated.ndjson.gz", whole[..whole.len() / 2].to_vec(), Expect::Failed),
        (
            "invalid-utf8.ndjson",
            [ok("u1").as_bytes(), b"{\"id\":\"u2\",\"amount\":\"\xff\xfe\"}\n"].concat(),
            Expect::Records(2),
        ),
        ("truncated-json.ndjson", b"{\"id\":\"t1\",\"amount\":".to_vec(), Expect::Records(1)),
        ("long-line.ndjson", long.into_bytes(), Expect::Records(1)),
        ("deep.ndjson", deep.into_bytes(), Expect::Records(1)),
        (
            "huge-numbers.ndjson",
            b"{\"id\":\"h1\",\"amount\":1e400,\"day\":\"2026-03-01\"}\n{\"id\":\"h2\",\"amount\":123456789012345678901234567890123456789,\"day\":\"2026-03-01\"}\n".to_vec(),
            Expect::Records(2),
        ),
        (
            "nan.ndjson",
            b"{\"id\":\"n1\",\"amount\":\"NaN\",\"day\":\"2026-03-01\"}\n".to_vec(),
            Expect::Records(1),
        ),
        ("bom.ndjson", [b"\xEF\xBB\xBF".as_slice(), ok("b1").as_bytes()].concat(), Expect::Records(1)),
        ("crlf.ndjson", format!("{}\r\n{}\r\n", ok("c1").trim(), ok("c2").trim()).into_bytes(), Expect::Records(2)),
        ("empty.ndjson", Vec::new(), Expect::Records(0)),
        (
            "ansi.ndjson",
            b"{\"id\":\"a1\",\"amount\":2,\"day\":\"2026-03-01\",\"note\":\"\\u001b]0;pwned\\u0007\\u001b[2J\",\"\\u001b[31mred\":1}\n".to_vec(),
            Expect::Records(1),
        ),
        (
            "forged.ndjson",
            b"{\"id\":\"f1\",\"amount\":3,\"day\":\"2026-03-01\",\"_batch_id\":\"evil\",\"_ingested_at\":\"2999-01-01T00:00:00Z\",\"_error\":\"x\",\"_line\":-1}\n".to_vec(),
            Expect::Records(1),
        ),
        (
            "hostile-partitions.ndjson",
            b"{\"id\":\"p1\",\"amount\":1,\"day\":\"../../../etc/passwd\"}\n{\"id\":\"p2\",\"amount\":1,\"day\":\"2026-02-30\"}\n{\"id\":\"p3\",\"amount\":1,\"day\":\"2026-03-01' OR '1'='1\"}\n".to_vec(),
            Expect::Records(3),
        ),
        ("binary.ndjson", vec![0, 159, 146, 150, b'\n', 7, 0, 255, b'\n'], Expect::Records(2)),
        (
            "ragged.csv",
            b"id,amount,day\nr1,1,2026-03-01\nr2,1\nr3,1,2026-03-01,extra\nr4,\xff,2026-03-01\n".to_vec(),
            Expect::Records(4),
        ),
        (
            "quoted-newline.csv",
            b"id,amount,day\n\"q1\nstill q1\",1,2026-03-01\nq2,1,2026-03-01\nq3,\"unclosed\n".to_vec(),
            Expect::Records(3),
        ),
    ]
}

const CONFIG: &str = r#"[lake]
url = "lake"
[[source]]
name = "events"
kind = "files"
path = "data/*.ndjson*"
[[source]]
name = "sheet"
kind = "files"
path = "data/*.csv"
[[table]]
name = "events"
zone = "silver"
from = "events"
key = ["id"]
partition_by = "day"
max_reject_rate = 1.0
[table.columns]
id = { type = "string", nullable = false }
amount = { type = "float64", nullable = false }
day = { type = "date", nullable = false }
[[table]]
name = "sheet"
zone = "silver"
from = "sheet"
key = ["id"]
partition_by = "day"
max_reject_rate = 1.0
[table.columns]
id = { type = "string", nullable = false }
amount = { type = "float64", nullable = false }
day = { type = "date", nullable = false }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_accounted_for() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    std::fs::write(s.join("karat.toml"), CONFIG).unwrap();
    let inputs = corpus();
    for (name, bytes, _) in &inputs {
        std::fs::write(s.join("data").join(name), bytes).unwrap();
    }
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let report = run(&plan, &lake).await;

    // every input became a batch with its records counted, or a recorded failed unit
    let mut records: BTreeMap<String, u64> = BTreeMap::new();
    for source in ["events", "sheet"] {
        for m in karat::bronze::manifest::list(&lake, source).await.unwrap() {
            records.insert(file_name(&m.origin), m.records);
        }
    }
    let failed: BTreeMap<String, String> = report
        .bronze
        .iter()
        .flat_map(|b| &b.failed)
        .map(|f| (file_name(&f.origin), f.error.clone()))
        .collect();
    for (name, _, expect) in &inputs {
        match expect {
            Expect::Records(n) => assert_eq!(
                records.get(*name),
                Some(n),
                "{name}: records landed (failed: {:?})",
                failed.get(*name)
            ),
            Expect::Failed => assert!(
                failed.get(*name).is_some_and(|e| !e.is_empty()),
                "{name}: a recorded failure, got {failed:?}"
            ),
        }
    }
    // every record of every batch is a silver row, a dead letter or superseded
    let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
    assert_eq!(code, Some(0), "{out}");
    let lake_dir = s.join("lake");
    for table in ["events", "sheet"] {
        let no_reason = crate::util::scalar(
            &sql(
                &lake_dir,
                &format!("dead_letters/{table}"),
                "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE cardinality(reasons) = 0 OR reasons IS NULL",
            )
            .await,
        );
        assert_eq!(no_reason, "0", "{table}: every dead letter has a reason");
    }
    odd_inputs_land_as_they_were(&lake_dir).await;
}

/// The details: bytes that are not UTF-8 land exactly, forged stamps do not stick, CSV rows keep
/// their text and the line they start on.
async fn odd_inputs_land_as_they_were(lake_dir: &std::path::Path) {
    let raw = crate::util::scalar(
        &sql(
            lake_dir,
            "dead_letters/events",
            "SELECT raw FROM t WHERE file LIKE '%invalid-utf8.ndjson'",
        )
        .await,
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            raw.strip_prefix("base64:")
                .expect("not UTF-8: kept as base64"),
        )
        .unwrap();
    assert_eq!(bytes, b"{\"id\":\"u2\",\"amount\":\"\xff\xfe\"}");
    let forged = crate::util::scalar(
        &sql(
            lake_dir,
            "silver/events",
            "SELECT _batch_id || ' ' || CAST(_line AS VARCHAR) FROM t WHERE id = 'f1'",
        )
        .await,
    );
    assert!(
        !forged.starts_with("evil") && forged.ends_with(" 1"),
        "{forged}"
    );
    let rows = crate::util::counts(
        &sql(
            lake_dir,
            "dead_letters/sheet",
            "SELECT CAST(line AS VARCHAR) || ' ' || raw, COUNT(*) FROM t GROUP BY 1",
        )
        .await,
    );
    let lines: Vec<&String> = rows.keys().collect();
    for expected in [
        "3 r2,1",
        "4 r3,1,2026-03-01,extra",
        "5 base64:",
        "5 q3,\"unclosed",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:?}"
        );
    }
    let q2 = crate::util::scalar(
        &sql(
            lake_dir,
            "silver/sheet",
            "SELECT CAST(_line AS VARCHAR) FROM t WHERE id = 'q2'",
        )
        .await,
    );
    assert_eq!(
        q2, "4",
        "the row after a quoted newline keeps its line number"
    );
}

fn file_name(origin: &str) -> String {
    origin.rsplit('/').next().unwrap_or(origin).to_string()
}
