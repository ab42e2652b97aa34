//! Sending one notification: the body in the alert's format (karat's JSON document or a Slack
//! message), the headers with `${VAR}` substituted, POSTed with a timeout and retried with
//! exponential backoff until the receiver answers 2xx.

use std::time::Duration;

use serde_json::json;

use super::{Notice, NoticeStatus};
use crate::config::alert::{Alert, AlertFormat, substitute_env};

/// Attempts per notification (the first plus three retries).
pub const ATTEMPTS: u32 = 4;

/// How a delivery went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub attempts: u32,
    /// Why the last attempt failed; `None` once delivered.
    pub error: Option<String>,
}

/// The body `alert` sends for `notice`.
pub fn body(alert: &Alert, project: &str, notice: &Notice) -> serde_json::Value {
    match alert.format {
        AlertFormat::Json => json!({
            "version": 1,
            "alert": alert.name,
            "project": project,
            "status": notice.status.as_str(),
            "severity": notice.severity,
            "key": notice.key,
            "zone": notice.zone,
            "table": notice.table,
            "summary": notice.summary,
            "partitions": notice.partitions,
            "repeat": notice.repeat,
        }),
        AlertFormat::Slack => {
            let icon = match (notice.status, notice.severity.as_str()) {
                (NoticeStatus::Resolved, _) => ":large_green_circle:",
                (_, "error") => ":red_circle:",
                _ => ":large_yellow_circle:",
            };
            json!({
                "text": format!(
                    "{icon} [{}] {project}: {}",
                    notice.status.as_str().to_uppercase(),
                    notice.summary
                )
            })
        }
    }
}

/// POSTs `notice` to `alert`'s receiver, retrying on errors and non-2xx answers.
pub async fn deliver(alert: &Alert, project: &str, notice: &Notice) -> Outcome {
    let request = match build(alert, project, notice) {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                attempts: 0,
                error: Some(e),
            };
        }
    };
    let mut error = None;
    for attempt in 1..=ATTEMPTS {
        let sent = request
            .try_clone()
            .expect("a JSON body can be cloned")
            .send()
            .await;
        error = match sent {
            Ok(r) if r.status().is_success() => {
                return Outcome {
                    attempts: attempt,
                    error: None,
                };
            }
            Ok(r) => Some(format!("{} answered {}", alert.url, r.status())),
            Err(e) => Some(format!("{}: {e}", alert.url)),
        };
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 << (attempt - 1))).await;
        }
    }
    Outcome {
        attempts: ATTEMPTS,
        error,
    }
}

/// The request, headers substituted; an unset `${VAR}` or a bad header names the alert.
fn build(alert: &Alert, project: &str, notice: &Notice) -> Result<reqwest::RequestBuilder, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("karat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("alert {}: http client: {e}", alert.name))?;
    let mut req = client
        .post(alert.url.clone())
        .json(&body(alert, project, notice));
    for (k, v) in &alert.headers {
        let value = substitute_env(v).map_err(|var| {
            format!(
                "alert {}: header {k}: environment variable {var} is not set",
                alert.name
            )
        })?;
        req = req.header(k.as_str(), value);
    }
    Ok(req)
}
