//! SCD2 gold tables against hand-computed expected tables: a change closes the current version
//! and opens one; an untracked change and an unchanged re-send add nothing; a late change (an
//! earlier `effective_from` arriving later) is inserted in order and its neighbours' validity
//! fixed; out-of-order versions within one batch; a key going back to an earlier value; and a
//! contract fix replayed re-derives every version — equal to `karat rebuild`.

use std::path::Path;

use crate::util::{Scratch, open, rows, run};

const CONFIG: &str = r#"[lake]
url = "lake"
[defaults]
max_reject_rate = 1.0
[[source]]
name = "customers"
kind = "files"
path = "data/*.ndjson"
[[table]]
name = "customers"
zone = "silver"
from = "customers"
partition_by = "_ingest_date"
key = ["customer_id"]
[table.columns]
customer_id = { type = "string", nullable = false }
tier = { type = "string", nullable = false }
email = { type = "string" }
updated_at = { type = "timestamp", nullable = false }
[[table]]
name = "customers_dim"
zone = "gold"
kind = "scd2"
from = "customers"
track = ["tier"]
effective_from = "updated_at"
"#;

fn land(dir: &Path, name: &str, rows: &[(&str, &str, &str, &str)]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, tier, email, day)| {
            format!(
                r#"{{"customer_id":"{id}","tier":"{tier}","email":"{email}","updated_at":"2026-03-{day}T00:00:00Z"}}"#
            )
        })
        .collect();
    std::fs::write(dir.join("data").join(name), lines.join("\n") + "\n").unwrap();
}

/// (key, tier, valid_from day, valid_to day or "-", is_current), ordered.
async fn dim(lake_dir: &Path) -> Vec<Vec<String>> {
    rows(
        lake_dir,
        "gold/customers_dim",
        "SELECT customer_id, tier, substr(CAST(valid_from AS VARCHAR), 9, 2), \
         COALESCE(substr(CAST(valid_to AS VARCHAR), 9, 2), '-'), CAST(is_current AS VARCHAR) \
         FROM t ORDER BY 1, 3",
    )
    .await
}

fn expect(want: &[(&str, &str, &str, &str, bool)]) -> Vec<Vec<String>> {
    want.iter()
        .map(|(k, t, f, to, c)| {
            vec![
                k.to_string(),
                t.to_string(),
                f.to_string(),
                to.to_string(),
                c.to_string(),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scd2_versions_follow_effective_time_through_late_changes_and_a_replay() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("data")).unwrap();
    let cfg = s.join("karat.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let lake_dir = s.join("lake");
    let (plan, lake) = open(&cfg).await;

    land(
        s.path(),
        "b1.ndjson",
        &[("c1", "silver", "a@x", "01"), ("c2", "gold", "b@x", "01")],
    );
    run(&plan, &lake).await;
    assert_eq!(
        dim(&lake_dir).await,
        expect(&[
            ("c1", "silver", "01", "-", true),
            ("c2", "gold", "01", "-", true)
        ])
    );

    // c1 changes tier; c2 changes only its (untracked) email: no new version
    land(
        s.path(),
        "b2.ndjson",
        &[("c1", "gold", "a@x", "05"), ("c2", "gold", "new@x", "05")],
    );
    run(&plan, &lake).await;
    assert_eq!(
        dim(&lake_dir).await,
        expect(&[
            ("c1", "silver", "01", "05", false),
            ("c1", "gold", "05", "-", true),
            ("c2", "gold", "01", "-", true),
        ])
    );

    // a late change: effective the 3rd, arriving after the 5th's — inserted in order
    land(s.path(), "b3.ndjson", &[("c1", "platinum", "a@x", "03")]);
    run(&plan, &lake).await;
    let late = expect(&[
        ("c1", "silver", "01", "03", false),
        ("c1", "platinum", "03", "05", false),
        ("c1", "gold", "05", "-", true),
        ("c2", "gold", "01", "-", true),
    ]);
    assert_eq!(dim(&lake_dir).await, late);

    // one batch: an unchanged re-send of c2, c1 back to silver, and c3's versions out of order
    land(
        s.path(),
        "b4.ndjson",
        &[
            ("c2", "gold", "new@x", "07"),
            ("c1", "silver", "a@x", "09"),
            ("c3", "bronze", "c@x", "02"),
            ("c3", "silver", "c@x", "01"),
        ],
    );
    run(&plan, &lake).await;
    let all = [
        ("c1", "silver", "01", "03", false),
        ("c1", "platinum", "03", "05", false),
        ("c1", "gold", "05", "09", false),
        ("c1", "silver", "09", "-", true),
        ("c2", "gold", "01", "-", true),
        ("c3", "silver", "01", "02", false),
        ("c3", "bronze", "02", "-", true),
    ];
    assert_eq!(dim(&lake_dir).await, expect(&all));

    // the contract now upper-cases tiers; a replay of every partition re-derives each version
    let fixed = CONFIG.replace(
        "tier = { type = \"string\", nullable = false }",
        "tier = { type = \"string\", nullable = false, normalize = [\"upper\"] }",
    );
    std::fs::write(&cfg, fixed).unwrap();
    let (plan, lake) = open(&cfg).await;
    let target = karat::pipeline::ReplayTarget::Range {
        table: "customers".into(),
        from: "0000".into(),
        to: "9999".into(),
    };
    karat::pipeline::replay(&plan, &lake, target, &karat::events::Events::none())
        .await
        .unwrap();
    let upper: Vec<(&str, String, &str, &str, bool)> = all
        .iter()
        .map(|(k, t, f, to, c)| (*k, t.to_uppercase(), *f, *to, *c))
        .collect();
    let upper: Vec<(&str, &str, &str, &str, bool)> = upper
        .iter()
        .map(|(k, t, f, to, c)| (*k, t.as_str(), *f, *to, *c))
        .collect();
    assert_eq!(dim(&lake_dir).await, expect(&upper));
    crate::util::assert_rebuilt(&plan, &lake, &s.join("rebuilt")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scd2_definitions_are_checked_against_the_silver_table() {
    crate::util::assert_refused(
        CONFIG,
        &[
            (
                ("track = [\"tier\"]", "track = [\"plan\"]"),
                "scd2 column \"plan\" is not a column of silver table \"customers\"",
            ),
            (
                (
                    "effective_from = \"updated_at\"",
                    "effective_from = \"email\"",
                ),
                "scd2 effective_from \"email\" is not a date or timestamp column",
            ),
            (
                ("from = \"customers\"\ntrack", "from = \"nope\"\ntrack"),
                "scd2 from \"nope\" is not a silver table",
            ),
            (
                ("kind = \"scd2\"", "kind = \"scd2\"\nsql = \"SELECT 1\""),
                "a kind = \"scd2\" table is defined by from, key and track, not sql",
            ),
        ],
    )
    .await;
}
