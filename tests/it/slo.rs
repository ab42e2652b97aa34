//! Event-time freshness on data with known lateness: the newest event a silver table holds,
//! read from its Delta statistics, moves only when a newer event lands — a late record changes
//! nothing — and an `event_time` that is not a date or timestamp column is refused at load.
//! Completeness on data with missing rows: files whose manifests declare more records than they
//! hold are named short, observed/expected, and burn the completeness SLO.

use chrono::{DateTime, Utc};

use crate::util::{Scratch, open, run};

fn add(dir: &std::path::Path, name: &str, id: &str, date: &str) {
    std::fs::write(
        dir.join("data/orders").join(name),
        format!(
            "{{\"order_id\":\"{id}\",\"amount\":5,\"currency\":\"USD\",\"quantity\":1,\"order_date\":\"{date}\"}}\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_freshness_moves_with_the_newest_event_only() {
    let s = Scratch::new();
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let with = text
        .replacen(
            "runbook = \"runbooks/orders.md\"",
            "runbook = \"runbooks/orders.md\"\nevent_time = \"order_date\"",
            1,
        )
        .replacen(
            "zone = \"gold\"",
            "zone = \"gold\"\nevent_time = \"order_date\"",
            1,
        );
    assert_eq!(with.matches("event_time").count(), 2);
    std::fs::write(&cfg, &with).unwrap();
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    let now: DateTime<Utc> = "2026-04-01T00:00:00Z".parse().unwrap();
    let lag = |l: Vec<karat::ledger::event_time::EventLag>| {
        let o = l.iter().find(|l| l.table == "orders").expect("orders");
        // gold holds what reached it: here every promoted day, so the same newest event
        let g = l.iter().find(|l| l.table == "daily_revenue").expect("gold");
        assert_eq!(
            (g.zone, &g.newest),
            (karat::config::Zone::Gold, &o.newest),
            "{l:?}"
        );
        (o.newest.clone(), o.lag_seconds)
    };
    let day = 86_400;
    let first = lag(karat::ledger::event_time::lags(&plan.config, &lake, now)
        .await
        .unwrap());
    assert_eq!(first, (Some("2026-03-28".into()), Some(4 * day)));
    // a late record (an older event) lands: nothing changes
    add(s.path(), "late.ndjson", "o-50", "2026-03-20");
    run(&plan, &lake).await;
    let late = lag(karat::ledger::event_time::lags(&plan.config, &lake, now)
        .await
        .unwrap());
    assert_eq!(late, first);
    // per partition: each day holds its own newest event (not the table's), the late one too
    let per = karat::ledger::event_time::newest_by_partition(&plan.config, &lake)
        .await
        .unwrap();
    let days = |zone| -> Vec<(String, String)> {
        per[&(
            zone,
            if zone == karat::config::Zone::Gold {
                "daily_revenue"
            } else {
                "orders"
            }
            .to_string(),
        )]
            .clone()
            .into_iter()
            .collect()
    };
    let want: Vec<(String, String)> = ["2026-03-20", "2026-03-27", "2026-03-28"]
        .iter()
        .map(|d| (d.to_string(), d.to_string()))
        .collect();
    assert_eq!(days(karat::config::Zone::Silver), want);
    assert_eq!(days(karat::config::Zone::Gold), want);
    // a newer event lands: the lag shrinks to a day
    add(s.path(), "new.ndjson", "o-51", "2026-03-31");
    run(&plan, &lake).await;
    let newer = lag(karat::ledger::event_time::lags(&plan.config, &lake, now)
        .await
        .unwrap());
    assert_eq!(newer, (Some("2026-03-31".into()), Some(day)));

    // an event_time that is no date or timestamp column is refused where it is written
    let bad = text.replacen(
        "runbook = \"runbooks/orders.md\"",
        "runbook = \"runbooks/orders.md\"\nevent_time = \"currency\"",
        1,
    );
    std::fs::write(&cfg, bad).unwrap();
    let err = karat::pipeline::Plan::load(&cfg)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("event_time \"currency\" is not a date or timestamp column"),
        "{err}"
    );
    // and on gold, once its SQL is planned: the output column must be a date or timestamp
    let bad = text.replacen(
        "zone = \"gold\"",
        "zone = \"gold\"\nevent_time = \"revenue\"",
        1,
    );
    std::fs::write(&cfg, bad).unwrap();
    let err = karat::pipeline::Plan::load(&cfg)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gold table daily_revenue: event_time \"revenue\" is not a date or timestamp output column"),
        "{err}"
    );
}

/// Writes `records` orders into `data/orders/<name>` and, if given, a manifest beside it.
fn add_declared(
    dir: &std::path::Path,
    name: &str,
    first_id: usize,
    records: usize,
    manifest: Option<&str>,
) {
    let lines: String = (0..records)
        .map(|i| {
            format!(
                "{{\"order_id\":\"d-{}\",\"amount\":5,\"currency\":\"USD\",\"quantity\":1,\"order_date\":\"2026-03-28\"}}\n",
                first_id + i
            )
        })
        .collect();
    let path = dir.join("data/orders").join(name);
    std::fs::write(&path, lines).unwrap();
    if let Some(m) = manifest {
        std::fs::write(format!("{}.manifest.json", path.display()), m).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_counts_rows_against_what_the_source_declared() {
    let s = Scratch::new();
    let cfg = crate::util::init(s.path(), |text| {
        let with = text
            .replacen(
                "owner = \"data-platform\"",
                "owner = \"data-platform\"\nexpected_count_field = \"meta.count\"",
                1,
            )
            .replacen(
                "# A gold table: SQL over silver/gold tables by name.",
                "[[table.slo]]\nsli = \"completeness\"\nobjective = 99.0\nwindow = \"7d\"\n\n\
                 # A gold table: SQL over silver/gold tables by name.",
                1,
            );
        assert_ne!(with, text);
        with
    });
    // complete, two rows short (5 declared, 3 sent), and a manifest that declares nothing
    add_declared(
        s.path(),
        "full.ndjson",
        100,
        4,
        Some("{\"meta\":{\"count\":\"4\"}}"),
    );
    add_declared(
        s.path(),
        "short.ndjson",
        200,
        3,
        Some("{\"meta\":{\"count\":5}}"),
    );
    add_declared(s.path(), "odd.ndjson", 300, 2, Some("{\"count\":2}"));
    let (plan, lake) = open(&cfg).await;
    let report = run(&plan, &lake).await;
    assert!(
        report.bronze.iter().all(|b| b.failed.is_empty()),
        "a manifest never fails its batch: {report:#?}"
    );
    // the oracle for "landed": lines in the bronze objects, by the origin their manifest names
    let lines = crate::util::bronze_records(&s.join("lake"), "orders");
    let manifests = karat::bronze::manifest::list(&lake, "orders")
        .await
        .unwrap();
    assert!(
        !manifests
            .iter()
            .any(|m| m.origin.ends_with(".manifest.json")),
        "manifests beside the data are not data"
    );
    let landed = |file: &str| {
        let m = manifests.iter().find(|m| m.origin.ends_with(file)).unwrap();
        lines[&m.batch_id]
    };
    assert_eq!(
        landed("odd.ndjson"),
        2,
        "a batch with an unreadable manifest lands whole"
    );
    assert_eq!(landed("short.ndjson"), 3);

    let batches = karat::ledger::declared::batches(&plan.config, &lake)
        .await
        .unwrap();
    let summary = karat::ledger::declared::summarize(&batches);
    assert_eq!(summary.len(), 1, "{summary:#?}");
    let d = &summary[0];
    // the oracle: what this test wrote, not what karat counted
    assert_eq!((d.records, d.expected), (4 + 3, 4 + 5));
    assert_eq!(d.short.len(), 1);
    assert!(d.short[0].origin.ends_with("short.ndjson"));
    assert_eq!(d.short[0].missing(), 2);
    // every data file without a readable manifest landed undeclared: odd.ndjson and the
    // example's own files
    let undeclared = std::fs::read_dir(s.join("data/orders"))
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .filter(|p| !p.to_string_lossy().ends_with(".manifest.json"))
        .filter(|p| {
            let side = format!("{}.manifest.json", p.display());
            !std::path::Path::new(&side).exists() || p.ends_with("odd.ndjson")
        })
        .count();
    assert_eq!(d.undeclared, undeclared);
    assert!(d.incomplete());
    assert!(
        d.describe().contains("short.ndjson: 3/5"),
        "{}",
        d.describe()
    );

    let steps = karat::ledger::Ledger::new(&lake).steps().await.unwrap();
    let slo = karat::ledger::slo::compute(&plan.config, &steps, &batches, Utc::now());
    let c = slo
        .iter()
        .find(|x| x.sli == karat::config::slo::SliKind::Completeness)
        .expect("completeness SLO");
    // complete: full.ndjson only; short and undeclared batches are bad events
    assert_eq!((c.good, c.total), (1, 2 + undeclared as i64), "{c:?}");
    assert!(!c.met());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replay_records_its_cost_summed_per_month() {
    let s = Scratch::new();
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    let target = karat::pipeline::ReplayTarget::Range {
        table: "orders".into(),
        from: "0000".into(),
        to: "9999".into(),
    };
    let events = karat::events::Events::none();
    let report = karat::pipeline::replay(&plan, &lake, target, &events)
        .await
        .unwrap();
    // the oracle: a replay of every partition re-reads every source file, whole
    let mut bytes = 0;
    let mut lines = 0;
    for f in std::fs::read_dir(s.join("data/orders")).unwrap().flatten() {
        let body = std::fs::read(f.path()).unwrap();
        bytes += body.len() as u64;
        lines += body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as i64;
    }
    let runs = karat::ledger::Ledger::new(&lake).runs().await.unwrap();
    let costs = karat::ledger::replay_cost::costs(&plan.config, &lake, &runs)
        .await
        .unwrap();
    assert_eq!(costs.len(), 1, "{costs:#?}");
    assert_eq!(costs[0].run_id, report.run_id);
    assert_eq!(
        (costs[0].bytes, costs[0].records),
        (bytes, lines),
        "{costs:#?}"
    );
    let months = karat::ledger::replay_cost::per_month(&costs);
    assert_eq!(months.len(), 1);
    assert_eq!(months[0].month, Utc::now().format("%Y-%m").to_string());
    // and the Overview shows the month's sum
    let app = karat::tui::headless_state(
        &plan,
        &lake,
        karat::tui::theme::Theme::default_dark(),
        karat::tui::action::View::Overview,
        Utc::now(),
    )
    .await
    .unwrap();
    let shown = &app.snapshot.as_ref().unwrap().replay_costs;
    assert_eq!(shown, &months);
}
