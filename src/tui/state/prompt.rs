//! The `:` prompt: its commands (`:run`, `:replay T P`, `:table T`, `:theme T`, `:view V`),
//! the `/` filter's submission, and tab completion.

use super::*;

impl App {
    /// Submits the text of the filter or prompt.
    pub fn submit(&mut self, text: String) {
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Filter(_) => {
                let f = if text.is_empty() { None } else { Some(text) };
                if self.view == View::DeadLetters {
                    self.dead.filter = f.clone();
                    self.dead.focus = DeadFocus::Rows;
                    self.load_rows();
                }
                self.filter = f;
                self.next_match(true);
            }
            Mode::Prompt(_) => self.command(&text),
            other => self.mode = other,
        }
    }

    /// Runs a `:` command.
    pub fn command(&mut self, text: &str) {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["run"] => self.handle(Action::RunNow),
            ["q"] | ["quit"] => self.quit = true,
            ["replay", table, parts @ ..] if !parts.is_empty() => {
                let plan = self.replay_plan(&[(
                    table.to_string(),
                    parts.iter().map(|p| p.to_string()).collect(),
                )]);
                self.mode = Mode::Confirm(plan);
            }
            ["replay", "--failed"] | ["replay", "failed"] => self.handle(Action::ReplayFailed),
            ["table", name] => {
                if self.matrix.rows.iter().any(|(_, t)| t == name) {
                    self.jump_to(name, None);
                    self.dead.table = Some(name.to_string())
                        .filter(|n| self.silver_tables().contains(n))
                        .or(self.dead.table.clone());
                    if let Some(t) = self.snapshot.as_ref().and_then(|s| s.table(name)) {
                        self.lineage_focus = Some(Node {
                            zone: t.zone,
                            name: t.name.clone(),
                        });
                    }
                    self.message = Some((format!("table {name}"), false));
                } else {
                    self.message = Some((format!("no table named {name}"), true));
                }
            }
            ["theme", name] => match Theme::load(name) {
                Ok(t) => {
                    self.theme = t;
                    self.message = Some((format!("theme {name}"), false));
                }
                Err(e) => self.message = Some((e.to_string(), true)),
            },
            ["view", name] => match View::from_slug(name) {
                Some(v) => self.show(v),
                None => self.message = Some((format!("no view {name}"), true)),
            },
            [] => {}
            _ => {
                self.message = Some((
                    format!(
                        "unknown command :{text}  (try :run, :replay TABLE PARTITION, :table NAME, :theme NAME, :view NAME)"
                    ),
                    true,
                ))
            }
        }
    }

    /// Completions for the prompt text.
    pub fn complete(&self, text: &str) -> String {
        let words: Vec<&str> = text.split(' ').collect();
        let cands: Vec<String> = match words.as_slice() {
            [w] => ["run", "replay", "table", "theme", "view", "quit"]
                .iter()
                .filter(|c| c.starts_with(w))
                .map(|c| format!("{c} "))
                .collect(),
            ["replay", w] | ["table", w] => self
                .matrix
                .rows
                .iter()
                .map(|(_, t)| t.clone())
                .filter(|t| t.starts_with(w))
                .map(|t| format!("{} {t} ", words[0]))
                .collect(),
            ["replay", t, w] => self
                .matrix
                .cols
                .iter()
                .filter(|c| c.starts_with(w))
                .map(|c| format!("replay {t} {c}"))
                .rev()
                .collect(),
            ["theme", w] => crate::tui::theme::BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.starts_with(w))
                .map(|n| format!("theme {n}"))
                .collect(),
            ["view", w] => View::ALL
                .iter()
                .map(|v| v.slug())
                .filter(|n| n.starts_with(w))
                .map(|n| format!("view {n}"))
                .collect(),
            _ => vec![],
        };
        cands.into_iter().next().unwrap_or_else(|| text.to_string())
    }
}
