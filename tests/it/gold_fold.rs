//! Folding a run's changes into an aggregate gold table ([`karat::gold::fold`]): after every
//! daily run gold equals its query over silver (read by deltalake's own reader, not karat);
//! the runs after the first fold instead of recomputing; a gold table changed behind karat's
//! back is recomputed, not folded into; and with its baseline forged to hide the change, the
//! same comparison sees gold go wrong.

use std::path::Path;

use crate::util::{self, Scratch};

const PER_DAY: usize = 3000;

/// Gold's rows and its query recomputed over silver, as sorted text rows.
async fn gold_and_recomputed(lake_dir: &Path) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    gold_and_recomputed_where(lake_dir, "true").await
}

/// [`gold_and_recomputed`] for a gold query that keeps the rows `filter` holds for.
async fn gold_and_recomputed_where(
    lake_dir: &Path,
    filter: &str,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let mut gold = util::rows(
        lake_dir,
        "gold/daily_revenue",
        "SELECT CAST(order_date AS VARCHAR), currency, CAST(revenue AS VARCHAR), orders FROM t",
    )
    .await;
    let mut want = util::rows(
        lake_dir,
        "silver/orders",
        &format!(
            "SELECT CAST(order_date AS VARCHAR), currency, CAST(SUM(amount) AS VARCHAR), \
             COUNT(*) FROM t WHERE {filter} GROUP BY 1, 2"
        ),
    )
    .await;
    gold.sort();
    want.sort();
    (gold, want)
}

/// Day `n` arrives and is run; the partitions gold folded.
async fn day(dir: &Path, n: usize) -> Vec<String> {
    util::daily_file(dir, n, PER_DAY);
    let (plan, lake) = util::open(&dir.join("karat.toml")).await;
    let report = util::run(&plan, &lake).await;
    report.gold[0].folded.clone()
}

/// Adds one to every gold row's count, as a writer outside karat might.
async fn change_gold_behind_karats_back(lake_dir: &Path) {
    let url = url::Url::from_directory_path(lake_dir.join("gold/daily_revenue")).unwrap();
    deltalake::open_table(url)
        .await
        .unwrap()
        .update()
        .with_update("orders", "orders + 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn daily_runs_fold_their_changes_into_gold_and_equal_its_query_over_silver() {
    for deletion_vectors in [false, true] {
        let s = Scratch::new();
        util::daily_project(s.path(), deletion_vectors);
        for n in 0..4 {
            let folded = day(s.path(), n).await;
            let (gold, want) = gold_and_recomputed(&s.join("lake")).await;
            assert_eq!(gold, want, "day {n}, deletion vectors {deletion_vectors}");
            // the first run starts the baseline by recomputing; every later one folds (the
            // bench re-sends orders of every earlier day)
            assert_eq!(folded.is_empty(), n == 0, "day {n}: folded {folded:?}");
        }
    }
}

#[tokio::test]
async fn a_gold_table_changed_behind_karats_back_is_recomputed_and_a_forged_baseline_shows() {
    let s = Scratch::new();
    util::daily_project(s.path(), true);
    let lake_dir = s.join("lake");
    day(s.path(), 0).await;
    day(s.path(), 1).await;

    change_gold_behind_karats_back(&lake_dir).await;
    let folded = day(s.path(), 2).await;
    assert!(folded.is_empty(), "folded into a changed table: {folded:?}");
    let (gold, want) = gold_and_recomputed(&lake_dir).await;
    assert_eq!(gold, want, "recomputed after the change");

    // the same change with the baseline rewritten to vouch for it: folding carries it on,
    // and the comparison with the query over silver fails
    change_gold_behind_karats_back(&lake_dir).await;
    let path = lake_dir.join("_karat/gold_fold/daily_revenue.json");
    let mut baseline: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    baseline["gold_version"] = (baseline["gold_version"].as_i64().unwrap() + 1).into();
    std::fs::write(&path, baseline.to_string()).unwrap();
    let folded = day(s.path(), 3).await;
    assert!(!folded.is_empty(), "the forged baseline is trusted");
    let (gold, want) = gold_and_recomputed(&lake_dir).await;
    assert_ne!(gold, want, "the change behind karat's back shows");
}

#[tokio::test]
async fn a_gold_query_edited_between_runs_is_recomputed_then_folded_again() {
    let s = Scratch::new();
    util::daily_project(s.path(), false);
    day(s.path(), 0).await;
    let cfg = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let edited = text.replacen(
        "FROM orders GROUP BY",
        "FROM orders WHERE currency <> 'GBP' GROUP BY",
        1,
    );
    assert_ne!(text, edited, "the bench's gold query");
    std::fs::write(&cfg, edited).unwrap();
    for n in 1..3 {
        let folded = day(s.path(), n).await;
        assert_eq!(folded.is_empty(), n == 1, "day {n}: folded {folded:?}");
        let (gold, want) = gold_and_recomputed_where(&s.join("lake"), "currency <> 'GBP'").await;
        assert_eq!(gold, want, "day {n}");
    }
}

/// `karat maintain` on the project in `dir` (compaction, purged vectors and vacuum change no
/// rows).
async fn maintain(dir: &Path) {
    let (plan, lake) = util::open(&dir.join("karat.toml")).await;
    karat::pipeline::maintain::maintain(&plan, &lake, false)
        .await
        .expect("maintain");
}

#[tokio::test]
async fn maintenance_keeps_the_baseline_unless_gold_changed_behind_karats_back_before_it() {
    let s = Scratch::new();
    util::daily_project(s.path(), true);
    let lake_dir = s.join("lake");
    day(s.path(), 0).await;
    day(s.path(), 1).await;

    maintain(s.path()).await;
    let folded = day(s.path(), 2).await;
    assert!(
        !folded.is_empty(),
        "the run after maintenance recomputed gold whole"
    );
    let (gold, want) = gold_and_recomputed(&lake_dir).await;
    assert_eq!(gold, want, "folded after maintenance");

    change_gold_behind_karats_back(&lake_dir).await;
    maintain(s.path()).await;
    let folded = day(s.path(), 3).await;
    assert!(
        folded.is_empty(),
        "maintenance vouched for a changed table: {folded:?}"
    );
    let (gold, want) = gold_and_recomputed(&lake_dir).await;
    assert_eq!(gold, want, "recomputed after the change and maintenance");
}

/// Writes `lines` (NDJSON) as the file `name` of the project's data folder.
fn data_file(dir: &Path, name: &str, lines: &[&str]) {
    std::fs::write(dir.join("data").join(name), lines.join("\n") + "\n").expect("data file");
}

#[tokio::test]
async fn a_sum_over_nulls_kept_from_before_a_contract_said_not_null_is_recomputed_not_folded() {
    let s = Scratch::new();
    let config = util::daily_project(s.path(), false)
        .replacen(r#""data/*.ndjson.gz""#, r#""data/*.ndjson""#, 1)
        .replacen(
            r#"amount = { type = "decimal(12,2)", nullable = false"#,
            r#"amount = { type = "decimal(12,2)", nullable = true"#,
            1,
        );
    let cfg = s.join("karat.toml");
    std::fs::write(&cfg, &config).unwrap();
    let order = |id: &str, amount: &str, currency: &str| {
        format!(
            r#"{{"order_id":"{id}","customer_id":"c-1",{amount}"currency":"{currency}","quantity":1,"status":"paid","order_date":"2026-01-01"}}"#
        )
    };
    // a GBP group of two orders, one without amount (the contract allows it)
    let (o1, o2) = (
        order("o-1", "", "GBP"),
        order("o-2", r#""amount":5.00,"#, "GBP"),
    );
    data_file(s.path(), "day-1.ndjson", &[&o1, &o2]);
    let (plan, lake) = util::open(&cfg).await;
    util::run(&plan, &lake).await;

    // the contract now says amount is never null (o-1 keeps its null until a replay); the
    // next run starts gold's baseline
    std::fs::write(
        &cfg,
        config.replacen("nullable = true", "nullable = false", 1),
    )
    .unwrap();
    let o3 = order("o-3", r#""amount":7.00,"#, "USD");
    data_file(s.path(), "day-2.ndjson", &[&o3]);
    let (plan, lake) = util::open(&cfg).await;
    util::run(&plan, &lake).await;
    // o-2 moves to EUR: the GBP group is o-1 alone, whose SUM is null, not 0
    let o2 = order("o-2", r#""amount":5.00,"#, "EUR");
    data_file(s.path(), "day-3.ndjson", &[&o2]);
    let report = util::run(&plan, &lake).await;
    let (gold, want) = gold_and_recomputed(&s.join("lake")).await;
    assert_eq!(gold, want, "gold after the contract edit");
    assert!(
        report.gold[0].folded.is_empty(),
        "folded: {:?}",
        report.gold[0].folded
    );

    // a replay applies the contract (o-1 becomes a dead letter), and runs fold again
    let target = karat::pipeline::ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec!["2026-01-01".into()],
    };
    let events = karat::events::Events::none();
    karat::pipeline::replay(&plan, &lake, target, &events)
        .await
        .unwrap();
    for n in 4..6 {
        let o = order(&format!("o-{n}"), r#""amount":1.00,"#, "USD");
        data_file(s.path(), &format!("day-{n}.ndjson"), &[&o]);
        let report = util::run(&plan, &lake).await;
        let (gold, want) = gold_and_recomputed(&s.join("lake")).await;
        assert_eq!(gold, want, "day {n}, after the replay");
        assert_eq!(report.gold[0].folded.is_empty(), n == 4, "day {n}");
    }
}
