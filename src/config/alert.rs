//! `[[alert]]`: where breach notifications go. Resolved from the file: a checked URL, headers
//! whose `${VAR}`s are substituted only when a notification is sent (secrets never sit in the
//! loaded config), the lowest severity sent, the payload format and the repeat interval.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

/// How urgent a breach is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Open a ticket: non-urgent (also spelled `ticket`).
    #[serde(alias = "ticket")]
    Warn,
    /// Page someone (also spelled `page`).
    #[serde(alias = "page")]
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// The body a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// karat's own JSON document (see the README).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text": …}`).
    Slack,
}

/// `[[alert]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub name: String,
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: indexmap::IndexMap<String, String>,
    /// `warn` (default: every breach) or `error` (failures and stale tables only).
    pub min_severity: Option<Severity>,
    #[serde(default)]
    pub format: AlertFormat,
    /// Re-send a breach still firing after this long (default `4h`).
    pub repeat: Option<Spanned<String>>,
    /// Only breaches of tables and sources with one of these `owner`s (default: every owner).
    #[serde(default)]
    pub owners: Vec<String>,
}

/// A resolved `[[alert]]`.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub url: Url,
    /// Values may hold `${VAR}`.
    pub headers: Vec<(String, String)>,
    pub min_severity: Severity,
    pub format: AlertFormat,
    pub repeat: Duration,
    /// Empty: every owner.
    pub owners: Vec<String>,
}

impl Alert {
    /// Whether a breach is this receiver's: severe enough, and one of its owners' (a breach
    /// without an owner goes to receivers that route no owners only).
    pub fn wants(&self, b: &crate::alert::Open) -> bool {
        b.severity >= self.min_severity
            && (self.owners.is_empty() || b.owner.as_ref().is_some_and(|o| self.owners.contains(o)))
    }
}

/// Replaces `${VAR}` with the environment variable's value; `Err` names a variable not set.
pub fn substitute_env(value: &str) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("static regex");
    let mut missing = None;
    let out = re.replace_all(value, |c: &regex::Captures| match std::env::var(&c[1]) {
        Ok(v) => v,
        Err(_) => {
            missing = Some(c[1].to_string());
            String::new()
        }
    });
    match missing {
        Some(var) => Err(var),
        None => Ok(out.into_owned()),
    }
}
