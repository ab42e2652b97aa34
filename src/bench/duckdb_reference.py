"""DuckDB reference for `karat bench`: the bench pipeline's semantics, written as one DuckDB
script over the same gzip NDJSON files — every line parsed (invalid JSON is a dead letter),
the same casts and rules with every reason, dedup by order_id (the last file, then the last
line wins), silver and dead letters written as Parquet (silver partitioned by order_date), and
the daily_revenue gold. Prints one JSON document: seconds, peak memory and row counts.

Usage: python3 duckdb_reference.py BENCH_DIR   (needs `pip install duckdb`)
"""

import json
import resource
import sys
import time

import duckdb

RULES = """
    list_filter([
        CASE WHEN NOT json_valid(line) THEN 'record is not valid JSON' END,
        CASE WHEN order_id IS NULL THEN 'order_id: required value is missing' END,
        CASE WHEN customer_id IS NULL THEN 'customer_id: required value is missing' END,
        CASE WHEN amount_raw IS NOT NULL AND amount IS NULL THEN 'amount: expected decimal(12,2), got ' || amount_raw END,
        CASE WHEN amount_raw IS NULL THEN 'amount: required value is missing' END,
        CASE WHEN amount < 0 THEN 'amount: ' || amount_raw || ' is below min 0' END,
        CASE WHEN currency IS NULL THEN 'currency: required value is missing' END,
        CASE WHEN currency NOT IN ('USD', 'EUR', 'GBP') THEN 'currency: unknown value ' || currency END,
        CASE WHEN quantity_raw IS NOT NULL AND quantity IS NULL THEN 'quantity: expected int64, got ' || quantity_raw END,
        CASE WHEN quantity < 1 THEN 'quantity: below min 1' END,
        CASE WHEN quantity > 100 THEN 'quantity: above max 100' END,
        CASE WHEN status NOT IN ('placed', 'paid', 'shipped', 'cancelled') THEN 'status: unknown value ' || status END,
        CASE WHEN order_date_raw IS NOT NULL AND order_date IS NULL THEN 'order_date: expected date, got ' || order_date_raw END,
        CASE WHEN order_date_raw IS NULL THEN 'order_date: required value is missing' END
    ], lambda r: r IS NOT NULL)
"""


def main(d: str) -> None:
    t0 = time.time()
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"""
        CREATE TABLE lines AS
        SELECT filename, row_number() OVER (PARTITION BY filename) AS line_no, line
        FROM read_csv('{d}/data/*.ndjson.gz', columns = {{'line': 'VARCHAR'}}, delim = '\x01',
                      quote = '', escape = '', header = false, compression = 'gzip',
                      filename = true, auto_detect = false)
        WHERE trim(line) <> ''
    """)
    con.execute("""
        CREATE TABLE typed AS
        SELECT filename, line_no, line,
            CASE WHEN json_valid(line) THEN line ->> '$.order_id' END AS order_id,
            CASE WHEN json_valid(line) THEN line ->> '$.customer_id' END AS customer_id,
            CASE WHEN json_valid(line) THEN line ->> '$.amount' END AS amount_raw,
            TRY_CAST(CASE WHEN json_valid(line) THEN line ->> '$.amount' END AS DECIMAL(12,2)) AS amount,
            CASE WHEN json_valid(line) THEN line ->> '$.currency' END AS currency,
            CASE WHEN json_valid(line) THEN line ->> '$.quantity' END AS quantity_raw,
            TRY_CAST(CASE WHEN json_valid(line) THEN line ->> '$.quantity' END AS BIGINT) AS quantity,
            CASE WHEN json_valid(line) THEN line ->> '$.status' END AS status,
            CASE WHEN json_valid(line) THEN line ->> '$.order_date' END AS order_date_raw,
            TRY_CAST(CASE WHEN json_valid(line) THEN line ->> '$.order_date' END AS DATE) AS order_date
        FROM lines
    """)
    con.execute(f"CREATE TABLE checked AS SELECT *, {RULES} AS reasons FROM typed")
    con.execute(f"""
        COPY (SELECT filename, line_no, line AS raw, reasons FROM checked WHERE len(reasons) > 0)
        TO '{d}/duckdb_dead_letters.parquet' (FORMAT parquet)
    """)
    con.execute("""
        CREATE TABLE silver AS
        SELECT order_id, customer_id, amount, currency, quantity, status, order_date, filename, line_no
        FROM checked WHERE len(reasons) = 0
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY filename DESC, line_no DESC) = 1
    """)
    con.execute(f"""
        COPY silver TO '{d}/duckdb_silver' (FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE true)
    """)
    con.execute(f"""
        COPY (SELECT order_date, currency, SUM(amount) AS revenue, COUNT(*) AS orders
              FROM silver GROUP BY order_date, currency)
        TO '{d}/duckdb_gold.parquet' (FORMAT parquet)
    """)
    counts = {
        "records": con.execute("SELECT COUNT(*) FROM lines").fetchone()[0],
        "silver": con.execute("SELECT COUNT(*) FROM silver").fetchone()[0],
        "dead": con.execute("SELECT COUNT(*) FROM checked WHERE len(reasons) > 0").fetchone()[0],
    }
    seconds = time.time() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": seconds, "peak_memory_mb": peak_mb, **counts}))


if __name__ == "__main__":
    main(sys.argv[1])
