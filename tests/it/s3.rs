//! The lake on a real S3-compatible server (moto, `tests/s3/server.py`, started by each test on
//! 127.0.0.1): bronze objects, the Delta tables, the ledger and the writer lease all live under
//! `s3://`, and the lake there ends exactly like the same project's local lake — every batch
//! balancing in `karat verify`, runs and replays included, two writers racing. A server that
//! ignores conditional writes is refused before anything is written. Built with the `cloud`
//! feature only; `.ci/run` installs `moto[server]` when it is missing.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::util::{self, Scratch, free_port, spawn_karat};

const BUCKET: &str = "karat-lake";

/// A moto S3 server on a free loopback port, stopped when dropped.
struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    async fn start(honour_conditional_writes: bool) -> S3Server {
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(port.to_string());
        if !honour_conditional_writes {
            cmd.arg("--ignore-conditional-writes");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts tests/s3/server.py (moto[server] from PyPI)");
        let server = S3Server { child, port };
        server.wait_until_listening();
        server.create_bucket().await;
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the S3 server did not listen on port {} within 60 s \
                 (is `moto[server]` installed? `pip install 'moto[server]'`)",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn create_bucket(&self) {
        let url = format!("{}/{BUCKET}", self.endpoint());
        let resp = reqwest::Client::new().put(&url).send().await.expect(&url);
        assert!(resp.status().is_success(), "creating {url}: {resp:?}");
    }

    /// The environment a `karat` process needs to reach the server.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "karat".into()),
            ("AWS_SECRET_ACCESS_KEY", "karat".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project whose `karat.toml` keeps the lake locally and whose `karat-s3.toml` is the same
/// pipeline with the lake on the server.
fn project(s: &Scratch, lines: usize, days: usize) {
    karat::bench::generate(s.path(), lines, days).unwrap();
    let local = std::fs::read_to_string(s.join("karat.toml")).unwrap();
    let on_s3 = local.replacen(
        "url = \"lake\"",
        &format!("url = \"s3://{BUCKET}/lake\""),
        1,
    );
    assert_ne!(local, on_s3, "the bench config names its lake");
    std::fs::write(s.join("karat-s3.toml"), on_s3).unwrap();
}

/// Runs `karat` against the S3 lake and returns (exit code, output).
fn on_s3(s: &Scratch, server: &S3Server, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--config", "karat-s3.toml"];
    all.extend_from_slice(args);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out) = util::finish(spawn_karat(s.path(), &all, &env));
    (code.unwrap_or(-1), out)
}

fn local(s: &Scratch, args: &[&str]) -> (i32, String) {
    let (code, out) = util::finish(spawn_karat(s.path(), args, &[]));
    (code.unwrap_or(-1), out)
}

fn json(out: &str) -> serde_json::Value {
    let start = out.find('{').unwrap_or_else(|| panic!("no JSON in: {out}"));
    serde_json::Deserializer::from_str(&out[start..])
        .into_iter::<serde_json::Value>()
        .next()
        .expect("one JSON document")
        .unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// What `karat verify --json` found, summed per table: (table, records, silver, dead letters,
/// superseded), with every batch balanced and no key twice asserted.
fn verified(what: &str, code: i32, out: &str) -> Vec<(String, u64, u64, u64, u64)> {
    assert_eq!(code, 0, "{what}: karat verify failed\n{out}");
    let doc = json(out);
    let sum = |batches: &[serde_json::Value], field: &str| -> u64 {
        batches.iter().map(|b| b[field].as_u64().unwrap_or(0)).sum()
    };
    doc["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            let batches = t["batches"].as_array().cloned().unwrap_or_default();
            assert!(!batches.is_empty(), "{what}: no batch verified\n{out}");
            (
                t["table"].as_str().unwrap_or_default().to_string(),
                sum(&batches, "records"),
                sum(&batches, "silver"),
                sum(&batches, "dead"),
                sum(&batches, "superseded"),
            )
        })
        .collect()
}

/// Rows, dead letters and partition states of every table and zone in `karat status --json`.
fn held(out: &str) -> Vec<(String, String, i64, i64, u64, u64)> {
    json(out)["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["zone"].as_str().unwrap_or_default().to_string(),
                t["name"].as_str().unwrap_or_default().to_string(),
                t["rows"].as_i64().unwrap_or(-1),
                t["dead"].as_i64().unwrap_or(-1),
                t["partitions_ok"].as_u64().unwrap_or(0),
                t["partitions_failed"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The S3 lake and the local lake of one project hold the same rows, both balanced.
fn assert_same_lakes(s: &Scratch, server: &S3Server, when: &str) {
    let (code, out) = on_s3(s, server, &["verify", "--json"]);
    let remote = verified(&format!("{when}, s3"), code, &out);
    let (code, out) = local(s, &["verify", "--json"]);
    let here = verified(&format!("{when}, local"), code, &out);
    assert_eq!(remote, here, "{when}: the S3 lake's accounting differs");
    let (_, remote) = on_s3(s, server, &["status", "--json"]);
    let (_, here) = local(s, &["status", "--json"]);
    assert_eq!(held(&remote), held(&here), "{when}: status differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_on_s3_runs_replays_and_verifies_like_a_local_one() {
    let server = S3Server::start(true).await;
    let s = Scratch::new();
    project(&s, 6_000, 3);
    for (what, (code, out)) in [
        ("s3", on_s3(&s, &server, &["run"])),
        ("local", local(&s, &["run"])),
    ] {
        assert!(code == 0 || code == 1, "first run on {what}: {out}");
    }
    assert_same_lakes(&s, &server, "after the first run");

    // two more days: late rows and re-sends take the incremental path, on S3 as locally
    let mut rng = StdRng::seed_from_u64(11);
    for day in [3, 4] {
        karat::bench::daily::write_day(&s.join("data"), day, 2_000, &mut rng).unwrap();
    }
    let (code, out) = on_s3(&s, &server, &["run"]);
    assert!(code == 0 || code == 1, "second run on s3: {out}");
    let (code, out) = local(&s, &["run"]);
    assert!(code == 0 || code == 1, "second run locally: {out}");
    let partition = ["replay", "orders", "--partition", "2026-03-01"];
    let (code, out) = on_s3(&s, &server, &partition);
    assert!(code == 0 || code == 1, "replay on s3: {out}");
    let (code, out) = local(&s, &partition);
    assert!(code == 0 || code == 1, "replay locally: {out}");
    assert_same_lakes(&s, &server, "after new days and a replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_and_a_racing_replay_on_s3_keep_every_row_once() {
    let server = S3Server::start(true).await;
    let s = Scratch::new();
    project(&s, 4_000, 2);
    let (code, out) = on_s3(&s, &server, &["run"]);
    assert!(code == 0 || code == 1, "first run: {out}");
    // more files arrive; two runs and a replay race for the lake
    let mut rng = StdRng::seed_from_u64(5);
    for day in [2, 3] {
        karat::bench::daily::write_day(&s.join("data"), day, 2_000, &mut rng).unwrap();
    }
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start = |args: &[&str]| {
        let mut all = vec!["--config", "karat-s3.toml", "--wait", "5m"];
        all.extend_from_slice(args);
        spawn_karat(s.path(), &all, &env)
    };
    let writers = [
        ("run a", start(&["run"])),
        ("run b", start(&["run"])),
        (
            "replay",
            start(&["replay", "orders", "--partition", "2026-03-01"]),
        ),
    ];
    for (name, child) in writers {
        let (code, out) = util::finish(child);
        assert!(matches!(code, Some(0 | 1)), "{name}: {code:?}\n{out}");
        assert!(!out.contains("does not balance"), "{name}: {out}");
    }
    let (code, out) = on_s3(&s, &server, &["run"]);
    assert!(code == 0 || code == 1, "last run: {out}");
    let (code, out) = local(&s, &["run"]);
    assert!(code == 0 || code == 1, "local run: {out}");
    let (code, out) = local(&s, &["replay", "orders", "--partition", "2026-03-01"]);
    assert!(code == 0 || code == 1, "local replay: {out}");
    assert_same_lakes(&s, &server, "after two writers and a replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_conditional_writes_is_refused() {
    let server = S3Server::start(false).await;
    let s = Scratch::new();
    project(&s, 1_000, 1);
    let (code, out) = on_s3(&s, &server, &["run"]);
    assert_eq!(code, 2, "a writer refuses the store: {out}");
    assert!(
        out.contains("does not honour conditional writes"),
        "the refusal says why: {out}"
    );
    // nothing was written, and readers still work
    let (code, out) = on_s3(&s, &server, &["verify", "--json"]);
    assert_eq!(code, 0, "verify reads an empty lake: {out}");
    let listing = reqwest::get(format!("{}/{BUCKET}?list-type=2", server.endpoint()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !listing.contains("<Key>lake/bronze") && !listing.contains("_delta_log"),
        "nothing landed on a refused store: {listing}"
    );
}
