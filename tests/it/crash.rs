//! Crashes, as real processes: a `karat run` aborted right after each durable step (a fault
//! point: bronze object, manifest, each Delta commit, each ledger append) leaves a lake whose
//! silver a Delta reader sees whole, with no key twice; the next run recovers it, `karat
//! verify` balances, and silver, dead letters and gold equal those of a lake that never
//! crashed (the deletion vectors' own point with `deletion_vectors = true`, the rest without).
//! Needs the `failpoints` feature (the README's test command turns it on).

use std::io::Write;
use std::path::Path;

use crate::util::{Scratch, daily_file, daily_project, finish, pretty, scalar, spawn_karat, sql};

/// Days 0 and 1 landed and processed; day 2 (re-sending orders of both) and a file with a
/// new field wait for the next run. Silver deletes superseded rows by deletion vector when
/// `point` is the deletion vectors' own fault point, else rewrites their partitions.
fn history(dir: &Path, point: &str) {
    let deletion_vectors = point == "delta.deletion_vectors";
    daily_project(dir, deletion_vectors);
    for day in 0..2 {
        daily_file(dir, day, 1_500);
    }
    let (code, out) = finish(spawn_karat(dir, &["run"], &[]));
    assert_eq!(code, Some(0), "first run: {out}");
    daily_file(dir, 2, 1_500);
    let data = dir.join("data");
    let f = std::fs::File::create(data.join("orders-drift.ndjson.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    writeln!(
        gz,
        r#"{{"order_id":"o-0-7","customer_id":"c-9","amount":5.25,"currency":"EUR","quantity":3,"status":"cancelled","order_date":"2026-03-01","coupon":"SPRING"}}"#
    )
    .unwrap();
    gz.finish().unwrap();
}

/// Silver, dead letters and gold as text, leaving out what differs between two lakes that
/// saw the same files (batch ids, ingest times).
async fn content(lake: &Path) -> String {
    let silver = sql(
        lake,
        "silver/orders",
        "SELECT order_id, customer_id, CAST(amount AS VARCHAR) AS amount, currency, quantity, \
         status, order_date, _line FROM t ORDER BY order_id",
    )
    .await;
    let dead = sql(
        lake,
        "dead_letters/orders",
        "SELECT partition, line, array_to_string(rules, ',') AS rules FROM t \
         ORDER BY partition, line, rules",
    )
    .await;
    let gold = sql(
        lake,
        "gold/daily_revenue",
        "SELECT * FROM t ORDER BY order_date, currency",
    )
    .await;
    format!(
        "silver\n{}\ndead letters\n{}\ngold\n{}",
        pretty(&silver),
        pretty(&dead),
        pretty(&gold)
    )
}

async fn keys_twice(lake: &Path) -> String {
    scalar(
        &sql(
            lake,
            "silver/orders",
            "SELECT CAST(COUNT(*) - COUNT(DISTINCT order_id) AS VARCHAR) FROM t",
        )
        .await,
    )
}

/// Each fault point's first pass, as `FAILPOINTS` names it, and the deletion vectors' second:
/// with `deletion_vectors = true` a run moves superseded rows by deletion vector (the first
/// pass) before it deletes silver's (the second).
fn faults() -> Vec<(&'static str, String)> {
    let mut out: Vec<_> = karat::lake::fault::POINTS
        .iter()
        .map(|p| (*p, format!("{p}=return")))
        .collect();
    out.push((
        "delta.deletion_vectors",
        "delta.deletion_vectors=1*off->return".to_string(),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_recovers_to_a_balanced_lake() {
    let never = Scratch::new();
    history(never.path(), "");
    let (oracle_code, out) = finish(spawn_karat(never.path(), &["run"], &[]));
    assert!(matches!(oracle_code, Some(0 | 1)), "{out}");
    let expected = content(&never.join("lake")).await;

    for (point, fault) in faults() {
        let s = Scratch::new();
        history(s.path(), point);
        let (code, out) = finish(spawn_karat(s.path(), &["run"], &[("FAILPOINTS", &fault)]));
        let point = &fault;
        assert_eq!(
            code, None,
            "{point}: the run should have died at its fault point:\n{out}"
        );
        let lake = s.join("lake");
        assert_eq!(
            keys_twice(&lake).await,
            "0",
            "{point}: a reader saw a key twice"
        );
        // the dead run's lease does not hold the next run up: its process is gone
        let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
        assert_eq!(
            code, oracle_code,
            "{point}: the run after the crash:\n{out}"
        );
        let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
        assert_eq!(code, Some(0), "{point}: verify after recovery:\n{out}");
        assert_eq!(
            content(&lake).await,
            expected,
            "{point}: the recovered lake differs from one that never crashed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_is_healed_by_running_it_again() {
    let replay = ["replay", "orders", "--partition", "2026-01-02"];
    let never = Scratch::new();
    history(never.path(), "");
    let (oracle_code, out) = finish(spawn_karat(never.path(), &["run"], &[]));
    assert!(matches!(oracle_code, Some(0 | 1)), "{out}");
    let expected = content(&never.join("lake")).await;
    let mut reached = 0;
    for point in karat::lake::fault::POINTS {
        let s = Scratch::new();
        history(s.path(), point);
        let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
        assert_eq!(code, oracle_code, "{out}");
        let fault = format!("{point}=return");
        let (code, out) = finish(spawn_karat(s.path(), &replay, &[("FAILPOINTS", &fault)]));
        if code.is_some() {
            // a replay does not pass this point (it lands nothing in bronze, say)
            continue;
        }
        reached += 1;
        let lake = s.join("lake");
        assert_eq!(
            keys_twice(&lake).await,
            "0",
            "{point}: a reader saw a key twice\n{out}"
        );
        let (code, out) = finish(spawn_karat(s.path(), &replay, &[]));
        assert!(
            matches!(code, Some(0 | 1)),
            "{point}: the replay again:\n{out}"
        );
        let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
        assert_eq!(
            code,
            Some(0),
            "{point}: verify after the second replay:\n{out}"
        );
        assert_eq!(
            content(&lake).await,
            expected,
            "{point}: the healed lake differs from one whose replay never crashed"
        );
    }
    assert!(
        reached >= 5,
        "a replay passes the silver, gold and ledger points"
    );
}

/// Days 0 and 1, and a file of orders of 2026-02-01 alone (its batch feeds that partition
/// only), processed under a contract accepting the currencies `accepted`, which is then
/// edited to accept `then`: a replay of 2026-02-01 moves every row of that batch between
/// silver and the dead letters.
fn edited_history(dir: &Path, accepted: &str, then: &str) {
    let all = r#"one_of = ["USD", "EUR", "GBP"]"#;
    let config = daily_project(dir, false);
    assert!(config.contains(all), "the bench's currencies");
    let with = |currencies: &str| config.replacen(all, &format!("one_of = {currencies}"), 1);
    std::fs::write(dir.join("karat.toml"), with(accepted)).unwrap();
    for day in 0..2 {
        daily_file(dir, day, 300);
    }
    let f = std::fs::File::create(dir.join("data/orders-february.ndjson.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    for n in 0..20 {
        writeln!(
            gz,
            r#"{{"order_id":"o-feb-{n}","customer_id":"c-{n}","amount":{n}.5,"currency":"EUR","quantity":1,"status":"paid","order_date":"2026-02-01"}}"#
        )
        .unwrap();
    }
    gz.finish().unwrap();
    let (code, out) = finish(spawn_karat(dir, &["run"], &[]));
    assert!(matches!(code, Some(0 | 1)), "first run: {out}");
    std::fs::write(dir.join("karat.toml"), with(then)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_interrupted_between_silver_and_dead_letters_loses_no_batch() {
    let replay = ["replay", "orders", "--partition", "2026-02-01"];
    let (all, none) = (r#"["USD", "EUR", "GBP"]"#, r#"["XXX"]"#);
    // rows leaving silver for the dead letters are in neither table after silver's commit
    for (accepted, then, point) in [
        (all, none, "silver.rows"),
        (none, all, "silver.dead_letters"),
    ] {
        let never = Scratch::new();
        edited_history(never.path(), accepted, then);
        let (code, out) = finish(spawn_karat(never.path(), &replay, &[]));
        assert!(matches!(code, Some(0 | 1)), "{out}");
        let expected = content(&never.join("lake")).await;
        let s = Scratch::new();
        edited_history(s.path(), accepted, then);
        let fault = format!("{point}=return");
        let (code, out) = finish(spawn_karat(s.path(), &replay, &[("FAILPOINTS", &fault)]));
        assert_eq!(code, None, "{point}: the replay was not aborted\n{out}");
        let (code, out) = finish(spawn_karat(s.path(), &replay, &[]));
        assert!(matches!(code, Some(0 | 1)), "{point}: again:\n{out}");
        let (code, out) = finish(spawn_karat(s.path(), &["verify"], &[]));
        let case = format!("{point}, {accepted} then {then}");
        assert_eq!(
            code,
            Some(0),
            "{case}: verify after the replay again:\n{out}"
        );
        // gold too: the partition the failed one fed stays blocked, as it was
        let healed = content(&s.join("lake")).await;
        assert!(
            healed == expected,
            "{case}: {}",
            differing(&healed, &expected)
        );
        // and the next day's run folds into the same gold
        for dir in [never.path(), s.path()] {
            daily_file(dir, 2, 300);
            let (code, out) = finish(spawn_karat(dir, &["run"], &[]));
            assert!(matches!(code, Some(0 | 1)), "{case}: the next run:\n{out}");
        }
        let (healed, expected) = (
            content(&s.join("lake")).await,
            content(&never.join("lake")).await,
        );
        assert!(
            healed == expected,
            "{case}, the next run: {}",
            differing(&healed, &expected)
        );
    }
}

/// The lines of `got` and `want` that the other lacks, for a failure message.
fn differing(got: &str, want: &str) -> String {
    let only = |a: &str, b: &str| -> Vec<String> {
        let b: std::collections::BTreeSet<&str> = b.lines().collect();
        a.lines()
            .filter(|l| !b.contains(l))
            .map(str::to_string)
            .collect()
    };
    format!(
        "only in the healed lake:\n{}\nonly in the lake that never crashed:\n{}",
        only(got, want).join("\n"),
        only(want, got).join("\n")
    )
}
