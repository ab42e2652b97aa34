//! The dashboard: a full-screen terminal UI over the engine. Terminal events become actions,
//! actions change the state (and may send requests to the engine worker), updates from the
//! worker change the state, and the state is rendered; the render path never does I/O.

pub mod action;
pub mod bench;
pub mod engine;
pub mod keymap;
pub mod render;
pub mod sanitize;
pub mod screens;
pub mod state;
pub mod svg;
pub mod theme;
pub mod views;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::unbounded_channel;

use crate::error::{KaratError, KaratResult};
use crate::lake::Lake;
use crate::pipeline::Plan;
use action::{Action, Request};
use state::{App, Mode};
use theme::Theme;

/// Options of a dashboard session.
pub struct DashboardOptions {
    pub config_path: PathBuf,
    pub theme: Theme,
    /// A fixed clock (tests); `None` is the wall clock.
    pub clock: Option<DateTime<Utc>>,
    /// Hide and refuse everything that writes to the lake; never run the schedule.
    pub read_only: bool,
}

/// Maps a key press to an action in the current mode; text modes consume printable keys.
pub fn on_key(app: &mut App, key: event::KeyEvent) {
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    match app.mode.clone() {
        Mode::Filter(mut text) | Mode::Prompt(mut text) => {
            let is_prompt = matches!(app.mode, Mode::Prompt(_));
            match key.code {
                _ if ctrl_c => app.quit = true,
                KeyCode::Esc => app.mode = Mode::Normal,
                KeyCode::Enter => app.submit(text),
                KeyCode::Backspace => {
                    text.pop();
                    app.mode = if is_prompt {
                        Mode::Prompt(text)
                    } else {
                        Mode::Filter(text)
                    };
                }
                KeyCode::Tab if is_prompt => app.mode = Mode::Prompt(app.complete(&text)),
                KeyCode::Char(c) => {
                    text.push(c);
                    app.mode = if is_prompt {
                        Mode::Prompt(text)
                    } else {
                        Mode::Filter(text)
                    };
                }
                _ => {}
            }
        }
        Mode::Confirm(plan) if matches!(plan.gate(), state::Gate::Approval { .. }) => {
            match key.code {
                _ if ctrl_c => app.quit = true,
                KeyCode::Enter => app.handle(Action::Confirm),
                KeyCode::Esc => app.handle(Action::Cancel),
                KeyCode::Backspace => app.confirm_input(None),
                KeyCode::Char(c) => app.confirm_input(Some(c)),
                _ => {}
            }
        }
        Mode::Confirm(_) | Mode::ConfirmRestore(_) => match key.code {
            KeyCode::Char('y') | KeyCode::Enter => app.handle(Action::Confirm),
            _ if ctrl_c => app.quit = true,
            _ => app.handle(Action::Cancel),
        },
        Mode::Help => {
            if ctrl_c {
                app.quit = true
            } else {
                app.handle(Action::Back)
            }
        }
        Mode::Normal => {
            if let Some(a) = keymap::lookup(app.view, &key, app.read_only) {
                app.handle(a);
            }
        }
    }
}

/// Opens the dashboard on a terminal until the user quits.
pub async fn run(plan: Plan, lake: Lake, opts: DashboardOptions) -> KaratResult<()> {
    let read_only = opts.read_only || plan.config.ui_read_only;
    let (req_tx, mut updates) =
        engine::spawn(plan, lake, opts.config_path.clone(), opts.clock, read_only);
    let mut app = App::new(
        opts.theme,
        opts.clock.unwrap_or_else(Utc::now),
        opts.clock.is_some(),
    );
    app.read_only = read_only;
    // terminal events come from a blocking reader thread
    let (key_tx, mut keys) = unbounded_channel::<TermEvent>();
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(250)) {
                Ok(true) => match event::read() {
                    Ok(e) => {
                        if key_tx.send(e).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {
                    if key_tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let mut terminal = ratatui::try_init()
        .map_err(|e| KaratError::Other(format!("cannot open the terminal: {e}")))?;
    let result: KaratResult<()> = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            for r in app.take_requests() {
                let _ = req_tx.send(r);
            }
            app.page = terminal.size().map(|s| s.height.saturating_sub(12) as usize).unwrap_or(10).max(1);
            terminal.draw(|f| render::draw(f, &app)).map_err(|e| KaratError::Other(format!("drawing: {e}")))?;
            if app.quit {
                break;
            }
            tokio::select! {
                Some(e) = keys.recv() => {
                    if let TermEvent::Key(k) = e
                        && k.kind != KeyEventKind::Release
                    {
                        if k.code == KeyCode::Char('s') && matches!(app.mode, Mode::Normal) {
                            let path = PathBuf::from(format!("karat-{}-{}.svg", app.view.slug(), Utc::now().format("%Y%m%dT%H%M%S")));
                            let svg = snapshot_svg(&app, 120, 36);
                            let _ = req_tx.send(Request::WriteFile { path, contents: svg });
                        } else {
                            on_key(&mut app, k);
                        }
                    }
                }
                Some(u) = updates.recv() => app.apply(u),
                _ = tick.tick() => {
                    if !app.fixed_clock {
                        app.now = Utc::now();
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    ratatui::restore();
    result
}

/// Renders the app into an off-screen buffer and returns it as SVG.
pub fn snapshot_svg(app: &App, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut term = ratatui::Terminal::new(backend).expect("test backend");
    term.draw(|f| render::draw(f, app))
        .expect("draw to a buffer");
    svg::buffer_to_svg(term.backend().buffer(), &app.theme)
}

/// Builds the state of a view from the lake once (for `karat snapshot` and the tests): loads the
/// snapshot, and for the dead-letters view, the reasons and the first rows of the top reason.
pub async fn headless_state(
    plan: &Plan,
    lake: &Lake,
    theme: Theme,
    view: action::View,
    now: DateTime<Utc>,
) -> KaratResult<App> {
    let mut app = App::new(theme, now, true);
    let snap = engine::load_snapshot(plan, lake, now).await?;
    app.apply(engine::Update::Snapshot(Box::new(snap)));
    app.handle(Action::Show(view));
    // serve the requests the view makes, synchronously
    for _ in 0..3 {
        for r in app.take_requests() {
            if let Some(u) = engine::serve_read(lake, r).await {
                app.apply(u?);
            }
        }
        if view == action::View::DeadLetters
            && app.dead.rows.is_empty()
            && !app.dead.reasons.is_empty()
        {
            app.handle(Action::Open);
        }
    }
    Ok(app)
}
