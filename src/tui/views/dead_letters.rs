//! View 3, Dead letters: "why were rows rejected?" Reasons grouped with counts (largest first),
//! then the rows of a chosen reason, paged in from the lake in the background as you scroll
//! (never the whole table), and a detail pane with the raw record, every failed rule and the
//! provenance.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::panel;
use crate::tui::sanitize::{clean, cut};
use crate::tui::state::{App, DeadFocus};

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let d = &app.dead;
    let Some(table) = &d.table else {
        f.render_widget(
            Paragraph::new("no silver table").block(panel(t, " Dead letters ")),
            area,
        );
        return;
    };
    let reasons_h = (d.reasons.len() as u16 + 3).clamp(4, area.height / 3);
    let [top, rest] =
        Layout::vertical([Constraint::Length(reasons_h), Constraint::Min(4)]).areas(area);
    // reasons
    let total: i64 = d.reasons.iter().map(|r| r.1).sum();
    let rows: Vec<Row> = d
        .reasons
        .iter()
        .enumerate()
        .map(|(i, (rule, n))| {
            let mut row = Row::new(vec![
                Cell::from(format!("{n:>9}")),
                Cell::from(format!("{:>5.1}%", *n as f64 * 100.0 / total.max(1) as f64)),
                Cell::from(clean(rule)),
                Cell::from(clean(&values_text(d.values.get(rule)))),
            ]);
            if i == d.reason_sel {
                row = row.style(if d.focus == DeadFocus::Reasons {
                    t.style("selected")
                } else {
                    Style::default().fg(t.accent)
                });
            }
            row
        })
        .collect();
    let scope = match &d.partition {
        Some(p) => format!(" {}", clean(p)),
        None => String::new(),
    };
    let title = if d.reasons_loading && d.reasons.is_empty() {
        format!(" {table}{scope}: loading reasons… ")
    } else {
        format!(" {table}{scope}: dead letters by rule ({total} rule hits) ")
    };
    let empty = d.reasons.is_empty() && !d.reasons_loading;
    if empty {
        f.render_widget(
            Paragraph::new("no dead letters").block(panel(t, &title)),
            top,
        );
    } else {
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(9),
                    Constraint::Length(7),
                    Constraint::Length(24),
                    Constraint::Min(10),
                ],
            )
            .header(
                Row::new(["rows", "share", "rule", "offending values"]).style(t.style("header")),
            )
            .block(panel(t, &title)),
            top,
        );
    }
    // rows, with the detail pane when open
    let (list_area, detail_area) = if d.focus == DeadFocus::Detail && rest.width >= 60 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
            .areas(rest);
        (a, Some(b))
    } else if d.focus == DeadFocus::Detail {
        (Rect::default(), Some(rest))
    } else {
        (rest, None)
    };
    if list_area.height > 0 {
        let visible = list_area.height.saturating_sub(3) as usize;
        let skip = d.row_sel.saturating_sub(visible.saturating_sub(1));
        let rows: Vec<Row> = d
            .rows
            .iter()
            .enumerate()
            .skip(skip)
            .take(visible)
            .map(|(i, r)| {
                let file = r.file.rsplit('/').next().unwrap_or(&r.file);
                let mut row = Row::new(vec![
                    Cell::from(r.partition.clone()),
                    Cell::from(format!("{}:{}", cut(&clean(file), 26), r.line)),
                    Cell::from(clean(&r.reasons.join("; "))),
                ]);
                if i == d.row_sel {
                    row = row.style(if d.focus == DeadFocus::Rows {
                        t.style("selected")
                    } else {
                        Style::default().fg(t.accent)
                    });
                }
                row
            })
            .collect();
        let which = clean(&d.rows_label);
        let state = if d.rows_loading {
            " loading…"
        } else if d.rows_done {
            ""
        } else {
            " (more below)"
        };
        let title = format!(" rows {which}: {} loaded{state} ", d.rows.len());
        let hint = if d.rows.is_empty() && !d.rows_loading {
            "press Enter on a rule to see its rows"
        } else {
            ""
        };
        if rows.is_empty() {
            f.render_widget(Paragraph::new(hint).block(panel(t, &title)), list_area);
        } else {
            f.render_widget(
                Table::new(
                    rows,
                    [
                        Constraint::Length(11),
                        Constraint::Length(33),
                        Constraint::Min(10),
                    ],
                )
                .header(Row::new(["partition", "file:line", "reasons"]).style(t.style("header")))
                .block(panel(t, &title)),
                list_area,
            );
        }
    }
    if let (Some(area), Some(r)) = (detail_area, d.rows.get(d.row_sel)) {
        let mut lines = vec![Line::from(Span::styled("failed rules", t.style("header")))];
        for (rule, reason) in r.rules.iter().zip(r.reasons.iter()) {
            lines.push(Line::from(vec![
                Span::styled(format!("✗ {} ", clean(rule)), Style::default().fg(t.error)),
                Span::raw(clean(reason)),
            ]));
        }
        lines.push(Line::from(Span::styled("provenance", t.style("header"))));
        lines.push(Line::from(format!("file        {}", clean(&r.file))));
        lines.push(Line::from(format!("line        {}", r.line)));
        lines.push(Line::from(format!(
            "batch       {}   source {}",
            clean(&r.batch_id),
            clean(&r.source)
        )));
        lines.push(Line::from(format!("ingested at {}", clean(&r.ingested_at))));
        lines.push(Line::from(format!(
            "partition   {}   run {}",
            clean(&r.partition),
            cut(&r.run_id, 13)
        )));
        lines.push(Line::from(Span::styled("raw record", t.style("header"))));
        let pretty = match serde_json::from_str::<serde_json::Value>(&r.raw) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.retain(|k, _| !k.starts_with('_'));
                }
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| r.raw.clone())
            }
            Err(_) => r.raw.clone(),
        };
        for l in pretty.lines() {
            lines.push(Line::from(clean(l)));
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel(t, " Row ")),
            area,
        );
    }
}

/// A rule's offending values: `"usd " ×820, "US$" ×12`.
fn values_text(values: Option<&Vec<(String, i64)>>) -> String {
    values
        .map(|vs| {
            vs.iter()
                .map(|(v, n)| format!("{v} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
