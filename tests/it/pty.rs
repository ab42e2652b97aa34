//! End to end in a real pseudo-terminal: triage on a lake with hundreds of partitions (launch →
//! the failed partition → its offending values in at most three keys); and on the demo lake, go
//! to the failed partition, replay it, confirm, wait until it shows as ok, quit, then check from
//! the lake itself that the partition was rewritten and the accounting balances.

use karat::config::Zone;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use crate::util::{Scratch, counts, demo, sql};

struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
}

impl Screen {
    fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until a line of the screen satisfies `ok`.
    fn wait_for_line(&self, ok: impl Fn(&str) -> bool, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if t.lines().any(&ok) {
                return t;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for a line; screen:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, what: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if t.contains(what) {
                return t;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what:?}; screen:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The dashboard running in a real pseudo-terminal of 120 x 36.
struct Dashboard {
    screen: Screen,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Dashboard {
    fn start(config: &std::path::Path, cwd: &std::path::Path) -> Dashboard {
        let pty = native_pty_system();
        let pair = pty
            .openpty(PtySize {
                rows: 36,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_karat"));
        cmd.args(["-c", config.to_str().unwrap()]);
        cmd.env("TERM", "xterm-256color");
        cmd.cwd(cwd);
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(36, 120, 0)));
        let p2 = parser.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p2.lock().unwrap().process(&buf[..n]);
            }
        });
        Dashboard {
            screen: Screen { parser },
            writer,
            child,
        }
    }

    fn key(&mut self, k: &str) {
        self.writer.write_all(k.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }

    /// `q`, and karat exits 0.
    fn quit(mut self) {
        self.key("q");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "karat exited with {status:?}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "karat did not quit"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_a_failed_partition_from_the_dashboard() {
    let s = Scratch::new();
    let (_, lake, _) = demo(s.path(), 100).await;
    let day = karat::demo::BAD_DAY;
    // the on-call fix: accept "usd " by normalising
    let cfg = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("currency = { type = \"string\", nullable = false, one_of", "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"], one_of")).unwrap();

    let mut dash = Dashboard::start(&cfg, s.path());
    dash.screen.wait_for("Breaches", 60);
    dash.key("2");
    // the cursor starts on the most urgent cell: the failed orders partition
    dash.screen
        .wait_for(&format!("silver orders {day}  ✗ failed"), 20);
    dash.key("r");
    dash.screen.wait_for("Confirm replay", 10);
    dash.key("y");
    let done = dash
        .screen
        .wait_for(&format!("karat replay orders --partition {day}: ok"), 120);
    assert!(
        done.contains(&format!("silver orders {day}  ◉ ok"))
            || done.contains(&format!("silver orders {day}  ● ok")),
        "{done}"
    );
    assert!(done.contains("✓ balanced"), "{done}");
    // the message says what the replay changed (karat diff --replay), table by table
    assert!(
        done.contains(&format!(
            "karat replay orders --partition {day}: ok. changed silver/orders: "
        )),
        "{done}"
    );
    dash.key("6");
    // the action is listed from the ledger, with who and where it was taken
    dash.screen.wait_for_line(
        |l| l.contains("@") && l.contains(": $ karat replay orders --partition"),
        20,
    );
    dash.quit();

    // from the lake itself: the partition was rewritten by a replay and balances
    let steps = karat::ledger::Ledger::new(&lake).steps().await.unwrap();
    let latest = karat::ledger::status::latest_partition_states(&steps);
    let st = &latest[&(Zone::Silver, "orders".to_string(), day.to_string())];
    assert_eq!(
        (st.status.as_str(), st.trigger.as_str()),
        ("ok", "replay"),
        "{st:?}"
    );
    assert_eq!(st.rows_in, st.rows_out + st.dead + st.duplicates);
    let lake_dir = s.join("lake");
    let silver = counts(&sql(&lake_dir, "silver/orders", &format!("SELECT CAST(order_date AS VARCHAR), COUNT(*) FROM t WHERE order_date = DATE '{day}' GROUP BY 1")).await);
    let dead = counts(
        &sql(
            &lake_dir,
            "dead_letters/orders",
            &format!("SELECT partition, COUNT(*) FROM t WHERE partition = '{day}' GROUP BY 1"),
        )
        .await,
    );
    assert_eq!(silver.get(day).copied().unwrap_or(0), st.rows_out);
    assert_eq!(dead.get(day).copied().unwrap_or(0), st.dead);
    let gold = counts(&sql(&lake_dir, "gold/daily_revenue", &format!("SELECT CAST(order_date AS VARCHAR), COUNT(*) FROM t WHERE order_date = DATE '{day}' GROUP BY 1")).await);
    assert!(
        gold.get(day).copied().unwrap_or(0) > 0,
        "gold has the day now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_reaches_the_offending_values_in_three_keys() {
    let s = Scratch::new();
    // 240 daily files (2026-01-01 …), late rows and re-sends included
    let data = s.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(s.join("karat.toml"), karat::bench::BENCH_CONFIG).unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    for day in 0..240 {
        karat::bench::daily::write_day(&data, day, 50, &mut rng).unwrap();
    }
    // one day a source starts sending "usd ": most rows of that day break the contract
    let bad_day = "2026-06-01";
    let mut bad = String::new();
    for i in 0..200 {
        bad.push_str(&format!(
            "{{\"order_id\":\"late-{i}\",\"customer_id\":\"c-1\",\"amount\":\"12.50\",\"currency\":\"usd \",\"quantity\":1,\"status\":\"paid\",\"order_date\":\"{bad_day}\"}}\n"
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bad.as_bytes()).unwrap();
    std::fs::write(s.join("data/orders-usd.ndjson.gz"), gz.finish().unwrap()).unwrap();
    let cfg = s.join("karat.toml");
    let (plan, lake) = crate::util::open(&cfg).await;
    crate::util::run(&plan, &lake).await;
    let partitions = karat::silver::store::Store::open(&lake, plan.contracts["orders"].clone())
        .await
        .unwrap()
        .partitions()
        .await
        .unwrap();
    assert!(partitions.len() >= 200, "{} partitions", partitions.len());

    let mut dash = Dashboard::start(&cfg, s.path());
    dash.screen.wait_for("Breaches", 60);
    // 1: enter on the most urgent breach → the failed partition, its accounting beside it
    dash.key("\r");
    let text = dash
        .screen
        .wait_for(&format!("silver orders {bad_day}  ✗ failed"), 20);
    assert!(text.contains("rows in"), "the accounting is shown:\n{text}");
    // 2: enter → its dead letters by rule, with the offending values
    dash.key("\r");
    let text = dash.screen.wait_for("\"usd \" ×2", 20);
    assert!(text.contains("currency.one_of"), "{text}");
    // 3: enter → the rows of that rule with their provenance (file and line)
    dash.key("\r");
    dash.screen.wait_for("orders-usd.ndjson.gz", 20);
    dash.quit();
}
