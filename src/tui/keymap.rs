//! The keymap: one table of (key, where it applies, action, help). Key handling, the `?` help
//! screen and the bottom bar are all generated from it, so they cannot disagree.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::{Action, View};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    In(View),
}

/// One binding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub key: &'static str,
    pub scope: Scope,
    pub action: Action,
    pub help: &'static str,
    /// Shown in the bottom bar.
    pub bar: bool,
}

const fn b(
    key: &'static str,
    scope: Scope,
    action: Action,
    help: &'static str,
    bar: bool,
) -> Binding {
    Binding {
        key,
        scope,
        action,
        help,
        bar,
    }
}

/// The keymap.
pub fn bindings() -> Vec<Binding> {
    use Action::*;
    use Scope::*;
    vec![
        b("q", Global, Quit, "quit", true),
        b("ctrl-c", Global, Quit, "quit", false),
        b("?", Global, Help, "help (this screen)", true),
        b(
            ":",
            Global,
            Prompt,
            "command prompt (:run, :replay T P, :table T, :theme T, :view V)",
            true,
        ),
        b("1", Global, Show(View::Overview), "overview", false),
        b("2", Global, Show(View::Partitions), "partitions", false),
        b("3", Global, Show(View::DeadLetters), "dead letters", false),
        b("4", Global, Show(View::Lineage), "lineage", false),
        b("5", Global, Show(View::Schema), "schema", false),
        b("6", Global, Show(View::Runs), "runs", false),
        b("tab", Global, NextView, "next view", false),
        b("shift-tab", Global, PrevView, "previous view", false),
        b("j", Global, Down, "down", false),
        b("down", Global, Down, "down", false),
        b("k", Global, Up, "up", false),
        b("up", Global, Up, "up", false),
        b("h", Global, Left, "left", false),
        b("left", Global, Left, "left", false),
        b("l", Global, Right, "right", false),
        b("right", Global, Right, "right", false),
        b("pgdn", Global, PageDown, "page down", false),
        b("pgup", Global, PageUp, "page up", false),
        b("g", Global, Top, "top", false),
        b("G", Global, Bottom, "bottom", false),
        b("/", Global, Filter, "filter", true),
        b("n", Global, NextMatch, "next match", false),
        b("N", Global, PrevMatch, "previous match", false),
        b("esc", Global, Back, "back / close / clear filter", true),
        b("ctrl-r", Global, RunNow, "run the pipeline now", true),
        b("F5", Global, Refresh, "reload from the lake", false),
        b("s", Global, Snapshot, "save this view as SVG", false),
        b(
            "enter",
            In(View::Overview),
            Open,
            "jump to the selected breach / table",
            true,
        ),
        b(
            "l",
            In(View::Overview),
            Right,
            "expand the selected breach group into its partitions",
            true,
        ),
        b(
            "right",
            In(View::Overview),
            Right,
            "expand the breach group",
            false,
        ),
        b(
            "h",
            In(View::Overview),
            Left,
            "collapse the breach group",
            false,
        ),
        b(
            "left",
            In(View::Overview),
            Left,
            "collapse the breach group",
            false,
        ),
        b(
            "enter",
            In(View::Partitions),
            Open,
            "dead letters of the selected cell",
            true,
        ),
        b(
            "r",
            In(View::Partitions),
            Replay,
            "replay the selected cell(s)",
            true,
        ),
        b(
            "n",
            In(View::Partitions),
            NextMatch,
            "next failed / blocked cell (in tables matching the filter)",
            false,
        ),
        b(
            "N",
            In(View::Partitions),
            PrevMatch,
            "previous failed / blocked cell",
            false,
        ),
        b(
            "z",
            In(View::Partitions),
            ToggleDense,
            "dense view: every partition, one character each, shaded by reject rate",
            true,
        ),
        b(
            "f",
            In(View::Partitions),
            CycleStatusFilter,
            "status filter: all → failed / blocked → warn / rejects → stale",
            true,
        ),
        b(
            "v",
            In(View::Partitions),
            MultiSelect,
            "start / end a multi-selection",
            true,
        ),
        b(
            "R",
            In(View::Partitions),
            ReplayFailed,
            "replay every failed cell in view",
            true,
        ),
        b(
            "enter",
            In(View::DeadLetters),
            Open,
            "rows of the reason / row detail",
            true,
        ),
        b(
            "e",
            In(View::DeadLetters),
            Export,
            "export the rows in view to NDJSON",
            true,
        ),
        b("]", In(View::DeadLetters), NextTable, "next table", true),
        b(
            "[",
            In(View::DeadLetters),
            PrevTable,
            "previous table",
            false,
        ),
        b(
            "enter",
            In(View::Lineage),
            Open,
            "focus the selected node",
            true,
        ),
        b("]", In(View::Lineage), NextTable, "next table", false),
        b("[", In(View::Lineage), PrevTable, "previous table", false),
        b(
            "space",
            In(View::Schema),
            Mark,
            "pick a version for the diff",
            true,
        ),
        b(
            "u",
            In(View::Runs),
            Restore,
            "undo the selected replay (restore the tables it rewrote)",
            true,
        ),
        b("]", In(View::Schema), NextTable, "next source", true),
        b("[", In(View::Schema), PrevTable, "previous source", false),
    ]
}

/// The key of an event in the keymap's spelling.
pub fn key_name(k: &KeyEvent) -> String {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    let base = match k.code {
        KeyCode::Char(' ') => "space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Enter => "enter".into(),
        KeyCode::Esc => "esc".into(),
        KeyCode::Tab => "tab".into(),
        KeyCode::BackTab => "shift-tab".into(),
        KeyCode::Up => "up".into(),
        KeyCode::Down => "down".into(),
        KeyCode::Left => "left".into(),
        KeyCode::Right => "right".into(),
        KeyCode::PageUp => "pgup".into(),
        KeyCode::PageDown => "pgdn".into(),
        KeyCode::Home => "g".into(),
        KeyCode::End => "G".into(),
        KeyCode::Backspace => "backspace".into(),
        KeyCode::F(n) => format!("F{n}"),
        _ => String::new(),
    };
    if ctrl { format!("ctrl-{base}") } else { base }
}

/// The bindings valid in a dashboard: all, or in a read-only one those that do not write.
pub fn active(read_only: bool) -> Vec<Binding> {
    bindings()
        .into_iter()
        .filter(|bd| !(read_only && bd.action.writes()))
        .collect()
}

/// The action bound to a key in a view, view bindings first.
pub fn lookup(view: View, k: &KeyEvent, read_only: bool) -> Option<Action> {
    let name = key_name(k);
    let all = active(read_only);
    all.iter()
        .find(|bd| bd.key == name && bd.scope == Scope::In(view))
        .or_else(|| {
            all.iter()
                .find(|bd| bd.key == name && bd.scope == Scope::Global)
        })
        .map(|bd| bd.action)
}

/// Bottom-bar entries valid in a view: (key, help).
pub fn bar(view: View, read_only: bool) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = active(read_only)
        .into_iter()
        .filter(|bd| bd.bar && bd.scope == Scope::In(view))
        .map(|bd| (bd.key, short(bd.help)))
        .collect();
    out.push(("1-6", "views"));
    out.extend(
        active(read_only)
            .into_iter()
            .filter(|bd| bd.bar && bd.scope == Scope::Global)
            .map(|bd| (bd.key, short(bd.help))),
    );
    out
}

fn short(help: &'static str) -> &'static str {
    help.split([' ', '(']).next().unwrap_or(help)
}

/// Help lines for a view: its own keys, then the global ones.
pub fn help_lines(view: View, read_only: bool) -> Vec<(String, &'static str)> {
    let all = active(read_only);
    let mut out = Vec::new();
    for scope in [Scope::In(view), Scope::Global] {
        for bd in all.iter().filter(|bd| bd.scope == scope) {
            out.push((bd.key.to_string(), bd.help));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_keys_win_over_global_ones_and_help_lists_every_binding() {
        let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(lookup(View::Partitions, &enter, false), Some(Action::Open));
        let r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE);
        assert_eq!(lookup(View::Partitions, &r, false), Some(Action::Replay));
        assert_eq!(lookup(View::Overview, &r, false), None);
        let c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(View::Runs, &c, false), Some(Action::Quit));
        let help = help_lines(View::Partitions, false);
        assert!(help.iter().any(|(k, h)| k == "r" && h.contains("replay")));
        assert_eq!(
            help.len(),
            bindings()
                .iter()
                .filter(|b| b.scope == Scope::Global || b.scope == Scope::In(View::Partitions))
                .count()
        );
    }

    #[test]
    fn a_read_only_dashboard_has_no_writing_key() {
        let r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE);
        assert_eq!(lookup(View::Partitions, &r, true), None);
        let ctrl_r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL);
        assert_eq!(lookup(View::Overview, &ctrl_r, true), None);
        for view in [View::Overview, View::Partitions] {
            let help = help_lines(view, true);
            assert!(
                !help
                    .iter()
                    .any(|(k, _)| k == "r" || k == "R" || k == "ctrl-r")
            );
            assert!(
                !bar(view, true)
                    .iter()
                    .any(|(k, _)| *k == "r" || *k == "R" || *k == "ctrl-r")
            );
        }
        assert!(bar(View::Partitions, false).iter().any(|(k, _)| *k == "r"));
    }
}
