//! View 1, Overview: "what is broken right now?" A banner of breaches grouped by cause (failed
//! partitions, blocked gates, stale tables), most urgent first, each group expandable into its
//! partitions (`l` / `h`), then every table by zone with freshness
//! against its SLO, error rate and its recent history, rows, last status and owner.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{freshness, panel, spark, status_style};
use crate::tui::sanitize::{clean, cut};
use crate::tui::screens::overview::Item;
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
    let items = app.overview.items(&app.breaches, &s.status.tables);
    let breach_lines = items
        .iter()
        .filter(|i| !matches!(i, Item::Table(_)))
        .count();
    let banner_h = (breach_lines.max(1) as u16 + 2).min(area.height / 2).max(3);
    let mut sli_lines = sli_lines(app);
    sli_lines.extend(slo_lines(app));
    sli_lines.extend(replay_cost_line(app));
    let sli_h = (sli_lines.len() as u16 + 2).min(area.height.saturating_sub(banner_h) / 3);
    let [top, bottom, sli_area] = Layout::vertical([
        Constraint::Length(banner_h),
        Constraint::Min(3),
        Constraint::Length(sli_h),
    ])
    .areas(area);
    banner(f, top, app, &items[..breach_lines]);
    f.render_widget(
        Paragraph::new(sli_lines).block(panel(t, &sli_title(app))),
        sli_area,
    );
    tables(f, bottom, app, breach_lines);
}

/// Every table by zone: freshness against its SLO, error rate and its history, rows, last status.
fn tables(f: &mut Frame, area: Rect, app: &App, breach_lines: usize) {
    let t = &app.theme;
    let Some(s) = &app.snapshot else { return };
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
            if app.overview.sel == breach_lines + i {
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
        area,
    );
}

/// The breach groups (expanded ones with their partitions), scrolled to the selection.
fn banner(f: &mut Frame, area: Rect, app: &App, items: &[Item]) {
    let t = &app.theme;
    let width = area.width.saturating_sub(6) as usize;
    let mut lines = Vec::new();
    if items.is_empty() {
        lines.push(Line::from(Span::styled(
            " ✓ no breaches: every partition promoted, every table within its SLO ",
            t.style("banner_ok"),
        )));
    }
    for (i, item) in items.iter().enumerate() {
        let mut line = match item {
            Item::Group(g, open) => {
                let style = t.style(if g.kind().is_error() {
                    "banner_error"
                } else {
                    "banner_warn"
                });
                let fold = match (g.members.len() > 1, open) {
                    (false, _) => " ",
                    (true, false) => "▸",
                    (true, true) => "▾",
                };
                Line::from(vec![
                    Span::styled(format!(" {} ", g.kind().mark()), style),
                    Span::raw(fold),
                    Span::raw(cut(&clean(&g.headline()), width)),
                ])
            }
            Item::Member(_, m) => Line::from(vec![
                Span::raw("      "),
                Span::raw(cut(
                    &clean(&format!("{}: {}", m.partition, m.reason)),
                    width,
                )),
            ]),
            Item::Table(_) => continue,
        };
        if app.overview.sel == i {
            line = line.style(t.style("selected"));
        }
        lines.push(line);
    }
    let partitions: usize = app.breaches.iter().map(|g| g.members.len()).sum();
    let title = if partitions > app.breaches.len() {
        format!(
            " Breaches ({} groups, {partitions} partitions) ",
            app.breaches.len()
        )
    } else {
        format!(" Breaches ({}) ", app.breaches.len())
    };
    let visible = area.height.saturating_sub(2) as usize;
    let skip = app
        .overview
        .sel
        .min(items.len())
        .saturating_sub(visible.saturating_sub(1));
    f.render_widget(
        Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).block(panel(t, &title)),
        area,
    );
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The SLI panel's title: the window and the lake-wide indicators (M5, M6).
fn sli_title(app: &App) -> String {
    let Some(s) = &app.slis else {
        return " SLIs ".into();
    };
    let replays = match s.replay_records_per_run {
        Some(per) => format!(
            "{} records reprocessed ({per:.0} per replay)",
            s.replay_records
        ),
        None => "no replays".into(),
    };
    let slos = app
        .snapshot
        .as_ref()
        .map(|s| s.slos.as_slice())
        .unwrap_or_default();
    let met = if slos.is_empty() {
        String::new()
    } else {
        format!(
            " · SLOs met {}/{}",
            slos.iter().filter(|x| x.met()).count(),
            slos.len()
        )
    };
    format!(
        " SLIs, last {} days: job failures {} · {replays}{met} ",
        s.window_days,
        pct(s.job_failure_rate)
    )
}

/// What replays cost this month (and the month before), the replay budget's running sum.
fn replay_cost_line(app: &App) -> Option<Line<'static>> {
    let s = app.snapshot.as_ref()?;
    let mut months = s.replay_costs.iter();
    let this = months.next()?;
    let before = months
        .next()
        .map(|m| format!(" · {}", m.describe()))
        .unwrap_or_default();
    let budget = s
        .replay_budget_rows
        .map(|b| format!(" (budget {b} records per replay)"))
        .unwrap_or_default();
    Some(Line::from(vec![
        Span::styled(format!("{:<23} ", "replays"), app.theme.style("header")),
        Span::raw(clean(&format!("{}{before}{budget}", this.describe()))),
    ]))
}

/// One line per SLO: attainment against the objective, the error budget left as a bar, and the
/// 1 h / 6 h burn rates.
fn slo_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(s) = &app.snapshot else {
        return vec![];
    };
    s.slos
        .iter()
        .map(|x| {
            let left = x.budget_remaining.unwrap_or(1.0);
            let filled = (left.clamp(0.0, 1.0) * 10.0).round() as usize;
            let bar = format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled));
            let burn = |b: Option<f64>| b.map(|v| format!("{v:.1}x")).unwrap_or_else(|| "-".into());
            let style = if x.met() {
                ratatui::style::Style::default()
            } else {
                t.style("banner_error")
            };
            Line::from(vec![
                Span::styled(
                    format!("{:<6} {:<16} ", x.zone, cut(&x.table, 16)),
                    t.style("header"),
                ),
                Span::styled(
                    format!(
                        "SLO {} ≥ {:.1}% over {:.0}d: {} {} budget {bar} {:+.0}% · burn 1h {} 6h {}",
                        x.sli.as_str(),
                        x.objective * 100.0,
                        x.window_days,
                        pct(x.attainment),
                        if x.met() { "✓" } else { "✗" },
                        left * 100.0,
                        burn(x.burn_1h),
                        burn(x.burn_6h)
                    ),
                    style,
                ),
            ])
        })
        .collect()
}

/// Completeness of `source` against the counts it declared, if it declares them.
fn declared_of<'a>(
    app: &'a App,
    source: &str,
) -> Option<&'a crate::ledger::declared::SourceCompleteness> {
    app.snapshot
        .as_ref()?
        .declared
        .iter()
        .find(|d| d.source == source)
}

/// One line per source and silver table: M1 (and completeness against declared counts) / M3,
/// M4, M7, M8 (M2 is the tables' freshness).
fn sli_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(s) = &app.slis else { return vec![] };
    let mut out = Vec::new();
    for x in &s.tables {
        let text = match x.zone {
            crate::config::Zone::Bronze => {
                let declared = declared_of(app, &x.table)
                    .map(|d| format!(" · {}", d.describe()))
                    .unwrap_or_default();
                format!("ingest success {}{declared}", pct(x.ingest_success))
            }
            crate::config::Zone::Silver => {
                let volume = x
                    .completeness
                    .as_ref()
                    .map(|c| {
                        format!(
                            "volume {} {} vs {:.0}±{:.0} z={:+.1}{}",
                            c.partition,
                            c.records,
                            c.mean,
                            c.stddev,
                            c.z.clamp(-99.9, 99.9),
                            if c.anomaly { " ANOMALY" } else { "" }
                        )
                    })
                    .unwrap_or_else(|| "volume: too few partitions".into());
                let top = x
                    .dead_letter_rate
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(r, v)| format!(" · top rule {r} {:.1}%", v * 100.0))
                    .unwrap_or_default();
                let event = app
                    .snapshot
                    .as_ref()
                    .and_then(|s| {
                        s.event_lags
                            .iter()
                            .find(|l| l.zone == x.zone && l.table == x.table)
                    })
                    .map(|l| format!("event lag {} · ", age(l.lag_seconds)))
                    .unwrap_or_default();
                format!(
                    "{event}compliance {} · duplicates {} · {volume}{top}",
                    pct(x.schema_compliance),
                    pct(x.duplicate_rate)
                )
            }
            crate::config::Zone::Gold => {
                let Some(l) = app.snapshot.as_ref().and_then(|s| {
                    s.event_lags
                        .iter()
                        .find(|l| l.zone == x.zone && l.table == x.table)
                }) else {
                    continue;
                };
                format!(
                    "event lag {}: the newest {} that reached gold is {}",
                    age(l.lag_seconds),
                    l.column,
                    l.newest.as_deref().unwrap_or("none yet")
                )
            }
        };
        let anomaly = x.completeness.as_ref().is_some_and(|c| c.anomaly)
            || declared_of(app, &x.table).is_some_and(|d| d.incomplete());
        let style = if anomaly {
            t.style("banner_warn")
        } else {
            ratatui::style::Style::default()
        };
        out.push(Line::from(vec![
            Span::styled(
                format!("{:<6} {:<16} ", x.zone, cut(&x.table, 16)),
                t.style("header"),
            ),
            Span::styled(clean(&text), style),
        ]));
    }
    out
}
