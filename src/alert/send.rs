//! Sending one notification: the body in the alert's format (karat's JSON document or a Slack
//! message), POSTed by [`crate::webhook`] (headers substituted, retried with backoff).

use serde_json::json;

use super::{Notice, NoticeStatus};
use crate::config::alert::{Alert, AlertFormat};
pub use crate::webhook::Outcome;

/// The body `alert` sends for `notice`.
pub fn body(alert: &Alert, project: &str, notice: &Notice) -> serde_json::Value {
    match alert.format {
        AlertFormat::Json => json!({
            "version": 1,
            "alert": alert.name,
            "project": project,
            "status": notice.status.as_str(),
            "severity": notice.severity,
            "route": if notice.severity == "error" { "page" } else { "ticket" },
            "key": notice.key,
            "zone": notice.zone,
            "table": notice.table,
            "owner": notice.owner,
            "summary": notice.summary,
            "partitions": notice.partitions,
            "repeat": notice.repeat,
            "runbook": notice.runbook,
        }),
        AlertFormat::Slack => {
            let icon = match (notice.status, notice.severity.as_str()) {
                (NoticeStatus::Resolved, _) => ":large_green_circle:",
                (_, "error") => ":red_circle:",
                _ => ":large_yellow_circle:",
            };
            let runbook = notice
                .runbook
                .as_deref()
                .map(|r| format!(" — runbook: {r}"))
                .unwrap_or_default();
            json!({
                "text": format!(
                    "{icon} [{}] {project}: {}{runbook}",
                    notice.status.as_str().to_uppercase(),
                    notice.summary
                )
            })
        }
    }
}

/// POSTs `notice` to `alert`'s receiver, retrying on errors and non-2xx answers.
pub async fn deliver(alert: &Alert, project: &str, notice: &Notice) -> Outcome {
    let what = format!("alert {}", alert.name);
    crate::webhook::post_json(
        &what,
        &alert.url,
        &alert.headers,
        &body(alert, project, notice),
    )
    .await
}
