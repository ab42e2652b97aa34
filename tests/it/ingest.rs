//! Bronze: the same bytes are never ingested twice, records carry provenance, and bronze
//! objects are never rewritten.

use std::io::Read;

use crate::util::{Scratch, open, run};

const CONFIG: &str = r#"
[lake]
url = "lake"
[[source]]
name = "events"
kind = "files"
path = "in/*.ndjson"
[[table]]
name = "events"
zone = "silver"
from = "events"
key = ["id"]
[table.columns]
id = { type = "int64", nullable = false }
kind = { type = "string" }
"#;

/// Sets `path`'s modification time to `secs` after the epoch.
fn set_modified(path: &std::path::Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    f.set_modified(t).unwrap();
}

/// A file read before is known by its path, size and time and not read again; once its time
/// changes it is read, and new bytes land as a new batch. A file modified just before it was
/// read is read again (it could have changed within one clock tick), and the cache of files
/// read is only a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_read_before_is_known_by_its_path_size_and_time() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("in")).unwrap();
    std::fs::write(s.join("karat.toml"), CONFIG).unwrap();
    let (old, fresh) = (s.join("in/old.ndjson"), s.join("in/fresh.ndjson"));
    std::fs::write(&old, "{\"id\":1,\"kind\":\"a\"}\n").unwrap();
    std::fs::write(&fresh, "{\"id\":2,\"kind\":\"b\"}\n").unwrap();
    set_modified(&old, 1_700_000_000);
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let new_and_skipped =
        |r: &karat::pipeline::RunReport| (r.bronze[0].new_batches.len(), r.bronze[0].skipped);
    assert_eq!(new_and_skipped(&run(&plan, &lake).await), (2, 0));

    // the same size and time: not read, so these new bytes are not seen; the fresh file is
    // read again and its bytes are known by their hash
    std::fs::write(&old, "{\"id\":3,\"kind\":\"c\"}\n").unwrap();
    set_modified(&old, 1_700_000_000);
    assert_eq!(new_and_skipped(&run(&plan, &lake).await), (0, 2));
    let cache = s.join("lake/_karat/bronze_files/events.json");
    std::fs::remove_file(&cache).unwrap();
    assert_eq!(new_and_skipped(&run(&plan, &lake).await), (1, 1));
    assert!(cache.exists());

    // without the cache the old file was read: its new bytes landed
    let n = crate::util::sql(&s.join("lake"), "silver/events", "SELECT COUNT(*) FROM t").await;
    assert_eq!(crate::util::scalar(&n), "3");

    // a cache that cannot be read is read around, and written again
    std::fs::write(&cache, "not json").unwrap();
    assert_eq!(new_and_skipped(&run(&plan, &lake).await), (0, 2));
    let text = std::fs::read_to_string(&cache).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).expect("the cache written again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_twice_add_nothing() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.join("in")).unwrap();
    std::fs::write(s.join("karat.toml"), CONFIG).unwrap();
    let body = "{\"id\":1,\"kind\":\"a\"}\n{\"id\":2,\"kind\":\"b\"}\nnot json\n";
    std::fs::write(s.join("in/one.ndjson"), body).unwrap();
    let (plan, lake) = open(&s.join("karat.toml")).await;
    let r1 = run(&plan, &lake).await;
    assert_eq!(r1.bronze[0].new_batches.len(), 1);
    let m = &r1.bronze[0].new_batches[0];
    assert_eq!((m.records, m.invalid), (3, 1));

    // the same bytes under another name, and a second run over the same files
    std::fs::write(s.join("in/copy.ndjson"), body).unwrap();
    let r2 = run(&plan, &lake).await;
    assert_eq!(r2.bronze[0].new_batches.len(), 0);
    assert_eq!(r2.bronze[0].skipped, 2);
    assert!(
        r2.silver.iter().all(|t| t.partitions.is_empty()),
        "nothing new for silver"
    );

    // the batch object: gzip NDJSON, each record stamped
    let objects: Vec<_> = walk(&s.join("lake/bronze/events"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let before = std::fs::metadata(&objects[0]).unwrap().modified().unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&objects[0]).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["_batch_id"], m.batch_id.as_str());
        assert_eq!(l["_source"], "events");
        assert_eq!(l["_line"], i as i64 + 1);
        assert!(l["_ingested_at"].as_str().unwrap().ends_with('Z'));
        assert!(l["_file"].as_str().unwrap().ends_with("one.ndjson"));
    }
    assert_eq!(lines[2]["_raw"], "not json");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.join(&format!(
            "lake/bronze/events/_manifests/{}.json",
            m.batch_id
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["records"], 3);
    assert_eq!(manifest["schema"]["id"], "number");
    use sha2::Digest;
    assert_eq!(
        manifest["sha256"],
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    );

    // a third run rewrites nothing in bronze
    run(&plan, &lake).await;
    assert_eq!(
        std::fs::metadata(&objects[0]).unwrap().modified().unwrap(),
        before
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
