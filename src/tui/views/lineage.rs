//! View 4, Lineage: "what feeds this and what does it feed?" The focused table's upstream and
//! downstream as a tree (sources → bronze → silver → gold), each node coloured and marked by its
//! health; Enter moves the focus. A stale table shows why: the chain upstream to the failed
//! hop, each hop annotated. For a gold table the SQL it is computed by is shown, which is where
//! its columns come from.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{freshness, panel};
use crate::lineage::Node;
use crate::tui::sanitize::clean;
use crate::tui::state::App;

fn health(app: &App, n: &Node) -> (Style, String) {
    let t = &app.theme;
    let Some(s) = &app.snapshot else {
        return (Style::default(), String::new());
    };
    match s
        .status
        .tables
        .iter()
        .find(|ts| ts.name == n.name && ts.zone == n.zone)
    {
        Some(ts) if ts.partitions_failed > 0 => (
            Style::default().fg(t.error),
            format!("✗ {} failed partition(s)", ts.partitions_failed),
        ),
        Some(ts) => {
            let (st, w) = freshness(t, ts.freshness);

            (st, format!("{w}, {} rows", ts.rows))
        }
        None => (Style::default().fg(t.muted), String::new()),
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let lines = app.lineage_lines();
    let Some(focus) = &app.lineage_focus else {
        f.render_widget(
            Paragraph::new("loading…").block(panel(t, " Lineage ")),
            area,
        );
        return;
    };
    let [tree_area, info_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let mut out = Vec::new();
    for (i, (prefix, n)) in lines.iter().enumerate() {
        let (hs, hw) = health(app, n);
        let glyph = match n.zone {
            crate::config::Zone::Bronze => "▤",
            crate::config::Zone::Silver => "◆",
            crate::config::Zone::Gold => "★",
        };
        let mut line = Line::from(vec![
            Span::raw(prefix.clone()),
            Span::styled(
                format!("{glyph} {} {}", n.zone, n.name),
                if i == 0 { t.style("title") } else { hs },
            ),
            Span::raw("  "),
            Span::styled(hw, hs),
        ]);
        if i == app.lineage_sel {
            line = line.style(t.style("selected"));
        }
        out.push(line);
    }
    f.render_widget(
        Paragraph::new(out).block(panel(
            t,
            &format!(
                " Lineage of {} {} (↑ upstream, ↓ downstream) ",
                focus.zone, focus.name
            ),
        )),
        tree_area,
    );
    let mut info = Vec::new();
    let why = app.why_stale();
    if !why.is_empty() {
        info.push(Line::from(Span::styled(
            "why it is stale",
            t.style("header"),
        )));
        info.extend(why.iter().map(|l| Line::from(clean(l))));
    }
    if let Some(ti) = app.snapshot.as_ref().and_then(|s| s.table(&focus.name)) {
        if let Some(src) = &ti.source {
            info.push(Line::from(format!(
                "reads source {src}, partitioned by {}",
                ti.partition_by.clone().unwrap_or_default()
            )));
        }
        if let Some(o) = &ti.owner {
            info.push(Line::from(format!("owner {}", clean(o))));
        }
        info.push(Line::from(Span::styled("columns", t.style("header"))));
        for c in &ti.columns {
            let rules = if c.rules.is_empty() {
                String::new()
            } else {
                format!("  {}", c.rules.join("; "))
            };
            info.push(Line::from(format!("{}: {}{rules}", c.name, c.type_text())));
        }
        if let Some(sql) = &ti.sql {
            info.push(Line::from(Span::styled("computed by", t.style("header"))));
            for l in sql.lines() {
                info.push(Line::from(clean(l)));
            }
        }
    } else {
        info.push(Line::from(format!(
            "source {}: lands in bronze as gzip NDJSON batches",
            focus.name
        )));
    }
    f.render_widget(
        Paragraph::new(info)
            .wrap(Wrap { trim: false })
            .block(panel(t, " Node ")),
        info_area,
    );
}
