//! The shape of `karat.toml`, as serde reads it. Unknown keys are errors everywhere, and the
//! values later checks may complain about keep their position in the file (`Spanned`).

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub project: ProjectConfig,
    pub lake: LakeConfig,
    #[serde(default)]
    pub defaults: DefaultsConfig,
    pub schedule: Option<ScheduleConfig>,
    #[serde(default)]
    pub ui: UiConfig,
    #[serde(default)]
    pub serve: ServeConfig,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<super::alert::AlertConfig>,
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    pub openlineage: Option<OpenLineageConfig>,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default, rename = "table")]
    pub tables: Vec<TableConfig>,
}

/// `[project]`: a name shown in the dashboard and reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: Option<String>,
    pub owner: Option<String>,
}

/// `[lake]`: where bronze, silver, gold, dead letters and the ledger live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// A path (relative to the config file) or a `file://`, `s3://`, `gs://`, `az://` URL.
    pub url: Spanned<String>,
}

/// `[defaults]`: values every table inherits unless it sets its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Highest share of dead-lettered rows a silver partition may have before its gate blocks.
    #[serde(default = "default_reject_rate")]
    pub max_reject_rate: f64,
    /// A replay that would reprocess more records than this needs `--approve`.
    pub replay_budget_rows: Option<u64>,
    /// A silver table's new batches are applied in groups of at most this many records, one
    /// update each (at least one batch a group): a run's memory is bounded by it.
    #[serde(default = "default_silver_group_records")]
    pub silver_group_records: u64,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            max_reject_rate: default_reject_rate(),
            replay_budget_rows: None,
            silver_group_records: default_silver_group_records(),
        }
    }
}

fn default_silver_group_records() -> u64 {
    1_000_000
}

fn default_reject_rate() -> f64 {
    0.05
}

/// `[schedule]`: how often `karat serve` (and the dashboard, while it is open) runs the
/// pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A fixed period, e.g. `15m`.
    pub every: Option<Spanned<String>>,
    /// A cron pattern (UTC), e.g. `0 * * * *`; instead of `every`.
    pub cron: Option<Spanned<String>>,
    /// `karat serve`: how many times a run that failed on storage is retried (backoff 1 s, 2 s,
    /// 4 s, …). Default 2.
    pub retries: Option<u32>,
}

/// `[maintenance]`: compaction and vacuum (`karat maintain`, and `karat serve` every `every`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Files no version younger than this needs are deleted (default `7d`; a replay older than
    /// this can no longer be restored).
    pub vacuum_after: Option<Spanned<String>>,
    /// `karat serve` runs maintenance this often (default: never).
    pub every: Option<Spanned<String>>,
}

/// `[openlineage]`: where lineage events go (the OpenLineage HTTP transport).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLineageConfig {
    /// Events are POSTed to `<url>/api/v1/lineage`.
    pub url: Spanned<String>,
    /// Sent as `Authorization: Bearer <api_key>`; `${VAR}` is substituted when sending.
    pub api_key: Option<String>,
    /// The jobs' namespace (default: the project name).
    pub namespace: Option<String>,
}

/// `[serve]`: the daemon's HTTP endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address of `/metrics`, `/healthz` and `/status` (default `127.0.0.1:9464`).
    pub listen: Option<String>,
    /// How often the metrics are recomputed from the ledger between runs (default `15s`).
    pub refresh: Option<Spanned<String>>,
}

/// `[ui]`: how the dashboard behaves.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Hide every key that writes to the lake (run, replay) and never run the schedule.
    #[serde(default)]
    pub read_only: bool,
}

/// `kind` of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Files,
    Http,
}

/// Explicit format of a `files` source; inferred from the file name when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Ndjson,
    Csv,
}

/// Pagination style of an `http` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaginationKind {
    /// Single request.
    None,
    /// `?page=N` until a page returns no records.
    Page,
    /// Follow a URL found in the body (`next_field`) until it is null or absent.
    NextLink,
}

/// `[[source]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: Spanned<String>,
    pub kind: SourceKind,
    /// files: a glob, relative to the config file.
    pub path: Option<Spanned<String>>,
    pub format: Option<FileFormat>,
    /// http: the first URL.
    pub url: Option<Spanned<String>>,
    /// http: request headers; `${VAR}` is replaced by the environment variable VAR.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// http: field of the response body that holds the records (default: the body is an array,
    /// or has `data` / `items` / `records`).
    pub records: Option<String>,
    pub pagination: Option<PaginationKind>,
    /// http: body field holding the next URL (next_link pagination). Default `next`.
    pub next_field: Option<String>,
    /// http: query parameter carrying the page number (page pagination). Default `page`.
    pub page_param: Option<String>,
    /// http: stop after this many pages. Default 1000.
    pub max_pages: Option<u32>,
    /// http: per-request timeout, e.g. "30s".
    pub timeout: Option<Spanned<String>>,
    /// http: retries after the first attempt for 429, 5xx and connection errors. Default 3.
    pub retries: Option<u32>,
    /// Largest unit (file or HTTP body, after gunzip) in bytes; a larger one fails its batch.
    pub max_unit_bytes: Option<u64>,
    /// Longest NDJSON line in bytes; a longer one fails its batch, naming the line.
    pub max_line_bytes: Option<u64>,
    /// Where the source declares how many records it sent (completeness, M7): a dot-separated
    /// field of the first response body (http) or of `<file>.manifest.json` beside each file.
    pub expected_count_field: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
}

/// Zone of a `[[table]]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    Bronze,
    Silver,
    Gold,
}

impl std::str::FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Zone, String> {
        match s {
            "bronze" => Ok(Zone::Bronze),
            "silver" => Ok(Zone::Silver),
            "gold" => Ok(Zone::Gold),
            other => Err(format!(
                "unknown zone \"{other}\"; expected bronze, silver or gold"
            )),
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Zone::Bronze => "bronze",
            Zone::Silver => "silver",
            Zone::Gold => "gold",
        })
    }
}

/// What a failing silver expectation does (the Databricks vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// Record and show, keep the row.
    Warn,
    /// Send the row to dead letters.
    Drop,
    /// Fail the whole partition.
    Fail,
}

/// A string normaliser applied before rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalizer {
    Trim,
    Upper,
    Lower,
}

/// How a sensitive string column is masked past bronze.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mask {
    /// The hex sha256 of the value: joins and dedup still work, the value is gone.
    Sha256,
    /// `[redacted]`.
    Redact,
    /// Every character but the last four replaced by `*`.
    Last4,
}

/// `[[table]]` (silver or gold).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: Spanned<String>,
    pub zone: Spanned<Zone>,
    /// silver: the source it reads.
    pub from: Option<Spanned<String>>,
    /// silver: a date/timestamp column, or `_ingest_date`; gold: an output column.
    pub partition_by: Option<Spanned<String>>,
    /// silver: time zone in which a timestamp `partition_by` is cut into days (default UTC),
    /// e.g. "Europe/Paris" or "+02:00".
    pub partition_timezone: Option<Spanned<String>>,
    /// silver: dedup key; the newest `_ingested_at` wins.
    pub key: Option<Spanned<Vec<String>>>,
    /// silver: window dedup for event streams, instead of `key`: versions of `key` whose `time`
    /// falls in the same `window` are duplicates (the newest wins), in different windows not.
    pub dedup: Option<Spanned<DedupConfig>>,
    /// silver: the contract.
    #[serde(default)]
    pub columns: IndexMap<String, ColumnConfig>,
    /// silver: SQL boolean expressions over the typed row.
    #[serde(default)]
    pub expect: Vec<ExpectConfig>,
    /// silver: override of `[defaults] max_reject_rate`.
    pub max_reject_rate: Option<f64>,
    /// silver: delete superseded rows in place with Delta deletion vectors instead of
    /// rewriting their partitions (default false). Raises the table to Delta reader 3 /
    /// writer 7 at its first such change, for good.
    pub deletion_vectors: Option<Spanned<bool>>,
    /// gold: the query, over silver and gold tables by name.
    pub sql: Option<Spanned<String>>,
    /// gold: `sql` (default) or `scd2` (a Slowly Changing Dimension Type 2 of the silver table
    /// `from`, by `key`).
    pub kind: Option<Spanned<GoldKind>>,
    /// gold scd2: the columns whose change opens a new version (default: every non-key column).
    pub track: Option<Spanned<Vec<String>>>,
    /// gold scd2: the date or timestamp column a version takes effect at (default `_ingested_at`).
    pub effective_from: Option<Spanned<String>>,
    /// gold: checks over the result.
    #[serde(default)]
    pub check: Vec<CheckConfig>,
    pub freshness: Option<FreshnessConfig>,
    pub owner: Option<String>,
    pub description: Option<String>,
    /// Service level objectives on the table's indicators.
    #[serde(default)]
    pub slo: Vec<super::slo::SloConfig>,
    /// What to do when the table breaks: a URL or a path (shown in the dashboard, sent in alerts).
    pub runbook: Option<String>,
    /// silver: the date or timestamp column saying when each record's event happened; the
    /// table's event-time freshness is the age of the newest one it holds.
    pub event_time: Option<Spanned<String>>,
    /// Runbooks for particular rules, by rule id (`"currency.one_of" = "…"`).
    #[serde(default)]
    pub runbooks: IndexMap<String, String>,
}

/// `dedup = { key = [...], window = "24h", time = "event_ts" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    pub key: Vec<String>,
    pub window: String,
    pub time: String,
}

/// What defines a gold table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoldKind {
    #[default]
    Sql,
    Scd2,
}

/// One column of a silver contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    #[serde(default = "yes")]
    pub nullable: bool,
    #[serde(default)]
    pub normalize: Vec<Normalizer>,
    pub min: Option<toml::Value>,
    pub max: Option<toml::Value>,
    pub one_of: Option<Vec<toml::Value>>,
    pub regex: Option<Spanned<String>>,
    pub max_length: Option<u32>,
    /// Mask the value in silver, dead letters and exports (string columns).
    pub mask: Option<Mask>,
    /// The field's name in the source record, when it differs from the column name.
    pub source_field: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[[table.expect]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    pub name: String,
    pub sql: Spanned<String>,
    #[serde(default = "default_on_fail")]
    pub on_fail: OnFail,
}

fn default_on_fail() -> OnFail {
    OnFail::Warn
}

/// `[[table.check]]` on a gold table: an aggregate boolean over the partition's result, where
/// `row_count` means the number of rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub name: String,
    pub sql: Spanned<String>,
    #[serde(default = "yes")]
    pub blocking: bool,
}

/// `[table.freshness]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    pub warn_after: Option<Spanned<String>>,
    pub error_after: Option<Spanned<String>>,
}
