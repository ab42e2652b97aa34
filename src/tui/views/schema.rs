//! View 5, Schema: "what changed in the data's shape?" A source's schema history (the inferred
//! bronze schema of every batch), the silver contract fed by it, the three-way diff of the
//! selected batch vs the contract vs the contract version before it (renames through
//! `source_field` resolved, each difference with the dead letters it explains), and the diff
//! between two picked batches (added / removed / type-changed fields in distinct colours).

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::panel;
use crate::bronze::drift;
use crate::ledger::status::latest_partition_states;
use crate::schema::{SchemaVersion, three_way};
use crate::tui::sanitize::{clean, cut, short_time};
use crate::tui::state::App;

/// Dead letters of silver `table` per failed rule, over its partitions' latest states.
fn dead_by_rule(app: &App, table: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Some(s) = &app.snapshot else { return out };
    for ((z, t, _), st) in latest_partition_states(&s.steps) {
        if z != crate::config::Zone::Silver || t != table {
            continue;
        }
        for (rule, n) in st.dead_by_rule_map() {
            *out.entry(rule).or_default() += n;
        }
    }
    out
}

/// Dead letters citing each field, over the tables reading `source`.
fn dead_by_field(app: &App, source: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Some(s) = &app.snapshot else { return out };
    for t in s
        .tables
        .iter()
        .filter(|t| t.source.as_deref() == Some(source))
    {
        for (c, n) in three_way::dead_by_column(&dead_by_rule(app, &t.name)) {
            *out.entry(c).or_default() += n;
        }
    }
    out
}

/// The three-way diff of every table reading the source, for the selected batch.
fn three_way_lines(app: &App, source: &str, batch: Option<&SchemaVersion>) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(s) = &app.snapshot else {
        return vec![];
    };
    let Some(batch) = batch else {
        return vec![Line::from("no batches yet")];
    };
    let bronze: BTreeMap<String, String> = batch.fields.iter().cloned().collect();
    let mut out = Vec::new();
    for ti in s
        .tables
        .iter()
        .filter(|ti| ti.source.as_deref() == Some(source))
    {
        let Some(contract) = &ti.contract else {
            continue;
        };
        let previous = three_way::previous_contract(&s.contracts, contract);
        let d = three_way::three_way(
            &batch.batch_id,
            &bronze,
            contract,
            previous.as_ref(),
            &dead_by_rule(app, &ti.name),
        );
        out.push(Line::from(Span::styled(
            format!(
                "{} · contract {} · previous {}",
                ti.name,
                d.contract,
                d.previous_contract.as_deref().unwrap_or("none")
            ),
            t.style("header"),
        )));
        for r in &d.rows {
            out.push(field_line(app, r));
        }
    }
    out
}

/// One field of the three-way diff: name, bronze → contract (was previous), findings.
fn field_line(app: &App, r: &three_way::FieldRow) -> Line<'static> {
    let t = &app.theme;
    let problem = r.findings.iter().any(three_way::Finding::is_problem);
    let (mark, style) = if problem {
        ("! ", Style::default().fg(t.removed))
    } else if r.findings.is_empty() {
        ("  ", Style::default())
    } else {
        ("~ ", Style::default().fg(t.changed))
    };
    let name = match &r.column {
        Some(c) if c != &r.field => format!("{c} ← {}", r.field),
        Some(c) => c.clone(),
        None => format!("· {}", r.field),
    };
    let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let was = match (&r.previous, &r.contract) {
        (Some(p), Some(c)) if p != c => format!(" (was {p})"),
        (Some(p), None) => format!(" (was {p})"),
        _ => String::new(),
    };
    let mut findings = Vec::new();
    if r.dead_letters > 0 {
        findings.push(format!("{} dead letters (table)", r.dead_letters));
    }
    findings.extend(r.findings.iter().map(|f| f.text()));
    Line::from(vec![
        Span::styled(mark, style),
        Span::raw(format!(
            "{} {} → {}{was}  ",
            cut(&clean(&name), 26),
            side(&r.bronze),
            side(&r.contract)
        )),
        Span::styled(clean(&findings.join("; ")), style),
    ])
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
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(left);
    let [three_way_area, diff_area] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
    let visible = hist_area.height.saturating_sub(2) as usize;
    f.render_widget(
        Paragraph::new(history_lines(app, &versions, visible)).block(panel(
            t,
            &format!(" {source}: bronze schema per batch ({}) ", versions.len()),
        )),
        hist_area,
    );
    f.render_widget(
        Paragraph::new(contract_lines(app, &source))
            .wrap(Wrap { trim: false })
            .block(panel(t, " Contract ")),
        contract_area,
    );
    f.render_widget(
        Paragraph::new(three_way_lines(app, &source, versions.get(app.schema_sel)))
            .block(panel(t, " Batch vs contract vs previous contract ")),
        three_way_area,
    );
    f.render_widget(
        Paragraph::new(diff_lines(app, &source, &versions))
            .block(panel(t, " Diff (space picks A and B) ")),
        diff_area,
    );
}

/// The batches of the source, the selected one highlighted and the picked ones marked A / B.
fn history_lines(app: &App, versions: &[SchemaVersion], visible: usize) -> Vec<Line<'static>> {
    let t = &app.theme;
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
    lines
}

/// The contract(s) fed by the source, with their Delta versions.
fn contract_lines(app: &App, source: &str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(s) = &app.snapshot else {
        return vec![];
    };
    let mut c = Vec::new();
    for ti in s
        .tables
        .iter()
        .filter(|ti| ti.source.as_deref() == Some(source))
    {
        let mut v: Vec<i64> = s
            .steps
            .iter()
            .filter(|st| st.table == ti.name)
            .filter_map(|st| st.delta_version)
            .collect();
        v.sort();
        v.dedup();
        let versions: Vec<String> = v.iter().rev().take(6).map(|x| format!("v{x}")).collect();
        c.push(Line::from(Span::styled(
            format!(
                "silver {} contract  (Delta {})",
                ti.name,
                versions.join(" ")
            ),
            t.style("header"),
        )));
        for l in ti.contract.iter().flat_map(|d| d.text()) {
            c.push(Line::from(format!("  {}", clean(&l))));
        }
    }
    c
}

/// The diff between the picked batches (default: the selected one vs the one before).
fn diff_lines(app: &App, source: &str, versions: &[SchemaVersion]) -> Vec<Line<'static>> {
    let t = &app.theme;
    let (a, b) = match app.schema_marks.as_slice() {
        [x, y] => (*x.min(y), *x.max(y)),
        [x] => (*x, app.schema_sel),
        _ => (app.schema_sel.saturating_sub(1), app.schema_sel),
    };
    let (Some(va), Some(vb)) = (versions.get(a), versions.get(b)) else {
        return vec![Line::from("no batches yet")];
    };
    let diff = drift::diff(
        &va.fields.iter().cloned().collect(),
        &vb.fields.iter().cloned().collect(),
    );
    let cites = dead_by_field(app, source);
    let mut d = vec![Line::from(format!("A {} → B {}", va.batch_id, vb.batch_id))];
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
    let colored = |text: String, color| Line::from(Span::styled(text, Style::default().fg(color)));
    for (fld, ty) in &diff.added {
        d.push(colored(
            format!("+ {}: {ty}{}", clean(fld), n(fld)),
            t.added,
        ));
    }
    for (fld, ty) in &diff.removed {
        d.push(colored(
            format!("- {}: {ty}{}", clean(fld), n(fld)),
            t.removed,
        ));
    }
    for (fld, x, y) in &diff.changed {
        let line = format!("~ {}: {x} → {y}{}", clean(fld), n(fld));
        d.push(colored(line, t.changed));
    }
    d.push(Line::from(Span::styled("fields of B", t.style("header"))));
    for (fld, ty) in &vb.fields {
        d.push(Line::from(format!("  {}: {ty}", clean(fld))));
    }
    d
}
