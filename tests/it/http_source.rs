//! HTTP sources against a real server on 127.0.0.1: next-link pagination, `${ENV}` headers,
//! and a retry after a 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::util::{Scratch, open, run, scalar, sql};

/// Serves `/items?page=N` with a next link, failing the first request with 503, and requiring
/// the Authorization header. Stops after `max_requests`.
async fn serve(
    max_requests: usize,
    token: String,
) -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, s) = (hits.clone(), seen.clone());
    tokio::spawn(async move {
        for _ in 0..max_requests {
            let Ok(Ok((mut sock, _))) =
                tokio::time::timeout(std::time::Duration::from_secs(20), listener.accept()).await
            else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.lock().unwrap().push(req.clone());
            let count = h.fetch_add(1, Ordering::SeqCst);
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = if count == 0 {
                ("503 Service Unavailable", "{}".to_string())
            } else if !req
                .to_lowercase()
                .contains(&format!("authorization: bearer {}", token.to_lowercase()))
            {
                ("401 Unauthorized", "{\"error\":\"no token\"}".to_string())
            } else if path.ends_with("page=2") {
                (
                    "200 OK",
                    r#"{"data":[{"id":3,"name":"c"},{"id":"x","name":"bad id"}],"next":null}"#
                        .to_string(),
                )
            } else {
                (
                    "200 OK",
                    r#"{"data":[{"id":1,"name":"a"},{"id":2,"name":"b"}],"next":"/items?page=2"}"#
                        .to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (port, hits, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_paginates_retries_and_substitutes_headers() {
    // the token comes from an environment variable the test process has for sure
    let token = std::env::var("PATH").expect("PATH is set");
    let (port, hits, seen) = serve(10, token).await;
    let s = Scratch::new();
    let config = |var: &str| {
        format!(
            r#"
[lake]
url = "lake"
[[source]]
name = "api"
kind = "http"
url = "http://127.0.0.1:{port}/items?page=1"
headers = {{ Authorization = "Bearer ${{{var}}}" }}
pagination = "next_link"
timeout = "5s"
retries = 2
[[table]]
name = "items"
zone = "silver"
from = "api"
key = ["id"]
max_reject_rate = 0.5
[table.columns]
id = {{ type = "int64", nullable = false }}
name = {{ type = "string" }}
"#
        )
    };
    let var = format!("KARAT_TEST_UNSET_{port}");
    std::fs::write(s.join("karat.toml"), config(&var)).unwrap();
    let (plan, lake) = open(&s.join("karat.toml")).await;

    // without the variable: a clear error naming it, and nothing lands
    let r = run(&plan, &lake).await;
    assert_eq!(r.bronze[0].failed.len(), 1);
    assert!(
        r.bronze[0].failed[0].error.contains(&var),
        "{:?}",
        r.bronze[0].failed
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    std::fs::write(s.join("karat.toml"), config("PATH")).unwrap();
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
    assert!(r.bronze[0].failed.is_empty(), "{:?}", r.bronze[0].failed);
    assert_eq!(hits.load(Ordering::SeqCst), 3, "503, page 1, page 2");
    assert!(seen.lock().unwrap()[2].contains("page=2"));
    let b = &r.bronze[0].new_batches[0];
    assert_eq!(b.records, 4);
    let lake_dir = s.join("lake");
    assert_eq!(
        scalar(&sql(&lake_dir, "silver/items", "SELECT COUNT(*) FROM t").await),
        "3"
    );
    assert_eq!(
        scalar(
            &sql(
                &lake_dir,
                "dead_letters/items",
                "SELECT array_to_string(reasons, '|') FROM t"
            )
            .await
        ),
        "id: expected int64, got \"x\""
    );
}

/// Answers every request on `addr` with `body` (a JSON page) and records the requests.
async fn serve_page(addr: &str, body: String) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(format!("{addr}:0")).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok(Ok((mut sock, _))) =
                tokio::time::timeout(std::time::Duration::from_secs(20), listener.accept()).await
            else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            s.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_next_link_to_another_origin() {
    // another origin on this machine: a second loopback address
    let (other_port, other_seen) = serve_page(
        "127.0.0.2",
        r#"{"data":[{"id":9}],"next":null}"#.to_string(),
    )
    .await;
    let (port, seen) = serve_page(
        "127.0.0.1",
        format!(r#"{{"data":[{{"id":1}}],"next":"http://127.0.0.2:{other_port}/steal"}}"#),
    )
    .await;
    let s = Scratch::new();
    std::fs::write(
        s.join("karat.toml"),
        format!(
            r#"
[lake]
url = "lake"
[[source]]
name = "api"
kind = "http"
url = "http://127.0.0.1:{port}/items"
pagination = "next_link"
headers = {{ Authorization = "Bearer s3cret", X-Api-Key = "k3y" }}
"#
        ),
    )
    .unwrap();
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let first = seen.lock().unwrap().join("\n").to_lowercase();
    assert!(first.contains("authorization: bearer s3cret"), "{first}");
    let other = other_seen.lock().unwrap().join("\n").to_lowercase();
    assert!(
        other.contains("get /steal"),
        "the next page was fetched: {other}"
    );
    assert!(
        !other.contains("s3cret") && !other.contains("k3y"),
        "credentials leaked to another origin:\n{other}"
    );
    let records: u64 = r.bronze[0].new_batches.iter().map(|m| m.records).sum();
    assert_eq!(records, 2, "both pages landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_unit_bytes_is_refused_unread() {
    let big = format!(r#"{{"data":[{{"id":1,"pad":"{}"}}]}}"#, "x".repeat(50_000));
    let (port, _) = serve_page("127.0.0.1", big).await;
    let s = Scratch::new();
    std::fs::write(
        s.join("karat.toml"),
        format!(
            r#"
[lake]
url = "lake"
[[source]]
name = "api"
kind = "http"
url = "http://127.0.0.1:{port}/items"
retries = 0
max_unit_bytes = 10000
"#
        ),
    )
    .unwrap();
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r = run(&plan, &lake).await;
    let said = format!(
        "{:?} {:?}",
        r.errors,
        r.bronze.iter().map(|b| &b.failed).collect::<Vec<_>>()
    );
    assert!(said.contains("over max_unit_bytes = 10000"), "{said}");
    assert_eq!(r.exit_code(), 1);
    assert!(
        r.bronze.iter().all(|b| b.new_batches.is_empty()),
        "nothing landed"
    );
}
