//! One file per view; each renders from [`App`] state only. Shared bits live here: status
//! colours (always paired with a glyph or word) and panel blocks.

pub mod dead_letters;
pub mod dense;
pub mod lineage;
pub mod overview;
pub mod partitions;
pub mod runs;
pub mod schema;

use ratatui::style::Style;
use ratatui::widgets::{Block, Borders};

use super::state::CellState;
use super::theme::Theme;
use crate::ledger::status::Freshness;

/// Colour of a cell state.
pub fn cell_style(t: &Theme, s: CellState) -> Style {
    let c = match s {
        CellState::Ok => t.ok,
        CellState::OkRejects => t.ok,
        CellState::Warn => t.warn,
        CellState::Failed => t.error,
        CellState::Blocked => t.blocked,
        CellState::Stale => t.warn,
        CellState::Running => t.running,
        CellState::Missing => t.muted,
    };
    Style::default().fg(c)
}

/// Colour and word of a freshness state.
pub fn freshness(t: &Theme, f: Freshness) -> (Style, &'static str) {
    match f {
        Freshness::Ok => (Style::default().fg(t.ok), "● fresh"),
        Freshness::Warn => (Style::default().fg(t.warn), "◐ late"),
        Freshness::Error => (Style::default().fg(t.error), "✗ stale"),
        Freshness::Never => (Style::default().fg(t.muted), "· never"),
        Freshness::NoSlo => (Style::default().fg(t.muted), "- no slo"),
    }
}

/// Colour of a status word (ok, warn, failed, blocked).
pub fn status_style(t: &Theme, s: &str) -> Style {
    Style::default().fg(match s {
        "ok" => t.ok,
        "warn" => t.warn,
        "failed" => t.error,
        "blocked" => t.blocked,
        _ => t.muted,
    })
}

/// A bordered panel with a title.
pub fn panel<'a>(t: &Theme, title: &'a str) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(t.style("border"))
        .title(title)
        .title_style(t.style("title"))
}

/// Sparkline of fractions (0..1) as block characters.
pub fn spark(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    values[start..]
        .iter()
        .map(|v| {
            if *v <= 0.0 {
                '▁'
            } else {
                let i = ((v.min(0.5) / 0.5) * 7.0).round() as usize;
                BARS[i.clamp(1, 7)]
            }
        })
        .collect()
}
