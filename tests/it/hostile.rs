//! Hostile and odd input lands somewhere explainable: a byte order mark does not cost the first
//! record, and "NaN" / "inf" never pass a float column's rules.

use karat::lake::Lake;
use karat::pipeline::RunReport;

use crate::util::{Scratch, counts, open, run, sql};

/// A scratch project with this `karat.toml` and an empty `data/`.
fn project(config: &str) -> Scratch {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    std::fs::write(s.join("karat.toml"), config).unwrap();
    s
}

/// Runs the project once.
async fn run_project(s: &Scratch) -> (Lake, RunReport) {
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
    (lake, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bom_and_non_finite_numbers() {
    let s = project(
        r#"[lake]
url = "lake"
[[source]]
name = "scores"
kind = "files"
path = "data/*.ndjson"
[[table]]
name = "scores"
zone = "silver"
from = "scores"
key = ["id"]
max_reject_rate = 1.0
[table.columns]
id = { type = "string", nullable = false }
score = { type = "float64", min = 0 }
"#,
    );
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend_from_slice(
        b"{\"id\":\"a\",\"score\":1.5}\n{\"id\":\"b\",\"score\":\"NaN\"}\n{\"id\":\"c\",\"score\":\"inf\"}\n{\"id\":\"d\",\"score\":\"-Infinity\"}\n",
    );
    std::fs::write(s.join("data/scores.ndjson"), body).unwrap();
    let (_, r) = run_project(&s).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let lake_dir = s.join("lake");
    let silver = counts(
        &sql(
            &lake_dir,
            "silver/scores",
            "SELECT id, COUNT(*) FROM t GROUP BY id",
        )
        .await,
    );
    assert_eq!(
        silver.keys().collect::<Vec<_>>(),
        vec!["a"],
        "the BOM line is a record"
    );
    let dead = counts(
        &sql(
            &lake_dir,
            "dead_letters/scores",
            "SELECT array_to_string(reasons, '|'), COUNT(*) FROM t GROUP BY 1",
        )
        .await,
    );
    assert_eq!(dead.values().sum::<i64>(), 3, "{dead:?}");
    assert!(
        dead.keys().all(|r| r.contains("not a finite number")),
        "{dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cannot_forge_karats_own_fields() {
    let s = Scratch::new();
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    // o-1 claims to be ingested in 2099 by another batch; o-8 claims to be broken JSON; o-9
    // forges with an escaped key (the owned parse path)
    std::fs::write(
        s.join("data/orders/forged.ndjson"),
        concat!(
            r#"{"order_id":"o-1","amount":1,"currency":"USD","quantity":1,"order_date":"2026-03-27","_ingested_at":"2099-01-01T00:00:00Z","_batch_id":"zzzz"}"#,
            "\n",
            r#"{"order_id":"o-8","amount":1,"currency":"USD","quantity":1,"order_date":"2026-03-27","_error":"forged"}"#,
            "\n",
            r#"{"order_id":"o-9","amount":1,"currency":"USD","quantity":1,"order_date":"2026-03-27","\u005fingested_at":"2099-01-01T00:00:00Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    std::fs::write(
        s.join("data/orders/later.ndjson"),
        concat!(
            r#"{"order_id":"o-1","amount":2,"currency":"USD","quantity":1,"order_date":"2026-03-27"}"#,
            "\n",
            r#"{"order_id":"o-9","amount":2,"currency":"USD","quantity":1,"order_date":"2026-03-27"}"#,
            "\n"
        ),
    )
    .unwrap();
    let r = run(&plan, &lake).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let lake_dir = s.join("lake");
    let amounts = counts(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT order_id || '=' || CAST(amount AS VARCHAR), COUNT(*) FROM t WHERE order_id IN ('o-1', 'o-8', 'o-9') GROUP BY 1",
        )
        .await,
    );
    assert_eq!(
        amounts.keys().collect::<Vec<_>>(),
        vec!["o-1=2.00", "o-8=1.00", "o-9=2.00"],
        "the real later versions win, and a forged _error does not dead-letter o-8"
    );
    let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
    assert!(v.ok(), "{}", v.lines().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_and_a_huge_line_fail_their_own_batches_and_the_rest_lands() {
    use std::io::Write;
    let s = project(
        r#"[lake]
url = "lake"
[[source]]
name = "scores"
kind = "files"
path = "data/*"
max_unit_bytes = 1000000
max_line_bytes = 4096
[[table]]
name = "scores"
zone = "silver"
from = "scores"
key = ["id"]
[table.columns]
id = { type = "string", nullable = false }
score = { type = "float64" }
"#,
    );
    // 100 MB of zeros in about 100 kB of gzip
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..100 {
        gz.write_all(&zeros).unwrap();
    }
    std::fs::write(s.join("data/bomb.ndjson.gz"), gz.finish().unwrap()).unwrap();
    let long = format!("{{\"id\":\"x\",\"pad\":\"{}\"}}\n", "a".repeat(10_000));
    std::fs::write(s.join("data/long.ndjson"), long).unwrap();
    std::fs::write(s.join("data/big.ndjson"), vec![b' '; 2_000_000]).unwrap();
    std::fs::write(s.join("data/good.ndjson"), "{\"id\":\"a\",\"score\":1}\n").unwrap();
    let (_, r) = run_project(&s).await;
    let failed: Vec<String> = r.bronze[0]
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.origin, f.error))
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    let has = |file: &str, what: &str| failed.iter().any(|f| f.contains(file) && f.contains(what));
    assert!(has("bomb.ndjson.gz", "max_unit_bytes"), "{failed:?}");
    assert!(has("long.ndjson", "line 1: 10"), "{failed:?}");
    assert!(
        has("big.ndjson", "2000000 bytes, over max_unit_bytes"),
        "{failed:?}"
    );
    assert_eq!(r.exit_code(), 1);
    let silver = counts(
        &sql(
            &s.join("lake"),
            "silver/scores",
            "SELECT id, COUNT(*) FROM t GROUP BY id",
        )
        .await,
    );
    assert_eq!(silver.get("a"), Some(&1), "the good file lands: {silver:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_columns_never_leave_bronze() {
    let s = project(
        r#"[lake]
url = "lake"
[[source]]
name = "payments"
kind = "files"
path = "data/*.ndjson"
[[table]]
name = "payments"
zone = "silver"
from = "payments"
key = ["email"]
max_reject_rate = 1.0
[table.columns]
email = { type = "string", nullable = false, mask = "sha256" }
card = { type = "string", regex = "^[0-9]{16}$", mask = "last4" }
holder = { type = "string", mask = "redact" }
amount = { type = "float64", min = 0 }
"#,
    );
    std::fs::write(
        s.join("data/p.ndjson"),
        concat!(
            "{\"email\":\"ann@example.com\",\"card\":\"4111111111111111\",\"holder\":\"Ann Lee\",\"amount\":5}\n",
            "{\"email\":\"bob@example.com\",\"card\":\"4222-2222-2222-2222\",\"holder\":\"Bob Roe\",\"amount\":5}\n",
            "{\"email\":\"cy@example.com\",\"card\":\"4333333333333333\",\"holder\":\"Cy\",\"amount\":-1}\n",
            "{\"email\":\"dee@example.com\",\"card\":\"4444444444444444\n",
        ),
    )
    .unwrap();
    let (lake, r) = run_project(&s).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let lake_dir = s.join("lake");
    let silver = crate::util::scalar(
        &sql(
            &lake_dir,
            "silver/payments",
            "SELECT email || ' ' || card || ' ' || holder FROM t",
        )
        .await,
    );
    let email = karat::silver::mask::apply(karat::config::Mask::Sha256, "ann@example.com");
    assert_eq!(silver, format!("{email} ************1111 [redacted]"));
    let dead = crate::util::pretty(
        &sql(
            &lake_dir,
            "dead_letters/payments",
            "SELECT array_to_string(reasons, ' | ') AS reasons, raw FROM t ORDER BY line",
        )
        .await,
    );
    for secret in [
        "4222",
        "4333333333333333",
        "Bob Roe",
        "bob@example.com",
        "dee@",
        "4444",
    ] {
        assert!(
            !dead.contains(secret),
            "{secret} leaked into dead letters:\n{dead}"
        );
    }
    assert!(
        dead.contains("***************2222"),
        "the masked value explains the rule: {dead}"
    );
    assert!(dead.contains("[withheld: not a JSON object"), "{dead}");
    assert!(dead.contains("is below min 0"), "{dead}");
    // bronze keeps the original, raw and immutable
    let manifests = karat::bronze::manifest::list(&lake, "payments")
        .await
        .unwrap();
    let gz = lake.get(&manifests[0].object).await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert!(text.contains("4222-2222-2222-2222"), "{text}");
}
