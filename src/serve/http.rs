//! The daemon's HTTP endpoint: `/metrics` (Prometheus / OpenMetrics text), `/healthz` and
//! `/status` (the `karat status --json` document), served by `tiny_http` on a thread of its own
//! from pages the daemon refreshes. (hyper's server feature would rebuild the whole DataFusion
//! tree that hyper's client already sits under; tiny_http adds four small crates.)

use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use crate::error::{KaratError, KaratResult};

/// What the endpoint serves, as of the daemon's last refresh.
#[derive(Debug, Default)]
pub struct Pages {
    pub metrics: String,
    pub status: String,
    /// Why the last refresh failed, if it did (`/healthz` says 503 with it).
    pub error: Option<String>,
}

pub type SharedPages = Arc<RwLock<Pages>>;

/// A running endpoint.
pub struct Endpoint {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: String,
}

impl Endpoint {
    /// Binds `listen` (`127.0.0.1:9464`) and serves `pages` until [`Endpoint::stop`].
    pub fn start(listen: &str, pages: SharedPages) -> KaratResult<Endpoint> {
        let server = tiny_http::Server::http(listen).map_err(|e| {
            KaratError::Usage(format!(
                "[serve] listen = \"{listen}\": cannot listen there: {e}"
            ))
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .map(|a| a.to_string())
            .unwrap_or_else(|| listen.to_string());
        let server = Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("karat-http".into())
            .spawn(move || {
                for request in s.incoming_requests() {
                    respond(request, &pages);
                }
            })
            .map_err(|e| KaratError::Other(format!("starting the HTTP thread: {e}")))?;
        Ok(Endpoint {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address actually bound (a `:0` port resolved).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], value.as_bytes())
        .expect("a static header is valid")
}

fn respond(request: tiny_http::Request, pages: &SharedPages) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let pages = pages.read().unwrap_or_else(|e| e.into_inner());
    let (code, body, ty) = match path.as_str() {
        "/metrics" => (
            200,
            pages.metrics.clone(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/status" => (200, pages.status.clone(), "application/json"),
        "/healthz" => match &pages.error {
            None => (200, "ok\n".to_string(), "text/plain; charset=utf-8"),
            Some(e) => (503, format!("{e}\n"), "text/plain; charset=utf-8"),
        },
        _ => (
            404,
            "not found: try /metrics, /healthz or /status\n".to_string(),
            "text/plain; charset=utf-8",
        ),
    };
    drop(pages);
    let response = tiny_http::Response::from_string(body)
        .with_status_code(code)
        .with_header(header(ty));
    // a client that hung up is its own problem
    let _ = request.respond(response);
}
