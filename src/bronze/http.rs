//! `kind = "http"` sources: GET a JSON API with reqwest, following page-number or next-link
//! pagination, with `${ENV}` header substitution, a timeout, and retries with exponential
//! backoff and jitter on 429, 5xx and connection errors.

use std::time::Duration;

use rand::Rng;
use url::Url;

use crate::config::{HttpSpec, PaginationKind};
use crate::error::{KaratError, KaratResult};

/// One fetched page.
#[derive(Debug)]
pub struct Page {
    pub url: String,
    pub body: bytes::Bytes,
    pub records: Vec<serde_json::Value>,
}

fn err(source: &str, message: String) -> KaratError {
    KaratError::Source {
        source_name: source.to_string(),
        message,
    }
}

/// Replaces `${VAR}` with the environment variable's value.
pub fn substitute_env(value: &str, source: &str, header: &str) -> KaratResult<String> {
    crate::config::alert::substitute_env(value).map_err(|var| {
        err(
            source,
            format!("header {header}: environment variable {var} is not set"),
        )
    })
}

/// Fetches every page of the source.
pub async fn fetch_all(spec: &HttpSpec, source: &str, max_bytes: u64) -> KaratResult<Vec<Page>> {
    let client = reqwest::Client::builder()
        .timeout(spec.timeout)
        .user_agent(concat!("karat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| err(source, format!("http client: {e}")))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &spec.headers {
        let value = substitute_env(v, source, k)?;
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| err(source, format!("header name {k}: {e}")))?;
        let value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|e| err(source, format!("header {k}: {e}")))?;
        headers.insert(name, value);
    }
    let mut pages = Vec::new();
    let first = Url::parse(&spec.url).map_err(|e| err(source, format!("url {}: {e}", spec.url)))?;
    // credentials go only to the origin of the configured URL, never to a host a response names
    let origin = first.origin();
    let none = reqwest::header::HeaderMap::new();
    let mut visited: std::collections::HashSet<Url> = std::collections::HashSet::new();
    let mut next = Some(first);
    let mut page_no = 1u32;
    while let Some(url) = next.take() {
        if pages.len() as u32 >= spec.max_pages {
            break;
        }
        if spec.pagination == PaginationKind::NextLink && !visited.insert(url.clone()) {
            return Err(err(
                source,
                format!("next link cycle: {url} was already fetched"),
            ));
        }
        let url = match spec.pagination {
            PaginationKind::Page => {
                let mut u = url.clone();
                let others: Vec<(String, String)> = u
                    .query_pairs()
                    .filter(|(k, _)| k != &spec.page_param)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                u.query_pairs_mut()
                    .clear()
                    .extend_pairs(others)
                    .append_pair(&spec.page_param, &page_no.to_string());
                u
            }
            _ => url,
        };
        let headers = if url.origin() == origin {
            &headers
        } else {
            &none
        };
        let body = get_with_retries(&client, &url, headers, spec, source, max_bytes).await?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| err(source, format!("{url}: response is not JSON: {e}")))?;
        let records = extract_records(&value, spec.records.as_deref())
            .map_err(|m| err(source, format!("{url}: {m}")))?;
        let empty = records.is_empty();
        next = match spec.pagination {
            PaginationKind::None => None,
            PaginationKind::Page if empty => None,
            PaginationKind::Page => {
                page_no += 1;
                Some(Url::parse(&spec.url).expect("checked above"))
            }
            PaginationKind::NextLink => {
                match value.get(&spec.next_field).and_then(|v| v.as_str()) {
                    Some(link) if !link.is_empty() => Some(
                        url.join(link)
                            .map_err(|e| err(source, format!("{url}: next link {link:?}: {e}")))?,
                    ),
                    _ => None,
                }
            }
        };
        if !(empty && spec.pagination == PaginationKind::Page) {
            pages.push(Page {
                url: url.to_string(),
                body,
                records,
            });
        }
    }
    Ok(pages)
}

/// The records of a response body.
pub fn extract_records(
    body: &serde_json::Value,
    field: Option<&str>,
) -> Result<Vec<serde_json::Value>, String> {
    if let Some(field) = field {
        return match body.get(field) {
            Some(serde_json::Value::Array(a)) => Ok(a.clone()),
            Some(serde_json::Value::Null) | None => Ok(Vec::new()),
            Some(_) => Err(format!("field \"{field}\" is not an array")),
        };
    }
    match body {
        serde_json::Value::Array(a) => Ok(a.clone()),
        serde_json::Value::Object(m) => {
            for f in ["data", "items", "records", "results"] {
                if let Some(serde_json::Value::Array(a)) = m.get(f) {
                    return Ok(a.clone());
                }
            }
            Err("body is an object without a records array; set `records = \"<field>\"`".into())
        }
        _ => Err("body is neither an array nor an object".into()),
    }
}

async fn get_with_retries(
    client: &reqwest::Client,
    url: &Url,
    headers: &reqwest::header::HeaderMap,
    spec: &HttpSpec,
    source: &str,
    max_bytes: u64,
) -> KaratResult<bytes::Bytes> {
    let mut attempt = 0u32;
    loop {
        let result = client
            .get(url.clone())
            .headers(headers.clone())
            .send()
            .await;
        let retry_reason = match result {
            Ok(resp) if resp.status().is_success() => {
                return read_capped(resp, max_bytes)
                    .await
                    .map_err(|e| err(source, format!("{url}: {e}")));
            }
            Ok(resp) => {
                let status = resp.status();
                if status.as_u16() == 429 || status.is_server_error() {
                    format!("HTTP {status}")
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(err(
                        source,
                        format!(
                            "{url}: HTTP {status}: {}",
                            text.chars().take(200).collect::<String>()
                        ),
                    ));
                }
            }
            Err(e) => format!("{e}"),
        };
        if attempt >= spec.retries {
            return Err(err(
                source,
                format!(
                    "{url}: giving up after {} attempts: {retry_reason}",
                    attempt + 1
                ),
            ));
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// Exponential backoff with full jitter: 100ms·2^n plus up to the same again, capped at 10s.
/// A response body, streamed, refused once it passes `max` bytes (before holding more).
async fn read_capped(mut resp: reqwest::Response, max: u64) -> Result<bytes::Bytes, String> {
    if let Some(len) = resp.content_length().filter(|n| *n > max) {
        return Err(format!(
            "body of {len} bytes, over max_unit_bytes = {max} (not read)"
        ));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading body: {e}"))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(format!(
                "body over max_unit_bytes = {max} (stopped reading)"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter = rand::rng().random_range(0..=base);
    Duration::from_millis(base + jitter)
}
