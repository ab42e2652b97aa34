//! Every dashboard view rendered from a real demo lake into ratatui's TestBackend and compared
//! with an insta snapshot (times, run ids and temp paths are redacted), plus the small-terminal
//! and untrusted-data cases.

use chrono::{DateTime, Utc};
use karat::tui::action::View;
use karat::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::OnceCell;

use crate::util::{Scratch, demo};

struct Fixture {
    _dir: Scratch,
    plan: karat::pipeline::Plan,
    lake: karat::lake::Lake,
    now: DateTime<Utc>,
}

static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();

async fn fixture() -> &'static Fixture {
    FIXTURE
        .get_or_init(|| async {
            let dir = Scratch::new();
            let (plan, lake, _) = demo(dir.path(), 120).await;
            // a fixed clock one hour after the last run: ages are stable
            let steps = karat::ledger::Ledger::new(&lake).steps().await.unwrap();
            let last = steps.iter().map(|s| s.finished_at.clone()).max().unwrap();
            let now = DateTime::parse_from_rfc3339(&last)
                .unwrap()
                .with_timezone(&Utc)
                + chrono::Duration::hours(1);
            Fixture {
                _dir: dir,
                plan,
                lake,
                now,
            }
        })
        .await
}

/// The dashboard on the Partitions view of the fixture, its cursor on the failed cell.
async fn partitions_app(f: &Fixture) -> karat::tui::state::App {
    karat::tui::headless_state(
        &f.plan,
        &f.lake,
        Theme::default_dark(),
        View::Partitions,
        f.now,
    )
    .await
    .unwrap()
}

fn screen(app: &karat::tui::state::App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| karat::tui::render::draw(f, app)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf.cell((x, y)).unwrap().symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00| UTC)?…?",
            "[time]",
        ),
        (r"\b\d{2}-\d{2} \d{2}:\d{2}:\d{2}\b", "[time]"),
        (r"\b01[0-9a-f]{6}-[0-9a-f…-]+", "[run]"),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[dir]"),
        (r"b[0-9a-f]{20}", "[batch]"),
        (r"\b[0-9a-f]{12}\b", "[fp]"),
        // the demo's events are of March 2026: their age depends on the day the test runs
        (r"event lag \d+[smhd]", "event lag [age]"),
        (r"\(lag \d+[smhd]\)", "(lag [age])"),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

async fn snap(view: View, name: &str) {
    snap_after(view, &[], name).await;
}

/// The snapshot of `view` after `keys`.
async fn snap_after(view: View, keys: &[karat::tui::action::Action], name: &str) {
    let f = fixture().await;
    let mut app = karat::tui::headless_state(&f.plan, &f.lake, Theme::default_dark(), view, f.now)
        .await
        .unwrap();
    for k in keys {
        app.handle(*k);
    }
    let text = screen(&app, 120, 36);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    // the scratch folder, wherever the temp dir is
    settings.add_filter(&regex_escape(&f._dir.path().display().to_string()), "[dir]");
    for (re, with) in filters() {
        settings.add_filter(re, with);
    }
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_screen() {
    snap(View::Overview, "overview").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_screen() {
    snap(View::Partitions, "partitions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_dense_screen() {
    use karat::tui::action::Action;
    snap_after(View::Partitions, &[Action::ToggleDense], "partitions_dense").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_screen() {
    snap(View::DeadLetters, "dead_letters").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_screen() {
    snap(View::Lineage, "lineage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_screen() {
    snap(View::Schema, "schema").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_screen() {
    snap(View::Runs, "runs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_fits_80x24_and_help_lists_keys() {
    let f = fixture().await;
    for v in View::ALL {
        let mut app =
            karat::tui::headless_state(&f.plan, &f.lake, Theme::load("light").unwrap(), v, f.now)
                .await
                .unwrap();
        let text = screen(&app, 80, 24);
        assert!(
            text.lines().next().unwrap().contains("karat"),
            "{v:?}:\n{text}"
        );
        assert!(text.contains(" q quit"), "{v:?} bottom bar:\n{text}");
        app.handle(karat::tui::action::Action::Help);
        let help = screen(&app, 80, 24);
        assert!(
            help.contains("Keys:") && help.contains("quit"),
            "{v:?}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_partition_is_under_the_cursor_and_replay_asks_first() {
    let f = fixture().await;
    let mut app = partitions_app(f).await;
    let text = screen(&app, 120, 36);
    assert!(
        text.contains(&format!("silver orders {}  ✗ failed", karat::demo::BAD_DAY)),
        "{text}"
    );
    app.handle(karat::tui::action::Action::Replay);
    let text = screen(&app, 120, 36);
    assert!(
        text.contains("Confirm replay") && text.contains("computing what it would rewrite"),
        "{text}"
    );
    let requests = app.take_requests();
    assert!(
        requests
            .iter()
            .all(|r| !matches!(r, karat::tui::action::Request::Replay(..))),
        "nothing runs before confirmation"
    );
    // the engine answers with the pipeline's preview (what `karat replay --dry-run` prints)
    for r in requests {
        if let karat::tui::action::Request::PreviewReplay(targets) = r {
            app.apply(karat::tui::engine::preview_replay(&f.plan, &f.lake, &targets).await);
        }
    }
    let text = screen(&app, 120, 36);
    assert!(
        text.contains("silver orders: ")
            && text.contains("gold daily_revenue: ")
            && text.contains("revenue_by_country: the whole table"),
        "{text}"
    );
    app.handle(karat::tui::action::Action::Confirm);
    let reqs = app.take_requests();
    assert!(reqs.iter().any(|r| matches!(r, karat::tui::action::Request::Replay(karat::pipeline::ReplayTarget::Partitions { table, partitions }, None) if table == "orders" && partitions == &vec![karat::demo::BAD_DAY.to_string()])), "{reqs:?}");
    assert!(screen(&app, 120, 36).contains("◌"), "cells show as running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_data_are_shown_escaped() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("in")).unwrap();
    std::fs::write(
        s.join("karat.toml"),
        "[lake]\nurl = \"lake\"\n[[source]]\nname = \"ev\"\nkind = \"files\"\npath = \"in/*.ndjson\"\n[[table]]\nname = \"ev\"\nzone = \"silver\"\nfrom = \"ev\"\nmax_reject_rate = 1.0\n[table.columns]\nk = { type = \"string\", one_of = [\"a\"] }\n",
    )
    .unwrap();
    std::fs::write(
        s.join("in/x.ndjson"),
        "{\"k\":\"\\u001b[2J\\u001b]0;pwned\\u0007evil\"}\n",
    )
    .unwrap();
    let (plan, lake) = crate::util::open(&s.join("karat.toml")).await;
    crate::util::run(&plan, &lake).await;
    let mut app = karat::tui::headless_state(
        &plan,
        &lake,
        Theme::default_dark(),
        View::DeadLetters,
        Utc::now(),
    )
    .await
    .unwrap();
    app.handle(karat::tui::action::Action::Open);
    let text = screen(&app, 120, 36);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "raw control characters reached the screen"
    );
    assert!(text.contains("\\u{1b}[2J"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_dashboard_shows_and_runs_nothing_that_writes() {
    use karat::tui::action::{Action, Request};
    let f = fixture().await;
    let mut app = partitions_app(f).await;
    app.read_only = true;
    let text = screen(&app, 160, 36);
    assert!(text.contains("read-only"), "{text}");
    assert!(!text.contains("r replay"), "{text}");
    for a in [Action::Replay, Action::ReplayFailed, Action::RunNow] {
        app.handle(a);
        assert!(
            matches!(app.mode, karat::tui::state::Mode::Normal),
            "{a:?} asks nothing"
        );
    }
    app.handle(Action::Prompt);
    for c in "run".chars() {
        karat::tui::on_key(
            &mut app,
            ratatui::crossterm::event::KeyEvent::new(
                ratatui::crossterm::event::KeyCode::Char(c),
                ratatui::crossterm::event::KeyModifiers::NONE,
            ),
        );
    }
    karat::tui::on_key(
        &mut app,
        ratatui::crossterm::event::KeyEvent::new(
            ratatui::crossterm::event::KeyCode::Enter,
            ratatui::crossterm::event::KeyModifiers::NONE,
        ),
    );
    let reqs = app.take_requests();
    assert!(
        !reqs
            .iter()
            .any(|r| matches!(r, Request::Run(_) | Request::Replay(..))),
        "{reqs:?}"
    );
    assert!(screen(&app, 160, 36).contains("read-only dashboard"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_on_a_failed_cell_shows_that_partitions_dead_letters() {
    use karat::tui::action::Action;
    let f = fixture().await;
    let mut app = partitions_app(f).await;
    app.handle(Action::Open);
    for _ in 0..2 {
        for r in app.take_requests() {
            if let Some(u) = karat::tui::engine::serve_read(&f.lake, r).await {
                app.apply(u.unwrap());
            }
        }
    }
    let text = screen(&app, 120, 36);
    assert!(!app.dead.rows.is_empty(), "the failed cell's rows:\n{text}");
    assert!(
        app.dead
            .rows
            .iter()
            .all(|r| r.partition == karat::demo::BAD_DAY),
        "only that partition's rows"
    );
    assert!(
        text.contains(&format!("rows of {}, every rule", karat::demo::BAD_DAY)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "orders {}: dead letters by rule",
            karat::demo::BAD_DAY
        )),
        "{text}"
    );
    // esc twice: back to the reasons, then out of the partition to the whole table
    app.handle(Action::Back);
    app.handle(Action::Back);
    assert_eq!(app.dead.partition, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_failing_for_one_cause_are_one_breach_line() {
    use karat::tui::action::Action;
    let dir = Scratch::new();
    crate::util::bench_rejecting_most(dir.path(), 4_000, 40);
    let (plan, lake) = crate::util::open(&dir.join("karat.toml")).await;
    crate::util::run(&plan, &lake).await;
    let mut app = karat::tui::headless_state(
        &plan,
        &lake,
        Theme::default_dark(),
        View::Overview,
        Utc::now(),
    )
    .await
    .unwrap();
    let text = screen(&app, 120, 36);
    let silver = app
        .breaches
        .iter()
        .find(|g| g.table() == "orders")
        .expect("a silver group");
    assert!(silver.members.len() >= 25, "{text}");
    let gold = app.breaches.iter().find(|g| g.table() == "daily_revenue");
    assert!(gold.is_some_and(|g| g.members.len() >= 25), "{text}");
    assert!(app.breaches.len() <= 3, "one line per cause:\n{text}");
    assert!(
        text.contains("silver orders: ") && text.contains("partitions failed — reject rate"),
        "{text}"
    );
    assert!(
        text.contains("gold daily_revenue: ") && text.contains("partitions blocked"),
        "{text}"
    );
    // enter: the partitions screen, on the newest failed day
    let newest = silver.newest().unwrap().partition.clone();
    app.handle(Action::Open);
    assert_eq!(app.view, View::Partitions);
    let (row, col) = app.cell;
    assert_eq!(app.matrix.rows[row].1, "orders");
    assert_eq!(app.matrix.cols[col], newest);
    // n / N: from failed cell to failed (or blocked) cell, and back
    let broken = |app: &karat::tui::state::App| {
        let cell = &app.matrix.cells[&app.cell];
        matches!(
            cell.state,
            karat::tui::state::CellState::Failed | karat::tui::state::CellState::Blocked
        )
    };
    // z: the dense view shows every partition with the failed ones counted
    app.handle(Action::ToggleDense);
    let text = screen(&app, 120, 36);
    assert!(
        text.contains(&format!("({} partitions; ", app.matrix.cols.len()))
            && !text.contains("; 0 failed"),
        "{text}"
    );
    let start = app.cell;
    app.handle(Action::NextMatch);
    assert!(app.cell != start && broken(&app), "{:?}", app.cell);
    app.handle(Action::PrevMatch);
    assert_eq!(app.cell, start);
    // back, expand: every failed day is listed under its group
    app.handle(Action::Show(View::Overview));
    app.handle(Action::Top);
    app.handle(Action::Right);
    let items = app.overview.items(&app.breaches, &[]).len();
    assert_eq!(items, app.breaches.len() + app.breaches[0].members.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u_on_a_replay_in_runs_asks_then_requests_its_restore() {
    use karat::tui::action::{Action, Request};
    let dir = Scratch::new();
    let (plan, lake, _) = demo(dir.path(), 60).await;
    let target = karat::pipeline::ReplayTarget::Partitions {
        table: "orders".into(),
        partitions: vec![karat::demo::BAD_DAY.into()],
    };
    let replay = karat::pipeline::replay(&plan, &lake, target, &karat::events::Events::none())
        .await
        .unwrap();
    let mut app =
        karat::tui::headless_state(&plan, &lake, Theme::default_dark(), View::Runs, Utc::now())
            .await
            .unwrap();
    // on a line that is no replay, u explains itself
    let timeline = app.timeline();
    let other = timeline
        .iter()
        .position(|e| e.replay_run.is_none())
        .unwrap();
    app.runs_sel = other;
    app.handle(Action::Restore);
    assert!(
        app.message
            .as_ref()
            .is_some_and(|m| m.0.contains("select a replay"))
    );
    // on the replay: a confirmation, then the request
    let at = timeline
        .iter()
        .position(|e| e.replay_run.as_deref() == Some(replay.run_id.as_str()))
        .expect("the replay is listed");
    app.runs_sel = at;
    app.handle(Action::Restore);
    let text = screen(&app, 120, 36);
    assert!(
        text.contains("Confirm restore") && text.contains(&replay.run_id),
        "{text}"
    );
    let asked = app.take_requests();
    assert!(asked.iter().all(|r| !matches!(r, Request::Restore(_))));
    // what the replay changed, from the engine's `karat diff --replay`
    for r in asked {
        if let Request::DiffReplay(id) = r {
            app.apply(karat::tui::engine::diff_replay(&plan, &lake, &id).await);
        }
    }
    let text = screen(&app, 120, 36);
    assert!(
        text.contains("What it changed")
            && text.contains("silver/orders: ")
            && text.contains("gold/daily_revenue: "),
        "{text}"
    );
    app.handle(Action::Confirm);
    let reqs = app.take_requests();
    assert!(
        reqs.iter()
            .any(|r| matches!(r, Request::Restore(id) if *id == replay.run_id)),
        "{reqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_says_why_gold_is_stale() {
    let f = fixture().await;
    let mut app = karat::tui::headless_state(
        &f.plan,
        &f.lake,
        Theme::default_dark(),
        View::Lineage,
        f.now,
    )
    .await
    .unwrap();
    app.command("table daily_revenue");
    let why = app.why_stale();
    let day = karat::demo::BAD_DAY;
    assert!(
        why[0].starts_with(&format!(
            "⊘ gold daily_revenue: newest partition {day} blocked"
        )),
        "{why:?}"
    );
    assert!(
        why.iter().any(
            |l| l.contains(&format!("✗ silver orders: newest partition {day} failed"))
                && l.ends_with("← the cause")
        ),
        "{why:?}"
    );
    let text = screen(&app, 120, 36);
    assert!(text.contains("why it is stale"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_filter_shows_only_partitions_in_its_class() {
    use karat::tui::action::Action;
    use karat::tui::state::{CellState, StatusFilter};
    let f = fixture().await;
    let mut app = partitions_app(f).await;
    let all = app.matrix.cols.len();
    // the oracle: columns with a cell in the class, from the matrix cells themselves
    let with = |app: &karat::tui::state::App, states: &[CellState]| -> Vec<usize> {
        (0..app.matrix.cols.len())
            .filter(|c| {
                app.matrix
                    .cells
                    .iter()
                    .any(|((_, cc), cell)| cc == c && states.contains(&cell.state))
            })
            .collect()
    };
    app.handle(Action::CycleStatusFilter);
    assert_eq!(app.status_filter, StatusFilter::Broken);
    let broken = with(&app, &[CellState::Failed, CellState::Blocked]);
    assert!(
        !broken.is_empty() && broken.len() < all,
        "{broken:?} of {all}"
    );
    assert_eq!(app.visible_cols(), broken);
    assert!(
        broken.contains(&app.cell.1),
        "the cursor is on a shown partition"
    );
    let text = screen(&app, 160, 40);
    assert!(
        text.contains(&format!(
            "{} of {all} partitions failed / blocked",
            broken.len()
        )),
        "{text}"
    );
    // left / right stay on shown partitions
    for a in [Action::Left, Action::Left, Action::Right, Action::Right] {
        app.handle(a);
        assert!(broken.contains(&app.cell.1), "{a:?} left the filter");
    }
    app.handle(Action::CycleStatusFilter);
    assert_eq!(app.status_filter, StatusFilter::Warned);
    let warned = with(&app, &[CellState::Warn, CellState::OkRejects]);
    assert_eq!(app.visible_cols(), warned);
    assert!(warned.is_empty() || warned.contains(&app.cell.1));
    app.handle(Action::ToggleDense);
    let text = screen(&app, 160, 40);
    assert!(text.contains("warn / rejects"), "{text}");
    app.handle(Action::CycleStatusFilter);
    app.handle(Action::CycleStatusFilter);
    assert_eq!(app.status_filter, StatusFilter::All);
    assert_eq!(app.visible_cols().len(), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_over_the_budget_needs_approve_typed() {
    use karat::tui::action::{Action, Approved, Request};
    let f = fixture().await;
    let mut app = partitions_app(f).await;
    app.snapshot.as_mut().unwrap().replay_budget_rows = Some(1);
    app.handle(Action::Replay);
    // no cost yet: enter waits for it
    app.handle(Action::Confirm);
    assert!(matches!(app.mode, karat::tui::state::Mode::Confirm(_)));
    for r in app.take_requests() {
        if let Request::PreviewReplay(targets) = r {
            app.apply(karat::tui::engine::preview_replay(&f.plan, &f.lake, &targets).await);
        }
    }
    let text = screen(&app, 120, 36);
    assert!(
        text.contains("over the replay budget") && text.contains("type approve"),
        "{text}"
    );
    // enter alone, or the wrong word, starts nothing
    app.handle(Action::Confirm);
    for c in "approv".chars() {
        app.confirm_input(Some(c));
    }
    app.handle(Action::Confirm);
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::Replay(..))),
        "nothing runs unapproved"
    );
    assert!(screen(&app, 120, 36).contains("approv▌"));
    app.confirm_input(Some('e'));
    app.handle(Action::Confirm);
    let reqs = app.take_requests();
    let approved = reqs.iter().find_map(|r| match r {
        Request::Replay(_, Some(Approved { records })) => Some(*records),
        _ => None,
    });
    assert!(
        approved.is_some_and(|r| r.is_some_and(|n| n > 1)),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| matches!(r, Request::LogAction(c) if c.ends_with("--approve"))),
        "{reqs:?}"
    );
}
