//! The on-call story: a partition failed its gate; fix the contract, replay it, watch
//! bronze → silver → gold go green, and replaying again changes nothing (Delta history shows
//! the replacements).

use futures::StreamExt;
use karat::config::Zone;
use karat::events::Events;
use karat::pipeline::{Plan, ReplayTarget};

use crate::util::{Scratch, demo, pretty, scalar, sql};

async fn snapshot(lake_dir: &std::path::Path, day: &str) -> (String, String, String) {
    let silver = pretty(
        &sql(
            lake_dir,
            "silver/orders",
            &format!("SELECT * FROM t WHERE order_date = DATE '{day}' ORDER BY order_id"),
        )
        .await,
    );
    let dead = pretty(
        &sql(lake_dir, "dead_letters/orders", &format!("SELECT partition, rules, reasons, raw, batch_id, source, file, line, ingested_at FROM t WHERE partition = '{day}' ORDER BY file, line")).await,
    );
    let gold = pretty(
        &sql(
            lake_dir,
            "gold/daily_revenue",
            &format!("SELECT * FROM t WHERE order_date = DATE '{day}' ORDER BY currency"),
        )
        .await,
    );
    (silver, dead, gold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_contract_replay_goes_green_and_is_idempotent() {
    let s = Scratch::new();
    let (_, lake, _) = demo(s.path(), 200).await;
    let lake_dir = s.join("lake");
    let day = karat::demo::BAD_DAY;
    let usd_before: i64 = scalar(
        &sql(
            &lake_dir,
            "dead_letters/orders",
            &format!("SELECT COUNT(*) FROM t WHERE partition = '{day}'"),
        )
        .await,
    )
    .parse()
    .unwrap();

    // replaying with the broken contract fails the same way, and does not duplicate dead letters
    let cfg_path = s.join("karat.toml");
    let plan = Plan::load(&cfg_path).await.unwrap();
    let target = ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![day.into()],
    };
    let r = karat::pipeline::replay(&plan, &lake, target.clone(), &Events::none())
        .await
        .unwrap();
    assert_eq!(r.status, "failed");
    assert_eq!(r.exit_code(), 1);
    let again: i64 = scalar(
        &sql(
            &lake_dir,
            "dead_letters/orders",
            &format!("SELECT COUNT(*) FROM t WHERE partition = '{day}'"),
        )
        .await,
    )
    .parse()
    .unwrap();
    assert_eq!(
        again, usd_before,
        "dead letters are replaced, never appended twice"
    );

    // fix the contract: the source sends "usd " for USD
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let fixed = text.replace(
        "currency = { type = \"string\", nullable = false, one_of",
        "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"], one_of",
    );
    assert_ne!(text, fixed);
    std::fs::write(&cfg_path, fixed).unwrap();
    let plan = Plan::load(&cfg_path).await.unwrap();

    let mut snaps = Vec::new();
    for i in 0..3 {
        let r = karat::pipeline::replay(&plan, &lake, target.clone(), &Events::none())
            .await
            .unwrap();
        assert_eq!(
            r.status,
            "ok",
            "replay {i}: {}",
            karat::summary::run_lines(&r)
        );
        assert_eq!(r.trigger, "replay");
        // the replayed batches also carry late rows of other days: those partitions are
        // rewritten too, and every one is green
        let p = r.silver[0]
            .partitions
            .iter()
            .find(|p| p.partition == day)
            .expect("the replayed day has an outcome");
        assert!(r.silver[0].partitions.iter().all(|p| p.status.promoted()));
        assert_eq!(p.rows_in, p.rows_out + p.dead + p.duplicates);
        assert!(
            (p.dead as i64) < usd_before / 4,
            "usd rows are valid now: {p:?}"
        );
        let g: Vec<_> = r
            .gold
            .iter()
            .map(|g| {
                (
                    g.table.clone(),
                    g.partitions
                        .iter()
                        .map(|p| (p.partition.clone(), p.status.as_str()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert!(
            g.iter().any(|(t, ps)| t == "daily_revenue"
                && ps.contains(&(day.to_string(), "ok"))
                && ps.iter().all(|(_, st)| *st == "ok")),
            "{g:?}"
        );
        assert!(
            g.iter()
                .any(|(t, ps)| t == "revenue_by_country" && ps.iter().all(|(_, st)| *st == "ok")),
            "{g:?}"
        );
        snaps.push(snapshot(&lake_dir, day).await);
    }
    assert!(
        snaps[0].2.contains("USD"),
        "gold has the day now:\n{}",
        snaps[0].2
    );
    assert_eq!(snaps[0], snaps[1], "second replay changed content");
    assert_eq!(snaps[1], snaps[2], "third replay changed content");

    // Delta history shows the replacements: replace-where commits on that partition
    let url = url::Url::from_directory_path(lake_dir.join("silver/orders")).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let hist: Vec<_> = table.history(Some(4)).collect().await;
    let preds: Vec<String> = hist
        .into_iter()
        .take(3)
        .map(|c| {
            let c = c.unwrap();
            format!(
                "{:?} {:?}",
                c.operation,
                c.operation_parameters
                    .and_then(|p| p.get("predicate").cloned())
            )
        })
        .collect();
    assert_eq!(preds.len(), 3, "{preds:?}");
    for p in &preds {
        assert!(p.contains("WRITE") && p.contains(day), "{p}");
    }

    // nothing is failed any more upstream of gold; status agrees
    let steps = karat::ledger::Ledger::new(&lake).steps().await.unwrap();
    let latest = karat::ledger::status::latest_partition_states(&steps);
    let failed: Vec<_> = latest
        .iter()
        .filter(|((z, _, _), s)| *z != Zone::Bronze && !s.status.promoted())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_failed_and_range_validate_their_arguments() {
    let s = Scratch::new();
    let (plan, lake, _) = demo(s.path(), 50).await;
    let err = karat::pipeline::replay(
        &plan,
        &lake,
        ReplayTarget::Range {
            table: "orders".into(),
            from: "2026-03-27".into(),
            to: "2026-03-20".into(),
        },
        &Events::none(),
    )
    .await
    .unwrap_err();
    assert!(err.is_usage(), "{err}");
    let err = karat::pipeline::replay(
        &plan,
        &lake,
        ReplayTarget::Partitions {
            table: "nope".into(),
            partitions: vec!["x".into()],
        },
        &Events::none(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no table named \"nope\""), "{err}");
    let err = karat::pipeline::replay(
        &plan,
        &lake,
        ReplayTarget::Partitions {
            table: "orders".into(),
            partitions: vec!["2026-13-45".into()],
        },
        &Events::none(),
    )
    .await
    .unwrap_err();
    assert!(
        err.is_usage()
            && err.to_string().contains("no partition 2026-13-45")
            && err.to_string().contains(karat::demo::BAD_DAY),
        "{err}"
    );
    // a range replays exactly the known partitions in it
    let r = karat::pipeline::replay(
        &plan,
        &lake,
        ReplayTarget::Range {
            table: "orders".into(),
            from: "2026-03-24".into(),
            to: "2026-03-25".into(),
        },
        &Events::none(),
    )
    .await
    .unwrap();
    let ps: Vec<&str> = r.silver[0]
        .partitions
        .iter()
        .map(|p| p.partition.as_str())
        .collect();
    assert!(
        ps.contains(&"2026-03-24") && ps.contains(&"2026-03-25"),
        "{ps:?}"
    );
    // --failed replays the failed day (still failing: the contract is not fixed)
    let r = karat::pipeline::replay(&plan, &lake, ReplayTarget::Failed, &Events::none())
        .await
        .unwrap();
    let ps: Vec<(&str, &str)> = r
        .silver
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.table.as_str(), p.partition.as_str()))
        })
        .collect();
    assert!(ps.contains(&("orders", karat::demo::BAD_DAY)), "{ps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_what_the_replay_then_does_and_writes_nothing() {
    let s = Scratch::new();
    let (_, lake, _) = demo(s.path(), 120).await;
    let day = karat::demo::BAD_DAY;
    let cfg_path = s.join("karat.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        cfg.replace(
            "currency = { type = \"string\", nullable = false, one_of",
            "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"], one_of",
        ),
    )
    .unwrap();
    let plan = Plan::load(&cfg_path).await.unwrap();
    let target = ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![day.into()],
    };
    let runs_before = karat::ledger::Ledger::new(&lake)
        .runs()
        .await
        .unwrap()
        .len();
    let preview = karat::pipeline::preview(&plan, &lake, &target)
        .await
        .unwrap();

    // nothing written: no run recorded, every table at the version the preview names
    assert_eq!(
        karat::ledger::Ledger::new(&lake)
            .runs()
            .await
            .unwrap()
            .len(),
        runs_before
    );
    let silver = &preview.silver[0];
    assert_eq!(silver.table, "orders");
    assert!(
        silver.preview.partitions.contains(day),
        "{:?}",
        preview.lines()
    );
    assert_eq!(
        silver.preview.records,
        silver.preview.valid + silver.preview.dead,
        "{:?}",
        preview.lines()
    );
    let gold: Vec<(&str, bool)> = preview
        .gold
        .iter()
        .map(|g| (g.table.as_str(), g.partitions.contains(day)))
        .collect();
    assert!(
        gold.contains(&("daily_revenue", true)),
        "{:?}",
        preview.lines()
    );
    let by_country = preview
        .gold
        .iter()
        .find(|g| g.table == "revenue_by_country");
    assert!(
        by_country.is_some_and(|g| g.whole.is_some()),
        "{:?}",
        preview.lines()
    );
    let text = preview.lines().join("\n");
    assert!(
        text.contains("silver orders: ") && text.contains("gold daily_revenue"),
        "{text}"
    );

    // the replay then does what the preview said, replacing the versions it named
    let r = karat::pipeline::replay(&plan, &lake, target, &Events::none())
        .await
        .unwrap();
    let partitions: std::collections::BTreeSet<String> = r
        .silver
        .iter()
        .filter(|s| s.table == "orders")
        .flat_map(|s| s.partitions.iter().map(|p| p.partition.clone()))
        .collect();
    assert_eq!(partitions, silver.preview.partitions);
    let batch = silver.preview.batches.first().unwrap();
    let dead: u64 = scalar(
        &sql(
            &s.join("lake"),
            "dead_letters/orders",
            &format!("SELECT COUNT(*) FROM t WHERE batch_id = '{batch}'"),
        )
        .await,
    )
    .parse()
    .unwrap();
    assert_eq!(dead, silver.preview.dead, "{:?}", preview.lines());
    let replaced: Vec<(String, Option<i64>)> = r
        .silver
        .iter()
        .map(|s| (s.table.clone(), s.silver_version.map(|v| v - 1)))
        .collect();
    assert!(
        replaced.contains(&("orders".to_string(), silver.delta_version)),
        "{replaced:?} vs {:?}",
        preview.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_a_wrong_fix_is_undone_by_restore() {
    let s = Scratch::new();
    let (_, lake, _) = demo(s.path(), 120).await;
    let lake_dir = s.join("lake");
    let day = karat::demo::BAD_DAY;
    let before = snapshot(&lake_dir, day).await;
    let state = |steps: &[karat::ledger::StepRecord], zone: Zone, table: &str| {
        let latest = karat::ledger::status::latest_partition_states(steps);
        let s = &latest[&(zone, table.to_string(), day.to_string())];
        (s.status.as_str().to_string(), s.trigger.to_string())
    };

    // the wrong fix: let the gate pass instead of fixing the contract
    let cfg_path = s.join("karat.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let wrong = cfg.replace("max_reject_rate = 0.05", "max_reject_rate = 0.9");
    assert_ne!(cfg, wrong);
    std::fs::write(&cfg_path, wrong).unwrap();
    let plan = Plan::load(&cfg_path).await.unwrap();
    let target = ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![day.into()],
    };
    let replay = karat::pipeline::replay(&plan, &lake, target.clone(), &Events::none())
        .await
        .unwrap();
    let after_replay = snapshot(&lake_dir, day).await;
    assert_ne!(after_replay.2, before.2, "gold got the bad day");

    // undo it
    let r = karat::pipeline::restore(&plan, &lake, &replay.run_id)
        .await
        .unwrap();
    assert!(!r.tables.is_empty() && r.partitions > 0, "{r:?}");
    assert_eq!(
        snapshot(&lake_dir, day).await,
        before,
        "silver, dead letters, gold as before"
    );
    let steps = karat::ledger::Ledger::new(&lake).steps().await.unwrap();
    assert_eq!(
        state(&steps, Zone::Silver, "orders"),
        ("failed".into(), "restore".into())
    );
    assert_eq!(
        state(&steps, Zone::Gold, "daily_revenue"),
        ("blocked".into(), "restore".into())
    );
    let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
    assert!(v.ok(), "{:?}", v.lines());

    // refused: a run that is no replay, a replay already undone, a replay written over since
    let runs = karat::ledger::Ledger::new(&lake).runs().await.unwrap();
    let not_replay = runs.iter().find(|r| r.trigger == "cli").unwrap();
    let err = karat::pipeline::restore(&plan, &lake, &not_replay.run_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("restore undoes replays"), "{err}");
    let err = karat::pipeline::restore(&plan, &lake, &replay.run_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a later run wrote it"), "{err}");
    let first = karat::pipeline::replay(&plan, &lake, target.clone(), &Events::none())
        .await
        .unwrap();
    karat::pipeline::replay(&plan, &lake, target, &Events::none())
        .await
        .unwrap();
    let err = karat::pipeline::restore(&plan, &lake, &first.run_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a later run wrote it"), "{err}");
}

/// Writes a new day of two valid demo orders (2026-03-29) into the demo at `dir`.
fn new_demo_day(dir: &std::path::Path) {
    use std::io::Write;
    let lines = [
        r#"{"order_id":"o-99001","customer_id":"c-202","amount":10.00,"currency":"USD","quantity":"1","status":"paid","order_date":"2026-03-29","ordered_at":"2026-03-29T10:00:00Z","coupon":null}"#,
        r#"{"order_id":"o-99002","customer_id":"c-126","amount":20.00,"currency":"EUR","quantity":"2","status":"paid","order_date":"2026-03-29","ordered_at":"2026-03-29T11:00:00Z","coupon":null}"#,
    ];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    let new_day = dir.join("data/orders/orders-2026-03-29.ndjson.gz");
    std::fs::write(&new_day, gz.finish().unwrap()).unwrap();
}

/// The gold outcomes of `r` for `table`: (partition, status).
fn gold_outcomes(r: &karat::pipeline::RunReport, table: &str) -> Vec<(String, String)> {
    r.gold
        .iter()
        .filter(|g| g.table == table)
        .flat_map(|g| g.partitions.iter())
        .map(|o| (o.partition.clone(), o.status.as_str().to_string()))
        .collect()
}

/// A gold table blocked by a failed silver partition stays blocked through later runs that do
/// not touch that partition (a new day arrives), until a replay after the fix promotes it.
/// Before, a later run that recomputed a table whole (one without partitions, or without a
/// baseline to fold into) published it over the failed day's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_blocked_by_a_failed_partition_stays_blocked_until_it_is_replayed() {
    let s = Scratch::new();
    let (plan, lake, _) = demo(s.path(), 60).await;
    let lake_dir = s.join("lake");
    let by_country = "SELECT country, CAST(revenue AS VARCHAR) AS r FROM t ORDER BY 1";
    let published = pretty(&sql(&lake_dir, "gold/revenue_by_country", by_country).await);
    new_demo_day(s.path());

    let r = crate::util::run(&plan, &lake).await;
    let by_country_now = gold_outcomes(&r, "revenue_by_country");
    assert!(
        by_country_now.iter().all(|(_, st)| st == "blocked"),
        "{by_country_now:?}"
    );
    let after = pretty(&sql(&lake_dir, "gold/revenue_by_country", by_country).await);
    assert_eq!(after, published, "a blocked gold table was written over");
    let daily = gold_outcomes(&r, "daily_revenue");
    assert!(
        daily.contains(&("2026-03-29".to_string(), "ok".to_string())),
        "{daily:?}"
    );
    let day = karat::demo::BAD_DAY;
    assert!(
        daily.iter().all(|(p, st)| p != day || st == "blocked"),
        "{daily:?}"
    );

    // fixed and replayed: both go green
    let cfg_path = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let fixed = text.replace(
        "currency = { type = \"string\", nullable = false, one_of",
        "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"], one_of",
    );
    std::fs::write(&cfg_path, fixed).unwrap();
    let plan = Plan::load(&cfg_path).await.unwrap();
    let target = ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![day.into()],
    };
    let r = karat::pipeline::replay(&plan, &lake, target, &Events::none())
        .await
        .unwrap();
    assert_eq!(r.status, "ok", "{}", karat::summary::run_lines(&r));
    let by_country_now = gold_outcomes(&r, "revenue_by_country");
    assert!(
        !by_country_now.is_empty() && by_country_now.iter().all(|(_, st)| st == "ok"),
        "{by_country_now:?}"
    );
    let v = karat::pipeline::verify(&plan, &lake).await.unwrap();
    assert!(v.ok(), "{:?}", v.lines());
}

/// A gold table added while an upstream partition stays failed holds every other day at once
/// (the failed day's partition blocked): before, it held only the days each run changed until
/// the failed day was fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gold_table_added_while_a_partition_is_failed_holds_every_other_day() {
    let s = Scratch::new();
    demo(s.path(), 60).await;
    let cfg_path = s.join("karat.toml");
    let mut text = std::fs::read_to_string(&cfg_path).unwrap();
    text.push_str(
        "\n[[table]]\nname = \"orders_per_day\"\nzone = \"gold\"\npartition_by = \"order_date\"\n\
         sql = \"SELECT order_date, COUNT(*) AS n FROM orders GROUP BY order_date\"\n",
    );
    std::fs::write(&cfg_path, text).unwrap();
    let (plan, lake) = crate::util::open(&cfg_path).await;
    new_demo_day(s.path());
    let r = crate::util::run(&plan, &lake).await;
    let day = karat::demo::BAD_DAY;
    let outcomes = gold_outcomes(&r, "orders_per_day");
    assert!(
        outcomes.contains(&(day.to_string(), "blocked".to_string())),
        "{outcomes:?}"
    );
    let lake_dir = s.join("lake");
    let per_day = format!(
        "SELECT CAST(order_date AS VARCHAR) AS d, COUNT(*) AS n FROM t \
         WHERE order_date <> DATE '{day}' GROUP BY 1 ORDER BY 1"
    );
    let want = pretty(&sql(&lake_dir, "silver/orders", &per_day).await);
    let got = pretty(
        &sql(
            &lake_dir,
            "gold/orders_per_day",
            "SELECT CAST(order_date AS VARCHAR) AS d, n FROM t ORDER BY 1",
        )
        .await,
    );
    assert_eq!(got, want);
}
