//! A contract that gains a column once its tables hold rows: silver and the superseded rows
//! take the column (null in the rows stored before), whether the next run only appends new
//! keys or supersedes stored ones, and a table with deletion vectors stays one they apply to
//! (its stored column order is not the contract's, its columns are). An edited `partition_by`
//! is refused before anything is written.

use crate::util::{Scratch, finish, scalar, spawn_karat, sql};

/// Orders of new keys only, in the daily bench's format, with the added column set.
const NEW_KEYS_ONLY: &str = concat!(
    r#"{"order_id":"new-1","customer_id":"c-1","amount":10.00,"currency":"EUR","quantity":1,"status":"paid","order_date":"2026-01-03","coupon":"WINTER"}"#,
    "\n",
    r#"{"order_id":"new-2","customer_id":"c-2","amount":20.00,"currency":"USD","quantity":2,"status":"paid","order_date":"2026-01-04"}"#,
    "\n",
);

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// Runs `karat args` in the project at `dir`, expecting success; its output.
fn karat_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (code, out) = finish(spawn_karat(dir, args, &[]));
    assert_eq!(code, Some(0), "karat {args:?}:\n{out}");
    out
}

/// Two days (the second re-sends orders of the first: the superseded table exists), the
/// contract widened, a file of new keys only, then a third day: every run and `verify` pass.
/// The outputs of the runs after the widening.
fn widened_after_two_days(deletion_vectors: bool) -> (Scratch, Vec<String>) {
    let s = Scratch::new();
    let config = crate::util::daily_project(s.path(), deletion_vectors);
    let day = |n: usize| crate::util::daily_file(s.path(), n, 1_000);
    for n in 0..2 {
        day(n);
        karat_ok(s.path(), &["run"]);
    }
    let wider = config.replacen(
        "order_date = { type = \"date\", nullable = false }\n",
        "order_date = { type = \"date\", nullable = false }\ncoupon = { type = \"string\" }\n",
        1,
    );
    assert_ne!(wider, config);
    std::fs::write(s.join("karat.toml"), wider).unwrap();
    std::fs::write(s.join("data/new-keys.ndjson.gz"), gzip(NEW_KEYS_ONLY)).unwrap();
    let mut runs = vec![karat_ok(s.path(), &["run"])];
    karat_ok(s.path(), &["verify"]);
    day(2);
    runs.push(karat_ok(s.path(), &["run"]));
    karat_ok(s.path(), &["verify"]);
    (s, runs)
}

fn silver_scalar(s: &Scratch, query: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    scalar(&rt.block_on(sql(&s.join("lake"), "silver/orders", query)))
}

fn check_widened(deletion_vectors: bool) -> Vec<String> {
    let (s, runs) = widened_after_two_days(deletion_vectors);
    let coupon = silver_scalar(&s, "SELECT coupon FROM t WHERE order_id = 'new-1'");
    assert_eq!(coupon, "WINTER");
    let nulls = silver_scalar(
        &s,
        "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE coupon IS NULL",
    );
    assert_ne!(nulls, "0", "rows stored before read the new column as null");
    let (code, rebuilt) = finish(spawn_karat(
        s.path(),
        &["rebuild", "--into", s.join("rebuilt").to_str().unwrap()],
        &[],
    ));
    assert_eq!(code, Some(0), "{rebuilt}");
    assert!(!rebuilt.contains("DIFFER"), "{rebuilt}");
    runs
}

#[test]
fn a_column_added_after_rows_were_superseded_is_taken_by_appends_and_rewrites() {
    check_widened(false);
}

#[test]
fn with_deletion_vectors_a_widened_table_is_changed_in_place_again_after_one_rewrite() {
    let runs = check_widened(true);
    // the first run after the widening rewrites (the stored table lacks the column)
    let last = runs.last().unwrap();
    assert!(
        !last.contains("stored table is not plain"),
        "the widened table is still rewritten whole:\n{last}"
    );
}

/// A project run on day 0, its contract edited (`from` → `to`), then day 1's run, which must
/// be refused: the project (with its contract as it was), and the refused run's output, after
/// which `verify` still passes (nothing was written).
fn refused_after_editing(from: &str, to: &str) -> (Scratch, String, String) {
    let s = Scratch::new();
    let config = crate::util::daily_project(s.path(), false);
    let day = |n: usize| crate::util::daily_file(s.path(), n, 1_000);
    day(0);
    karat_ok(s.path(), &["run"]);
    let edited = config.replacen(from, to, 1);
    assert_ne!(edited, config);
    std::fs::write(s.join("karat.toml"), edited).unwrap();
    day(1);
    let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
    assert_ne!(code, Some(0), "{out}");
    karat_ok(s.path(), &["verify"]);
    (s, config, out)
}

/// An edited `partition_by` is refused before anything is written, naming the table and what
/// to do; put back, `replay --failed` and the next run process the days as usual. Before, every run failed with a
/// query error and left the superseded rows written without silver (`verify` then failed).
#[test]
fn an_edited_partition_by_is_refused_before_anything_is_written() {
    let (s, config, out) = refused_after_editing(
        "partition_by = \"order_date\"",
        "partition_by = \"_ingest_date\"",
    );
    assert!(
        out.contains("silver table orders: stored partitioned by order_date")
            && out.contains("put partition_by back"),
        "{out}"
    );
    std::fs::write(s.join("karat.toml"), config).unwrap();
    // the table-wide failure is what `replay --failed` finds; it replays the silver
    // partitions (before, it also took the bronze source's files for them, and failed)
    karat_ok(s.path(), &["replay", "--failed"]);
    karat_ok(s.path(), &["run"]);
    let out = karat_ok(s.path(), &["verify"]);
    assert!(!out.contains("not processed yet"), "{out}");
}

/// A column's edited `type` is refused before anything is written, naming the table, the
/// column and both types. Before, widening an integer to a decimal stored new values cast to
/// the integer (1.5 as 1), and replays could not mend it.
#[test]
fn an_edited_column_type_is_refused_before_anything_is_written() {
    let (_s, _, out) = refused_after_editing(
        "quantity = { type = \"int64\"",
        "quantity = { type = \"decimal(10,2)\"",
    );
    assert!(
        out.contains("silver table orders: column quantity is stored as Int64")
            && out.contains("put its type back"),
        "{out}"
    );
}

/// A coarser `key` (every order of a customer one key) is refused by a normal run, naming both
/// keys and the replay of every partition; that replay applies it to the stored rows, after
/// which runs go on and the lake equals its rebuild. Before, the run was green and the table
/// held customers twice (only `verify` said so, without saying what to do).
#[test]
fn a_coarser_key_is_refused_until_every_partition_is_replayed_under_it() {
    let s = Scratch::new();
    let config = crate::util::daily_project(s.path(), false);
    crate::util::daily_file(s.path(), 0, 1_000);
    karat_ok(s.path(), &["run"]);
    let edited = config.replacen("key = [\"order_id\"]", "key = [\"customer_id\"]", 1);
    std::fs::write(s.join("karat.toml"), edited).unwrap();
    crate::util::daily_file(s.path(), 1, 1_000);
    let (code, out) = finish(spawn_karat(s.path(), &["run"], &[]));
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("silver table orders: its key is now [customer_id]")
            && out.contains("processed under key [order_id]"),
        "{out}"
    );
    let replay = out
        .split('`')
        .find(|p| p.starts_with("karat replay orders --from"))
        .unwrap_or_else(|| panic!("the replay to run: {out}"));
    // `verify` sees the keys held twice, and says what to do
    let (code, verified) = finish(spawn_karat(s.path(), &["verify"], &[]));
    assert_eq!(code, Some(1), "{verified}");
    assert!(
        verified.contains("held more than once") && verified.contains(replay),
        "{verified}"
    );
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    karat_ok(s.path(), &args);
    karat_ok(s.path(), &["run"]);
    let out = karat_ok(s.path(), &["verify"]);
    assert!(!out.contains("not processed yet"), "{out}");
    let (code, rebuilt) = finish(spawn_karat(
        s.path(),
        &["rebuild", "--into", s.join("rebuilt").to_str().unwrap()],
        &[],
    ));
    assert_eq!(code, Some(0), "{rebuilt}");
}
