//! Config errors carry file, line and column, and are caught at load time (gold SQL included).

use karat::KaratError;
use karat::config::Config;
use karat::pipeline::Plan;

use crate::util::Scratch;

fn base() -> String {
    karat::config::example::EXAMPLE_CONFIG.to_string()
}

async fn load_err(text: &str) -> (usize, usize, String) {
    let s = Scratch::new();
    let path = s.join("karat.toml");
    std::fs::write(&path, text).unwrap();
    let err = match Plan::load(&path).await {
        Ok(_) => panic!("config should not load:\n{text}"),
        Err(e) => e,
    };
    assert!(err.is_usage(), "config errors are usage errors: {err}");
    match err {
        KaratError::Config {
            file,
            line,
            column,
            message,
        } => {
            assert_eq!(file, std::path::absolute(&path).unwrap());
            (line, column, message)
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in config"))
        + 1
}

#[tokio::test]
async fn the_example_config_loads() {
    let s = Scratch::new();
    let p = s.join("karat.toml");
    std::fs::write(&p, base()).unwrap();
    let plan = Plan::load(&p).await.expect("example loads");
    assert_eq!(plan.config.tables.len(), 2);
    assert_eq!(plan.gold[0].inputs, vec!["orders".to_string()]);
}

#[tokio::test]
async fn unknown_key_names_line_and_column() {
    let text = base().replace(
        "owner = \"payments-oncall\"",
        "owner = \"payments-oncall\"\nownr = \"typo\"",
    );
    let (line, col, msg) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "ownr"), "{msg}");
    assert_eq!(col, 1);
    assert!(msg.contains("ownr"), "{msg}");
}

#[tokio::test]
async fn wrong_type_is_reported_where_it_is() {
    let text = base().replace("max_reject_rate = 0.05", "max_reject_rate = \"five\"");
    let (line, _, msg) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "max_reject_rate"), "{msg}");
}

#[tokio::test]
async fn unknown_source_and_column_type() {
    let text = base().replace("from = \"orders\"", "from = \"ordrs\"");
    let (line, col, msg) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "from = \"ordrs\""));
    assert_eq!(col, 8);
    assert!(msg.contains("unknown source \"ordrs\""), "{msg}");

    let text = base().replace("type = \"int64\"", "type = \"integer\"");
    let (line, _, msg) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "\"integer\""));
    assert!(msg.contains("expected one of"), "{msg}");
}

#[tokio::test]
async fn gold_sql_with_unknown_table_or_column_fails_at_load() {
    let text = base().replace("FROM orders\n", "FROM orderz\n");
    let (line, _, msg) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "sql = \"\"\""));
    assert!(msg.contains("orderz"), "{msg}");

    let text = base().replace("SUM(amount) AS revenue", "SUM(amount_usd) AS revenue");
    let (_, _, msg) = load_err(&text).await;
    assert!(msg.contains("amount_usd"), "{msg}");
}

#[tokio::test]
async fn bad_expectation_sql_fails_at_load() {
    let text = base().replace("sql = \"quantity > 0\"", "sql = \"quantty > 0\"");
    let (line, _, msg) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "quantty"));
    assert!(msg.contains("quantty"), "{msg}");
}

#[test]
fn duplicate_tables_are_rejected() {
    let text = format!(
        "{}\n[[table]]\nname = \"orders\"\nzone = \"gold\"\nsql = \"SELECT 1\"\n",
        base()
    );
    let err = Config::from_str(std::path::Path::new("/tmp/k.toml"), text).unwrap_err();
    assert!(err.to_string().contains("declared twice"), "{err}");
}

#[tokio::test]
async fn gold_sql_that_writes_or_configures_is_refused_at_load() {
    let s = Scratch::new();
    let target = s.join("x.csv");
    for sql in [
        format!(
            "COPY (SELECT * FROM orders) TO '{}' STORED AS CSV",
            target.display()
        ),
        "CREATE TABLE t2 AS SELECT * FROM orders".to_string(),
        "INSERT INTO orders SELECT * FROM orders".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'".to_string(),
    ] {
        let text = base().replace(
            "SELECT order_date, currency, SUM(amount) AS revenue, COUNT(*) AS orders\nFROM orders\nGROUP BY order_date, currency",
            &sql,
        );
        assert_ne!(text, base());
        let s2 = Scratch::new();
        let path = s2.join("karat.toml");
        std::fs::write(&path, &text).unwrap();
        let err = match Plan::load(&path).await {
            Ok(_) => panic!("{sql} must not load"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(err.is_usage(), "{msg}");
        assert!(
            msg.contains("gold table daily_revenue") && msg.contains(":"),
            "{sql}: {msg}"
        );
    }
    assert!(!target.exists(), "nothing was written");
}

#[tokio::test]
async fn on_call_settings_are_checked_where_they_are_written() {
    // a bad cron pattern names its line
    let text = format!("{}\n[schedule]\ncron = \"61 * * * *\"\n", base());
    let (line, _, message) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "cron = "));
    assert!(message.contains("[schedule] cron"), "{message}");
    // every and cron together
    let text = format!(
        "{}\n[schedule]\nevery = \"15m\"\ncron = \"0 * * * *\"\n",
        base()
    );
    let (_, _, message) = load_err(&text).await;
    assert!(message.contains("not both"), "{message}");
    // an alert whose url is no http(s) URL
    let text = format!(
        "{}\n[[alert]]\nname = \"oncall\"\nurl = \"mailto:x@y\"\n",
        base()
    );
    let (line, _, message) = load_err(&text).await;
    assert_eq!(line, line_of(&text, "mailto"));
    assert!(message.contains("[[alert]] oncall"), "{message}");
    // the same OpenLineage endpoint problem
    let text = format!("{}\n[openlineage]\nurl = \"ftp://x\"\n", base());
    let (_, _, message) = load_err(&text).await;
    assert!(message.contains("[openlineage] url"), "{message}");
    // and a cron pattern that is fine loads
    let s = Scratch::new();
    let path = s.join("karat.toml");
    std::fs::write(
        &path,
        format!("{}\n[schedule]\ncron = \"*/5 * * * *\"\n", base()),
    )
    .unwrap();
    let cfg = Config::load(&path).unwrap();
    assert!(cfg.schedule.is_some());
}

#[tokio::test]
async fn deletion_vectors_are_a_silver_setting() {
    let text = base().replace(
        "zone = \"gold\"\npartition_by = \"order_date\"",
        "zone = \"gold\"\npartition_by = \"order_date\"\ndeletion_vectors = true",
    );
    let (line, _, msg) = load_err(&text).await;
    // the line set, not the example's commented hint above it
    let set = text
        .lines()
        .position(|l| l == "deletion_vectors = true")
        .unwrap()
        + 1;
    assert_eq!(line, set, "{msg}");
    assert!(
        msg.contains("deletion_vectors is for silver tables"),
        "{msg}"
    );
    // on a silver table it loads, and does not change the contract's fingerprint
    let s = Scratch::new();
    let path = s.join("karat.toml");
    let fingerprint = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let table = config.tables.iter().find(|t| t.name == "orders").unwrap();
        let spec = table.silver().unwrap().clone();
        (
            spec.deletion_vectors,
            karat::silver::contract::fingerprint(&spec),
        )
    };
    let on = base().replace(
        "key = [\"order_id\"]",
        "key = [\"order_id\"]\ndeletion_vectors = true",
    );
    let (plain, before) = fingerprint(&base());
    let (dv, after) = fingerprint(&on);
    assert!(!plain && dv);
    assert_eq!(before, after);
}
