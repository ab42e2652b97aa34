//! Event-time freshness on data with known lateness: the newest event a silver table holds,
//! read from its Delta statistics, moves only when a newer event lands — a late record changes
//! nothing — and an `event_time` that is not a date or timestamp column is refused at load.

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
    let with = text.replacen(
        "runbook = \"runbooks/orders.md\"",
        "runbook = \"runbooks/orders.md\"\nevent_time = \"order_date\"",
        1,
    );
    assert_ne!(with, text);
    std::fs::write(&cfg, &with).unwrap();
    let (plan, lake) = open(&cfg).await;
    run(&plan, &lake).await;
    let now: DateTime<Utc> = "2026-04-01T00:00:00Z".parse().unwrap();
    let lag = |l: Vec<karat::ledger::event_time::EventLag>| {
        let o = l.into_iter().find(|l| l.table == "orders").expect("orders");
        (o.newest, o.lag_seconds)
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
}
