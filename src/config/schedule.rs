//! `[schedule]`: when `karat serve` (and an open dashboard) runs the pipeline — every fixed
//! period (`every = "15m"`) or on a cron pattern (`cron = "0 * * * *"`, UTC, minutes resolution;
//! parsed by `croner`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A resolved schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron {
        pattern: String,
        cron: Box<croner::Cron>,
    },
}

impl Schedule {
    /// Parses a cron pattern; `Err` says why.
    pub fn cron(pattern: &str) -> Result<Schedule, String> {
        let cron: croner::Cron = pattern.parse().map_err(|e| format!("{e}"))?;
        Ok(Schedule::Cron {
            pattern: pattern.to_string(),
            cron: Box::new(cron),
        })
    }

    /// When the next run is due after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => {
                now + chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::MAX)
            }
            Schedule::Cron { cron, .. } => cron
                .find_next_occurrence(&now, false)
                .unwrap_or(now + chrono::Duration::days(366)),
        }
    }

    /// How long from `now` until the next run.
    pub fn wait_after(&self, now: DateTime<Utc>) -> Duration {
        (self.next_after(now) - now).to_std().unwrap_or_default()
    }

    /// `every 15m` / `cron 0 * * * *`, for logs.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Cron { pattern, .. } => format!("cron {pattern}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cron_pattern_finds_the_next_matching_minute_and_a_bad_one_says_why() {
        let s = Schedule::cron("30 * * * *").unwrap();
        let now: DateTime<Utc> = "2026-11-23T02:40:10Z".parse().unwrap();
        assert_eq!(s.next_after(now).to_rfc3339(), "2026-11-23T03:30:00+00:00");
        assert_eq!(s.wait_after(now), Duration::from_secs(50 * 60 - 10));
        assert!(Schedule::cron("61 * * * *").is_err());
        let e = Schedule::Every(Duration::from_secs(900));
        assert_eq!(e.wait_after(now), Duration::from_secs(900));
    }
}
