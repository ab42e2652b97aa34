//! `karat serve` as an operator runs it on the demo lake: the daemon runs its schedule, serves
//! /healthz, /status and /metrics, a real Prometheus (Debian's `prometheus`, installed by
//! `.ci/run`) scrapes it on loopback and answers queries through its HTTP API with the lake's
//! numbers, the demo's failed partition fires an alert and `karat replay --failed` after the fix
//! resolves it, and SIGTERM stops the daemon with exit code 0.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Killed, Receiver, Scratch, finish, free_port, spawn_karat};

/// The demo lake (its last day failed) plus `[serve]` on `port`, an hourly schedule (its first
/// run starts at once), an alert to `hook` and OpenLineage events to `hook` too.
async fn project(dir: &Path, port: u16, hook: u16) {
    crate::util::demo(dir, 60).await;
    let cfg = dir.join("karat.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[serve]\nlisten = \"127.0.0.1:{port}\"\nrefresh = \"1s\"\n\n[schedule]\nevery = \"1h\"\n\n\
         [[alert]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:{hook}/hook\"\nmin_severity = \"error\"\n\n\
         [openlineage]\nurl = \"http://127.0.0.1:{hook}\"\n"
    ));
    std::fs::write(&cfg, text).unwrap();
}

/// GETs `url` until `ready` accepts the body, for at most `secs`.
async fn poll(url: &str, secs: u64, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await
            && let Ok(body) = r.text().await
        {
            if ready(&body) {
                return body;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{url} was not ready after {secs} s; last answer:\n{last}");
}

/// The value of a Prometheus instant query with one series.
async fn prom_query(prom: u16, query: &str) -> f64 {
    let url = format!(
        "http://127.0.0.1:{prom}/api/v1/query?query={}",
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let body = poll(&url, 90, |b| {
        serde_json::from_str::<Value>(b)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().map(|r| !r.is_empty()))
            .unwrap_or(false)
    })
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{query}: {body}"))
}

fn start_prometheus(dir: &Path, target: u16, port: u16) -> Killed {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: karat\n    \
             static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus is installed (apt-get install prometheus; .ci/run does it)");
    Killed(Some(child))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_karat_serve_and_sigterm_stops_it() {
    let s = Scratch::new();
    let port = free_port();
    let hook = Receiver::start(0);
    project(s.path(), port, hook.port).await;
    let mut karat = Killed(Some(spawn_karat(
        s.path(),
        &["serve", "--log-format", "json"],
        &[],
    )));
    let base = format!("http://127.0.0.1:{port}");

    // the schedule's first run lands, then the status and the metrics show it
    let status = poll(&format!("{base}/status"), 120, |b| {
        serde_json::from_str::<Value>(b).is_ok_and(|v| v["last_run"]["trigger"] == "schedule")
    })
    .await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["last_run"]["trigger"], "schedule", "{status:#}");
    // karat started itself again with one malloc arena, in the same process (its id, which
    // the SIGTERM below reaches, is the one spawned)
    let pid = karat.0.as_ref().expect("running").id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"MALLOC_ARENA_MAX=1"),
        "{}",
        String::from_utf8_lossy(&environ)
    );
    // the failed silver partition (and the failed bronze file) fired, once each; the demo's
    // orders SLO burning its budget fast pages too, under its own key
    let partition_key = |b: &Value| b["key"].as_str().is_some_and(|k| k.contains("/failed/"));
    let firing = |b: &Value| {
        b["status"] == "firing"
            && b["zone"] == "silver"
            && b["table"] == "orders"
            && partition_key(b)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hook.bodies().iter().any(firing) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fired = hook.bodies();
    assert_eq!(fired.iter().filter(|b| firing(b)).count(), 1, "{fired:#?}");
    assert!(
        fired
            .iter()
            .any(|b| b["key"] == "silver/orders/slo/schema_compliance" && b["route"] == "page"),
        "{fired:#?}"
    );
    // the scheduled run's lineage events, schema-valid, the run itself FAILing (the demo's
    // failed bronze file and partition are still failed)
    let lineage = |hook: &Receiver| -> Vec<Value> {
        hook.bodies()
            .into_iter()
            .filter(|b| b["schemaURL"].is_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lineage(&hook).iter().any(|e| e["eventType"] == "FAIL") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let validators = crate::openlineage::Validators::new();
    let events = lineage(&hook);
    assert!(
        events.iter().any(|e| e["eventType"] == "START"),
        "{events:#?}"
    );
    for e in &events {
        let errors = validators.errors(e);
        assert!(errors.is_empty(), "{errors:#?}\n{e:#}");
    }
    let silver_rows = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders" && t["zone"] == "silver")
        .and_then(|t| t["rows"].as_i64())
        .expect("orders in the status");
    assert!(silver_rows > 0, "{status:#}");
    poll(&format!("{base}/healthz"), 10, |b| b == "ok\n").await;
    let metrics = poll(&format!("{base}/metrics"), 10, |b| {
        b.contains("karat_rows_landed")
    })
    .await;
    for needle in [
        "karat_table_rows{zone=\"silver\",table=\"orders\"}",
        "karat_rows_landed_total{zone=\"bronze\",table=\"orders\"}",
        "karat_run_duration_seconds_bucket{",
        "karat_partitions{zone=\"silver\",table=\"orders\",state=\"ok\"}",
        "karat_sli_schema_compliance_ratio{zone=\"silver\",table=\"orders\"}",
        "karat_sli_ingest_success_ratio{zone=\"bronze\",table=\"orders\"} 0.",
        "karat_sli_job_failure_ratio ",
        "# EOF",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let missing = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    // a real Prometheus scrapes it and answers with the lake's numbers
    let prom_port = free_port();
    let _prom = start_prometheus(s.path(), port, prom_port);
    assert_eq!(prom_query(prom_port, "up{job=\"karat\"}").await, 1.0);
    let rows = prom_query(
        prom_port,
        "karat_table_rows{zone=\"silver\",table=\"orders\"}",
    )
    .await;
    assert_eq!(rows as i64, silver_rows);
    let landed = prom_query(prom_port, "sum(karat_rows_landed_total)").await;
    assert!(
        landed >= silver_rows as f64,
        "landed {landed} < silver {silver_rows}"
    );

    // the fix and `karat replay --failed`: the silver breach resolves (sent by the replay)
    let cfg = s.join("karat.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let fixed = text.replace(
        "currency = { type = \"string\", nullable = false,",
        "currency = { type = \"string\", nullable = false, normalize = [\"trim\", \"upper\"],",
    );
    assert_ne!(fixed, text);
    std::fs::write(&cfg, fixed).unwrap();
    let before = lineage(&hook).len();
    let (code, out) = finish(spawn_karat(s.path(), &["replay", "--failed"], &[]));
    assert!(matches!(code, Some(0 | 1)), "{out}");
    let replayed = lineage(&hook);
    assert!(replayed.len() > before, "the replay sent its events");
    for e in &replayed[before..] {
        let errors = validators.errors(e);
        assert!(errors.is_empty(), "{errors:#?}\n{e:#}");
    }
    assert!(
        replayed[before..]
            .iter()
            .any(|e| e["job"]["name"] == "demo-shop.silver.orders" && e["eventType"] == "COMPLETE"),
        "the replayed silver table completes"
    );
    let resolved: Vec<Value> = hook
        .bodies()
        .into_iter()
        .filter(|b| b["status"] == "resolved")
        .collect();
    assert!(
        resolved
            .iter()
            .any(|b| b["zone"] == "silver" && b["table"] == "orders"),
        "{:#?}",
        hook.bodies()
    );

    // SIGTERM: exit 0
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &karat.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (code, out) = finish(karat.take());
    assert_eq!(code, Some(0), "{out}");
    // structured logs: one JSON object per line
    let logs: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "karat serve: stopped"),
        "{out}"
    );
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "scheduled run finished"
                && l["fields"]["run_id"].is_string()),
        "{out}"
    );
}
