//! `karat diff` on a replay of the demo: the broken day's fix brings rows back from the dead
//! letters, and the diff of the replay says exactly that — as many rows only after as dead
//! letters left, none lost, none changed — in silver and in gold; across two daily runs it
//! finds the orders whose re-send changed their status, column by column.

use karat::schema::table_diff::{Versions, diff};

use crate::util::{Scratch, demo, finish, scalar, spawn_karat, sql};

fn count(n: String) -> u64 {
    n.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diff_of_a_replay_shows_the_rows_it_brought_back() {
    let s = Scratch::new();
    let (_, lake, _) = demo(s.path(), 300).await;
    let lake_dir = s.join("lake");
    let dead = || async {
        count(scalar(
            &sql(
                &lake_dir,
                "dead_letters/orders",
                "SELECT CAST(COUNT(*) AS VARCHAR) FROM t",
            )
            .await,
        ))
    };
    let dead_before = dead().await;
    let cfg = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let fixed = text.replace(
        "one_of = [\"USD\", \"EUR\", \"GBP\"] }",
        "one_of = [\"USD\", \"EUR\", \"GBP\"], normalize = [\"trim\", \"upper\"] }",
    );
    assert_ne!(fixed, text);
    std::fs::write(&cfg, fixed).unwrap();
    let (plan, _) = crate::util::open(&cfg).await;
    let target = karat::pipeline::ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![karat::demo::BAD_DAY.into()],
    };
    let r = karat::pipeline::replay(&plan, &lake, target, &karat::events::Events::none())
        .await
        .unwrap();
    let came_back = dead_before - dead().await;
    assert!(came_back > 0);

    let d = diff(
        &plan,
        &lake,
        "orders",
        &[],
        &Versions::Replay(r.run_id.clone()),
    )
    .await
    .unwrap();
    assert_eq!(d.key, vec!["order_id".to_string()]);
    assert_eq!(
        (d.only_before, d.only_after, d.changed),
        (0, came_back, 0),
        "{:#?}",
        d.lines()
    );
    assert_eq!(d.after.rows - d.before.rows, came_back);
    assert_eq!(d.matched, d.before.rows);
    assert_eq!(
        d.sample_only_after.len(),
        karat::schema::table_diff::SAMPLES
    );
    assert!(
        d.columns.iter().all(|c| c.equal == c.matched),
        "{:#?}",
        d.columns
    );
    assert!(d.schema.is_empty());

    // gold: the day the failed partition blocked appears, one row per currency it holds
    let currencies = count(scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            &format!(
                "SELECT CAST(COUNT(DISTINCT currency) AS VARCHAR) FROM t WHERE order_date = DATE '{}' AND status <> 'cancelled'",
                karat::demo::BAD_DAY
            ),
        )
        .await,
    ));
    let g = diff(
        &plan,
        &lake,
        "daily_revenue",
        &[],
        &Versions::Replay(r.run_id.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        g.key,
        vec!["order_date".to_string(), "currency".to_string()]
    );
    assert_eq!(
        (g.only_before, g.only_after, g.changed),
        (0, currencies, 0),
        "{:#?}",
        g.lines()
    );
    assert!(
        g.sample_only_after
            .iter()
            .all(|r| r.starts_with(&format!("order_date={}", karat::demo::BAD_DAY)))
    );

    // the CLI says the same, as JSON; a run that wrote nothing there is refused by name
    let (code, out) = finish(spawn_karat(
        s.path(),
        &["diff", "orders", "--replay", &r.run_id, "--json"],
        &[],
    ));
    assert_eq!(code, Some(0), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["only_after"].as_u64(), Some(came_back));
    let (code, out) = finish(spawn_karat(
        s.path(),
        &["diff", "orders", "--replay", "nope"],
        &[],
    ));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("run nope recorded no version of silver/orders"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_sent_order_is_a_changed_row_column_by_column() {
    let s = Scratch::new();
    let (plan, lake, _) = demo(s.path(), 300).await;
    // versions 1 and 2 of silver orders: the second and third days' runs (re-sends from day 2)
    let d = diff(
        &plan,
        &lake,
        "orders",
        &[],
        &Versions::Given {
            before: Some(1),
            after: Some(2),
        },
    )
    .await
    .unwrap();
    // the oracle: the same join written here, over deltalake's time travel
    let url = url::Url::from_directory_path(s.join("lake/silver/orders")).unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    for (name, v) in [("b", 1), ("a", 2)] {
        let t = deltalake::open_table_with_version(url.clone(), v)
            .await
            .unwrap();
        ctx.register_table(name, t.table_provider().await.unwrap())
            .unwrap();
    }
    let q = |sql: &str| {
        let ctx = ctx.clone();
        let sql = sql.to_string();
        async move {
            let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            count(scalar(&b))
        }
    };
    let status_changed = q("SELECT CAST(COUNT(*) AS VARCHAR) FROM b JOIN a ON b.order_id = a.order_id WHERE b.status <> a.status").await;
    let left =
        q("SELECT CAST(COUNT(*) AS VARCHAR) FROM b WHERE order_id NOT IN (SELECT order_id FROM a)")
            .await;
    assert!(
        status_changed > 0,
        "the demo re-sends orders with a newer status"
    );
    let status = d.columns.iter().find(|c| c.column == "status").unwrap();
    assert_eq!(
        status.matched - status.equal,
        status_changed,
        "{:#?}",
        d.lines()
    );
    assert_eq!(d.only_before, left);
    assert!(d.changed >= status_changed);
    assert!(
        d.sample_changed.iter().any(|r| r.contains("status: ")),
        "{:#?}",
        d.sample_changed
    );
}
