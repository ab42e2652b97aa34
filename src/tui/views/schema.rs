//! View 5, Schema: "what changed in the data's shape?" A source's schema history (the inferred
//! bronze schema of every batch), the silver contract fed by it, and the diff between two picked
//! versions (added / removed / type-changed fields in distinct colours, each with the number of
//! dead letters that cite it).

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::panel;
use crate::bronze::drift;
use crate::ledger::status::latest_partition_states;
use crate::tui::sanitize::{clean, cut, short_time};
use crate::tui::state::App;

/// Dead letters citing each field, for tables reading `source`.
fn dead_by_field(app: &App, source: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Some(s) = &app.snapshot else { return out };
    let tables: Vec<&str> = s
        .tables
        .iter()
        .filter(|t| t.source.as_deref() == Some(source))
        .map(|t| t.name.as_str())
        .collect();
    for ((z, t, _), st) in latest_partition_states(&s.steps) {
        if z != crate::config::Zone::Silver || !tables.contains(&t.as_str()) {
            continue;
        }
        let rules: BTreeMap<String, i64> = st
            .dead_by_rule
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default();
        for (rule, n) in rules {
            let field = rule.split('.').next().unwrap_or("").to_string();
            *out.entry(field).or_default() += n;
        }
    }
    out
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(s) = &app.snapshot else {
        f.render_widget(Paragraph::new("loading…").block(panel(t, " Schema ")), area);
        return;
    };
    let source = s
        .sources
        .get(app.schema_source)
        .cloned()
        .unwrap_or_default();
    let versions = app.schema_versions();
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let [hist_area, contract_area] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(left);
    let visible = hist_area.height.saturating_sub(2) as usize;
    let skip = app.schema_sel.saturating_sub(visible.saturating_sub(1));
    let mut lines = Vec::new();
    for (i, v) in versions.iter().enumerate().skip(skip).take(visible) {
        let mark = match app.schema_marks.iter().position(|m| *m == i) {
            Some(0) => "A",
            Some(_) => "B",
            None => " ",
        };
        let file = v.origin.rsplit('/').next().unwrap_or(&v.origin);
        let change = if v.diff.is_empty() {
            String::new()
        } else {
            format!("  {}", v.diff.summary())
        };
        let mut line = Line::from(vec![
            Span::styled(format!("{mark} "), t.style("key")),
            Span::raw(format!("{} {} ", short_time(&v.ingested_at), v.fingerprint)),
            Span::raw(cut(&clean(file), 28)),
            Span::styled(change, Style::default().fg(t.changed)),
        ]);
        if i == app.schema_sel {
            line = line.style(t.style("selected"));
        }
        lines.push(line);
    }
    f.render_widget(
        Paragraph::new(lines).block(panel(
            t,
            &format!(" {source}: bronze schema per batch ({}) ", versions.len()),
        )),
        hist_area,
    );

    // contract(s) fed by the source, with Delta versions
    let mut c = Vec::new();
    for ti in s
        .tables
        .iter()
        .filter(|ti| ti.source.as_deref() == Some(source.as_str()))
    {
        let versions: Vec<String> = {
            let mut v: Vec<i64> = s
                .steps
                .iter()
                .filter(|st| st.table == ti.name)
                .filter_map(|st| st.delta_version)
                .collect();
            v.sort();
            v.dedup();
            v.iter().rev().take(6).map(|x| format!("v{x}")).collect()
        };
        c.push(Line::from(Span::styled(
            format!(
                "silver {} contract  (Delta {})",
                ti.name,
                versions.join(" ")
            ),
            t.style("header"),
        )));
        for (col, ty, nullable, rules) in &ti.columns {
            c.push(Line::from(format!(
                "  {col}: {ty}{}  {rules}",
                if *nullable { "" } else { " not null" }
            )));
        }
    }
    f.render_widget(
        Paragraph::new(c)
            .wrap(Wrap { trim: false })
            .block(panel(t, " Contract ")),
        contract_area,
    );

    // diff between the marked versions (default: selected vs the one before)
    let (a, b) = match app.schema_marks.as_slice() {
        [x, y] => (*x.min(y), *x.max(y)),
        [x] => (*x, app.schema_sel),
        _ => (app.schema_sel.saturating_sub(1), app.schema_sel),
    };
    let mut d = Vec::new();
    if let (Some(va), Some(vb)) = (versions.get(a), versions.get(b)) {
        let diff = drift::diff(
            &va.fields.iter().cloned().collect(),
            &vb.fields.iter().cloned().collect(),
        );
        let cites = dead_by_field(app, &source);
        d.push(Line::from(format!("A {} → B {}", va.batch_id, vb.batch_id)));
        if diff.is_empty() {
            d.push(Line::from(Span::styled(
                "= no difference",
                Style::default().fg(t.muted),
            )));
        }
        let n = |f: &str| {
            cites
                .get(f)
                .map(|n| format!("   {n} dead letter(s) cite it"))
                .unwrap_or_default()
        };
        for (fld, ty) in &diff.added {
            d.push(Line::from(Span::styled(
                format!("+ {fld}: {ty}{}", n(fld)),
                Style::default().fg(t.added),
            )));
        }
        for (fld, ty) in &diff.removed {
            d.push(Line::from(Span::styled(
                format!("- {fld}: {ty}{}", n(fld)),
                Style::default().fg(t.removed),
            )));
        }
        for (fld, x, y) in &diff.changed {
            d.push(Line::from(Span::styled(
                format!("~ {fld}: {x} → {y}{}", n(fld)),
                Style::default().fg(t.changed),
            )));
        }
        d.push(Line::from(Span::styled("fields of B", t.style("header"))));
        for (fld, ty) in &vb.fields {
            d.push(Line::from(format!("  {fld}: {ty}")));
        }
    } else {
        d.push(Line::from("no batches yet"));
    }
    f.render_widget(
        Paragraph::new(d).block(panel(t, " Diff (space picks A and B) ")),
        right,
    );
}
