//! `karat init`: a commented example config, with a small sample file, that runs as-is.

use std::path::Path;

use crate::error::{KaratError, KaratResult};

/// The example `karat.toml`.
pub const EXAMPLE_CONFIG: &str = r#"# karat.toml: a medallion pipeline.
# Run it with `karat run`; see the state with `karat status`.

[project]
name = "example"

[lake]
# A folder (relative to this file), or s3://bucket/prefix, gs://bucket/prefix, az://container/prefix
url = "lake"

[defaults]
# A silver partition whose dead-letter share exceeds this is not promoted.
max_reject_rate = 0.05

# Every source lands in bronze as immutable gzip NDJSON batches.
[[source]]
name = "orders"
kind = "files"                 # or "http" (url, headers, pagination, timeout, retries)
path = "data/orders/*.ndjson*" # NDJSON, gzip NDJSON or CSV (by extension)
owner = "data-platform"

# A silver table: a typed contract over one source.
[[table]]
name = "orders"
zone = "silver"
from = "orders"
partition_by = "order_date"    # a date/timestamp column, or "_ingest_date"
key = ["order_id"]             # dedup key: the newest _ingested_at wins
# deletion_vectors = true      # delete superseded rows in place: faster daily runs, but the
#                              # table needs a reader with deletion vectors (Delta 3/7), for good
owner = "payments-oncall"
description = "One row per order"
freshness = { warn_after = "2h", error_after = "1d" }
runbook = "runbooks/orders.md"   # what to do when it breaks: a URL or a path (alerts carry it)
runbooks = { "order_date.required" = "runbooks/orders.md#a-date-field-is-missing" }

[table.columns]
order_id = { type = "string", nullable = false }
amount = { type = "decimal(12,2)", nullable = false, min = 0 }
currency = { type = "string", nullable = false, normalize = ["trim", "upper"], one_of = ["USD", "EUR", "GBP"] }
quantity = { type = "int64", min = 1, max = 1000 }
order_date = { type = "date", nullable = false }

# SQL over the typed row. on_fail: "warn" keeps the row, "drop" dead-letters it, "fail" fails the partition.
[[table.expect]]
name = "positive_quantity"
sql = "quantity > 0"
on_fail = "drop"

# A gold table: SQL over silver/gold tables by name.
[[table]]
name = "daily_revenue"
zone = "gold"
partition_by = "order_date"
sql = """
SELECT order_date, currency, SUM(amount) AS revenue, COUNT(*) AS orders
FROM orders
GROUP BY order_date, currency
"""
freshness = { warn_after = "3h", error_after = "1d" }

# Checks over each recomputed partition; row_count is its number of rows.
[[table.check]]
name = "has_rows"
sql = "row_count > 0"
blocking = true
"#;

/// A few sample orders so the example runs as-is.
pub const EXAMPLE_DATA: &str = r#"{"order_id":"o-1","amount":12.5,"currency":"USD","quantity":1,"order_date":"2026-03-27"}
{"order_id":"o-2","amount":"30.00","currency":"eur ","quantity":2,"order_date":"2026-03-27"}
{"order_id":"o-3","amount":7,"currency":"GBP","quantity":1,"order_date":"2026-03-28"}
{"order_id":"o-3","amount":8,"currency":"GBP","quantity":1,"order_date":"2026-03-28"}
"#;

/// Writes `karat.toml` (and sample data) into `dir`. Refuses to overwrite unless `force`.
/// The runbook `karat init` writes for the example's common failures.
pub const EXAMPLE_RUNBOOK: &str = r#"# Runbook: silver orders

## A partition failed its gate (reject rate over max_reject_rate)
1. `karat dead-letters orders --partition <day>`: the rules that failed, with the offending values.
2. A source sending a new spelling (`"usd "`, `US$`): widen the contract (`normalize`, `one_of`).
   Bad data that should stay out: nothing to change; `karat ack` if no run will clear it.
3. `karat replay orders --partition <day> --dry-run`, then without `--dry-run`.
4. `karat verify`: every batch balances, no key twice.

## A date field is missing
The source renamed the field (`karat schema orders` shows it: missing in the batch, an unread
field beside it). Add `source_field = "<new name>"` to the column, then replay the partition.

## Stale (no fresh partition within freshness.error_after)
`karat status`: is bronze landing? A failed file is listed with its error; a quiet source is an
upstream problem (ask the owner of the source).
"#;

pub fn write_example(dir: &Path, force: bool) -> KaratResult<std::path::PathBuf> {
    let cfg = dir.join("karat.toml");
    if cfg.exists() && !force {
        return Err(KaratError::Usage(format!(
            "{} already exists (use --force to overwrite)",
            cfg.display()
        )));
    }
    let data_dir = dir.join("data/orders");
    std::fs::create_dir_all(&data_dir).map_err(|e| KaratError::io(&data_dir, e))?;
    std::fs::write(&cfg, EXAMPLE_CONFIG).map_err(|e| KaratError::io(&cfg, e))?;
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).map_err(|e| KaratError::io(&runbooks, e))?;
    let runbook = runbooks.join("orders.md");
    if !runbook.exists() {
        std::fs::write(&runbook, EXAMPLE_RUNBOOK).map_err(|e| KaratError::io(&runbook, e))?;
    }
    let sample = data_dir.join("sample.ndjson");
    if !sample.exists() {
        std::fs::write(&sample, EXAMPLE_DATA).map_err(|e| KaratError::io(&sample, e))?;
    }
    Ok(cfg)
}
