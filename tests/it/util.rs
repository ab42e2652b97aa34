//! Shared helpers for the integration tests: scratch folders that print their tree when a test
//! fails, running the demo, and reading Delta tables back with DataFusion's own Delta reader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::prelude::SessionContext;
use karat::events::Events;
use karat::lake::Lake;
use karat::pipeline::{Plan, RunOptions, RunReport, Trigger};

/// A scratch folder; on a failing test it prints every file below it.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- files under {} ---", self.dir.path().display());
            let mut stack = vec![self.dir.path().to_path_buf()];
            let mut files = Vec::new();
            while let Some(d) = stack.pop() {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            files.push(p);
                        }
                    }
                }
            }
            files.sort();
            for f in files.iter().take(400) {
                let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                eprintln!(
                    "{:>10}  {}",
                    size,
                    f.strip_prefix(self.dir.path()).unwrap_or(f).display()
                );
            }
        }
    }
}

/// Loads the plan and lake of a config.
pub async fn open(config: &Path) -> (Plan, Lake) {
    let plan = Plan::load(config)
        .await
        .unwrap_or_else(|e| panic!("loading {}: {e}", config.display()));
    let lake = Lake::open(&plan.config.lake_url).expect("lake opens");
    (plan, lake)
}

/// Asserts that the lake balances (`karat verify`) and equals its from-scratch rebuild, made
/// in `into` (an empty folder).
pub async fn assert_verified_and_rebuilt(plan: &Plan, lake: &Lake, into: &Path) {
    let v = karat::pipeline::verify(plan, lake).await.unwrap();
    assert!(v.ok(), "{}", v.lines().join("\n"));
    assert_rebuilt(plan, lake, into).await;
}

/// Asserts that the lake equals its from-scratch rebuild, made in `into` (an empty folder).
pub async fn assert_rebuilt(plan: &Plan, lake: &Lake, into: &Path) {
    let into = Lake::open(&url::Url::from_directory_path(into).unwrap()).unwrap();
    let r = karat::pipeline::rebuild(plan, lake, &into).await.unwrap();
    assert!(r.equal(), "{}", r.lines().join("\n"));
}

/// One `karat run`.
pub async fn run(plan: &Plan, lake: &Lake) -> RunReport {
    karat::pipeline::run(plan, lake, RunOptions::new(Trigger::Cli), &Events::none())
        .await
        .expect("run completes")
}

/// Generates the demo in `dir` and runs it day by day; returns every run's report.
pub async fn demo(dir: &Path, orders_per_day: usize) -> (Plan, Lake, Vec<RunReport>) {
    let days = karat::demo::generate(dir, orders_per_day).expect("demo data");
    let (plan, lake) = open(&dir.join("karat.toml")).await;
    let mut reports = Vec::new();
    for d in &days {
        karat::demo::arrive(dir, d).expect("files arrive");
        reports.push(run(&plan, &lake).await);
    }
    (plan, lake, reports)
}

/// A DataFusion session with the Delta table at `lake/rel` registered as `t`, read by
/// deltalake's own table provider (not karat code).
pub async fn session_with(lake_dir: &Path, rel: &str) -> SessionContext {
    let url = url::Url::from_directory_path(lake_dir.join(rel)).expect("url");
    let table = deltalake::open_table(url)
        .await
        .unwrap_or_else(|e| panic!("open {rel}: {e}"));
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .expect("session");
    let provider = table.table_provider().await.expect("provider");
    ctx.register_table("t", provider).expect("register");
    ctx
}

/// Runs SQL against a Delta table (`t`) and returns the batches.
pub async fn sql(lake_dir: &Path, rel: &str, query: &str) -> Vec<RecordBatch> {
    let ctx = session_with(lake_dir, rel).await;
    ctx.sql(query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Pretty text of batches (for comparisons and failure output).
pub fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).expect("pretty").to_string()
}

/// `SELECT key, count` → map.
pub fn counts(batches: &[RecordBatch]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for b in batches {
        let k = deltalake::arrow::compute::cast(
            b.column(0),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )
        .expect("cast");
        let k = k.as_string::<i32>();
        let n = b
            .column(1)
            .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            m.insert(
                if k.is_valid(i) {
                    k.value(i).to_string()
                } else {
                    "null".into()
                },
                n.value(i),
            );
        }
    }
    m
}

/// First column of the first row as text.
pub fn scalar(batches: &[RecordBatch]) -> String {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let v =
        deltalake::arrow::compute::cast(b.column(0), &deltalake::arrow::datatypes::DataType::Utf8)
            .expect("cast");
    v.as_string::<i32>().value(0).to_string()
}

/// Records per bronze batch, counted from the gzip NDJSON objects themselves (not from karat's
/// manifests): batch id → non-blank lines.
pub fn bronze_records(lake_dir: &Path, source: &str) -> BTreeMap<String, i64> {
    use std::io::BufRead;
    let mut out = BTreeMap::new();
    let root = lake_dir.join("bronze").join(source);
    for day in std::fs::read_dir(&root).expect("bronze folder").flatten() {
        if !day
            .file_name()
            .to_string_lossy()
            .starts_with("ingest_date=")
        {
            continue;
        }
        for obj in std::fs::read_dir(day.path()).unwrap().flatten() {
            let name = obj.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".ndjson.gz") else {
                continue;
            };
            let f = std::fs::File::open(obj.path()).unwrap();
            let r = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f));
            let n = r
                .lines()
                .map(|l| l.unwrap())
                .filter(|l| !l.trim().is_empty())
                .count();
            out.insert(id.to_string(), n as i64);
        }
    }
    out
}

/// Starts the `karat` binary in `dir` with `args` and extra environment.
pub fn spawn_karat(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_karat"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KARAT_CONFIG")
        .env_remove("FAILPOINTS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("karat starts")
}

/// How a `karat` process ended: its exit code (None when a signal ended it) and its output.
pub fn finish(c: std::process::Child) -> (Option<i32>, String) {
    let out = c.wait_with_output().expect("karat finishes");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A daily bench project in `dir` (`karat::bench::bench_config`): its config, returned, and
/// an empty `data` folder for [`daily_file`].
pub fn daily_project(dir: &Path, deletion_vectors: bool) -> String {
    let config = karat::bench::bench_config(deletion_vectors);
    std::fs::write(dir.join("karat.toml"), &config).expect("bench config");
    std::fs::create_dir_all(dir.join("data")).expect("data folder");
    config
}

/// Writes the daily bench's day `n` (`per_day` lines) into `dir/data`, seeded by the day: the
/// same lines every time.
pub fn daily_file(dir: &Path, n: usize, per_day: usize) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    karat::bench::daily::write_day(&dir.join("data"), n, per_day, &mut rng).expect("day file");
}

/// A bench project (`karat::bench::generate`) whose contract accepts only EUR: two rows in
/// three of every day are dead letters and every day fails its gate the same way.
pub fn bench_rejecting_most(dir: &Path, lines: usize, days: usize) {
    karat::bench::generate(dir, lines, days).expect("bench data");
    let config = dir.join("karat.toml");
    let text = std::fs::read_to_string(&config).expect("bench config");
    let text = text.replacen(
        r#"one_of = ["USD", "EUR", "GBP"]"#,
        r#"one_of = ["EUR"]"#,
        1,
    );
    std::fs::write(&config, text).expect("bench config");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// A child process killed (and reaped) when the test ends, however it ends.
pub struct Killed(pub Option<std::process::Child>);

impl Killed {
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Hands the process over (to wait for its exit).
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("running")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP receiver on loopback that records every request (headers and JSON body) and answers
/// 500 to the first `fail_first` of them.
pub struct Receiver {
    server: std::sync::Arc<tiny_http::Server>,
    pub port: u16,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| format!("{}: {}", h.field, h.value))
                    .collect::<Vec<_>>()
                    .join("\n");
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push((
                        headers,
                        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                    ));
                    l.len()
                };
                let code = if n <= fail_first { 500 } else { 200 };
                let _ = req.respond(tiny_http::Response::from_string("").with_status_code(code));
            }
        });
        Receiver { server, port, seen }
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Every row of `query` over the Delta table at `rel` as text, none when it does not exist.
pub async fn rows(lake_dir: &Path, rel: &str, query: &str) -> Vec<Vec<String>> {
    if !lake_dir.join(rel).join("_delta_log").exists() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for b in sql(lake_dir, rel, query).await {
        let cols: Vec<_> = b.columns().iter().map(karat::lake::delta::utf8).collect();
        out.extend(
            (0..b.num_rows()).map(|r| cols.iter().map(|c| c.value(r).to_string()).collect()),
        );
    }
    out
}

/// Asserts that `base` with each `(from, to)` edit is refused at load, naming the file and line,
/// with a message containing its text.
pub async fn assert_refused(base: &str, cases: &[((&str, &str), &str)]) {
    let s = Scratch::new();
    let cfg = s.join("karat.toml");
    for (edit, says) in cases {
        let text = base.replacen(edit.0, edit.1, 1);
        assert_ne!(text, base, "{edit:?} changes nothing");
        std::fs::write(&cfg, text).unwrap();
        let err = karat::pipeline::Plan::load(&cfg)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert!(
            err.contains("karat.toml:"),
            "names the file and line: {err}"
        );
    }
}

/// `karat init`'s example project in `dir`, its karat.toml passed through `edit`.
pub fn init(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let cfg = karat::config::example::write_example(dir, false).expect("init");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, edit(text)).unwrap();
    cfg
}
