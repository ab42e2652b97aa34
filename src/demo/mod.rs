//! `karat demo`: a realistic demo lake. It writes a `karat.toml` and six days of source data for
//! two sources (orders as gzip NDJSON, customers as CSV) with real faults, then runs the
//! pipeline once per day as the files arrive, so the ledger has a history.
//!
//! Faults planted: negative amounts; unknown currencies, and on 2026-03-28 a broken upstream
//! deploy that sends `"usd "` for 40% of orders (that partition fails its gate); `quantity`
//! drifting from number to string (some not numeric); a `coupon` field appearing mid-way;
//! orders re-sent on a later day with a newer status (duplicates, newest wins); late rows for
//! the previous day; a truncated JSON line; one corrupt gzip file; bad emails and countries; the
//! 2026-03-27 export holding 12 orders fewer than its manifest declares (completeness). Customers
//! move up tiers over the six days (the `customer_tiers` SCD2 dimension keeps every version).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{KaratError, KaratResult};

/// The demo's days.
pub const DAYS: usize = 6;
/// First day of demo data.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 23).expect("valid date")
}
/// The day whose orders partition fails its gate.
pub const BAD_DAY: &str = "2026-03-28";

/// Customers re-sent with a new tier each day after the first.
pub const TIER_CHANGES_PER_DAY: usize = 4;

/// Orders the 2026-03-27 export declares in its manifest but does not hold (completeness).
pub const MISSING_ORDERS: usize = 12;

/// The demo config.
pub const DEMO_CONFIG: &str = r#"# The karat demo: two sources, two silver tables, two gold tables.
[project]
name = "demo-shop"

[lake]
url = "lake"

[defaults]
max_reject_rate = 0.05

[[source]]
name = "orders"
kind = "files"
path = "data/orders/*.ndjson.gz"
expected_count_field = "records"   # each export's manifest says how many orders it holds
owner = "checkout-team"
description = "Order events exported hourly by the checkout service"

[[source]]
name = "customers"
kind = "files"
path = "data/customers/*.csv"
owner = "crm-team"

[[table]]
name = "orders"
zone = "silver"
from = "orders"
partition_by = "order_date"
key = ["order_id"]
owner = "payments-oncall"
description = "One row per order; the newest version of an order wins"
freshness = { warn_after = "2h", error_after = "1d" }
runbook = "https://wiki.example.com/runbooks/orders"
event_time = "ordered_at"
runbooks = { "currency.one_of" = "https://wiki.example.com/runbooks/orders#currency" }

[table.columns]
order_id = { type = "string", nullable = false, regex = "^o-[0-9]+$" }
customer_id = { type = "string", nullable = false }
amount = { type = "decimal(12,2)", nullable = false, min = 0 }
currency = { type = "string", nullable = false, one_of = ["USD", "EUR", "GBP"] }
quantity = { type = "int64", min = 1, max = 100 }
status = { type = "string", nullable = false, one_of = ["placed", "paid", "shipped", "cancelled"] }
order_date = { type = "date", nullable = false }
ordered_at = { type = "timestamp" }

[[table.expect]]
name = "free_orders_are_cancelled"
sql = "amount > 0 OR status = 'cancelled'"
on_fail = "warn"

# service level objectives: the broken deploy's day burns this budget
[[table.slo]]
sli = "schema_compliance"
objective = 97.0
window = "28d"

[[table.slo]]
sli = "job_failure"
objective = 90.0
window = "28d"

[[table]]
name = "customers"
zone = "silver"
from = "customers"
partition_by = "signup_date"
key = ["customer_id"]
owner = "crm-team"
freshness = { warn_after = "1d", error_after = "3d" }

[table.columns]
customer_id = { type = "string", nullable = false }
name = { type = "string", normalize = ["trim"], max_length = 80 }
country = { type = "string", nullable = false, normalize = ["trim", "upper"], one_of = ["US", "GB", "DE", "FR", "NL", "ES"] }
email = { type = "string", regex = "^[^@ ]+@[^@ ]+\\.[a-z]+$" }
signup_date = { type = "date", nullable = false }
tier = { type = "string", nullable = false, one_of = ["basic", "plus", "premium"] }
updated_at = { type = "timestamp", nullable = false }

# Each customer's tier over time, as a Slowly Changing Dimension Type 2: "what was this
# customer's tier on March 25?" is a query, not time travel.
[[table]]
name = "customer_tiers"
zone = "gold"
kind = "scd2"
from = "customers"
track = ["tier"]
effective_from = "updated_at"
owner = "crm-team"
description = "Customer tiers with valid_from / valid_to / is_current"

[[table]]
name = "daily_revenue"
zone = "gold"
partition_by = "order_date"
owner = "finance-analytics"
description = "Revenue per day and currency, cancelled orders excluded"
freshness = { warn_after = "3h", error_after = "1d" }
event_time = "order_date"   # the newest day of orders that reached gold
sql = """
SELECT order_date, currency, SUM(amount) AS revenue, COUNT(*) AS orders
FROM orders
WHERE status <> 'cancelled'
GROUP BY order_date, currency
"""

[[table.check]]
name = "has_rows"
sql = "row_count > 0"
blocking = true

[[table.check]]
name = "no_negative_revenue"
sql = "MIN(revenue) >= 0"
blocking = false

[[table]]
name = "revenue_by_country"
zone = "gold"
owner = "finance-analytics"
freshness = { warn_after = "6h", error_after = "2d" }
sql = """
SELECT c.country, SUM(o.amount) AS revenue, COUNT(DISTINCT o.customer_id) AS customers
FROM orders o JOIN customers c ON o.customer_id = c.customer_id
WHERE o.status <> 'cancelled'
GROUP BY c.country
"""

[[table.check]]
name = "has_rows"
sql = "row_count > 0"
"#;

/// The files of one demo day.
#[derive(Debug, Clone)]
pub struct DemoDay {
    pub date: NaiveDate,
    pub files: Vec<PathBuf>,
}

/// Writes the demo config and every day's files into `dir/incoming/<day>/…`; returns the days.
/// Files are moved into `data/` one day at a time by [`arrive`].
pub fn generate(dir: &Path, orders_per_day: usize) -> KaratResult<Vec<DemoDay>> {
    std::fs::create_dir_all(dir).map_err(|e| KaratError::io(dir, e))?;
    let cfg = dir.join("karat.toml");
    std::fs::write(&cfg, DEMO_CONFIG).map_err(|e| KaratError::io(&cfg, e))?;
    let mut rng = StdRng::seed_from_u64(42);
    let countries = ["US", "GB", "DE", "FR", "NL", "ES"];
    let mut days = Vec::new();
    let mut next_order = 1u64;
    let mut previous_day_orders: Vec<String> = Vec::new();
    // every customer's CSV row (without tier and time) and current tier, by id − 1
    let mut customers: Vec<(String, &str)> = Vec::new();
    let ncustomers_per_day = 60;
    for d in 0..DAYS {
        let date = first_day() + Duration::days(d as i64);
        let ds = date.format("%Y-%m-%d").to_string();
        let inc = dir.join("incoming").join(&ds);
        std::fs::create_dir_all(&inc).map_err(|e| KaratError::io(&inc, e))?;
        let mut files = Vec::new();

        // customers (CSV)
        let mut csv = String::from("customer_id,name,country,email,signup_date,tier,updated_at\n");
        let updated = format!("{ds}T09:00:00Z");
        for c in 0..ncustomers_per_day {
            let id = d * ncustomers_per_day + c + 1;
            let mut country = countries[rng.random_range(0..countries.len())].to_string();
            if rng.random_bool(0.3) {
                country = format!(" {} ", country.to_lowercase()); // normalised away
            }
            if id % 97 == 0 {
                country = "Atlantis".into(); // unknown country
            }
            let email = if id % 53 == 0 {
                format!("customer{id}-at-example.com")
            } else {
                format!("customer{id}@example.com")
            };
            let tier = if id % 7 == 0 { "plus" } else { "basic" };
            let row = format!("c-{id},Customer {id},{country},{email},{ds}");
            csv.push_str(&format!("{row},{tier},{updated}\n"));
            customers.push((row, tier));
        }
        // tiers change: a few earlier customers are re-sent upgraded (same partition, newer
        // version; the customer_tiers dimension keeps both)
        if d > 0 {
            for k in 0..TIER_CHANGES_PER_DAY {
                let i = (d * 13 + k * 17) % (d * ncustomers_per_day);
                let (row, tier) = &mut customers[i];
                *tier = if *tier == "basic" { "plus" } else { "premium" };
                csv.push_str(&format!("{row},{tier},{updated}\n"));
            }
        }
        if d == 3 {
            // a customer re-sent with a new email: same partition (signup date), newest wins
            let id = 3 * ncustomers_per_day - 1;
            csv.push_str(&format!(
                "c-{id},Customer {id} ,US,new-address@example.com,{},{},{updated}\n",
                (date - Duration::days(1)).format("%Y-%m-%d"),
                customers[id - 1].1
            ));
        }
        let cpath = inc.join(format!("customers-{ds}.csv"));
        std::fs::write(&cpath, csv).map_err(|e| KaratError::io(&cpath, e))?;
        files.push(cpath);

        // orders (gzip NDJSON)
        let customers_so_far = (d + 1) * ncustomers_per_day;
        let mut lines: Vec<String> = Vec::new();
        let mut today_orders = Vec::new();
        for i in 0..orders_per_day {
            let id = next_order;
            next_order += 1;
            let customer = format!("c-{}", rng.random_range(1..=customers_so_far));
            let mut amount = format!("{:.2}", rng.random_range(5.0..400.0f64));
            if i % 211 == 7 {
                amount = format!("-{amount}");
            }
            let currency = if ds == BAD_DAY && rng.random_bool(0.4) {
                "usd ".to_string()
            } else if i % 157 == 3 {
                "XXX".to_string()
            } else {
                ["USD", "USD", "EUR", "GBP"][rng.random_range(0..4)].to_string()
            };
            let q = rng.random_range(1..5);
            let quantity = if d >= 3 {
                // type drift: the source starts sending quantity as a string
                if i % 97 == 5 {
                    "\"three\"".to_string()
                } else {
                    format!("\"{q}\"")
                }
            } else {
                q.to_string()
            };
            let status = ["placed", "paid", "paid", "shipped", "cancelled"][rng.random_range(0..5)];
            let hour = rng.random_range(0..24);
            let min = rng.random_range(0..60);
            let mut line = format!(
                r#"{{"order_id":"o-{id}","customer_id":"{customer}","amount":{amount},"currency":"{currency}","quantity":{quantity},"status":"{status}","order_date":"{ds}","ordered_at":"{ds}T{hour:02}:{min:02}:00Z""#
            );
            if d >= 2 {
                // a new field appears mid-way
                line.push_str(&format!(
                    r#","coupon":{}"#,
                    if i % 5 == 0 { "\"SPRING10\"" } else { "null" }
                ));
            }
            line.push('}');
            today_orders.push(format!("o-{id}"));
            lines.push(line);
        }
        if d > 0 {
            // duplicates re-sent a day later with a newer status, and late rows for yesterday
            let yesterday = (date - Duration::days(1)).format("%Y-%m-%d").to_string();
            for (k, oid) in previous_day_orders
                .iter()
                .take(orders_per_day / 20)
                .enumerate()
            {
                let customer = format!("c-{}", (k % customers_so_far) + 1);
                lines.push(format!(
                    r#"{{"order_id":"{oid}","customer_id":"{customer}","amount":{}.00,"currency":"EUR","quantity":1,"status":"shipped","order_date":"{yesterday}","ordered_at":"{yesterday}T23:59:00Z"}}"#,
                    10 + k
                ));
            }
            for _ in 0..5 {
                let id = next_order;
                next_order += 1;
                lines.push(format!(
                    r#"{{"order_id":"o-{id}","customer_id":"c-1","amount":19.99,"currency":"GBP","quantity":1,"status":"paid","order_date":"{yesterday}","ordered_at":"{yesterday}T23:58:00Z"}}"#
                ));
            }
        }
        if d == 1 {
            // a truncated JSON line
            let cut = lines[10].len() / 2;
            lines[10].truncate(cut);
        }
        let opath = inc.join(format!("orders-{ds}.ndjson.gz"));
        // the export's manifest arrives first; the day before the bad deploy the export stopped
        // early and holds fewer orders than its manifest declares
        let declared = lines.len() + if d == DAYS - 2 { MISSING_ORDERS } else { 0 };
        let mpath = crate::bronze::declared::sidecar(&opath);
        let manifest = format!("{{\"exported_at\":\"{ds}T23:59:00Z\",\"records\":{declared}}}\n");
        std::fs::write(&mpath, manifest).map_err(|e| KaratError::io(&mpath, e))?;
        files.push(mpath);
        write_gz(&opath, &lines.join("\n"))?;
        files.push(opath);
        if d == 4 {
            // a corrupt file: a gzip stream cut short
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(lines[..lines.len().min(50)].join("\n").as_bytes())
                .map_err(|e| KaratError::io(&inc, e))?;
            let bytes = enc.finish().map_err(|e| KaratError::io(&inc, e))?;
            let bad = inc.join(format!("orders-{ds}-retry.ndjson.gz"));
            std::fs::write(&bad, &bytes[..bytes.len() / 2]).map_err(|e| KaratError::io(&bad, e))?;
            files.push(bad);
        }
        previous_day_orders = today_orders;
        days.push(DemoDay { date, files });
    }
    Ok(days)
}

fn write_gz(path: &Path, text: &str) -> KaratResult<()> {
    let f = std::fs::File::create(path).map_err(|e| KaratError::io(path, e))?;
    let mut enc = GzEncoder::new(f, Compression::default());
    enc.write_all(text.as_bytes())
        .map_err(|e| KaratError::io(path, e))?;
    enc.write_all(b"\n").map_err(|e| KaratError::io(path, e))?;
    enc.finish().map_err(|e| KaratError::io(path, e))?;
    Ok(())
}

/// Moves a day's files from `incoming/` into the sources' folders under `data/`.
pub fn arrive(dir: &Path, day: &DemoDay) -> KaratResult<()> {
    for f in &day.files {
        let name = f
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let sub = if name.starts_with("customers") {
            "customers"
        } else {
            "orders"
        };
        let target_dir = dir.join("data").join(sub);
        std::fs::create_dir_all(&target_dir).map_err(|e| KaratError::io(&target_dir, e))?;
        let target = target_dir.join(&name);
        std::fs::rename(f, &target).map_err(|e| KaratError::io(f, e))?;
    }
    Ok(())
}
