//! Silver v2, as a new user meets it: keys unique table-wide, replays that bring rows back
//! after a contract fix, gold partitions derived from the changed rows, timestamp partitions,
//! and `karat verify` recomputing the per-batch accounting (and failing when rows go missing
//! behind karat's back). Every expectation is read back from the Delta tables with
//! deltalake's own reader.

use std::collections::BTreeMap;
use std::path::Path;

use karat::events::Events;
use karat::pipeline::{Plan, ReplayTarget};

use karat::schema::three_way::{Finding, ThreeWay};

use crate::util::{Scratch, counts, init, open, pretty, run, scalar, sql};

/// `karat init` in `dir`, with the config edited by `edit`.
fn add_file(dir: &Path, name: &str, lines: &[&str]) {
    std::fs::write(dir.join("data/orders").join(name), lines.join("\n") + "\n").unwrap();
}

async fn verify_ok(plan: &Plan, lake: &karat::lake::Lake) {
    let v = karat::pipeline::verify(plan, lake)
        .await
        .expect("verify runs");
    assert!(v.ok(), "verify: {}", v.lines().join("\n"));
}

/// Gold daily_revenue's orders per day, and the same count over silver computed here.
async fn gold_orders_vs_silver(lake_dir: &Path) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let gold = counts(
        &sql(
            lake_dir,
            "gold/daily_revenue",
            "SELECT CAST(order_date AS VARCHAR), CAST(SUM(orders) AS BIGINT) FROM t GROUP BY 1",
        )
        .await,
    );
    let silver = counts(
        &sql(
            lake_dir,
            "silver/orders",
            "SELECT CAST(order_date AS VARCHAR), COUNT(*) FROM t GROUP BY 1",
        )
        .await,
    );
    (gold, silver)
}

/// A run of one later order `line` (file `later.ndjson`): its summary, and gold
/// daily_revenue's orders per day after it.
async fn a_later_run(
    s: &Scratch,
    plan: &Plan,
    lake: &karat::lake::Lake,
    line: &str,
) -> (String, BTreeMap<String, i64>) {
    add_file(s.path(), "later.ndjson", &[line]);
    let lines = karat::summary::run_lines(&run(plan, lake).await);
    (lines, gold_orders_vs_silver(&s.join("lake")).await.0)
}

/// Edits the project's karat.toml (`[from, to]`, which must change it) and replays orders'
/// partition `partition` with the edited contract: the plan loaded, and the replay's report.
async fn edit_and_replay(
    cfg: &Path,
    lake: &karat::lake::Lake,
    [from, to]: [&str; 2],
    partition: &str,
) -> (Plan, karat::pipeline::RunReport) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let edited = text.replace(from, to);
    assert_ne!(text, edited, "{from} is in {}", cfg.display());
    std::fs::write(cfg, edited).unwrap();
    let plan = Plan::load(cfg).await.unwrap();
    let target = ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![partition.to_string()],
    };
    let r = karat::pipeline::replay(&plan, lake, target, &Events::none())
        .await
        .unwrap();
    (plan, r)
}

/// The status of each gold partition a run recomputed or blocked.
fn gold_statuses(r: &karat::pipeline::RunReport) -> BTreeMap<&str, &str> {
    r.gold
        .iter()
        .flat_map(|g| &g.partitions)
        .map(|o| (o.partition.as_str(), o.status.as_str()))
        .collect()
}

/// order_id → order_date of every silver row.
async fn silver_orders(lake_dir: &Path) -> BTreeMap<String, i64> {
    counts(
        &sql(
            lake_dir,
            "silver/orders",
            "SELECT order_id, COUNT(*) FROM t GROUP BY order_id",
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_contract_fix_brings_the_row_back() {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| t);
    let (plan, lake) = open(&cfg).await;
    assert_eq!(run(&plan, &lake).await.status, "ok");
    add_file(
        s.path(),
        "renamed.ndjson",
        &[
            r#"{"order_id":"o-7","amount":5,"currency":"USD","quantity":1,"orderDate":"2026-03-27"}"#,
        ],
    );
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "failed", "100% rejects fail the gate");
    let failed = r.silver[0]
        .partitions
        .iter()
        .find(|p| p.status.as_str() == "failed")
        .unwrap();
    let partition = failed.partition.clone();
    verify_ok(&plan, &lake).await;

    // the schema view explains it: the batch has orderDate, the contract reads order_date
    let d = karat::schema::three_way_of(&plan, &lake, "orders", None)
        .await
        .unwrap();
    let row = |d: &ThreeWay, field: &str| d.rows.iter().find(|r| r.field == field).cloned();
    let missing = row(&d, "order_date").expect("the contract's field");
    assert_eq!(missing.findings, vec![Finding::MissingInBronze], "{d:#?}");
    assert_eq!(
        missing.dead_letters, 1,
        "o-7's dead letter cites order_date"
    );
    let unread = row(&d, "orderDate").expect("the batch's field");
    assert_eq!(unread.findings, vec![Finding::NotInContract]);
    assert_eq!(d.previous_contract, None, "one contract version so far");
    let batch = d.batch_id.clone();
    let (plan, r) = edit_and_replay(
        &cfg,
        &lake,
        [
            "order_date = { type = \"date\", nullable = false }",
            "order_date = { type = \"date\", nullable = false, source_field = \"orderDate\" }",
        ],
        &partition,
    )
    .await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));

    let lake_dir = s.join("lake");
    let silver = silver_orders(&lake_dir).await;
    assert_eq!(
        silver.get("o-7"),
        Some(&1),
        "o-7 is back in silver: {silver:?}"
    );
    let date = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT CAST(order_date AS VARCHAR) FROM t WHERE order_id = 'o-7'",
        )
        .await,
    );
    assert_eq!(date, "2026-03-27");
    let dead = scalar(
        &sql(
            &lake_dir,
            "dead_letters/orders",
            "SELECT COUNT(*) FROM t WHERE raw LIKE '%o-7%'",
        )
        .await,
    );
    assert_eq!(dead, "0", "and no longer a dead letter");
    let gold = scalar(
        &sql(
            &lake_dir,
            "gold/daily_revenue",
            "SELECT CAST(SUM(orders) AS VARCHAR) FROM t WHERE order_date = DATE '2026-03-27'",
        )
        .await,
    );
    assert_eq!(gold, "3", "gold 2026-03-27 counts o-1, o-2 and o-7");
    verify_ok(&plan, &lake).await;

    // the same batch against the fixed contract and the version before it (from the ledger)
    let after = karat::schema::three_way_of(&plan, &lake, "orders", Some(&batch))
        .await
        .unwrap();
    let renamed = row(&after, "orderDate").expect("the column reads the batch's field");
    assert_eq!(renamed.column.as_deref(), Some("order_date"));
    assert!(
        renamed.findings.contains(&Finding::SourceChanged {
            from: "order_date".into(),
            to: "orderDate".into()
        }),
        "{after:#?}"
    );
    assert!(
        !after
            .rows
            .iter()
            .flat_map(|r| &r.findings)
            .any(Finding::is_problem)
    );
    assert_eq!(
        renamed.dead_letters, 0,
        "the replay cleared the dead letter"
    );
    assert_eq!(after.previous_contract, Some(d.contract.clone()));
    assert_ne!(after.contract, d.contract);
    let unknown = karat::schema::three_way_of(&plan, &lake, "orders", Some("nope")).await;
    let err = unknown.unwrap_err().to_string();
    assert!(err.contains("no bronze batch nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_moves_partition_is_kept_once_and_gold_follows() {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| t);
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    add_file(
        s.path(),
        "resend.ndjson",
        &[
            r#"{"order_id":"o-1","amount":20,"currency":"USD","quantity":1,"order_date":"2026-03-28"}"#,
        ],
    );
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let lake_dir = s.join("lake");
    let silver = silver_orders(&lake_dir).await;
    assert_eq!(
        silver.values().sum::<i64>(),
        3,
        "o-1, o-2, o-3 once each: {silver:?}"
    );
    let o1 = pretty(&sql(&lake_dir, "silver/orders", "SELECT CAST(order_date AS VARCHAR) AS d, CAST(amount AS VARCHAR) AS a FROM t WHERE order_id = 'o-1'").await);
    assert!(o1.contains("2026-03-28") && o1.contains("20.00"), "{o1}");
    let sup = scalar(
        &sql(
            &lake_dir,
            "_karat/superseded/orders",
            "SELECT COUNT(*) FROM t WHERE order_id = 'o-1'",
        )
        .await,
    );
    assert_eq!(sup, "1", "the old o-1 is kept as superseded");
    // gold equals an independent aggregate of silver
    let (gold, expected) = gold_orders_vs_silver(&lake_dir).await;
    assert_eq!(gold, expected);
    verify_ok(&plan, &lake).await;
}

/// Every key of a day moves to another day (re-sent with a later date): the emptied gold day
/// is removed, not kept beside the day its rows moved to (counted twice), whether gold folds
/// the change, recomputes the day from silver (an `AVG` does not fold) or recomputes the whole
/// table, and although the table's `has_rows` check fails on a day without rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gold_day_whose_every_row_moves_away_is_emptied_not_kept() {
    for (label, edit) in [
        ("folded", None),
        (
            "recomputed",
            Some(("SUM(amount) AS revenue", "AVG(amount) AS revenue")),
        ),
        // HAVING hides which partitions a row feeds: the whole table is recomputed
        (
            "whole",
            Some((
                "GROUP BY order_date, currency",
                "GROUP BY order_date, currency HAVING COUNT(*) > 0",
            )),
        ),
    ] {
        let s = Scratch::new();
        let cfg = init(s.path(), |t| match edit {
            Some((from, to)) => t.replace(from, to),
            None => t,
        });
        let (plan, lake) = open(&cfg).await;
        run(&plan, &lake).await;
        add_file(
            s.path(),
            "resend.ndjson",
            &[
                r#"{"order_id":"o-1","amount":20,"currency":"USD","quantity":1,"order_date":"2026-03-28"}"#,
                r#"{"order_id":"o-2","amount":30,"currency":"EUR","quantity":2,"order_date":"2026-03-28"}"#,
            ],
        );
        let r = run(&plan, &lake).await;
        assert_eq!(r.status, "ok", "{label}: {}", karat::summary::run_lines(&r));
        let lake_dir = s.join("lake");
        let (gold, expected) = gold_orders_vs_silver(&lake_dir).await;
        assert_eq!(
            gold, expected,
            "{label}: gold's orders per day against silver's"
        );
        assert!(!gold.contains_key("2026-03-27"), "{label}: {gold:?}");
        let emptied = r
            .gold
            .iter()
            .flat_map(|g| &g.partitions)
            .find(|o| o.partition == "2026-03-27")
            .unwrap_or_else(|| panic!("{label}: 2026-03-27 recomputed"));
        assert!(
            emptied.messages.iter().any(|m| m.contains("emptied")),
            "{label}: {emptied:?}"
        );
        crate::util::assert_verified_and_rebuilt(&plan, &lake, &s.join("rebuilt")).await;
    }
}

/// A tightened rule turns every row of a day into dead letters on replay: the silver day fails
/// its gate, and the gold day it fed is blocked, keeping its rows (last published), not emptied,
/// also by a later run while that day stays failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gold_day_whose_rows_all_become_dead_letters_is_blocked_not_emptied() {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| t);
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    let tighten = [r#"one_of = ["USD", "EUR", "GBP"]"#, r#"one_of = ["GBP"]"#];
    let (plan, r) = edit_and_replay(&cfg, &lake, tighten, "2026-03-27").await;
    let lines = karat::summary::run_lines(&r);
    assert_eq!(r.status, "failed", "{lines}");
    let gold = gold_statuses(&r);
    assert_eq!(gold.get("2026-03-27"), Some(&"blocked"), "{lines}");
    let (gold, _) = gold_orders_vs_silver(&s.join("lake")).await;
    assert_eq!(
        gold.get("2026-03-27"),
        Some(&2),
        "kept as last published: {gold:?}"
    );
    verify_ok(&plan, &lake).await;
    // a later run with another day's rows: silver 2026-03-27 is still failed, and now holds
    // nothing that feeds gold; the gold day it blocked stays blocked, not emptied
    let later =
        r#"{"order_id":"o-5","amount":3,"currency":"GBP","quantity":1,"order_date":"2026-03-28"}"#;
    let (lines, gold) = a_later_run(&s, &plan, &lake, later).await;
    assert_eq!(gold.get("2026-03-27"), Some(&2), "{lines}\n{gold:?}");
    assert_eq!(
        gold.get("2026-03-28"),
        Some(&2),
        "o-3 and o-5: {lines}\n{gold:?}"
    );
}

/// A gold query yielding rows without a value of its partition column: the table fails whole,
/// naming the column and the fix, and publishes nothing, on its first run and when a later
/// day's rows feed such a row; once the query gives them one, `replay --failed` publishes every
/// row. Before, such
/// rows were reported as written and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_rows_without_a_partition_value_fail_the_table_instead_of_vanishing() {
    // a bulk order (quantity 7) has no day: the query does not give it one (MAX: not folded)
    const BY_DAY: &str = r#"
[[table]]
name = "by_day"
zone = "gold"
partition_by = "day"
sql = "SELECT CASE WHEN quantity = 7 THEN NULL ELSE order_date END AS day, COUNT(*) AS orders, MAX(amount) AS top FROM orders GROUP BY 1"
"#;
    let s = Scratch::new();
    let cfg = init(s.path(), |t| t + BY_DAY);
    let (plan, lake) = open(&cfg).await;
    let by_day = |r: &karat::pipeline::RunReport| {
        let g = r.gold.iter().find(|g| g.table == "by_day").expect("by_day");
        (g.partitions.clone(), g.version)
    };
    let fails_whole = |outcomes: &[karat::silver::PartitionOutcome]| {
        outcomes.iter().any(|o| {
            o.partition == "*"
                && o.status.as_str() == "failed"
                && o.messages
                    .iter()
                    .any(|m| m.contains("have no day, its partition column"))
        })
    };
    let order = |name: &str, id: &str, quantity: u32| {
        let line = format!(
            r#"{{"order_id":"{id}","amount":4,"currency":"GBP","quantity":{quantity},"order_date":"2026-03-29"}}"#
        );
        add_file(s.path(), name, &[line.as_str()]);
    };
    // first run: published (no bulk order yet)
    let (_, first) = by_day(&run(&plan, &lake).await);
    assert!(first.is_some());
    // a bulk order arrives: the partitions it feeds cannot be told, the whole recompute fails
    order("later.ndjson", "o-8", 7);
    let r = run(&plan, &lake).await;
    let (outcomes, version) = by_day(&r);
    assert!(
        fails_whole(&outcomes),
        "{outcomes:?} {}",
        karat::summary::run_lines(&r)
    );
    assert_eq!(version, None, "nothing published: {outcomes:?}");
    // and so does the next run, though its order has a day: a failed whole recompute is
    // retried whole (recomputing that day alone would heal the table and leave o-8 out)
    order("later2.ndjson", "o-9", 1);
    let (outcomes, version) = by_day(&run(&plan, &lake).await);
    assert!(fails_whole(&outcomes) && version.is_none(), "{outcomes:?}");
    let fixed = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("THEN NULL ELSE", "THEN DATE '1970-01-01' ELSE");
    std::fs::write(&cfg, fixed).unwrap();
    let plan = Plan::load(&cfg).await.unwrap();
    let r = karat::pipeline::replay(&plan, &lake, ReplayTarget::Failed, &Events::none())
        .await
        .unwrap();
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let lake_dir = s.join("lake");
    let gold = scalar(
        &sql(
            &lake_dir,
            "gold/by_day",
            "SELECT CAST(SUM(orders) AS VARCHAR) FROM t",
        )
        .await,
    );
    let silver = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM t",
        )
        .await,
    );
    assert_eq!(gold, silver, "every silver row counted once in by_day");
}

/// A key re-sent into a day that fails its gate: the day it left is blocked with the day it
/// moved to, both keeping what they last published, so gold counts it once (its old version),
/// also in the next run.
/// Before, the day it left was recomputed without it while the other was blocked: counted
/// nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_moved_into_a_failed_day_blocks_the_day_it_left_too() {
    let (s, plan, lake) = after_the_example(|t| t).await;
    add_file(
        s.path(),
        "moved.ndjson",
        &[
            r#"{"order_id":"o-1","amount":20,"currency":"USD","quantity":1,"order_date":"2026-03-28"}"#,
            r#"{"order_id":"o-6","amount":5,"currency":"XXX","quantity":1,"order_date":"2026-03-28"}"#,
        ],
    );
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "failed");
    let blocked = [("2026-03-27", "blocked"), ("2026-03-28", "blocked")];
    gold_after(&s, &r, &blocked, &[("2026-03-27", 2), ("2026-03-28", 1)]).await;
    verify_ok(&plan, &lake).await;
    // before, 2026-03-27 was then recomputed without o-1, as the failed day still feeds only
    // itself
    both_days_stay_blocked_in_a_later_run(&s, &plan, &lake).await;
}

/// After a run that blocked 2026-03-27 and 2026-03-28 (o-1 moved into the failed 28): a later
/// run with a new order on 2026-03-29, while 28 stays failed, keeps both as last published.
async fn both_days_stay_blocked_in_a_later_run(s: &Scratch, plan: &Plan, lake: &karat::lake::Lake) {
    let later =
        r#"{"order_id":"o-9","amount":2,"currency":"GBP","quantity":1,"order_date":"2026-03-29"}"#;
    let (lines, gold) = a_later_run(s, plan, lake, later).await;
    let want = BTreeMap::from([
        ("2026-03-27".to_string(), 2),
        ("2026-03-28".to_string(), 1),
        ("2026-03-29".to_string(), 1),
    ]);
    assert_eq!(gold, want, "{lines}");
}

/// The example project (its karat.toml edited by `edit`) after its first run.
async fn after_the_example(edit: impl Fn(String) -> String) -> (Scratch, Plan, karat::lake::Lake) {
    let s = Scratch::new();
    let cfg = init(s.path(), edit);
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    (s, plan, lake)
}

/// A project whose runs apply each new file in a group of its own (`[defaults]
/// silver_group_records = 1`), after a first run of the example; then `first` and `second`
/// arrive together and one run applies them in that order, in two groups.
async fn two_groups(
    first: &[&str],
    second: &[&str],
) -> (Scratch, Plan, karat::lake::Lake, karat::pipeline::RunReport) {
    let (s, plan, lake) = after_the_example(|t| {
        t.replace(
            "max_reject_rate = 0.05",
            "max_reject_rate = 0.05\nsilver_group_records = 1",
        )
    })
    .await;
    add_file(s.path(), "1-first.ndjson", first);
    add_file(s.path(), "2-second.ndjson", second);
    let r = run(&plan, &lake).await;
    (s, plan, lake, r)
}

const O1_TO_28: &str =
    r#"{"order_id":"o-1","amount":20,"currency":"USD","quantity":1,"order_date":"2026-03-28"}"#;
const O1_TO_29: &str =
    r#"{"order_id":"o-1","amount":20,"currency":"USD","quantity":1,"order_date":"2026-03-29"}"#;

/// Two rows of a currency the contract refuses, on `day`.
fn two_bad(day: &str) -> [String; 2] {
    ["o-6", "o-7"].map(|id| {
        format!(
            r#"{{"order_id":"{id}","amount":5,"currency":"XXX","quantity":1,"order_date":"{day}"}}"#
        )
    })
}

/// Gold's orders per day as the run left them, and the run's gold statuses, checked.
async fn gold_after(
    s: &Scratch,
    r: &karat::pipeline::RunReport,
    statuses: &[(&str, &str)],
    orders: &[(&str, i64)],
) {
    let lines = karat::summary::run_lines(r);
    let gold = gold_statuses(r);
    for (day, status) in statuses {
        assert_eq!(gold.get(day), Some(status), "{day}: {lines}");
    }
    let (gold, _) = gold_orders_vs_silver(&s.join("lake")).await;
    let want: BTreeMap<String, i64> = orders.iter().map(|(d, n)| (d.to_string(), *n)).collect();
    assert_eq!(gold, want, "as last published: {lines}");
}

/// The same across groups of one run's batches: the first group moves o-1 to 2026-03-28,
/// which passes then, and the second fails that day. The day o-1 left is blocked once the
/// last group is written.
/// Before, the first group had handed 2026-03-27 to gold to recompute, without o-1: counted
/// nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_moved_into_a_day_a_later_group_fails_blocks_the_day_it_left() {
    let bad = two_bad("2026-03-28");
    let five =
        r#"{"order_id":"o-5","amount":3,"currency":"USD","quantity":1,"order_date":"2026-03-28"}"#;
    let (s, plan, lake, r) = two_groups(&[O1_TO_28, five], &[&bad[0], &bad[1]]).await;
    assert_eq!(r.status, "failed");
    let blocked = [("2026-03-27", "blocked"), ("2026-03-28", "blocked")];
    gold_after(&s, &r, &blocked, &[("2026-03-27", 2), ("2026-03-28", 1)]).await;
    verify_ok(&plan, &lake).await;
    both_days_stay_blocked_in_a_later_run(&s, &plan, &lake).await;
}

/// The other way round: the first group moves o-1 out of 2026-03-27 and the second fails
/// 2026-03-27, which keeps o-1 as last published; the day o-1 moved to is blocked too.
/// Before, 2026-03-28 was recomputed with o-1: counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_moved_out_of_a_day_a_later_group_fails_blocks_the_day_it_entered() {
    let bad = two_bad("2026-03-27");
    let (s, plan, lake, r) = two_groups(&[O1_TO_28], &[&bad[0], &bad[1]]).await;
    let blocked = [("2026-03-27", "blocked"), ("2026-03-28", "blocked")];
    gold_after(&s, &r, &blocked, &[("2026-03-27", 2), ("2026-03-28", 1)]).await;
    verify_ok(&plan, &lake).await;
}

/// A key moved on by a later group that fails the day between: o-1 goes 2026-03-27 → 28 in
/// the first group, 28 → 29 in the second, which fails 28. Every day o-1 touched is blocked.
/// Before, 2026-03-27 was recomputed without o-1 while 28 and 29 were blocked: counted nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_moved_twice_across_groups_blocks_every_day_it_touched() {
    let bad = two_bad("2026-03-28");
    let (s, plan, lake, r) = two_groups(&[O1_TO_28], &[O1_TO_29, &bad[0], &bad[1]]).await;
    let blocked = [
        ("2026-03-27", "blocked"),
        ("2026-03-28", "blocked"),
        ("2026-03-29", "blocked"),
    ];
    gold_after(&s, &r, &blocked, &[("2026-03-27", 2), ("2026-03-28", 1)]).await;
    verify_ok(&plan, &lake).await;
}

/// The 3 a.m. story with two failures of different causes: 2026-03-28 fails on a currency
/// the contract does not know yet, 2026-03-29 on a quantity over its maximum. Fixing the first
/// and replaying its day turns that day's gold green, while the other stays blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_one_of_two_failed_days_turns_its_gold_green() {
    let (s, plan, lake) = after_the_example(|t| t).await;
    let cfg = s.join("karat.toml");
    add_file(
        s.path(),
        "two-bad-days.ndjson",
        &[
            r#"{"order_id":"o-4","amount":4,"currency":"CAD","quantity":1,"order_date":"2026-03-28"}"#,
            r#"{"order_id":"o-5","amount":5,"currency":"USD","quantity":1,"order_date":"2026-03-28"}"#,
            r#"{"order_id":"o-6","amount":6,"currency":"USD","quantity":5000,"order_date":"2026-03-29"}"#,
            r#"{"order_id":"o-7","amount":7,"currency":"USD","quantity":1,"order_date":"2026-03-29"}"#,
        ],
    );
    let r = run(&plan, &lake).await;
    let lines = karat::summary::run_lines(&r);
    let gold = gold_statuses(&r);
    assert_eq!(gold.get("2026-03-28"), Some(&"blocked"), "{lines}");
    assert_eq!(gold.get("2026-03-29"), Some(&"blocked"), "{lines}");
    let fix = [
        r#"one_of = ["USD", "EUR", "GBP"]"#,
        r#"one_of = ["USD", "EUR", "GBP", "CAD"]"#,
    ];
    let (plan, r) = edit_and_replay(&cfg, &lake, fix, "2026-03-28").await;
    let lines = karat::summary::run_lines(&r);
    let gold = gold_statuses(&r);
    assert_eq!(gold.get("2026-03-28"), Some(&"ok"), "{lines}");
    assert_ne!(gold.get("2026-03-29"), Some(&"ok"), "{lines}");
    let (gold, _) = gold_orders_vs_silver(&s.join("lake")).await;
    assert_eq!(gold.get("2026-03-28"), Some(&3), "o-3, o-4, o-5: {lines}");
    assert_eq!(
        gold.get("2026-03-29"),
        None,
        "still blocked, never published: {lines}"
    );
    verify_ok(&plan, &lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_partitioned_unlike_silver_is_filled() {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| {
        t.replace("partition_by = \"order_date\"    #", "#")
    });
    let (plan, lake) = open(&cfg).await;
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let lake_dir = s.join("lake");
    let (gold, expected) = gold_orders_vs_silver(&lake_dir).await;
    assert_eq!(gold, expected);
    assert_eq!(gold.values().sum::<i64>(), 3);
    // a late row for an old date lands in today's silver partition and updates that gold date
    add_file(
        s.path(),
        "late.ndjson",
        &[
            r#"{"order_id":"o-8","amount":1,"currency":"EUR","quantity":1,"order_date":"2026-03-27"}"#,
        ],
    );
    run(&plan, &lake).await;
    let (gold, _) = gold_orders_vs_silver(&lake_dir).await;
    assert_eq!(gold.get("2026-03-27"), Some(&3));
    verify_ok(&plan, &lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_partitions_are_days() {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| {
        t.replace("order_date = { type = \"date\", nullable = false }", "order_date = { type = \"date\", nullable = false }\nplaced_at = { type = \"timestamp\", nullable = false }")
            .replace("partition_by = \"order_date\"    #", "partition_by = \"placed_at\"\npartition_timezone = \"America/New_York\"  #")
    });
    std::fs::remove_file(s.join("data/orders/sample.ndjson")).unwrap();
    let mut lines = Vec::new();
    for i in 0..48 {
        // one order an hour over two UTC days
        lines.push(format!(
            r#"{{"order_id":"t-{i}","amount":1,"currency":"USD","quantity":1,"order_date":"2026-03-27","placed_at":"2026-03-27T{:02}:30:00Z"}}"#,
            i % 24
        ).replace("2026-03-27T", if i < 24 { "2026-03-27T" } else { "2026-03-28T" }));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    add_file(s.path(), "hours.ndjson", &refs);
    let (plan, lake) = open(&cfg).await;
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let parts: Vec<&str> = r.silver[0]
        .partitions
        .iter()
        .map(|p| p.partition.as_str())
        .collect();
    // New York is 4 hours behind UTC in late March: 48 hours from 03-27 00:00Z span 3 local days
    assert_eq!(parts, vec!["2026-03-26", "2026-03-27", "2026-03-28"]);
    let lake_dir = s.join("lake");
    let per_day = counts(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT CAST(_partition_date AS VARCHAR), COUNT(*) FROM t GROUP BY 1",
        )
        .await,
    );
    assert_eq!(per_day.values().sum::<i64>(), 48);
    assert_eq!(per_day.get("2026-03-26"), Some(&4));
    let dirs: Vec<String> = std::fs::read_dir(lake_dir.join("silver/orders"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("_partition_date="))
        .collect();
    assert_eq!(dirs.len(), 3, "one folder per day: {dirs:?}");
    verify_ok(&plan, &lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_the_demo_and_fails_when_rows_go_missing() {
    let s = Scratch::new();
    let (plan, lake, _) = crate::util::demo(s.path(), 120).await;
    verify_ok(&plan, &lake).await;

    // the same invariant counted independently: bronze objects vs the three Delta tables
    let lake_dir = s.join("lake");
    for (table, source) in [("orders", "orders"), ("customers", "customers")] {
        let bronze = crate::util::bronze_records(&lake_dir, source);
        let q = |col: &str| format!("SELECT {col}, COUNT(*) FROM t GROUP BY 1");
        let silver = counts(&sql(&lake_dir, &format!("silver/{table}"), &q("_batch_id")).await);
        let dead = counts(&sql(&lake_dir, &format!("dead_letters/{table}"), &q("batch_id")).await);
        let sup = counts(
            &sql(
                &lake_dir,
                &format!("_karat/superseded/{table}"),
                &q("_batch_id"),
            )
            .await,
        );
        assert!(bronze.len() >= karat::demo::DAYS, "{table}: {bronze:?}");
        for (batch, n) in &bronze {
            let got = [&silver, &dead, &sup]
                .iter()
                .map(|m| m.get(batch).copied().unwrap_or(0))
                .sum::<i64>();
            assert_eq!(got, *n, "{table} batch {batch}: silver + dead + superseded");
        }
        let dups = scalar(&sql(&lake_dir, &format!("silver/{table}"), &format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM (SELECT {k} FROM t GROUP BY {k} HAVING COUNT(*) > 1)",
            k = if table == "orders" { "order_id" } else { "customer_id" }
        )).await);
        assert_eq!(dups, "0", "{table}: a key twice");
    }

    // delete one silver row behind karat's back
    let victim = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT order_id FROM t ORDER BY order_id LIMIT 1",
        )
        .await,
    );
    let batch = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            &format!("SELECT _batch_id FROM t WHERE order_id = '{victim}'"),
        )
        .await,
    );
    let url = url::Url::from_directory_path(lake_dir.join("silver/orders")).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    table
        .delete()
        .with_predicate(format!("order_id = '{victim}'"))
        .await
        .unwrap();

    let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
    assert!(!v.ok(), "a missing row must fail verify");
    let text = v.lines().join("\n");
    assert!(text.contains(&batch), "the batch is named: {text}");

    // the binary says so too, with exit code 1
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_karat"))
        .args(["verify", "--json"])
        .current_dir(s.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["tables"].as_array().unwrap().iter().any(|t| {
        t["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["batch_id"] == batch.as_str())
    }));
}

/// The init example run (and verified), then o-1's row copied behind karat's back.
async fn init_example_with_o1_twice() -> (Scratch, Plan, karat::lake::Lake) {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| t);
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    verify_ok(&plan, &lake).await;
    copy_o1_behind_karats_back(&s, &plan).await;
    (s, plan, lake)
}

/// Appends a copy of o-1's silver row to silver.orders with a plain Delta write.
async fn copy_o1_behind_karats_back(s: &Scratch, plan: &Plan) {
    let lake_dir = s.join("lake");
    let url = url::Url::from_directory_path(lake_dir.join("silver/orders")).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let contract = &plan.contracts["orders"];
    let rows: Vec<_> = sql(
        &lake_dir,
        "silver/orders",
        "SELECT * FROM t WHERE order_id = 'o-1'",
    )
    .await
    .iter()
    .map(|b| karat::lake::delta::conform(b, &contract.silver_schema).unwrap())
    .collect();
    table.write(rows).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_when_a_key_is_held_twice() {
    let (_s, plan, lake) = init_example_with_o1_twice().await;
    let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
    assert!(!v.ok());
    let text = v.lines().join("\n");
    assert!(text.contains("order_id=o-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_key_check_names_a_changed_key_held_twice_and_no_other() {
    let (_s, plan, lake) = init_example_with_o1_twice().await;
    let contract = &plan.contracts["orders"];
    let keys = |ids: &[&str]| {
        let batch = order_ids(ids);
        let mut check = karat::silver::key_check::KeyCheck::new(contract)
            .unwrap()
            .unwrap();
        check.add(&[batch]).unwrap();
        check
    };
    let found = karat::silver::accounting::duplicates_of(&lake, contract, keys(&["o-2", "o-1"]))
        .await
        .unwrap();
    assert_eq!(found, vec!["order_id=o-1 (2 rows)".to_string()]);
    let found = karat::silver::accounting::duplicates_of(&lake, contract, keys(&["o-2"]))
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
}

/// The keys `ids` as a batch of silver's key column.
fn order_ids(ids: &[&str]) -> deltalake::arrow::array::RecordBatch {
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
        "order_id",
        DataType::Utf8,
        false,
    )]));
    let col = deltalake::arrow::array::StringArray::from(ids.to_vec());
    deltalake::arrow::array::RecordBatch::try_new(schema, vec![std::sync::Arc::new(col)]).unwrap()
}

/// The check a run makes right after a write with deletion vectors reads only the files added
/// since its lookup: it must still see a key such a file holds again, and only that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_written_keys_check_sees_a_looked_up_key_that_a_file_added_since_holds_again() {
    use karat::silver::store::Store;
    use karat::silver::written_keys::held_twice;
    let s = Scratch::new();
    let cfg = init(s.path(), |t| {
        t.replace(
            "key = [\"order_id\"]",
            "deletion_vectors = true\nkey = [\"order_id\"]",
        )
    });
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    let contract = plan.contracts["orders"].clone();
    let lookup = |ids: &'static [&'static str]| {
        let (lake, contract) = (lake.clone(), contract.clone());
        async move {
            let store = Store::open(&lake, contract).await.unwrap();
            let scanned = store.versions(&[order_ids(ids)]).await.unwrap().scanned;
            scanned.expect("a lookup of every file")
        }
    };
    let (both, other) = (lookup(&["o-1", "o-2"]).await, lookup(&["o-2"]).await);
    let after = || async { Store::open(&lake, contract.clone()).await.unwrap() };
    let before = held_twice(&after().await, &contract, both.clone())
        .await
        .unwrap();
    assert_eq!(before, Some(Vec::new()));
    copy_o1_behind_karats_back(&s, &plan).await;
    let found = held_twice(&after().await, &contract, both).await.unwrap();
    assert_eq!(found, Some(vec!["order_id=o-1 (2 rows)".to_string()]));
    let found = held_twice(&after().await, &contract, other).await.unwrap();
    assert_eq!(found, Some(Vec::new()));
}

const JOIN_CONFIG: &str = r#"[lake]
url = "lake"
[[source]]
name = "orders"
kind = "files"
path = "data/orders/*.ndjson"
[[source]]
name = "customers"
kind = "files"
path = "data/customers/*.ndjson"
[[table]]
name = "orders"
zone = "silver"
from = "orders"
partition_by = "order_date"
key = ["order_id"]
[table.columns]
order_id = { type = "string", nullable = false }
customer_id = { type = "string", nullable = false }
order_date = { type = "date", nullable = false }
[[table]]
name = "customers"
zone = "silver"
from = "customers"
partition_by = "signup_date"
key = ["customer_id"]
[table.columns]
customer_id = { type = "string", nullable = false }
country = { type = "string", nullable = false }
signup_date = { type = "date", nullable = false }
[[table]]
name = "orders_by_country"
zone = "gold"
partition_by = "order_date"
sql = "SELECT o.order_date, c.country, COUNT(*) AS orders FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY o.order_date, c.country"
[[table]]
name = "busy_days"
zone = "gold"
partition_by = "order_date"
sql = "SELECT order_date, COUNT(*) AS orders FROM orders GROUP BY order_date HAVING COUNT(*) > 1"
"#;

/// The gold table and the same aggregate computed here over both silver tables.
async fn gold_and_expected(lake_dir: &Path) -> (String, String) {
    let gold = pretty(
        &sql(
            lake_dir,
            "gold/orders_by_country",
            "SELECT CAST(order_date AS VARCHAR) AS d, country, orders FROM t ORDER BY 1, 2",
        )
        .await,
    );
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    for t in ["orders", "customers"] {
        let url = url::Url::from_directory_path(lake_dir.join("silver").join(t)).unwrap();
        let table = deltalake::open_table(url).await.unwrap();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table(t, table.table_provider().await.unwrap())
            .unwrap();
    }
    let expected = ctx
        .sql("SELECT CAST(o.order_date AS VARCHAR) AS d, c.country, COUNT(*) AS orders FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY 1, 2 ORDER BY 1, 2")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    (gold, pretty(&expected))
}

/// A project with [`JOIN_CONFIG`] and a first customers file and orders file.
fn join_project(customers: &str, orders: &str) -> Scratch {
    let s = Scratch::new();
    for d in ["data/orders", "data/customers"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
    }
    std::fs::write(s.join("karat.toml"), JOIN_CONFIG).unwrap();
    std::fs::write(s.join("data/customers/c1.ndjson"), customers).unwrap();
    std::fs::write(s.join("data/orders/o1.ndjson"), orders).unwrap();
    s
}

/// The first run creates both inputs of a join: the changes of the input created first are
/// derived once the other exists, so a failed partition blocks only what it feeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_creating_both_inputs_of_a_join_blocks_only_the_failed_day() {
    // 2026-03-03's only order has no customer: that partition fails
    let s = join_project(
        "{\"customer_id\":\"c1\",\"country\":\"FR\",\"signup_date\":\"2025-01-01\"}\n",
        "{\"order_id\":\"o1\",\"customer_id\":\"c1\",\"order_date\":\"2026-03-01\"}\n{\"order_id\":\"o3\",\"customer_id\":\"c1\",\"order_date\":\"2026-03-02\"}\n{\"order_id\":\"o9\",\"order_date\":\"2026-03-03\"}\n",
    );
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
    let g = r
        .gold
        .iter()
        .find(|g| g.table == "orders_by_country")
        .unwrap();
    let promoted: Vec<&str> = g
        .partitions
        .iter()
        .filter(|p| p.status.promoted())
        .map(|p| p.partition.as_str())
        .collect();
    assert_eq!(
        promoted,
        vec!["2026-03-01", "2026-03-02"],
        "{}",
        karat::summary::run_lines(&r)
    );
    let (gold, expected) = gold_and_expected(&s.join("lake")).await;
    assert_eq!(gold, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_joining_tables_partitioned_differently_follows_either_side() {
    let s = join_project(
        "{\"customer_id\":\"c1\",\"country\":\"FR\",\"signup_date\":\"2025-01-01\"}\n{\"customer_id\":\"c2\",\"country\":\"DE\",\"signup_date\":\"2025-06-01\"}\n",
        "{\"order_id\":\"o1\",\"customer_id\":\"c1\",\"order_date\":\"2026-03-01\"}\n{\"order_id\":\"o2\",\"customer_id\":\"c2\",\"order_date\":\"2026-03-01\"}\n{\"order_id\":\"o3\",\"customer_id\":\"c1\",\"order_date\":\"2026-03-02\"}\n",
    );
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let lake_dir = s.join("lake");
    let (gold, expected) = gold_and_expected(&lake_dir).await;
    assert_eq!(gold, expected);

    // c1 moves to Spain (a re-send into another signup partition): both order days of c1 change
    std::fs::write(
        s.join("data/customers/c2.ndjson"),
        "{\"customer_id\":\"c1\",\"country\":\"ES\",\"signup_date\":\"2025-02-01\"}\n",
    )
    .unwrap();
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let g = r
        .gold
        .iter()
        .find(|g| g.table == "orders_by_country")
        .unwrap();
    let parts: Vec<&str> = g.partitions.iter().map(|p| p.partition.as_str()).collect();
    assert_eq!(
        parts,
        vec!["2026-03-01", "2026-03-02"],
        "derived from the changed customer"
    );
    let (gold, expected) = gold_and_expected(&lake_dir).await;
    assert_eq!(gold, expected);
    assert!(gold.contains("ES") && !gold.contains("FR"), "{gold}");

    // a new order on one day recomputes that day only; HAVING cannot be derived: whole, said so
    std::fs::write(
        s.join("data/orders/o2.ndjson"),
        "{\"order_id\":\"o4\",\"customer_id\":\"c2\",\"order_date\":\"2026-03-02\"}\n",
    )
    .unwrap();
    let r = run(&plan, &lake).await;
    let g = r
        .gold
        .iter()
        .find(|g| g.table == "orders_by_country")
        .unwrap();
    let parts: Vec<&str> = g.partitions.iter().map(|p| p.partition.as_str()).collect();
    assert_eq!(parts, vec!["2026-03-02"]);
    let busy = r.gold.iter().find(|g| g.table == "busy_days").unwrap();
    assert!(
        busy.partitions
            .iter()
            .all(|p| p.messages.iter().any(|m| m.contains("recomputed whole"))),
        "{:?}",
        busy.partitions
    );
    let days = counts(
        &sql(
            &lake_dir,
            "gold/busy_days",
            "SELECT CAST(order_date AS VARCHAR), orders FROM t",
        )
        .await,
    );
    assert_eq!(days.len(), 2, "both days have two orders now: {days:?}");
    let (gold, expected) = gold_and_expected(&lake_dir).await;
    assert_eq!(gold, expected);
    verify_ok(&plan, &lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_run_never_reads_older_bronze_batches() {
    let s = Scratch::new();
    let cfg = init(s.path(), |t| t);
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    // make yesterday's bronze unreadable: a run that re-read it would fail
    let lake_dir = s.join("lake");
    let mut hidden = 0;
    for day in std::fs::read_dir(lake_dir.join("bronze/orders"))
        .unwrap()
        .flatten()
    {
        if day
            .file_name()
            .to_string_lossy()
            .starts_with("ingest_date=")
        {
            for obj in std::fs::read_dir(day.path()).unwrap().flatten() {
                std::fs::write(obj.path(), b"not gzip").unwrap();
                hidden += 1;
            }
        }
    }
    assert_eq!(hidden, 1);
    add_file(
        s.path(),
        "day2.ndjson",
        &[
            r#"{"order_id":"o-1","amount":99,"currency":"USD","quantity":1,"order_date":"2026-03-27"}"#,
            r#"{"order_id":"o-4","amount":5,"currency":"GBP","quantity":1,"order_date":"2026-03-26"}"#,
        ],
    );
    let r = run(&plan, &lake).await;
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    assert_eq!(r.silver[0].batches.len(), 1, "only the new batch is read");
    let amount = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT CAST(amount AS VARCHAR) FROM t WHERE order_id = 'o-1'",
        )
        .await,
    );
    assert_eq!(
        amount, "99.00",
        "the re-send replaced o-1 from silver, not from bronze"
    );
    assert_eq!(silver_orders(&lake_dir).await.len(), 4);
    verify_ok(&plan, &lake).await;
}
