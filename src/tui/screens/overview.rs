//! Screen 1, Overview, as a component: its state (the selection, which breach groups are
//! expanded), its keys, and the list it shows — breach groups most urgent first (each
//! expandable into its partitions), then every table. Keys return an [`Effect`] for the app to
//! carry out; the screen never touches another screen's state.

use std::collections::BTreeSet;

use crate::ledger::breaches::{BreachGroup, BreachMember, GroupKey};
use crate::ledger::status::TableStatus;
use crate::tui::action::Action;

/// One line of the overview.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// A breach group, and whether it is expanded.
    Group(&'a BreachGroup, bool),
    /// One partition of an expanded group.
    Member(&'a BreachGroup, &'a BreachMember),
    Table(&'a TableStatus),
}

/// What a key asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Show the partitions screen with the cursor on this table (and partition).
    Open {
        table: String,
        partition: Option<String>,
    },
}

/// The overview's own state.
#[derive(Debug, Clone, Default)]
pub struct OverviewScreen {
    /// Index into [`OverviewScreen::items`].
    pub sel: usize,
    expanded: BTreeSet<GroupKey>,
}

impl OverviewScreen {
    /// The lines shown, breaches first.
    pub fn items<'a>(&self, groups: &'a [BreachGroup], tables: &'a [TableStatus]) -> Vec<Item<'a>> {
        let mut out = Vec::new();
        for g in groups {
            let open = self.expanded.contains(&g.key);
            out.push(Item::Group(g, open));
            if open {
                out.extend(g.members.iter().map(|m| Item::Member(g, m)));
            }
        }
        out.extend(tables.iter().map(Item::Table));
        out
    }

    /// Handles a key; `filter` is the view's `/` filter (for `n`/`N`).
    pub fn handle(
        &mut self,
        action: Action,
        groups: &[BreachGroup],
        tables: &[TableStatus],
        filter: Option<&str>,
        page: usize,
    ) -> Effect {
        let items = self.items(groups, tables);
        let last = items.len().saturating_sub(1);
        match action {
            Action::Down => self.sel = (self.sel + 1).min(last),
            Action::Up => self.sel = self.sel.saturating_sub(1),
            Action::PageDown => self.sel = (self.sel + page).min(last),
            Action::PageUp => self.sel = self.sel.saturating_sub(page),
            Action::Top => self.sel = 0,
            Action::Bottom => self.sel = last,
            Action::Right => self.expand(&items, true),
            Action::Left => self.expand(&items, false),
            Action::NextMatch => self.find(&items, filter, true),
            Action::PrevMatch => self.find(&items, filter, false),
            Action::Open => return open(items.get(self.sel)),
            _ => {}
        }
        Effect::None
    }

    /// Keeps the selection in range after the lake changed.
    pub fn clamp(&mut self, groups: &[BreachGroup], tables: &[TableStatus]) {
        self.expanded
            .retain(|k| groups.iter().any(|g| &g.key == k && g.members.len() > 1));
        let n = self.items(groups, tables).len();
        self.sel = self.sel.min(n.saturating_sub(1));
    }

    /// Expands (or collapses) the selected group; collapsing from a member selects its group.
    fn expand(&mut self, items: &[Item], open: bool) {
        let group = match items.get(self.sel) {
            Some(Item::Group(g, _)) | Some(Item::Member(g, _)) => *g,
            _ => return,
        };
        if open && group.members.len() > 1 {
            self.expanded.insert(group.key.clone());
        } else if !open {
            self.expanded.remove(&group.key);
            if let Some(at) = items
                .iter()
                .position(|i| matches!(i, Item::Group(g, _) if g.key == group.key))
            {
                self.sel = at;
            }
        }
    }

    /// Moves to the next (previous) line whose text contains the filter.
    fn find(&mut self, items: &[Item], filter: Option<&str>, forward: bool) {
        let Some(f) = filter.map(str::to_lowercase) else {
            return;
        };
        let n = items.len();
        for step in 1..=n {
            let i = if forward {
                (self.sel + step) % n
            } else {
                (self.sel + n * 2 - step) % n
            };
            if text_of(&items[i]).to_lowercase().contains(&f) {
                self.sel = i;
                return;
            }
        }
    }
}

fn open(item: Option<&Item>) -> Effect {
    let (table, partition) = match item {
        Some(Item::Group(g, _)) => (g.table(), g.newest().map(|m| m.partition.clone())),
        Some(Item::Member(g, m)) => (g.table(), Some(m.partition.clone())),
        Some(Item::Table(t)) => (t.name.as_str(), None),
        None => return Effect::None,
    };
    Effect::Open {
        table: table.to_string(),
        partition,
    }
}

/// What `n`/`N` search in a line.
fn text_of(item: &Item) -> String {
    match item {
        Item::Group(g, _) => g.headline(),
        Item::Member(g, m) => format!("{} {} {}", g.table(), m.partition, m.reason),
        Item::Table(t) => t.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Zone;
    use crate::ledger::breaches::BreachKind;

    fn group(table: &str, partitions: &[&str]) -> BreachGroup {
        BreachGroup {
            key: GroupKey {
                kind: BreachKind::Failed,
                zone: Zone::Silver,
                table: table.into(),
                cause: "reject rate #%".into(),
            },
            example: "reject rate 9%".into(),
            members: partitions
                .iter()
                .map(|p| BreachMember {
                    partition: p.to_string(),
                    reason: format!("reject rate 9% on {p}"),
                })
                .collect(),
            blocks: 0,
        }
    }

    fn press(s: &mut OverviewScreen, groups: &[BreachGroup], a: Action) -> Effect {
        s.handle(a, groups, &[], Some("03-02"), 10)
    }

    #[test]
    fn enter_on_a_group_opens_its_newest_partition() {
        let groups = [group("orders", &["2026-03-01", "2026-03-02", "2026-03-03"])];
        let mut s = OverviewScreen::default();
        assert_eq!(
            press(&mut s, &groups, Action::Open),
            Effect::Open {
                table: "orders".into(),
                partition: Some("2026-03-03".into())
            }
        );
    }

    #[test]
    fn a_group_expands_into_its_partitions_and_collapses_back() {
        let groups = [
            group("orders", &["2026-03-01", "2026-03-02", "2026-03-03"]),
            group("customers", &["2026-03-01"]),
        ];
        let mut s = OverviewScreen::default();
        assert_eq!(s.items(&groups, &[]).len(), 2);
        press(&mut s, &groups, Action::Right);
        assert_eq!(s.items(&groups, &[]).len(), 5, "three partitions shown");
        press(&mut s, &groups, Action::NextMatch);
        assert_eq!(s.sel, 2, "n finds the member 2026-03-02");
        assert_eq!(
            press(&mut s, &groups, Action::Open),
            Effect::Open {
                table: "orders".into(),
                partition: Some("2026-03-02".into())
            }
        );
        press(&mut s, &groups, Action::Left);
        assert_eq!(
            (s.sel, s.items(&groups, &[]).len()),
            (0, 2),
            "back on the group"
        );
        s.sel = 1;
        press(&mut s, &groups, Action::Right);
        assert_eq!(
            s.items(&groups, &[]).len(),
            2,
            "a one-partition group has nothing to expand"
        );
    }

    #[test]
    fn a_group_that_cleared_is_forgotten_and_the_selection_stays_in_range() {
        let groups = [group("orders", &["2026-03-01", "2026-03-02"])];
        let mut s = OverviewScreen::default();
        press(&mut s, &groups, Action::Right);
        press(&mut s, &groups, Action::Bottom);
        assert_eq!(s.sel, 2);
        s.clamp(&[], &[]);
        assert_eq!(s.sel, 0);
        s.clamp(&groups, &[]);
        assert_eq!(s.items(&groups, &[]).len(), 1, "not expanded any more");
    }
}
