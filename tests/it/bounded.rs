//! Bounded memory on any input, in a real process under `ulimit -v`: gzip bombs (NDJSON, and a
//! CSV row that never ends) that inflate past the address space karat is allowed, and a 10 GB
//! file, each fail their own unit (recorded, with the limit named) while the other files land
//! and balance.

use std::io::Write;
use std::process::Command;

use crate::util::{self, Scratch};

/// karat's address space in these runs: far below what the bomb inflates to.
const ULIMIT_KB: u64 = 1_500_000;
/// `max_unit_bytes` of the test's source: above the address space, so only streaming (never
/// holding the unit) keeps the run alive.
const MAX_UNIT: u64 = 2 << 30;

/// A valid gzip file that inflates to `mib` MiB of zeros (one endless line): `mib` copies of
/// one compressed MiB, as concatenated gzip members.
fn gzip_bomb(head: &[u8], mib: usize) -> Vec<u8> {
    let gzip = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let mut out = gzip(head);
    out.extend(gzip(&vec![0u8; 1 << 20]).repeat(mib));
    out
}

fn karat_limited(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {ULIMIT_KB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_karat"))
        .args(args)
        .current_dir(dir)
        .env_remove("KARAT_CONFIG")
        .env_remove("FAILPOINTS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh starts karat");
    let (code, out) = util::finish(child);
    (code.unwrap_or(-1), out)
}

#[test]
fn a_gzip_bomb_and_a_10_gb_file_fail_alone_under_ulimit() {
    let s = Scratch::new();
    karat::bench::generate(s.path(), 3_000, 3).unwrap();
    let config = std::fs::read_to_string(s.join("karat.toml")).unwrap();
    let config = config.replacen(
        "path = \"data/*.ndjson.gz\"",
        &format!(
            "path = \"data/*.ndjson.gz\"\nmax_unit_bytes = {MAX_UNIT}\n\
             [[source]]\nname = \"people\"\nkind = \"files\"\npath = \"data/*.csv.gz\""
        ),
        1,
    );
    std::fs::write(s.join("karat.toml"), config).unwrap();
    // 2.1 GiB inflated from ~2 MB on disk
    std::fs::write(s.join("data/orders-bomb.ndjson.gz"), gzip_bomb(b"", 2_150)).unwrap();
    // a CSV row whose quoted field never ends
    let csv_bomb = gzip_bomb(b"id,name\n1,\"", 2_150);
    std::fs::write(s.join("data/people-bomb.csv.gz"), csv_bomb).unwrap();
    // 10 GB on disk (sparse: no blocks written)
    let huge = std::fs::File::create(s.join("data/orders-huge.ndjson.gz")).unwrap();
    huge.set_len(10 << 30).unwrap();
    drop(huge);

    let (code, out) = karat_limited(s.path(), &["run"]);
    assert_eq!(code, 1, "the run reports the three failed units: {out}");
    for (unit, limit) in [
        ("orders-bomb.ndjson.gz", "max_unit_bytes"),
        ("orders-huge.ndjson.gz", "max_unit_bytes"),
        ("people-bomb.csv.gz", "max_line_bytes"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(unit) && l.contains(limit)),
            "{unit} failed on {limit}: {out}"
        );
    }
    let (code, out) = karat_limited(s.path(), &["verify", "--json"]);
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    let batches = doc["tables"][0]["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "the three good files landed: {out}");
    let records: u64 = batches.iter().map(|b| b["records"].as_u64().unwrap()).sum();
    assert_eq!(records, 3_000, "{out}");
}
