//! POSTing a JSON document to a receiver (alert webhooks, the OpenLineage HTTP transport): a
//! timeout per attempt, `${VAR}` substituted in header values at send time, and retries with
//! exponential backoff until the receiver answers 2xx.

use std::time::Duration;

use url::Url;

use crate::config::alert::substitute_env;

/// Attempts per document (the first plus three retries).
pub const ATTEMPTS: u32 = 4;

/// How a delivery went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub attempts: u32,
    /// Why the last attempt failed; `None` once delivered.
    pub error: Option<String>,
}

/// POSTs `body` to `url` with `headers`; `what` names the sender in errors (`alert oncall`).
pub async fn post_json(
    what: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &serde_json::Value,
) -> Outcome {
    let request = match build(what, url, headers, body) {
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
            Ok(r) => Some(format!("{what}: {url} answered {}", r.status())),
            Err(e) => Some(format!("{what}: {url}: {e}")),
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

/// The request, headers substituted; an unset `${VAR}` names the sender and the header.
fn build(
    what: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &serde_json::Value,
) -> Result<reqwest::RequestBuilder, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("karat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("{what}: http client: {e}"))?;
    let mut req = client.post(url.clone()).json(body);
    for (k, v) in headers {
        let value = substitute_env(v)
            .map_err(|var| format!("{what}: header {k}: environment variable {var} is not set"))?;
        req = req.header(k.as_str(), value);
    }
    Ok(req)
}
