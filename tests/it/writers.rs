//! Writers, as real processes: two `karat run`s and a racing `karat replay` on one lake leave
//! every key exactly once and the accounting balanced; a live lease held by someone else stops
//! a writer with exit code 2 naming the holder; an expired one (a holder killed) is taken over.

use std::process::Child;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::util::{self, Scratch, scalar, spawn_karat, sql};

fn karat(dir: &std::path::Path, args: &[&str]) -> Child {
    spawn_karat(dir, args, &[])
}

fn finish(c: Child) -> (i32, String) {
    let (code, out) = util::finish(c);
    (code.unwrap_or(-1), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_and_a_racing_replay_keep_every_row_once() {
    for trial in 0..2 {
        let s = Scratch::new();
        karat::bench::generate(s.path(), 30_000, 3).unwrap();
        let (code, out) = finish(karat(s.path(), &["run"]));
        assert_eq!(code, 0, "first run: {out}");
        // more files arrive; two runs and a replay race for the lake
        let data = s.join("data");
        let mut rng = StdRng::seed_from_u64(trial);
        for day in [4, 5] {
            karat::bench::daily::write_day(&data, day, 10_000, &mut rng).unwrap();
        }
        let a = karat(s.path(), &["run", "--wait", "5m"]);
        let b = karat(s.path(), &["run", "--wait", "5m"]);
        let c = karat(
            s.path(),
            &[
                "replay",
                "orders",
                "--partition",
                "2026-03-01",
                "--wait",
                "5m",
            ],
        );
        for (name, child) in [("run a", a), ("run b", b), ("replay", c)] {
            let (code, out) = finish(child);
            assert!(
                code == 0 || code == 1,
                "trial {trial} {name}: exit {code}\n{out}"
            );
            assert!(
                !out.contains("does not balance"),
                "trial {trial} {name}: {out}"
            );
        }
        let (code, out) = finish(karat(s.path(), &["run"]));
        assert!(code == 0 || code == 1, "third run: {out}");
        let (code, out) = finish(karat(s.path(), &["verify"]));
        assert_eq!(code, 0, "trial {trial}: {out}");
        let lake_dir = s.join("lake");
        let dup = scalar(
            &sql(
                &lake_dir,
                "silver/orders",
                "SELECT CAST(COUNT(*) - COUNT(DISTINCT order_id) AS VARCHAR) FROM t",
            )
            .await,
        );
        assert_eq!(dup, "0", "trial {trial}: a key twice");
        assert!(
            !lake_dir.join("_karat/lease").exists(),
            "the lease is given back"
        );
    }
}

#[test]
fn a_live_lease_stops_a_writer_and_an_expired_one_is_taken_over() {
    let s = Scratch::new();
    karat::bench::generate(s.path(), 2_000, 1).unwrap();
    let lease = s.join("lake/_karat/lease");
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    let held = |expires: &str| {
        format!(
            r#"{{"id":"x","host":"other-host","pid":4242,"command":"karat run","acquired_at":"2026-11-22T10:00:00.000Z","expires_at":"{expires}"}}"#
        )
    };
    std::fs::write(&lease, held("2999-01-01T00:00:00.000Z")).unwrap();
    let (code, out) = finish(karat(s.path(), &["run"]));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("is being written by karat run (pid 4242 on other-host)"),
        "{out}"
    );
    assert!(!s.join("lake/silver").exists(), "nothing was written");
    // the holder died long ago: its lease expired
    std::fs::write(&lease, held("2020-01-01T00:00:00.000Z")).unwrap();
    let (code, out) = finish(karat(s.path(), &["run"]));
    assert!(code == 0 || code == 1, "{out}");
    assert!(s.join("lake/silver/orders").exists(), "{out}");
    assert!(!lease.exists(), "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_writers_taking_over_one_dead_lease_still_write_one_at_a_time() {
    let s = Scratch::new();
    karat::bench::generate(s.path(), 20_000, 4).unwrap();
    let lake_dir = s.join("lake");
    std::fs::create_dir_all(lake_dir.join("_karat")).unwrap();
    std::fs::write(
        lake_dir.join("_karat/lease"),
        r#"{"id":"dead","host":"other-host","pid":4242,"command":"karat run","acquired_at":"2020-01-01T00:00:00.000Z","expires_at":"2020-01-01T00:01:00.000Z"}"#,
    )
    .unwrap();
    let runs: Vec<Child> = (0..3)
        .map(|_| karat(s.path(), &["run", "--wait", "5m"]))
        .collect();
    for (i, child) in runs.into_iter().enumerate() {
        let (code, out) = finish(child);
        assert!(code == 0 || code == 1, "run {i}: exit {code}\n{out}");
    }
    let (code, out) = finish(karat(s.path(), &["verify"]));
    assert_eq!(code, 0, "{out}");
    let dup = scalar(
        &sql(
            &lake_dir,
            "silver/orders",
            "SELECT CAST(COUNT(*) - COUNT(DISTINCT order_id) AS VARCHAR) FROM t",
        )
        .await,
    );
    assert_eq!(dup, "0", "a key twice");
    let markers = std::fs::read_dir(lake_dir.join("_karat/lease.taken"))
        .unwrap()
        .count();
    assert_eq!(markers, 1, "one process cleared the dead lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_who_holds_the_lease() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let s = Scratch::new();
    let cfg = karat::config::example::write_example(s.path(), false).unwrap();
    let (plan, lake) = crate::util::open(&cfg).await;
    crate::util::run(&plan, &lake).await;
    std::fs::write(
        s.join("lake/_karat/lease"),
        r#"{"id":"x","host":"other-host","pid":4242,"command":"karat replay orders","acquired_at":"2026-11-22T10:00:00.000Z","expires_at":"2999-01-01T00:00:00.000Z"}"#,
    )
    .unwrap();
    let app = karat::tui::headless_state(
        &plan,
        &lake,
        karat::tui::theme::Theme::default_dark(),
        karat::tui::action::View::Overview,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let mut term = Terminal::new(TestBackend::new(200, 10)).unwrap();
    term.draw(|f| karat::tui::render::draw(f, &app)).unwrap();
    let buf = term.backend().buffer().clone();
    let header: String = (0..200)
        .map(|x| buf.cell((x, 0)).unwrap().symbol().to_string())
        .collect();
    assert!(
        header.contains("lake written by karat replay orders (pid 4242 on other-host)"),
        "{header}"
    );
}
