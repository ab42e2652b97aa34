//! Hostile and odd input lands somewhere explainable: a byte order mark does not cost the first
//! record, and "NaN" / "inf" never pass a float column's rules.

use crate::util::{Scratch, counts, open, run, sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bom_and_non_finite_numbers() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    std::fs::write(
        s.join("karat.toml"),
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
    )
    .unwrap();
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend_from_slice(
        b"{\"id\":\"a\",\"score\":1.5}\n{\"id\":\"b\",\"score\":\"NaN\"}\n{\"id\":\"c\",\"score\":\"inf\"}\n{\"id\":\"d\",\"score\":\"-Infinity\"}\n",
    );
    std::fs::write(s.join("data/scores.ndjson"), body).unwrap();
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
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
