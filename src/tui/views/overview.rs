//! View 1, Overview: "what is broken right now?" A banner of breaches (failed partitions,
//! blocked gates, stale tables), most urgent first, then every table by zone with freshness
//! against its SLO, error rate and its recent history, rows, last status and owner.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{freshness, panel, spark, status_style};
use crate::tui::sanitize::{clean, cut};
use crate::tui::state::{App, age};

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(s) = &app.snapshot else {
        f.render_widget(
            Paragraph::new("loading the lake…").block(panel(t, " Overview ")),
            area,
        );
        return;
    };
    let banner_h = if app.breaches.is_empty() {
        3
    } else {
        (app.breaches.len() as u16 + 2).min(area.height / 2).max(3)
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(banner_h), Constraint::Min(3)]).areas(area);
    // banner
    let mut lines = Vec::new();
    if app.breaches.is_empty() {
        lines.push(Line::from(Span::styled(
            " ✓ no breaches: every partition promoted, every table within its SLO ",
            t.style("banner_ok"),
        )));
    }
    for (i, b) in app.breaches.iter().enumerate() {
        let style = if b.severity == 0 {
            t.style("banner_error")
        } else {
            t.style("banner_warn")
        };
        let mark = if b.severity == 0 {
            "✗"
        } else if b.severity == 1 {
            "⊘"
        } else {
            "◐"
        };
        let mut line = Line::from(vec![
            Span::styled(format!(" {mark} "), style),
            Span::raw(" "),
            Span::raw(cut(&clean(&b.text), area.width.saturating_sub(6) as usize)),
        ]);
        if app.overview_sel == i {
            line = line.style(t.style("selected"));
        }
        lines.push(line);
    }
    let title = format!(" Breaches ({}) ", app.breaches.len());
    let visible = banner_h.saturating_sub(2) as usize;
    let skip = app
        .overview_sel
        .min(app.breaches.len())
        .saturating_sub(visible.saturating_sub(1));
    f.render_widget(
        Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).block(panel(t, &title)),
        top,
    );

    // tables
    let header = Row::new([
        "zone",
        "table",
        "freshness",
        "age",
        "err% last",
        "recent",
        "rows",
        "dead",
        "last",
        "owner",
    ])
    .style(t.style("header"));
    let rows: Vec<Row> = s
        .status
        .tables
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let (fs, fw) = freshness(t, ts.freshness);
            let slo = ts
                .error_after_seconds
                .or(ts.warn_after_seconds)
                .map(|x| format!("/{}", age(Some(x as i64))))
                .unwrap_or_default();
            let err = ts
                .error_rate_last
                .map(|r| format!("{:.1}", r * 100.0))
                .unwrap_or_else(|| "-".into());
            let last = ts.last_status.clone().unwrap_or_else(|| "-".into());
            let mut row = Row::new(vec![
                Cell::from(ts.zone.to_string()),
                Cell::from(ts.name.clone()),
                Cell::from(Span::styled(fw, fs)),
                Cell::from(format!("{}{slo}", age(ts.age_seconds))),
                Cell::from(err),
                Cell::from(spark(&ts.error_rate_history, 10)),
                Cell::from(ts.rows.to_string()),
                Cell::from(ts.dead.to_string()),
                Cell::from(Span::styled(
                    if ts.partitions_failed > 0 {
                        format!("{last} ({} ✗)", ts.partitions_failed)
                    } else {
                        last.clone()
                    },
                    status_style(t, &last),
                )),
                Cell::from(clean(ts.owner.as_deref().unwrap_or("-"))),
            ]);
            if app.overview_sel == app.breaches.len() + i {
                row = row.style(t.style("selected"));
            }
            row
        })
        .collect();
    let widths = [
        Constraint::Length(6),
        Constraint::Min(14),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(12),
        Constraint::Min(8),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(panel(t, " Tables ")),
        bottom,
    );
}
