//! View 2, Partitions: tables × partitions, one glyph per cell coloured by state, with a detail
//! pane for the selected cell (accounting, reasons, run, Delta version). `r` replays, `v`
//! multi-selects, `R` replays every failed cell; progress shows live.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{cell_style, panel, status_style};
use crate::config::Zone;
use crate::silver::PartitionStatus;
use crate::tui::sanitize::{clean, cut, short_time};
use crate::tui::state::{App, CellState, StatusFilter, age};

const CELL_W: u16 = 3;

/// `366 partitions`, or `12 of 366 partitions failed / blocked` under a status filter.
pub fn count_label(app: &App, shown: usize) -> String {
    let all = app.matrix.cols.len();
    match app.status_filter {
        StatusFilter::All => format!("{all} partitions"),
        f => format!("{shown} of {all} partitions {}", f.label()),
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    if app.snapshot.is_none() {
        f.render_widget(
            Paragraph::new("loading…").block(panel(t, " Partitions ")),
            area,
        );
        return;
    }
    let m = &app.matrix;
    let detail_h = 9.min(area.height / 2);
    let [grid_area, legend_area, detail_area] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(detail_h),
    ])
    .areas(area);
    let name_w: u16 = m
        .rows
        .iter()
        .map(|(z, n)| (z.to_string().len() + n.len() + 2) as u16)
        .max()
        .unwrap_or(10)
        .min(26);
    if app.dense {
        super::dense::grid(f, grid_area, app, name_w);
        f.render_widget(Paragraph::new(super::dense::legend(app)), legend_area);
        detail(f, detail_area, app);
        return;
    }
    let inner_w = grid_area.width.saturating_sub(2 + name_w + 1);
    let ncols = (inner_w / CELL_W).max(1) as usize;
    // the columns the status filter shows; newest right, the cursor kept in view
    let shown = app.visible_cols();
    let total = shown.len();
    let cursor = shown.iter().position(|c| *c >= app.cell.1).unwrap_or(total);
    let mut first = total.saturating_sub(ncols);
    if cursor < first {
        first = cursor;
    }
    let last = (first + ncols).min(total);
    let shown = &shown[first..last];
    let mut lines = Vec::new();
    // header: month-day of each column, written vertically compact as "dd"
    let mut head = vec![Span::raw(format!("{:<w$} ", "", w = name_w as usize))];
    for &c in shown {
        let label = m.cols[c].get(8..10).unwrap_or(&m.cols[c]).to_string();
        let st = if c == app.cell.1 {
            t.style("header")
        } else {
            Style::default().fg(t.muted)
        };
        head.push(Span::styled(format!("{label:>2} "), st));
    }
    lines.push(Line::from(head));
    let sel = app.anchor.map(|(r0, c0)| {
        (
            r0.min(app.cell.0),
            r0.max(app.cell.0),
            c0.min(app.cell.1),
            c0.max(app.cell.1),
        )
    });
    let visible_rows = grid_area.height.saturating_sub(3) as usize;
    let skip = app.cell.0.saturating_sub(visible_rows.saturating_sub(1));
    for (r, (z, name)) in m.rows.iter().enumerate().skip(skip).take(visible_rows) {
        let label = cut(&format!("{z} {name}"), name_w as usize);
        let lstyle = if r == app.cell.0 {
            t.style("header")
        } else {
            Style::default().fg(t.fg)
        };
        let mut spans = vec![Span::styled(
            format!("{label:<w$} ", w = name_w as usize),
            lstyle,
        )];
        for &c in shown {
            let st = app.cell_state(r, c);
            let mut style = cell_style(t, st);
            let in_sel =
                sel.is_some_and(|(r0, r1, c0, c1)| r >= r0 && r <= r1 && c >= c0 && c <= c1);
            if (r, c) == app.cell || in_sel {
                style = style.bg(t.selection);
            }
            spans.push(Span::styled(format!(" {} ", st.glyph()), style));
        }
        lines.push(Line::from(spans));
    }
    let range = match (shown.first(), shown.last()) {
        (Some(a), Some(b)) => format!(
            "{} … {} ({})",
            m.cols[*a],
            m.cols[*b],
            count_label(app, total)
        ),
        _ if m.cols.is_empty() => "no partitions yet".to_string(),
        _ => format!("none is {}", app.status_filter.label()),
    };
    f.render_widget(
        Paragraph::new(lines).block(panel(t, &format!(" Partitions: {range} "))),
        grid_area,
    );

    // legend: glyphs carry the state, not only colours
    let legend: Vec<Span> = [
        CellState::Ok,
        CellState::OkRejects,
        CellState::Warn,
        CellState::Failed,
        CellState::Blocked,
        CellState::Stale,
        CellState::Running,
        CellState::Missing,
    ]
    .iter()
    .flat_map(|s| {
        vec![
            Span::styled(format!(" {} ", s.glyph()), cell_style(t, *s)),
            Span::raw(format!("{} ", s.label())),
        ]
    })
    .collect();
    f.render_widget(Paragraph::new(Line::from(legend)), legend_area);
    detail(f, detail_area, app);
}

/// The newest event a partition holds and its lag (tables with an `event_time`).
fn partition_event(app: &App, zone: Zone, table: &str, partition: &str) -> Option<Line<'static>> {
    let s = app.snapshot.as_ref()?;
    let newest = s
        .partition_events
        .get(&(zone, table.to_string()))?
        .get(partition)?;
    let column = s
        .event_lags
        .iter()
        .find(|l| l.zone == zone && l.table == table)
        .map(|l| l.column.clone())
        .unwrap_or_default();
    let lag = crate::ledger::event_time::lag_of(newest, app.now);
    Some(Line::from(vec![
        Span::styled("newest event ", app.theme.style("key")),
        Span::raw(format!("{column} {} (lag {})", clean(newest), age(lag))),
    ]))
}

/// The selected cell: its accounting, status, run, Delta version and reasons.
fn detail(f: &mut Frame, detail_area: Rect, app: &App) {
    let (t, m) = (&app.theme, &app.matrix);
    let mut d = Vec::new();
    if let (Some((z, name)), Some(p)) = (m.rows.get(app.cell.0), m.cols.get(app.cell.1)) {
        let st = app.cell_state(app.cell.0, app.cell.1);
        d.push(Line::from(vec![
            Span::styled(format!("{z} {name} {p}  "), t.style("title")),
            Span::styled(format!("{} {}", st.glyph(), st.label()), cell_style(t, st)),
        ]));
        match m.cells.get(&app.cell).and_then(|c| c.step.as_ref()) {
            Some(s) => {
                let balanced = s.rows_in == s.rows_out + s.dead + s.duplicates;
                d.push(Line::from(vec![
                    Span::raw(format!(
                        "rows in {} = valid {} + dead {} + duplicates {}  ",
                        s.rows_in, s.rows_out, s.dead, s.duplicates
                    )),
                    if balanced {
                        Span::styled("✓ balanced", Style::default().fg(t.ok))
                    } else {
                        Span::styled("✗ does not balance", Style::default().fg(t.error))
                    },
                    Span::raw(if s.rows_in > 0 {
                        format!(
                            "   reject rate {:.1}%",
                            s.dead as f64 * 100.0 / s.rows_in as f64
                        )
                    } else {
                        String::new()
                    }),
                ]));
                d.push(Line::from(vec![
                    Span::styled(s.status.as_str(), status_style(t, s.status.as_str())),
                    Span::raw(format!(
                        "  run {}  [{}]  at {}  delta version {}",
                        cut(&s.run_id, 13),
                        s.trigger,
                        short_time(&s.finished_at),
                        s.delta_version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".into())
                    )),
                ]));
                if let Some(line) = partition_event(app, *z, name, p) {
                    d.push(line);
                }
                let runbook = app
                    .snapshot
                    .as_ref()
                    .and_then(|snap| snap.table(name))
                    .filter(|_| !s.status.promoted())
                    .and_then(|ti| ti.runbook_for(s.messages.as_deref().unwrap_or("")));
                if let Some(r) = runbook {
                    d.push(Line::from(vec![
                        Span::styled("runbook ", t.style("key")),
                        Span::raw(clean(r)),
                    ]));
                }
                for msg in s.messages.clone().unwrap_or_default().lines().take(3) {
                    d.push(Line::from(Span::styled(
                        clean(msg),
                        Style::default().fg(if s.status == PartitionStatus::Ok {
                            t.fg
                        } else {
                            t.error
                        }),
                    )));
                }
                if s.dead_by_rule.is_some() {
                    let mut v: Vec<_> = s.dead_by_rule_map().into_iter().collect();
                    v.sort_by_key(|x| std::cmp::Reverse(x.1));
                    let text: Vec<String> =
                        v.iter().take(4).map(|(r, n)| format!("{r}: {n}")).collect();
                    d.push(Line::from(Span::styled(
                        format!("dead letters by rule: {}", text.join(", ")),
                        Style::default().fg(t.muted),
                    )));
                }
            }
            None => d.push(Line::from(Span::styled(
                "no run has produced this partition",
                Style::default().fg(t.muted),
            ))),
        }
    }
    if let Some(job) = &app.job {
        d.push(Line::from(Span::styled(
            format!("◌ running: {job}"),
            Style::default().fg(t.running),
        )));
    }
    f.render_widget(
        Paragraph::new(d)
            .wrap(Wrap { trim: true })
            .block(panel(t, " Selected ")),
        detail_area,
    );
}
