//! The demo lake end to end: accounting balances per partition (checked from the Delta tables
//! with DataFusion's own reader), each planted fault lands where it should with its reason,
//! dedup keeps the newest version, a corrupt file fails only its own batch, and the export that
//! came short of its manifest is the one named short.

use karat::config::Zone;
use karat::silver::PartitionStatus;
use std::collections::BTreeMap;

use karat::ledger::Ledger;
use karat::ledger::status::latest_partition_states;

use crate::util::{Scratch, counts, demo, scalar, sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_lands_every_fault_and_balances() {
    let s = Scratch::new();
    let (plan, lake, reports) = demo(s.path(), 300).await;
    let lake_dir = s.join("lake");
    assert_eq!(reports.len(), karat::demo::DAYS);

    // --- completeness: only the last export holds fewer orders than its manifest declares
    let declared = karat::ledger::declared::batches(&plan.config, &lake)
        .await
        .unwrap();
    let summary = karat::ledger::declared::summarize(&declared);
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(
        declared.len(),
        karat::demo::DAYS,
        "one declared export a day"
    );
    let short: Vec<(u64, String)> = summary[0]
        .short
        .iter()
        .map(|b| (b.missing(), b.origin.clone()))
        .collect();
    assert_eq!(short.len(), 1, "{short:?}");
    assert_eq!(short[0].0, karat::demo::MISSING_ORDERS as u64);
    assert!(
        short[0].1.ends_with("orders-2026-03-27.ndjson.gz"),
        "{short:?}"
    );

    // --- accounting per partition, from the ledger and from the tables themselves
    let steps = Ledger::new(&lake).steps().await.unwrap();
    let latest = latest_partition_states(&steps);
    for table in ["orders", "customers"] {
        let silver = counts(
            &sql(
                &lake_dir,
                &format!("silver/{table}"),
                &format!(
                    "SELECT CAST({} AS VARCHAR), COUNT(*) FROM t GROUP BY 1",
                    if table == "orders" {
                        "order_date"
                    } else {
                        "signup_date"
                    }
                ),
            )
            .await,
        );
        let dead = counts(
            &sql(
                &lake_dir,
                &format!("dead_letters/{table}"),
                "SELECT partition, COUNT(*) FROM t GROUP BY 1",
            )
            .await,
        );
        let mut checked = 0;
        for ((zone, t, p), st) in &latest {
            if *zone != Zone::Silver || t != table {
                continue;
            }
            checked += 1;
            assert_eq!(
                st.rows_in,
                st.rows_out + st.dead + st.duplicates,
                "{table} {p}: {st:?}"
            );
            assert_eq!(
                dead.get(p).copied().unwrap_or(0),
                st.dead,
                "{table} {p}: dead letters in Delta"
            );
            if st.status.promoted() {
                assert_eq!(
                    silver.get(p).copied().unwrap_or(0),
                    st.rows_out,
                    "{table} {p}: silver rows in Delta"
                );
            }
        }
        assert!(
            checked >= karat::demo::DAYS,
            "{table}: only {checked} partitions"
        );
    }
    // every line that reached bronze is accounted for in silver
    let bronze_rows: i64 = steps
        .iter()
        .filter(|s| {
            s.zone == Zone::Bronze && s.table == "orders" && s.status == PartitionStatus::Ok
        })
        .map(|s| s.rows_in)
        .sum();
    let silver_in: i64 = latest
        .iter()
        .filter(|((z, t, _), _)| *z == Zone::Silver && t == "orders")
        .map(|(_, s)| s.rows_in)
        .sum();
    assert_eq!(
        bronze_rows, silver_in,
        "bronze rows == silver rows in over the latest partitions"
    );

    // --- the bad day failed its gate, with the real reason
    let bad = &latest[&(
        Zone::Silver,
        "orders".to_string(),
        karat::demo::BAD_DAY.to_string(),
    )];
    assert_eq!(bad.status, PartitionStatus::Failed);
    let msg = bad.messages.clone().unwrap_or_default();
    assert!(
        msg.contains("reject rate") && msg.contains("currency.one_of"),
        "{msg}"
    );
    let gold_bad = &latest[&(
        Zone::Gold,
        "daily_revenue".to_string(),
        karat::demo::BAD_DAY.to_string(),
    )];
    assert_eq!(gold_bad.status, PartitionStatus::Blocked, "{gold_bad:?}");
    let usd = scalar(&sql(&lake_dir, "dead_letters/orders", &format!("SELECT COUNT(*) FROM t WHERE partition = '{}' AND array_to_string(reasons, '|') LIKE '%currency: unknown value \"usd \"%'", karat::demo::BAD_DAY)).await);
    assert!(usd.parse::<i64>().unwrap() > 60, "usd dead letters: {usd}");
    // gold holds no row for the failed day, every other day is there
    let gold_days = counts(
        &sql(
            &lake_dir,
            "gold/daily_revenue",
            "SELECT CAST(order_date AS VARCHAR), COUNT(*) FROM t GROUP BY 1",
        )
        .await,
    );
    assert!(
        !gold_days.contains_key(karat::demo::BAD_DAY),
        "{gold_days:?}"
    );
    assert_eq!(gold_days.len(), karat::demo::DAYS - 1, "{gold_days:?}");

    // --- each fault lands where it should, with its reason
    let rules = counts(
        &sql(
            &lake_dir,
            "dead_letters/orders",
            "SELECT r, COUNT(*) FROM (SELECT unnest(rules) AS r FROM t) GROUP BY r",
        )
        .await,
    );
    for rule in [
        "amount.min",
        "currency.one_of",
        "quantity.type",
        "_record.json",
    ] {
        assert!(
            rules.get(rule).copied().unwrap_or(0) > 0,
            "no dead letters for {rule}: {rules:?}"
        );
    }
    assert_eq!(rules["_record.json"], 1, "exactly one truncated line");
    let reason = scalar(&sql(&lake_dir, "dead_letters/orders", "SELECT array_to_string(reasons, '|') FROM t WHERE array_to_string(rules, '|') LIKE '%quantity.type%' LIMIT 1").await);
    assert_eq!(reason, "quantity: expected int64, got \"three\"");
    let prov = sql(&lake_dir, "dead_letters/orders", "SELECT file, line, batch_id, raw FROM t WHERE array_to_string(rules, '|') = '_record.json'").await;
    let text = crate::util::pretty(&prov);
    assert!(
        text.contains("orders-2026-03-24.ndjson.gz") && text.contains("| 11 "),
        "{text}"
    );
    let crules = counts(
        &sql(
            &lake_dir,
            "dead_letters/customers",
            "SELECT r, COUNT(*) FROM (SELECT unnest(rules) AS r FROM t) GROUP BY r",
        )
        .await,
    );
    assert!(
        crules.contains_key("country.one_of") && crules.contains_key("email.regex"),
        "{crules:?}"
    );
    // normalisers: " de " became DE, not a dead letter
    let lower = scalar(
        &sql(
            &lake_dir,
            "silver/customers",
            "SELECT COUNT(*) FROM t WHERE country <> upper(btrim(country))",
        )
        .await,
    );
    assert_eq!(lower, "0");

    // --- dedup keeps the newest version of a re-sent order
    let dups: i64 = latest
        .iter()
        .filter(|((z, t, _), _)| *z == Zone::Silver && t == "orders")
        .map(|(_, s)| s.duplicates)
        .sum();
    assert!(dups >= 10, "duplicates dropped: {dups}");
    let resent = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT status || ' ' || CAST(amount AS VARCHAR) FROM t WHERE order_id = 'o-1'",
        )
        .await,
    );
    assert_eq!(
        resent, "shipped 10.00",
        "o-1 was re-sent a day later as shipped, 10.00"
    );
    let unique = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT COUNT(*) - COUNT(DISTINCT order_id) FROM t",
        )
        .await,
    );
    assert_eq!(unique, "0");

    // --- late rows for yesterday landed in yesterday's partition
    let late = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT COUNT(*) FROM t WHERE amount = 19.99 AND customer_id = 'c-1'",
        )
        .await,
    );
    assert!(late.parse::<i64>().unwrap() >= 20, "late rows: {late}");

    // --- the corrupt file failed only its own batch, once, and is quarantined after that
    let corrupt: Vec<_> = steps
        .iter()
        .filter(|s| s.zone == Zone::Bronze && s.status == PartitionStatus::Failed)
        .collect();
    assert_eq!(corrupt.len(), 1, "{corrupt:?}");
    assert!(
        corrupt[0]
            .partition
            .ends_with("orders-2026-03-27-retry.ndjson.gz"),
        "{:?}",
        corrupt[0]
    );
    assert!(
        corrupt[0]
            .messages
            .as_deref()
            .unwrap_or("")
            .contains("corrupt gzip"),
        "{:?}",
        corrupt[0]
    );
    let day5 = &reports[4];
    assert_eq!(
        day5.bronze
            .iter()
            .map(|b| b.new_batches.len())
            .sum::<usize>(),
        2,
        "the other files of that day landed"
    );

    // --- schema drift was recorded: coupon added, quantity number → string
    let drift = Ledger::new(&lake).drift().await.unwrap();
    let all: BTreeMap<String, String> = drift
        .iter()
        .map(|d| (d.batch_id.clone(), format!("{} {}", d.added, d.changed)))
        .collect();
    let text = format!("{all:?}");
    assert!(text.contains("coupon"), "{text}");
    assert!(
        text.contains("quantity") && text.contains("number") && text.contains("string"),
        "{text}"
    );
}
