//! The partitions screen's dense view (`z`): every partition of every table, one character
//! each, wrapped into as many lines per table as the width needs (a year of days fits 80–160
//! columns in three to five lines). Failed, blocked, warned, stale, running and missing
//! partitions keep their glyphs; promoted ones are a bar as tall as their reject rate.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{cell_style, panel};
use crate::tui::sanitize::cut;
use crate::tui::state::{App, CellState};

/// Bars by reject rate, and the rate each one starts at.
const BARS: [(f64, &str); 8] = [
    (0.0, "▁"),
    (0.000_001, "▂"),
    (0.01, "▃"),
    (0.02, "▄"),
    (0.05, "▅"),
    (0.10, "▆"),
    (0.20, "▇"),
    (0.50, "█"),
];

/// Width of the date that starts each line (`MM-DD `).
const DATE_W: u16 = 6;

pub fn grid(f: &mut Frame, area: Rect, app: &App, name_w: u16) {
    let t = &app.theme;
    let m = &app.matrix;
    let per_line = area.width.saturating_sub(2 + name_w + 1 + DATE_W).max(10) as usize;
    let shown = app.visible_cols();
    let total = shown.len();
    let chunks = total.div_ceil(per_line).max(1);
    let mut lines = Vec::new();
    for (r, (z, name)) in m.rows.iter().enumerate() {
        for k in 0..chunks {
            let label = if k == 0 {
                cut(&format!("{z} {name}"), name_w as usize)
            } else {
                String::new()
            };
            let lstyle = if r == app.cell.0 {
                t.style("header")
            } else {
                Style::default().fg(t.fg)
            };
            let (start, end) = (k * per_line, ((k + 1) * per_line).min(total));
            let date = shown
                .get(start)
                .and_then(|c| m.cols[*c].get(5..10))
                .unwrap_or("");
            let mut spans = vec![
                Span::styled(format!("{label:<w$} ", w = name_w as usize), lstyle),
                Span::styled(format!("{date:<6}"), Style::default().fg(t.muted)),
            ];
            for &c in &shown[start..end] {
                let st = app.cell_state(r, c);
                let mut style = cell_style(t, st);
                if (r, c) == app.cell {
                    style = style.bg(t.selection);
                }
                spans.push(Span::styled(glyph(app, r, c, st), style));
            }
            lines.push(Line::from(spans));
        }
    }
    let visible = area.height.saturating_sub(2) as usize;
    let cursor = shown.iter().position(|c| *c >= app.cell.1).unwrap_or(0);
    let cursor_line = app.cell.0 * chunks + cursor / per_line;
    let skip = cursor_line.saturating_sub(visible.saturating_sub(1));
    let lines: Vec<Line> = lines.into_iter().skip(skip).take(visible).collect();
    let title = title(app, &shown);
    f.render_widget(Paragraph::new(lines).block(panel(t, &title)), area);
}

/// The legend of the dense view.
pub fn legend(app: &App) -> Line<'static> {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" reject rate ")];
    for (rate, bar) in BARS {
        spans.push(Span::styled(bar, Style::default().fg(t.ok)));
        if rate >= 0.01 {
            spans.push(Span::styled(
                format!("{}% ", rate * 100.0),
                Style::default().fg(t.muted),
            ));
        }
    }
    for s in [
        CellState::Warn,
        CellState::Failed,
        CellState::Blocked,
        CellState::Stale,
        CellState::Missing,
    ] {
        spans.push(Span::styled(format!(" {}", s.glyph()), cell_style(t, s)));
        spans.push(Span::raw(format!(" {}", s.label())));
    }
    Line::from(spans)
}

fn glyph(app: &App, r: usize, c: usize, st: CellState) -> &'static str {
    if !matches!(st, CellState::Ok | CellState::OkRejects) {
        return st.glyph();
    }
    let rate = app
        .matrix
        .cells
        .get(&(r, c))
        .and_then(|cell| cell.step.as_ref())
        .filter(|s| s.rows_in > 0)
        .map_or(0.0, |s| s.dead as f64 / s.rows_in as f64);
    BARS.iter()
        .rev()
        .find(|(from, _)| rate >= *from)
        .map_or("▁", |(_, bar)| bar)
}

fn title(app: &App, shown: &[usize]) -> String {
    let m = &app.matrix;
    let count = |want: CellState| m.cells.values().filter(|c| c.state == want).count();
    match (shown.first(), shown.last()) {
        (Some(a), Some(b)) => format!(
            " Partitions, dense: {} … {} ({}; {} failed, {} blocked; n/N jump, f filter) ",
            m.cols[*a],
            m.cols[*b],
            super::partitions::count_label(app, shown.len()),
            count(CellState::Failed),
            count(CellState::Blocked)
        ),
        _ if m.cols.is_empty() => " Partitions, dense: no partitions yet ".into(),
        _ => format!(
            " Partitions, dense: none is {} (f filter) ",
            app.status_filter.label()
        ),
    }
}
