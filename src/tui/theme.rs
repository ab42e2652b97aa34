//! Themes: TOML files of named colours plus per-element styles (`themes/*.toml`, k9s skins are
//! the model). The four shipped themes are compiled in, so `--theme light` works anywhere; a
//! path to a file loads a user theme.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use crate::error::{KaratError, KaratResult};

/// Built-in themes: (name, TOML).
pub const BUILTIN: [(&str, &str); 4] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("colorblind", include_str!("../../themes/colorblind.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    colors: BTreeMap<String, String>,
    #[serde(default)]
    styles: BTreeMap<String, StyleSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    italic: bool,
}

/// A loaded theme.
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub bg: Color,
    pub fg: Color,
    pub muted: Color,
    pub accent: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub blocked: Color,
    pub running: Color,
    pub selection: Color,
    pub added: Color,
    pub removed: Color,
    pub changed: Color,
    styles: BTreeMap<String, Style>,
}

fn parse_color(s: &str, colors: &BTreeMap<String, String>, depth: u8) -> Result<Color, String> {
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() == 6
            && let Ok(v) = u32::from_str_radix(hex, 16)
        {
            return Ok(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8));
        }
        return Err(format!("bad colour {s:?}: expected #rrggbb"));
    }
    if depth < 4
        && let Some(named) = colors.get(s)
    {
        return parse_color(named, colors, depth + 1);
    }
    s.parse::<Color>().map_err(|_| {
        format!(
            "unknown colour {s:?}: use #rrggbb, a name from [colors], or a terminal colour name"
        )
    })
}

impl Theme {
    /// Parses theme TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> KaratResult<Theme> {
        let f: ThemeFile = toml::from_str(text).map_err(|e| {
            let (line, column) =
                crate::config::position(text, e.span().map(|s| s.start).unwrap_or(0));
            KaratError::Config {
                file: origin.into(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let err = |m: String| KaratError::Config {
            file: origin.into(),
            line: 1,
            column: 1,
            message: m,
        };
        let c = |name: &str| -> KaratResult<Color> {
            let v = f
                .colors
                .get(name)
                .ok_or_else(|| err(format!("theme {} lacks colour `{name}`", f.name)))?;
            parse_color(v, &f.colors, 0).map_err(err)
        };
        let mut styles = BTreeMap::new();
        for (k, s) in &f.styles {
            let mut st = Style::default();
            if let Some(fg) = &s.fg {
                st = st.fg(parse_color(fg, &f.colors, 0).map_err(err)?);
            }
            if let Some(bg) = &s.bg {
                st = st.bg(parse_color(bg, &f.colors, 0).map_err(err)?);
            }
            if s.bold {
                st = st.add_modifier(Modifier::BOLD);
            }
            if s.underline {
                st = st.add_modifier(Modifier::UNDERLINED);
            }
            if s.italic {
                st = st.add_modifier(Modifier::ITALIC);
            }
            styles.insert(k.clone(), st);
        }
        Ok(Theme {
            name: f.name.clone(),
            bg: c("bg")?,
            fg: c("fg")?,
            muted: c("muted")?,
            accent: c("accent")?,
            ok: c("ok")?,
            warn: c("warn")?,
            error: c("error")?,
            blocked: c("blocked")?,
            running: c("running")?,
            selection: c("selection")?,
            added: c("added")?,
            removed: c("removed")?,
            changed: c("changed")?,
            styles,
        })
    }

    /// A built-in theme by name, or a theme file by path.
    pub fn load(name_or_path: &str) -> KaratResult<Theme> {
        if let Some((n, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Theme::parse(text, &format!("themes/{n}.toml"));
        }
        let p = Path::new(name_or_path);
        if p.exists() {
            let text = std::fs::read_to_string(p).map_err(|e| KaratError::io(p, e))?;
            return Theme::parse(&text, name_or_path);
        }
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        Err(KaratError::Usage(format!(
            "no theme \"{name_or_path}\": built-in themes are {}, or give a path to a .toml file",
            names.join(", ")
        )))
    }

    /// The default theme.
    pub fn default_dark() -> Theme {
        Theme::load("dark").expect("built-in theme parses")
    }

    /// Base style: theme foreground on background.
    pub fn base(&self) -> Style {
        Style::default().fg(self.fg).bg(self.bg)
    }

    /// A named element style (`title`, `tab_active`, `selected`, …); base when absent.
    pub fn style(&self, element: &str) -> Style {
        self.styles
            .get(element)
            .copied()
            .unwrap_or_else(|| Style::default().fg(self.fg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_theme_loads_and_the_files_match() {
        for (name, _) in BUILTIN {
            let t = Theme::load(name).unwrap();
            assert_eq!(t.name, name);
            assert_ne!(t.ok, t.error);
            let on_disk = std::fs::read_to_string(format!(
                "{}/themes/{name}.toml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            Theme::parse(&on_disk, name).unwrap();
        }
        assert!(Theme::load("nope").is_err());
        assert!(Theme::parse("name = \"x\"\n[colors]\nbg = \"#zzzzzz\"\n", "x.toml").is_err());
    }
}
