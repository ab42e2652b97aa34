//! Alerts as a cron user gets them: plain `karat run` processes notify real HTTP receivers on
//! loopback — one notification per breach group, `firing` once, `resolved` after the fix and
//! the replay, `${ENV}` headers, a Slack-format receiver that fails twice before it accepts —
//! and every notification is in the ledger and on the Runs screen; an approved replay holds back
//! the alerts on what it rewrites while it runs (another process evaluating them meanwhile);
//! a row deleted behind karat's back makes `karat verify` page until a replay heals the lake.

use serde_json::Value;
use std::path::Path;

use crate::util::{Receiver, Scratch, finish, scalar, spawn_karat, sql};

fn karat(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    finish(spawn_karat(dir, args, &[("KARAT_TEST_TOKEN", "s3cret")]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_fires_once_per_group_and_resolves_after_the_replay() {
    let s = Scratch::new();
    let oncall = Receiver::start(0);
    let chat = Receiver::start(2);
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        r#"
[[alert]]
name = "oncall"
url = "http://127.0.0.1:{}/hook"
headers = {{ Authorization = "Bearer ${{KARAT_TEST_TOKEN}}" }}
min_severity = "error"

[[alert]]
name = "chat"
url = "http://127.0.0.1:{}/slack"
format = "slack"
"#,
        oncall.port, chat.port
    ));
    std::fs::write(&cfg, &text).unwrap();

    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        oncall.bodies().is_empty() && chat.bodies().is_empty(),
        "nothing is broken yet"
    );

    // a file whose date field has another name: its partition fails, gold is blocked
    std::fs::write(
        s.join("data/orders/renamed.ndjson"),
        "{\"order_id\":\"o-7\",\"amount\":5,\"currency\":\"USD\",\"quantity\":1,\"orderDate\":\"2026-03-27\"}\n",
    )
    .unwrap();
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(1), "{out}");
    let fired = oncall.bodies();
    assert_eq!(fired.len(), 1, "one error group for oncall: {fired:#?}");
    assert_eq!(fired[0]["status"], "firing");
    assert_eq!(fired[0]["severity"], "error");
    assert_eq!(fired[0]["table"], "orders");
    assert_eq!(fired[0]["zone"], "silver");
    assert_eq!(
        fired[0]["runbook"], "runbooks/orders.md#a-date-field-is-missing",
        "the rule's runbook from `karat init`'s config"
    );
    assert!(
        s.join("runbooks/orders.md").exists(),
        "karat init wrote the runbook"
    );
    let headers = oncall.seen.lock().unwrap()[0].0.clone();
    assert!(headers.contains("Bearer s3cret"), "{headers}");
    // chat gets the same group in Slack's format, accepted at the third attempt after two 500s
    let chat_seen = chat.bodies();
    let texts: Vec<&str> = chat_seen
        .iter()
        .filter_map(|b| b["text"].as_str())
        .filter(|t| !t.contains("schema drift absorbed"))
        .collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    // the renamed field is drift bronze absorbed: a ticket for chat, no page for oncall
    assert!(
        chat_seen.iter().any(|b| b["text"]
            .as_str()
            .is_some_and(|t| t.contains("bronze orders: schema drift absorbed"))),
        "{chat_seen:#?}"
    );
    assert!(
        texts
            .iter()
            .all(|t| t.contains("[FIRING]") && t.contains("silver orders")),
        "{texts:#?}"
    );

    // nothing changed: nothing new is sent
    let before = (oncall.bodies().len(), chat.bodies().len());
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(0), "a run with nothing new: {out}");
    assert_eq!((oncall.bodies().len(), chat.bodies().len()), before);

    // the fix and the replay: the breach resolves
    let (_, status) = karat(s.path(), &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).expect("status json");
    let partition = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders" && t["zone"] == "silver")
        .and_then(|t| t["failed"][0]["partition"].as_str())
        .expect("the failed partition")
        .to_string();
    let fixed = text.replace(
        "order_date = { type = \"date\", nullable = false }",
        "order_date = { type = \"date\", nullable = false, source_field = \"orderDate\" }",
    );
    assert_ne!(fixed, text);
    std::fs::write(&cfg, fixed).unwrap();
    let (code, out) = karat(s.path(), &["replay", "orders", "--partition", &partition]);
    assert_eq!(code, Some(0), "{out}");
    let oncall_all = oncall.bodies();
    assert_eq!(oncall_all.len(), 2, "{oncall_all:#?}");
    assert_eq!(oncall_all[1]["status"], "resolved");
    assert_eq!(oncall_all[1]["key"], oncall_all[0]["key"]);

    // the ledger holds every notification: chat's first one took three attempts
    let lake = s.join("lake");
    let attempts = scalar(
        &sql(
            &lake,
            "_karat/alerts",
            "SELECT CAST(MAX(attempts) AS VARCHAR) FROM t WHERE alert = 'chat'",
        )
        .await,
    );
    assert_eq!(attempts, "3");
    let undelivered = scalar(
        &sql(
            &lake,
            "_karat/alerts",
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE NOT delivered",
        )
        .await,
    );
    assert_eq!(undelivered, "0");

    // and the Runs screen lists them
    let (plan, lake) = crate::util::open(&cfg).await;
    let app = karat::tui::headless_state(
        &plan,
        &lake,
        karat::tui::theme::Theme::default_dark(),
        karat::tui::action::View::Runs,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let alerts: Vec<_> = app
        .timeline()
        .into_iter()
        .filter(|e| e.kind == "alert")
        .collect();
    assert!(
        alerts
            .iter()
            .any(|e| e.text.contains("resolved sent to oncall")),
        "{alerts:#?}"
    );
}

/// A project whose silver orders promise 99% schema compliance over 7 days, with two alerts:
/// `oncall` takes pages only, `tickets` everything; `history` is written to its ledger as the
/// steps of past runs.
async fn slo_project(
    dir: &Path,
    pages: u16,
    tickets: u16,
    history: &[karat::ledger::StepRecord],
) -> (karat::pipeline::Plan, karat::lake::Lake) {
    let cfg = karat::config::example::write_example(dir, false).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "# A gold table: SQL over silver/gold tables by name.",
        "[[table.slo]]\nsli = \"schema_compliance\"\nobjective = 99.0\nwindow = \"7d\"\n\n\
         # A gold table: SQL over silver/gold tables by name.",
        1,
    );
    let text = format!(
        "{text}\n[[alert]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:{pages}/page\"\nmin_severity = \"page\"\n\n\
         [[alert]]\nname = \"tickets\"\nurl = \"http://127.0.0.1:{tickets}/ticket\"\nmin_severity = \"ticket\"\n"
    );
    std::fs::write(&cfg, text).unwrap();
    let (plan, lake) = crate::util::open(&cfg).await;
    karat::ledger::Ledger::new(&lake)
        .append_steps(history)
        .await
        .unwrap();
    (plan, lake)
}

/// A silver orders step `minutes_ago` with `dead` of its 1,000 records rejected (the SLO counts
/// records, whatever the gate decided).
fn orders_step(minutes_ago: i64, dead: i64) -> karat::ledger::StepRecord {
    let at = (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    karat::ledger::StepRecord {
        run_id: format!("r{minutes_ago}"),
        trigger: karat::ledger::Trigger::Schedule,
        zone: karat::config::Zone::Silver,
        table: "orders".into(),
        partition: "2026-03-27".into(),
        status: karat::silver::PartitionStatus::Ok,
        started_at: at.clone(),
        finished_at: at,
        rows_in: 1000,
        rows_out: 1000 - dead,
        dead,
        duplicates: 0,
        messages: None,
        dead_by_rule: None,
        schema_fingerprint: None,
        delta_version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_burn_pages_and_a_slow_burn_opens_a_ticket() {
    let slo = |b: &Value| {
        b["key"]
            .as_str()
            .is_some_and(|k| k.contains("/slo/schema_compliance"))
    };
    // fast: a clean week, then 20% rejects in the last half hour (20x the allowed 1%)
    let s = Scratch::new();
    let (pages, tickets) = (Receiver::start(0), Receiver::start(0));
    let mut history: Vec<_> = (2..7 * 24).map(|h| orders_step(h * 60, 0)).collect();
    history.push(orders_step(30, 200));
    let (plan, lake) = slo_project(s.path(), pages.port, tickets.port, &history).await;
    karat::alert::notify(&plan, &lake, None).await.unwrap();
    let paged: Vec<Value> = pages.bodies().into_iter().filter(|b| slo(b)).collect();
    assert_eq!(paged.len(), 1, "{:#?}", pages.bodies());
    assert_eq!(paged[0]["route"], "page");
    assert!(
        paged[0]["summary"]
            .as_str()
            .unwrap()
            .contains("over the last hour"),
        "{paged:#?}"
    );
    assert_eq!(tickets.bodies().iter().filter(|b| slo(b)).count(), 1);

    // slow: 1.5% rejects every hour, over the objective but never 2x in an hour
    let s = Scratch::new();
    let (pages, tickets) = (Receiver::start(0), Receiver::start(0));
    let history: Vec<_> = (0..7 * 24).map(|h| orders_step(h * 60 + 5, 15)).collect();
    let (plan, lake) = slo_project(s.path(), pages.port, tickets.port, &history).await;
    karat::alert::notify(&plan, &lake, None).await.unwrap();
    assert_eq!(
        pages.bodies().iter().filter(|b| slo(b)).count(),
        0,
        "{:#?}",
        pages.bodies()
    );
    let ticketed: Vec<Value> = tickets.bodies().into_iter().filter(|b| slo(b)).collect();
    assert_eq!(ticketed.len(), 1, "{:#?}", tickets.bodies());
    assert_eq!(ticketed[0]["route"], "ticket");
    assert_eq!(ticketed[0]["severity"], "warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_replay_holds_back_alerts_on_what_it_rewrites_until_it_ends() {
    let s = Scratch::new();
    let oncall = Receiver::start(0);
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[defaults]",
        "[defaults]\nreplay_budget_rows = 1",
        1,
    );
    let text = format!(
        "{text}\n[[alert]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:{}/hook\"\nrepeat = \"1s\"\nmin_severity = \"page\"\n",
        oncall.port
    );
    std::fs::write(&cfg, &text).unwrap();
    std::fs::write(
        s.join("data/orders/renamed.ndjson"),
        "{\"order_id\":\"o-7\",\"amount\":5,\"currency\":\"USD\",\"quantity\":1,\"orderDate\":\"2026-03-27\"}\n\
         {\"order_id\":\"o-8\",\"amount\":6,\"currency\":\"USD\",\"quantity\":1,\"orderDate\":\"2026-03-27\"}\n",
    )
    .unwrap();
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(1), "{out}");
    let fired = oncall.bodies().len();
    assert!(fired >= 1, "the failed partition pages: {out}");

    // the fix; the replay is over budget, so refused without --approve
    let fixed = text.replace(
        "order_date = { type = \"date\", nullable = false }",
        "order_date = { type = \"date\", nullable = false, source_field = \"orderDate\" }",
    );
    std::fs::write(&cfg, &fixed).unwrap();
    let (code, out) = karat(s.path(), &["replay", "--failed"]);
    assert_eq!(code, Some(2), "over budget without --approve: {out}");
    assert!(out.contains("replay_budget_rows = 1"), "{out}");

    // approved: it pauses right after recording its approval, holding the writer lease
    let replay = spawn_karat(
        s.path(),
        &["replay", "--failed", "--approve"],
        &[("FAILPOINTS", "ledger.approvals=sleep(15000)")],
    );
    let approvals = s.join("lake/_karat/approvals/_delta_log");
    let t0 = std::time::Instant::now();
    while !approvals.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the approval was never recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // meanwhile cron evaluates the alerts: the repeat is due, but the breach is held back
    let (code, out) = karat(s.path(), &["notify"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("held back from oncall"), "{out}");
    assert!(out.contains("approved by"), "{out}");
    assert_eq!(
        oncall.bodies().len(),
        fired,
        "nothing sent during the replay"
    );
    let (code, out) = karat(s.path(), &["notify"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("no notification due"),
        "said once per replay: {out}"
    );

    // the replay ends: the breach is gone, so it resolves (and nothing is held any more)
    let (code, out) = finish(replay);
    assert_eq!(code, Some(0), "{out}");
    let all = oncall.bodies();
    assert_eq!(all.last().unwrap()["status"], "resolved", "{all:#?}");
    assert!(all.iter().all(|b| b["status"] != "suppressed"));
    let held = scalar(
        &sql(
            &s.join("lake"),
            "_karat/alerts",
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE status = 'suppressed' AND NOT delivered",
        )
        .await,
    );
    assert_eq!(held, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_verify_pages_as_rows_lost_until_a_replay_heals_the_lake() {
    let s = Scratch::new();
    let oncall = Receiver::start(0);
    crate::util::init(s.path(), |text| {
        format!(
            "{text}\n[[alert]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:{}/hook\"\nmin_severity = \"page\"\n",
            oncall.port
        )
    });
    let (code, out) = karat(s.path(), &["run"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = karat(s.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(oncall.bodies().is_empty());

    // a row deleted behind karat's back: verify fails and pages
    let lake_dir = s.join("lake");
    let url = url::Url::from_directory_path(lake_dir.join("silver/orders")).unwrap();
    let victim = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT order_id FROM t ORDER BY order_id LIMIT 1",
        )
        .await,
    );
    deltalake::open_table(url)
        .await
        .unwrap()
        .delete()
        .with_predicate(format!("order_id = '{victim}'"))
        .await
        .unwrap();
    let (code, out) = karat(s.path(), &["verify"]);
    assert_eq!(code, Some(1), "{out}");
    let paged = oncall.bodies();
    assert_eq!(paged.len(), 1, "{paged:#?}");
    assert_eq!(paged[0]["key"], "lake/verify");
    assert_eq!(paged[0]["route"], "page");
    assert!(
        paged[0]["summary"]
            .as_str()
            .unwrap()
            .contains("rows lost or counted twice"),
        "{paged:#?}"
    );

    // a replay of every partition rewrites the row from bronze; the next verify resolves it
    let (code, out) = karat(
        s.path(),
        &["replay", "orders", "--from", "0000", "--to", "9999"],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = karat(s.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}");
    let all = oncall.bodies();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(
        (all[1]["key"].as_str(), all[1]["status"].as_str()),
        (Some("lake/verify"), Some("resolved"))
    );
}
