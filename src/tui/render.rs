//! The frame: a header with the view tabs and what is running, the current view, a message
//! line, and the bottom bar of keys valid now (or the prompt / filter being typed); overlays for
//! help and replay confirmation.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::action::View;
use super::keymap;
use super::sanitize::clean;
use super::state::{App, Mode};
use super::views;

/// Draws the whole dashboard.
pub fn draw(f: &mut Frame, app: &App) {
    let t = &app.theme;
    let area = f.area();
    f.render_widget(Block::default().style(t.base()), area);
    let [head, main, msg, bar] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    // header
    let mut spans = vec![
        Span::styled(" karat ", t.style("tab_active")),
        Span::raw(" "),
    ];
    if let Some(s) = &app.snapshot {
        spans.push(Span::styled(
            format!("{} ", clean(&s.project)),
            t.style("title"),
        ));
    }
    for v in View::ALL {
        let label = format!(" {} {} ", v.index() + 1, v.title());
        spans.push(Span::styled(
            label,
            if v == app.view {
                t.style("tab_active")
            } else {
                t.style("tab")
            },
        ));
    }
    if let Some(job) = &app.job {
        spans.push(Span::styled(
            format!("  ◌ {}", clean(job)),
            Style::default().fg(t.running),
        ));
    }
    if app.read_only {
        spans.push(Span::styled("  read-only", Style::default().fg(t.running)));
    }
    if let Some(lease) = app.snapshot.as_ref().and_then(|s| s.lease.as_ref()) {
        spans.push(Span::styled(
            format!("  ✎ lake written by {}", clean(&lease.describe())),
            Style::default().fg(t.running),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), head);
    match app.view {
        View::Overview => views::overview::render(f, main, app),
        View::Partitions => views::partitions::render(f, main, app),
        View::DeadLetters => views::dead_letters::render(f, main, app),
        View::Lineage => views::lineage::render(f, main, app),
        View::Schema => views::schema::render(f, main, app),
        View::Runs => views::runs::render(f, main, app),
    }
    if let Some((m, err)) = &app.message {
        let st = Style::default().fg(if *err { t.error } else { t.accent });
        f.render_widget(Paragraph::new(Span::styled(clean(m), st)), msg);
    } else if let Some(s) = &app.snapshot {
        let when = s.loaded_at.format("%Y-%m-%d %H:%M:%S UTC");
        f.render_widget(
            Paragraph::new(Span::styled(
                format!("lake read at {when}"),
                Style::default().fg(t.muted),
            )),
            msg,
        );
    }
    // bottom bar or input line
    match &app.mode {
        Mode::Filter(text) => f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("/", t.style("key")),
                Span::raw(clean(text)),
                Span::styled("█", Style::default().fg(t.accent)),
            ])),
            bar,
        ),
        Mode::Prompt(text) => f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(":", t.style("key")),
                Span::raw(clean(text)),
                Span::styled("█", Style::default().fg(t.accent)),
                Span::styled("   tab completes", Style::default().fg(t.muted)),
            ])),
            bar,
        ),
        _ => {
            let mut spans = Vec::new();
            for (k, h) in keymap::bar(app.view, app.read_only) {
                spans.push(Span::styled(format!(" {k}"), t.style("key")));
                spans.push(Span::styled(format!(" {h} "), Style::default().fg(t.muted)));
            }
            f.render_widget(Paragraph::new(Line::from(spans)), bar);
        }
    }
    match &app.mode {
        Mode::Help => help(f, main, app),
        Mode::Confirm(plan) => confirm(f, main, app, plan),
        Mode::ConfirmRestore(run_id) => confirm_restore(f, main, app, run_id),
        _ => {}
    }
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn help(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let lines: Vec<Line> = keymap::help_lines(app.view, app.read_only)
        .into_iter()
        .map(|(k, h)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), t.style("key")),
                Span::raw(h),
            ])
        })
        .collect();
    let r = centered(area, 76, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).style(t.base()).block(views::panel(
            t,
            &format!(" Keys: {} (any key closes) ", app.view.title()),
        )),
        r,
    );
}

fn confirm_restore(f: &mut Frame, area: Rect, app: &App, run_id: &str) {
    let t = &app.theme;
    let mut lines = vec![
        Line::from(Span::styled(
            format!("Undo replay {run_id}?"),
            t.style("header"),
        )),
        Line::from("Its silver, dead-letter, superseded and gold tables go back to their"),
        Line::from("Delta versions before it (refused if a later run wrote them since)."),
        Line::from(""),
        Line::from(Span::styled(
            format!("What it changed (karat diff --replay {run_id}):"),
            t.style("header"),
        )),
    ];
    match &app.restore_diff {
        None => lines.push(Line::from(Span::styled("  computing…", t.style("border")))),
        Some(Err(e)) => lines.push(Line::from(Span::styled(
            format!("  cannot tell: {}", clean(e)),
            t.style("banner_error"),
        ))),
        Some(Ok(tables)) => {
            lines.extend(tables.iter().map(|l| Line::from(format!("  {}", clean(l)))))
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled(" y / enter ", t.style("tab_active")),
        Span::raw(" restore    "),
        Span::styled(" n / esc ", t.style("tab")),
        Span::raw(" cancel"),
    ]));
    let r = centered(area, 96, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .style(t.base())
            .block(views::panel(t, " Confirm restore ")),
        r,
    );
}

/// The confirmation's keys: `y` / enter, or for a replay over the budget the typed approval.
fn confirm_keys(app: &App, plan: &super::state::ReplayPlan) -> Vec<Line<'static>> {
    use super::state::{APPROVE, Gate};
    let t = &app.theme;
    let key = |k: &str, what: &str| {
        [
            Span::styled(format!(" {k} "), t.style("tab_active")),
            Span::raw(format!(" {what}    ")),
        ]
    };
    let cancel = || [Span::styled(" esc ", t.style("tab")), Span::raw(" cancel")];
    match plan.gate() {
        Gate::Open => vec![Line::from([key("y / enter", "replay"), cancel()].concat())],
        Gate::Costing => vec![Line::from(
            [
                vec![Span::styled(
                    "the replay budget needs its cost: wait for it    ",
                    t.style("border"),
                )],
                cancel().to_vec(),
            ]
            .concat(),
        )],
        Gate::Approval { records, budget } => {
            let cost = records
                .map(|r| format!("{r} records"))
                .unwrap_or_else(|| "an unknown number of records".into());
            vec![
                Line::from(Span::styled(
                    format!(
                        "over the replay budget: {cost} > [defaults] replay_budget_rows = {budget}"
                    ),
                    t.style("banner_warn"),
                )),
                Line::from(vec![
                    Span::raw(format!(
                        "type {APPROVE} to approve it (recorded with your name): "
                    )),
                    Span::styled(format!("{}▌", plan.typed), t.style("tab_active")),
                ]),
                Line::from([key("enter", "replay"), cancel()].concat()),
            ]
        }
    }
}

fn confirm(f: &mut Frame, area: Rect, app: &App, plan: &super::state::ReplayPlan) {
    let t = &app.theme;
    let mut lines = vec![Line::from(Span::styled(
        "Replay rewrites, from bronze:",
        t.style("header"),
    ))];
    for (tb, ps) in &plan.targets {
        lines.push(Line::from(format!("  {tb}: {}", ps.join(", "))));
    }
    match &plan.preview {
        None => lines.push(Line::from(Span::styled(
            "computing what it would rewrite (karat replay --dry-run)…",
            t.style("border"),
        ))),
        Some(Err(e)) => lines.push(Line::from(Span::styled(
            format!("cannot tell what it would rewrite: {e}"),
            t.style("banner_error"),
        ))),
        Some(Ok(previews)) => {
            lines.push(Line::from(Span::styled(
                "which rewrites (replacing Delta versions):",
                t.style("header"),
            )));
            for p in previews {
                // the first line of a preview names the command
                lines.extend(p.lines().into_iter().skip(1).map(Line::from));
            }
        }
    }
    lines.push(Line::from(""));
    lines.extend(confirm_keys(app, plan));
    // wide enough for a preview line where the terminal allows, tall enough for its wrapping
    let width = area.width.saturating_sub(4).clamp(40, 110);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let r = centered(area, width, rows as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .style(t.base())
            .block(views::panel(t, " Confirm replay ")),
        r,
    );
}
