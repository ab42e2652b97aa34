//! View 6, Runs: "what happened, when?" Runs, gate results, failed batches, drift events,
//! dead-letter spikes and the dashboard's own actions (with the equivalent `karat …` command)
//! on one time axis, newest first, filterable with `/`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::panel;
use crate::tui::sanitize::{clean, short_time};
use crate::tui::state::App;

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    if app.snapshot.is_none() {
        f.render_widget(Paragraph::new("loading…").block(panel(t, " Runs ")), area);
        return;
    }
    let items = app.timeline();
    let visible = area.height.saturating_sub(3) as usize;
    let skip = app.runs_sel.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = items
        .iter()
        .enumerate()
        .skip(skip)
        .take(visible)
        .map(|(i, e)| {
            let (at, kind, text, bad) = (&e.at, &e.kind, &e.text, &e.problem);
            let color = if *bad {
                t.error
            } else if *kind == "drift" || *kind == "spike" {
                t.warn
            } else {
                t.fg
            };
            let mark = if *bad {
                "✗"
            } else if *kind == "run" {
                "●"
            } else {
                "•"
            };
            let mut row = Row::new(vec![
                Cell::from(short_time(at)),
                Cell::from(Span::styled(
                    format!("{mark} {kind}"),
                    Style::default().fg(color),
                )),
                Cell::from(clean(text)),
            ]);
            if i == app.runs_sel {
                row = row.style(t.style("selected"));
            }
            row
        })
        .collect();
    let title = match &app.filter {
        Some(f) => format!(
            " Runs and events matching \"{}\" ({}) ",
            clean(f),
            items.len()
        ),
        None => format!(" Runs and events ({}) ", items.len()),
    };
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(14),
                Constraint::Length(9),
                Constraint::Min(20),
            ],
        )
        .header(ratatui::widgets::Row::new(["UTC", "kind", "what"]).style(t.style("header")))
        .block(panel(t, &title)),
        area,
    );
}
