//! The `karat` binary: exit codes 0 / 1 / 2, `--json` documents, and `init` producing a config
//! that runs as-is.

use std::process::Command;

use crate::util::Scratch;

fn karat(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_karat"))
        .args(args)
        .current_dir(dir)
        .env_remove("KARAT_CONFIG")
        .output()
        .expect("karat runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `karat ack bronze orders UNIT --reason REASON`.
fn ack(dir: &std::path::Path, unit: &str, reason: &str) -> (i32, String, String) {
    karat(dir, &["ack", "bronze", "orders", unit, "--reason", reason])
}

#[test]
fn init_then_run_then_a_failing_partition() {
    let s = Scratch::new();
    let (code, _, err) = karat(s.path(), &["init"]);
    assert_eq!(code, 0, "{err}");
    let (code, again, err) = karat(s.path(), &["init"]);
    assert_eq!(code, 2, "init refuses to overwrite: {again}{err}");

    let (code, out, err) = karat(s.path(), &["run", "--json"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["status"], "ok");
    let parts = doc["silver"][0]["partitions"].as_array().unwrap();
    let total: i64 = parts.iter().map(|p| p["rows_in"].as_i64().unwrap()).sum();
    let dups: i64 = parts
        .iter()
        .map(|p| p["duplicates"].as_i64().unwrap())
        .sum();
    assert_eq!((total, dups), (4, 1));

    // a new file where most rows break the contract: the partition fails its gate → exit 1
    std::fs::write(
        s.join("data/orders/bad.ndjson"),
        "{\"order_id\":\"o-9\",\"amount\":-1,\"currency\":\"USD\",\"quantity\":1,\"order_date\":\"2026-03-29\"}\n{\"order_id\":\"o-10\",\"amount\":1,\"currency\":\"USD\",\"quantity\":1,\"order_date\":\"2026-03-29\"}\n",
    )
    .unwrap();
    let (code, out, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("2026-03-29 [failed]") && out.contains("reject rate 50.0%"),
        "{out}"
    );

    let (code, out, _) = karat(s.path(), &["status", "--json"]);
    assert_eq!(code, 1, "status is unhealthy while a partition is failed");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let orders = doc["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders" && t["zone"] == "silver")
        .unwrap()
        .clone();
    assert_eq!(orders["failed"][0]["partition"], "2026-03-29");

    let (code, out, err) = karat(
        s.path(),
        &[
            "dead-letters",
            "orders",
            "--json",
            "--partition",
            "2026-03-29",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["reasons"][0], "amount: \"-1\" is below min 0");
    assert_eq!(rows[0]["line"], 1);
    assert!(rows[0]["file"].as_str().unwrap().ends_with("bad.ndjson"));
}

#[test]
fn config_errors_exit_2_with_position() {
    let s = Scratch::new();
    std::fs::write(
        s.join("karat.toml"),
        "[lake]\nurl = \"lake\"\nsurprise = 1\n",
    )
    .unwrap();
    let (code, _, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("karat.toml:3:1"), "{err}");
    let (code, _, err) = karat(s.path(), &["replay"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = karat(s.path(), &["no-such-command"]);
    assert_eq!(code, 2);
    let empty = Scratch::new();
    let (code, _, err) = karat(empty.path(), &["status"]);
    assert_eq!(code, 2);
    assert!(err.contains("karat init"), "{err}");
}

#[test]
fn escape_sequences_from_data_never_reach_the_terminal() {
    let s = Scratch::new();
    let (code, _, err) = karat(s.path(), &["init"]);
    assert_eq!(code, 0, "{err}");
    // a value that would retitle the terminal and clear it, and a non-JSON line with raw ESCs
    std::fs::write(
        s.join("data/orders/evil.ndjson"),
        "{\"order_id\":\"o-66\",\"amount\":1,\"currency\":\"\\u001b]0;pwned\\u0007\\u001b[2J\",\"quantity\":1,\"order_date\":\"2026-03-27\"}\n\u{1b}]0;pwned\u{7}\u{1b}[2J not json\n",
    )
    .unwrap();
    let mut saw_value = false;
    for args in [
        &["run"][..],
        &["status"],
        &["dead-letters", "orders"],
        &["verify"],
        &["replay", "orders", "--partition", "2026-03-27"],
    ] {
        let (_, out, err) = karat(s.path(), args);
        assert!(
            !out.contains('\u{1b}') && !err.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?} let an escape through:\n{out:?}\n{err:?}"
        );
        saw_value |= out.contains("\\u{1b}]0;pwned");
    }
    assert!(saw_value, "the value is shown, escaped");
}

#[test]
fn a_fixed_bronze_file_clears_and_a_removed_one_is_acknowledged() {
    use std::io::Write;
    let s = Scratch::new();
    let (code, _, err) = karat(s.path(), &["init"]);
    assert_eq!(code, 0, "{err}");
    let corrupt = [0x1f, 0x8b, 0x08, 0x00, 0x01];
    let a = s.join("data/orders/a.ndjson.gz");
    std::fs::write(&a, corrupt).unwrap();
    let (code, out, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 1, "a corrupt file fails its batch\n{out}{err}");
    assert_eq!(karat(s.path(), &["status"]).0, 1);
    // fixed in place: the same unit succeeds and its failure clears
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"{\"order_id\":\"o-5\",\"amount\":1,\"currency\":\"USD\",\"quantity\":1,\"order_date\":\"2026-03-27\"}\n")
        .unwrap();
    std::fs::write(&a, gz.finish().unwrap()).unwrap();
    let (code, out, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = karat(s.path(), &["status"]);
    assert_eq!(code, 0, "the fixed file cleared its failure: {out}");
    // another corrupt file is removed for good: failed until someone acknowledges it
    let b = s.join("data/orders/b.ndjson.gz");
    std::fs::write(&b, [0x1f, 0x8b, 0x08, 0x00, 0x02]).unwrap();
    assert_eq!(karat(s.path(), &["run"]).0, 1);
    std::fs::remove_file(&b).unwrap();
    karat(s.path(), &["run"]);
    let (code, out, _) = karat(s.path(), &["status"]);
    assert_eq!(code, 1, "{out}");
    let unit = b.to_string_lossy().to_string();
    let (code, _, err) = karat(
        s.path(),
        &["ack", "bronze", "orders", "nope", "--reason", "x"],
    );
    assert_eq!(code, 2, "only failed units: {err}");
    assert!(
        err.contains("b.ndjson.gz"),
        "the error lists what is failed: {err}"
    );
    let (code, out, err) = ack(s.path(), &unit, "sender will re-send it");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("acknowledged by") && out.contains("re-send"),
        "{out}"
    );
    let (code, out, _) = karat(s.path(), &["status"]);
    assert_eq!(code, 0, "acknowledged: {out}");
}

#[test]
fn a_quarantined_file_fails_every_run_until_its_bytes_change_or_it_is_acknowledged() {
    let s = Scratch::new();
    assert_eq!(karat(s.path(), &["init"]).0, 0);
    let c = s.join("data/orders/c.ndjson.gz");
    std::fs::write(&c, [0x1f, 0x8b, 0x08, 0x00, 0x03]).unwrap();
    let (code, out, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 1, "{out}{err}");
    // unchanged: not retried, but still a failure of the run, recorded once in the ledger
    let (code, out, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 1, "a quarantined file is still failed\n{out}{err}");
    assert!(out.contains("unchanged since it failed"), "{out}");
    let (code, out, _) = karat(s.path(), &["status"]);
    assert_eq!(code, 1, "{out}");
    let unit = c.to_string_lossy().to_string();
    let (code, out, err) = ack(s.path(), &unit, "known bad export");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = karat(s.path(), &["run"]);
    assert_eq!(
        code, 0,
        "acknowledged, the unchanged file no longer fails runs\n{out}{err}"
    );
    assert_eq!(karat(s.path(), &["status"]).0, 0);
    let lake = s.join("lake");
    let failed = crate::util::scalar(&tokio::runtime::Runtime::new().unwrap().block_on(
        crate::util::sql(
            &lake,
            "_karat/steps",
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE zone = 'bronze' AND status = 'failed'",
        ),
    ));
    assert_eq!(
        failed, "1",
        "the failure is recorded once, not once per run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_never_silently_capped() {
    let s = Scratch::new();
    crate::util::bench_rejecting_most(s.path(), 3_000, 3);
    karat(s.path(), &["run"]);
    let total: u64 = crate::util::scalar(
        &crate::util::sql(
            &s.join("lake"),
            "dead_letters/orders",
            "SELECT COUNT(*) FROM t",
        )
        .await,
    )
    .parse()
    .unwrap();
    assert!(total > 1_500, "{total}");
    let printed = |out: &str| out.lines().filter(|l| l.starts_with("    raw: ")).count() as u64;

    // no --limit: every row, printed a page at a time
    let (code, out, err) = karat(s.path(), &["dead-letters", "orders"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed(&out), total);
    assert!(
        out.contains(r#"currency.one_of  "USD" ×"#),
        "{}",
        &out[..400]
    );
    // --limit: exactly that many
    let (_, out, _) = karat(s.path(), &["dead-letters", "orders", "--limit", "5"]);
    assert_eq!(printed(&out), 5);
    // --export: every row, streamed to the file
    let (code, _, err) = karat(
        s.path(),
        &["dead-letters", "orders", "--export", "all.ndjson"],
    );
    assert_eq!(code, 0, "{err}");
    let file = std::fs::read_to_string(s.join("all.ndjson")).unwrap();
    assert_eq!(file.lines().count() as u64, total, "{err}");

    // the dashboard's export writes every row of the selected rule, not the loaded page
    let (plan, lake) = crate::util::open(&s.join("karat.toml")).await;
    let name = s.join("dash.ndjson");
    let u = karat::tui::engine::export_rows(
        &lake,
        "orders",
        None,
        Some("rule:currency.one_of".into()),
        name.to_str().unwrap(),
    )
    .await;
    assert!(matches!(u, karat::tui::engine::Update::Message(_)), "{u:?}");
    let rows = std::fs::read_to_string(&name).unwrap().lines().count() as u64;
    assert!(rows > 1_000 && rows <= total, "{rows} of {total}");
    drop(plan);
}

#[test]
fn a_replay_over_its_budget_needs_approval() {
    let s = Scratch::new();
    let (code, _, err) = karat(s.path(), &["init"]);
    assert_eq!(code, 0, "{err}");
    let cfg = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let budgeted = text.replacen("[defaults]\n", "[defaults]\nreplay_budget_rows = 1\n", 1);
    assert_ne!(budgeted, text, "the example has a [defaults] section");
    std::fs::write(&cfg, budgeted).unwrap();
    let (code, _, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = karat(s.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{out}");
    let day = "2026-03-27";
    let (code, _, err) = karat(s.path(), &["replay", "orders", "--partition", day]);
    assert_eq!(code, 2, "refused: {err}");
    assert!(
        err.contains("over [defaults] replay_budget_rows = 1") && err.contains("--approve"),
        "{err}"
    );
    let (code, _, err) = karat(
        s.path(),
        &["replay", "orders", "--partition", day, "--approve"],
    );
    assert_eq!(code, 0, "approved: {err}");
    let (code, out, _) = karat(s.path(), &["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0);
    assert_eq!(doc["last_run"]["trigger"], "replay");
}

#[test]
fn a_replay_names_a_day_as_people_write_it() {
    let s = Scratch::new();
    let (code, _, err) = karat(s.path(), &["init"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = karat(s.path(), &["run"]);
    assert_eq!(code, 0, "{err}");
    // unpadded: the partition 2026-03-27
    let (code, out, err) = karat(s.path(), &["replay", "orders", "--partition", "2026-3-27"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = karat(s.path(), &["replay", "orders", "--partition", "2026-3-32"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("table orders has no partition 2026-3-32"),
        "{err}"
    );
}
