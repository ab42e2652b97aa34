//! End to end in a real pseudo-terminal: open the dashboard on the demo lake, go to the failed
//! partition, replay it, confirm, wait until it shows as ok, quit; then check from the lake
//! itself that the partition was rewritten and the accounting balances.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_a_failed_partition_from_the_dashboard() {
    let s = Scratch::new();
    let (_, lake, _) = demo(s.path(), 100).await;
    let day = karat::demo::BAD_DAY;
    // the on-call fix: accept "usd " by normalising
    let cfg = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("currency = { type = \"string\", nullable = false, one_of", "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"], one_of")).unwrap();

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
    cmd.args(["-c", cfg.to_str().unwrap()]);
    cmd.env("TERM", "xterm-256color");
    cmd.cwd(s.path());
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
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
    let screen = Screen { parser };
    let mut key = |k: &str| {
        writer.write_all(k.as_bytes()).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    };

    screen.wait_for("Breaches", 60);
    key("2");
    // the cursor starts on the most urgent cell: the failed orders partition
    screen.wait_for(&format!("silver orders {day}  ✗ failed"), 20);
    key("r");
    screen.wait_for("Confirm replay", 10);
    key("y");
    let done = screen.wait_for(&format!("karat replay orders --partition {day}: ok"), 120);
    assert!(
        done.contains(&format!("silver orders {day}  ◉ ok"))
            || done.contains(&format!("silver orders {day}  ● ok")),
        "{done}"
    );
    assert!(done.contains("✓ balanced"), "{done}");
    key("6");
    screen.wait_for("dashboard: $ karat replay orders --partition", 10);
    key("q");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "karat exited with {status:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "karat did not quit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

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
