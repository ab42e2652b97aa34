//! `karat.toml`: reading it, checking it, and the resolved pipeline definition the engine runs.
//!
//! Loading is strict: unknown keys, wrong types and references to things that do not exist are
//! errors that carry the file, line and column. Gold SQL is checked against the contracts by
//! [`crate::pipeline::plan`] right after loading, so a typo never surfaces mid-run.

pub mod alert;
pub mod example;
pub mod model;
pub mod scd2;
pub mod schedule;
pub mod slo;
pub mod types;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::error::{KaratError, KaratResult};
use model::{ColumnConfig, ConfigFile, SourceConfig, TableConfig};
pub use model::{FileFormat, Mask, Normalizer, OnFail, PaginationKind, SourceKind, Zone};
pub use types::ColumnType;

/// Name of the pseudo column that partitions a silver table by the day its rows were ingested.
pub const INGEST_DATE: &str = "_ingest_date";

/// A loaded, checked `karat.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Its folder: relative paths resolve against it.
    pub dir: PathBuf,
    text: String,
    pub project: String,
    pub lake_url: Url,
    /// `[schedule]`.
    pub schedule: Option<schedule::Schedule>,
    /// `[schedule] retries`.
    pub schedule_retries: u32,
    /// `[ui] read_only`.
    pub ui_read_only: bool,
    /// `[serve] listen`.
    pub serve_listen: String,
    /// `[serve] refresh`.
    pub serve_refresh: Duration,
    /// `[[alert]]`s.
    pub alerts: Vec<alert::Alert>,
    /// `[defaults] replay_budget_rows`.
    pub replay_budget_rows: Option<u64>,
    /// `[defaults] silver_group_records`.
    pub silver_group_records: u64,
    /// `[maintenance] vacuum_after`.
    pub vacuum_after: Duration,
    /// `[maintenance] every` (for `karat serve`).
    pub maintenance_every: Option<Duration>,
    /// `[openlineage]`.
    pub openlineage: Option<OpenLineage>,
    pub sources: Vec<Source>,
    pub tables: Vec<Table>,
}

/// The first of `rules` (rule id → runbook) whose rule id `reason` names, else `table`'s runbook.
pub fn runbook_for<'a>(
    table: Option<&'a str>,
    rules: &'a [(String, String)],
    reason: &str,
) -> Option<&'a str> {
    rules
        .iter()
        .find(|(rule, _)| reason.contains(rule.as_str()))
        .map(|(_, r)| r.as_str())
        .or(table)
}

/// A resolved `[openlineage]`.
#[derive(Debug, Clone)]
pub struct OpenLineage {
    pub url: Url,
    /// May hold `${VAR}`.
    pub api_key: Option<String>,
    pub namespace: String,
}

/// A resolved `[[source]]`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub spec: SourceSpec,
    pub limits: UnitLimits,
    /// `expected_count_field`: where the source declares its record count.
    pub expected_count_field: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
}

/// How big one unit of a source may be, so that no file, body or line can exhaust memory: an
/// oversized unit fails its own batch (recorded, quarantined) and the others land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitLimits {
    /// Bytes of a unit after decompression (default 2 GiB).
    pub max_unit_bytes: u64,
    /// Bytes of one NDJSON line (default 64 MiB).
    pub max_line_bytes: u64,
}

impl Default for UnitLimits {
    fn default() -> UnitLimits {
        UnitLimits {
            max_unit_bytes: 2 << 30,
            max_line_bytes: 64 << 20,
        }
    }
}

/// What a source reads.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Files {
        /// Absolute glob.
        glob: String,
        format: Option<FileFormat>,
    },
    Http(HttpSpec),
}

/// An HTTP JSON API source.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: String,
    /// Header values still hold `${VAR}`: they are substituted when the request is made, so
    /// secrets never sit in the loaded config.
    pub headers: Vec<(String, String)>,
    pub records: Option<String>,
    pub pagination: PaginationKind,
    pub next_field: String,
    pub page_param: String,
    pub max_pages: u32,
    pub timeout: Duration,
    pub retries: u32,
}

/// A resolved `[[table]]`.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub zone: Zone,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub freshness: Option<Freshness>,
    /// `[[table.slo]]`.
    pub slos: Vec<slo::Slo>,
    /// `runbook`: what to do when the table breaks.
    pub runbook: Option<String>,
    /// `event_time`: a date / timestamp column of a silver table (or a gold table's output).
    pub event_time: Option<String>,
    /// `runbooks`: by rule id.
    pub rule_runbooks: Vec<(String, String)>,
    pub spec: TableSpec,
    /// Where the table is declared, for later errors.
    pub span: Range<usize>,
}

/// Freshness SLO: how old the newest successful write may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub warn_after: Option<Duration>,
    pub error_after: Option<Duration>,
}

/// Zone-specific part of a table.
#[derive(Debug, Clone)]
pub enum TableSpec {
    Silver(SilverSpec),
    Gold(GoldSpec),
}

/// A silver table: contract, dedup key, partitioning, expectations.
#[derive(Debug, Clone)]
pub struct SilverSpec {
    pub from: String,
    /// A date/timestamp column of the contract, or [`INGEST_DATE`].
    pub partition_by: String,
    /// For a timestamp `partition_by`: the zone its values are cut into days in (None: UTC).
    pub partition_timezone: Option<String>,
    /// The dedup key (with window dedup: its `key` then [`DEDUP_WINDOW`]).
    pub key: Vec<String>,
    pub columns: Vec<Column>,
    pub expectations: Vec<Expectation>,
    pub max_reject_rate: f64,
    /// `dedup`: window dedup of an event stream.
    pub dedup: Option<WindowDedup>,
    /// `deletion_vectors`: superseded rows are deleted in place by Delta deletion vectors
    /// (false: their partitions are rewritten). How rows are stored, not which: not part of
    /// the contract's fingerprint.
    pub deletion_vectors: bool,
}

/// Window dedup: versions of a key are duplicates only when their `time` falls in the same
/// tumbling window of length `window` (counted from the Unix epoch, UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDedup {
    pub time: String,
    pub window: Duration,
}

/// The silver column holding each row's dedup window (window dedup only).
pub const DEDUP_WINDOW: &str = "_dedup_window";

/// One contract column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub source_field: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub normalize: Vec<Normalizer>,
    pub min: Option<Literal>,
    pub max: Option<Literal>,
    pub one_of: Option<Vec<Literal>>,
    pub regex: Option<String>,
    pub max_length: Option<u32>,
    pub mask: Option<Mask>,
}

/// A literal from the config, kept both as SQL and as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    pub sql: String,
    pub display: String,
}

/// `[[table.expect]]`.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub name: String,
    pub sql: String,
    pub on_fail: OnFail,
    pub span: Range<usize>,
}

/// A gold table.
#[derive(Debug, Clone)]
pub struct GoldSpec {
    /// The query (for `kind = "scd2"`, generated: see [`scd2::Scd2::sql`]).
    pub sql: String,
    pub sql_span: Range<usize>,
    pub partition_by: Option<String>,
    pub checks: Vec<Check>,
    /// `kind = "scd2"`.
    pub scd2: Option<scd2::Scd2>,
}

/// `[[table.check]]`.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub sql: String,
    pub blocking: bool,
    pub span: Range<usize>,
}

impl Table {
    /// The runbook for a breach whose reason is `reason`: the first rule runbook whose rule id the
    /// reason names, else the table's.
    pub fn runbook_for(&self, reason: &str) -> Option<&str> {
        runbook_for(self.runbook.as_deref(), &self.rule_runbooks, reason)
    }

    pub fn silver(&self) -> Option<&SilverSpec> {
        match &self.spec {
            TableSpec::Silver(s) => Some(s),
            TableSpec::Gold(_) => None,
        }
    }

    pub fn gold(&self) -> Option<&GoldSpec> {
        match &self.spec {
            TableSpec::Gold(g) => Some(g),
            TableSpec::Silver(_) => None,
        }
    }

    /// The partition column of the stored Delta table, if partitioned.
    pub fn partition_column(&self) -> Option<&str> {
        match &self.spec {
            TableSpec::Silver(s) => Some(s.partition_column()),
            TableSpec::Gold(g) => g.partition_by.as_deref(),
        }
    }
}

/// Delta partition column of a silver table partitioned by a timestamp: the day of the
/// timestamp (in `partition_timezone`, UTC by default).
pub const PARTITION_DATE: &str = "_partition_date";

impl SilverSpec {
    /// True when `partition_by` is a timestamp column (partitioned by its day).
    pub fn partitioned_by_timestamp(&self) -> bool {
        self.columns
            .iter()
            .any(|c| c.name == self.partition_by && c.ty == ColumnType::Timestamp)
    }

    /// The Delta partition column: `partition_by` itself for a date (or `_ingest_date`),
    /// [`PARTITION_DATE`] for a timestamp.
    pub fn partition_column(&self) -> &str {
        if self.partitioned_by_timestamp() {
            PARTITION_DATE
        } else {
            &self.partition_by
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> KaratResult<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| KaratError::io(path, e))?;
        Config::from_str(path, text)
    }

    /// Parses config text as if read from `path`.
    pub fn from_str(path: &Path, text: String) -> KaratResult<Config> {
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let parsed: ConfigFile = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let (line, column) = position(&text, span.start);
                return Err(KaratError::Config {
                    file,
                    line,
                    column,
                    message: e.message().trim().to_string(),
                });
            }
        };
        let mut cfg = Config {
            file,
            dir,
            text,
            project: String::new(),
            lake_url: Url::parse("file:///").expect("static url"),
            schedule: None,
            schedule_retries: 2,
            ui_read_only: false,
            serve_listen: "127.0.0.1:9464".into(),
            serve_refresh: Duration::from_secs(15),
            alerts: Vec::new(),
            replay_budget_rows: None,
            silver_group_records: 1_000_000,
            vacuum_after: Duration::from_secs(7 * 86_400),
            maintenance_every: None,
            openlineage: None,
            sources: Vec::new(),
            tables: Vec::new(),
        };
        cfg.resolve(parsed)?;
        Ok(cfg)
    }

    /// Finds the source by name.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Finds the table by name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// A table by name, or a usage error listing the known ones.
    pub fn table_or_err(&self, name: &str) -> KaratResult<&Table> {
        self.table(name).ok_or_else(|| {
            let known: Vec<&str> = self.tables.iter().map(|t| t.name.as_str()).collect();
            KaratError::Usage(format!(
                "no table named \"{name}\" in {}; tables: {}",
                self.file.display(),
                known.join(", ")
            ))
        })
    }

    /// A config error pointing at `span`.
    pub fn error_at(&self, span: &Range<usize>, message: impl Into<String>) -> KaratError {
        let (line, column) = position(&self.text, span.start);
        KaratError::Config {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    fn resolve(&mut self, parsed: ConfigFile) -> KaratResult<()> {
        self.project = parsed.project.name.clone().unwrap_or_else(|| {
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "karat".into())
        });
        self.lake_url = self.resolve_lake_url(&parsed.lake.url)?;
        self.resolve_on_call(&parsed)?;
        self.ui_read_only = parsed.ui.read_only;
        self.replay_budget_rows = parsed.defaults.replay_budget_rows;
        if parsed.defaults.silver_group_records == 0 {
            return Err(self.error_at(
                &(0..0),
                "[defaults] silver_group_records must be at least 1",
            ));
        }
        self.silver_group_records = parsed.defaults.silver_group_records;
        if !(0.0..=1.0).contains(&parsed.defaults.max_reject_rate) {
            return Err(self.error_at(
                &(0..0),
                "[defaults] max_reject_rate must be between 0.0 and 1.0",
            ));
        }
        for s in &parsed.sources {
            let src = self.resolve_source(s)?;
            if self.sources.iter().any(|o| o.name == src.name) {
                return Err(self.error_at(
                    &s.name.span(),
                    format!("source \"{}\" is declared twice", src.name),
                ));
            }
            self.sources.push(src);
        }
        for t in &parsed.tables {
            let table = self.resolve_table(t, &parsed)?;
            if self.tables.iter().any(|o| o.name == table.name) {
                return Err(self.error_at(
                    &t.name.span(),
                    format!("table \"{}\" is declared twice", table.name),
                ));
            }
            self.tables.push(table);
        }
        self.complete_scd2()
    }

    fn resolve_lake_url(&self, raw: &toml::Spanned<String>) -> KaratResult<Url> {
        let text = raw.get_ref().trim();
        if text.contains("://") {
            let url = Url::parse(text)
                .map_err(|e| self.error_at(&raw.span(), format!("lake url \"{text}\": {e}")))?;
            match url.scheme() {
                "file" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "memory" => Ok(url),
                other => Err(self.error_at(
                    &raw.span(),
                    format!(
                        "lake url scheme \"{other}\" is not supported; expected file, s3, gs or az"
                    ),
                )),
            }
        } else {
            let p = self.dir.join(text);
            let p = std::path::absolute(&p).unwrap_or(p);
            Url::from_directory_path(&p).map_err(|_| {
                self.error_at(
                    &raw.span(),
                    format!(
                        "lake path \"{}\" is not a valid directory path",
                        p.display()
                    ),
                )
            })
        }
    }

    /// `[schedule]`, `[serve]`, `[maintenance]`, `[openlineage]` and `[[alert]]`.
    fn resolve_on_call(&mut self, parsed: &ConfigFile) -> KaratResult<()> {
        if let Some(s) = &parsed.schedule {
            self.schedule = Some(match (&s.every, &s.cron) {
                (Some(every), None) => schedule::Schedule::Every(self.duration(every)?),
                (None, Some(cron)) => schedule::Schedule::cron(cron.get_ref()).map_err(|e| {
                    self.error_at(
                        &cron.span(),
                        format!("[schedule] cron \"{}\": {e}", cron.get_ref()),
                    )
                })?,
                (Some(every), Some(_)) => {
                    return Err(self.error_at(
                        &every.span(),
                        "[schedule] takes `every` or `cron`, not both",
                    ));
                }
                (None, None) => {
                    return Err(self.error_at(
                        &(0..0),
                        "[schedule] needs `every = \"15m\"` or `cron = \"0 * * * *\"`",
                    ));
                }
            });
            self.schedule_retries = s.retries.unwrap_or(2);
        }
        if let Some(l) = &parsed.serve.listen {
            self.serve_listen = l.clone();
        }
        if let Some(r) = &parsed.serve.refresh {
            self.serve_refresh = self.duration(r)?;
        }
        if let Some(v) = &parsed.maintenance.vacuum_after {
            self.vacuum_after = self.duration(v)?;
        }
        if let Some(e) = &parsed.maintenance.every {
            self.maintenance_every = Some(self.duration(e)?);
        }
        if let Some(o) = &parsed.openlineage {
            let url = self.http_url(&o.url, "[openlineage] url")?;
            self.openlineage = Some(OpenLineage {
                url,
                api_key: o.api_key.clone(),
                namespace: o.namespace.clone().unwrap_or_else(|| self.project.clone()),
            });
        }
        for a in &parsed.alerts {
            let alert = self.resolve_alert(a)?;
            if self.alerts.iter().any(|o| o.name == alert.name) {
                return Err(self.error_at(
                    &a.url.span(),
                    format!("[[alert]] name \"{}\" is used twice", alert.name),
                ));
            }
            self.alerts.push(alert);
        }
        Ok(())
    }

    /// An http(s) URL, or an error at its position naming `what`.
    fn http_url(&self, raw: &toml::Spanned<String>, what: &str) -> KaratResult<Url> {
        Url::parse(raw.get_ref())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                self.error_at(
                    &raw.span(),
                    format!("{what} \"{}\" is not an http(s) URL", raw.get_ref()),
                )
            })
    }

    fn resolve_alert(&self, a: &alert::AlertConfig) -> KaratResult<alert::Alert> {
        let url = self.http_url(&a.url, &format!("[[alert]] {}: url", a.name))?;
        let repeat = match &a.repeat {
            Some(r) => self.duration(r)?,
            None => Duration::from_secs(4 * 3600),
        };
        Ok(alert::Alert {
            name: a.name.clone(),
            url,
            headers: a
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            min_severity: a.min_severity.unwrap_or(alert::Severity::Warn),
            format: a.format,
            repeat,
            owners: self.known_owners(a)?,
        })
    }

    /// `[[alert]] owners`, each the `owner` of some source or table (a typo would route nothing).
    fn known_owners(&self, a: &alert::AlertConfig) -> KaratResult<Vec<String>> {
        let known: std::collections::BTreeSet<&str> = self
            .sources
            .iter()
            .filter_map(|s| s.owner.as_deref())
            .chain(self.tables.iter().filter_map(|t| t.owner.as_deref()))
            .collect();
        match a.owners.iter().find(|o| !known.contains(o.as_str())) {
            None => Ok(a.owners.clone()),
            Some(o) => Err(self.error_at(
                &a.url.span(),
                format!(
                    "[[alert]] {}: no source or table has owner \"{o}\" (owners: {})",
                    a.name,
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    fn duration(&self, raw: &toml::Spanned<String>) -> KaratResult<Duration> {
        humantime::parse_duration(raw.get_ref()).map_err(|e| {
            self.error_at(
                &raw.span(),
                format!("\"{}\" is not a duration ({e}); expected e.g. \"30s\", \"15m\", \"2h\", \"1d\"", raw.get_ref()),
            )
        })
    }

    fn resolve_source(&self, s: &SourceConfig) -> KaratResult<Source> {
        let name = s.name.get_ref().clone();
        check_ident(self, &name, &s.name.span(), "source")?;
        let spec = match s.kind {
            SourceKind::Files => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.error_at(
                        &s.name.span(),
                        format!("source \"{name}\": kind = \"files\" needs `path` (a glob)"),
                    )
                })?;
                if s.url.is_some() {
                    return Err(self.error_at(
                        &s.name.span(),
                        format!("source \"{name}\": `url` is for kind = \"http\""),
                    ));
                }
                let glob = self.dir.join(path.get_ref());
                glob::Pattern::new(&glob.to_string_lossy())
                    .map_err(|e| self.error_at(&path.span(), format!("bad glob: {e}")))?;
                SourceSpec::Files {
                    glob: glob.to_string_lossy().into_owned(),
                    format: s.format,
                }
            }
            SourceKind::Http => {
                let url = s.url.as_ref().ok_or_else(|| {
                    self.error_at(
                        &s.name.span(),
                        format!("source \"{name}\": kind = \"http\" needs `url`"),
                    )
                })?;
                Url::parse(url.get_ref())
                    .map_err(|e| self.error_at(&url.span(), format!("bad url: {e}")))?;
                if s.path.is_some() {
                    return Err(self.error_at(
                        &s.name.span(),
                        format!("source \"{name}\": `path` is for kind = \"files\""),
                    ));
                }
                let timeout = match &s.timeout {
                    Some(t) => self.duration(t)?,
                    None => Duration::from_secs(30),
                };
                SourceSpec::Http(HttpSpec {
                    url: url.get_ref().clone(),
                    headers: s
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    records: s.records.clone(),
                    pagination: s.pagination.unwrap_or(PaginationKind::None),
                    next_field: s.next_field.clone().unwrap_or_else(|| "next".into()),
                    page_param: s.page_param.clone().unwrap_or_else(|| "page".into()),
                    max_pages: s.max_pages.unwrap_or(1000),
                    timeout,
                    retries: s.retries.unwrap_or(3),
                })
            }
        };
        let defaults = UnitLimits::default();
        Ok(Source {
            name,
            spec,
            limits: UnitLimits {
                max_unit_bytes: s.max_unit_bytes.unwrap_or(defaults.max_unit_bytes),
                max_line_bytes: s.max_line_bytes.unwrap_or(defaults.max_line_bytes),
            },
            expected_count_field: s.expected_count_field.clone(),
            owner: s.owner.clone(),
            description: s.description.clone(),
        })
    }

    fn resolve_table(&self, t: &TableConfig, file: &ConfigFile) -> KaratResult<Table> {
        let name = t.name.get_ref().clone();
        let span = t.name.span();
        check_ident(self, &name, &span, "table")?;
        let zone = *t.zone.get_ref();
        let freshness = match &t.freshness {
            None => None,
            Some(f) => {
                let warn_after = f
                    .warn_after
                    .as_ref()
                    .map(|d| self.duration(d))
                    .transpose()?;
                let error_after = f
                    .error_after
                    .as_ref()
                    .map(|d| self.duration(d))
                    .transpose()?;
                if let (Some(w), Some(e)) = (warn_after, error_after)
                    && w > e
                {
                    return Err(self.error_at(
                        &span,
                        format!(
                            "table \"{name}\": freshness warn_after is longer than error_after"
                        ),
                    ));
                }
                Some(Freshness {
                    warn_after,
                    error_after,
                })
            }
        };
        let spec = match zone {
            Zone::Bronze => {
                return Err(self.error_at(
                    &t.zone.span(),
                    "zone \"bronze\" is not declared as a table: every [[source]] lands in bronze; use \"silver\" or \"gold\"",
                ));
            }
            Zone::Silver => TableSpec::Silver(self.resolve_silver(t, &name, file)?),
            Zone::Gold => TableSpec::Gold(self.resolve_gold(t, &name)?),
        };
        let slos = t
            .slo
            .iter()
            .map(|c| self.resolve_slo(&name, c))
            .collect::<KaratResult<Vec<_>>>()?;
        Ok(Table {
            name,
            zone,
            owner: t.owner.clone(),
            description: t.description.clone(),
            freshness,
            slos,
            runbook: t.runbook.clone(),
            event_time: self.event_time(t, &spec)?,
            rule_runbooks: t
                .runbooks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            spec,
            span,
        })
    }

    /// `event_time`: a date or timestamp column of the silver table's contract, or an output
    /// column of a gold table (checked once its SQL is planned).
    fn event_time(&self, t: &TableConfig, spec: &TableSpec) -> KaratResult<Option<String>> {
        let Some(col) = &t.event_time else {
            return Ok(None);
        };
        let TableSpec::Silver(s) = spec else {
            return Ok(Some(col.get_ref().clone()));
        };
        match s.columns.iter().find(|c| &c.name == col.get_ref()) {
            Some(c) if matches!(c.ty, ColumnType::Date | ColumnType::Timestamp) => {
                Ok(Some(c.name.clone()))
            }
            _ => Err(self.error_at(
                &col.span(),
                format!(
                    "event_time \"{}\" is not a date or timestamp column of table \"{}\"",
                    col.get_ref(),
                    t.name.get_ref()
                ),
            )),
        }
    }

    fn resolve_slo(&self, table: &str, c: &slo::SloConfig) -> KaratResult<slo::Slo> {
        let objective = *c.objective.get_ref();
        if !(objective > 0.0 && objective < 100.0) {
            return Err(self.error_at(
                &c.objective.span(),
                format!(
                    "table \"{table}\": slo objective {objective} must be a percentage between 0 and 100, e.g. 99.5"
                ),
            ));
        }
        let window = match &c.window {
            Some(w) => self.duration(w)?,
            None => Duration::from_secs(28 * 86_400),
        };
        Ok(slo::Slo {
            sli: c.sli,
            objective: objective / 100.0,
            window,
        })
    }

    fn resolve_silver(
        &self,
        t: &TableConfig,
        name: &str,
        file: &ConfigFile,
    ) -> KaratResult<SilverSpec> {
        let span = t.name.span();
        if let Some(sql) = &t.sql {
            return Err(self.error_at(&sql.span(), format!("table \"{name}\": `sql` is for gold tables; silver tables read a source with `from`")));
        }
        if let Some(c) = t.check.first() {
            return Err(self.error_at(&c.sql.span(), format!("table \"{name}\": [[table.check]] is for gold tables; silver uses [[table.expect]]")));
        }
        let from = t.from.as_ref().ok_or_else(|| {
            self.error_at(
                &span,
                format!("silver table \"{name}\" needs `from = \"<source>\"`"),
            )
        })?;
        if !self.sources.iter().any(|s| &s.name == from.get_ref()) {
            let known: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(self.error_at(
                &from.span(),
                format!(
                    "unknown source \"{}\"; sources: {}",
                    from.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        if t.columns.is_empty() {
            return Err(self.error_at(
                &span,
                format!("silver table \"{name}\" has no [table.columns] contract"),
            ));
        }
        let mut columns = Vec::new();
        for (cname, c) in &t.columns {
            columns.push(self.resolve_column(name, cname, c)?);
        }
        let partition_by = match &t.partition_by {
            None => INGEST_DATE.to_string(),
            Some(p) if p.get_ref() == INGEST_DATE => INGEST_DATE.to_string(),
            Some(p) => {
                let col = columns.iter().find(|c| &c.name == p.get_ref()).ok_or_else(|| {
                    self.error_at(&p.span(), format!("partition_by \"{}\" is not a column of \"{name}\" (or {INGEST_DATE})", p.get_ref()))
                })?;
                if !matches!(col.ty, ColumnType::Date | ColumnType::Timestamp) {
                    return Err(self.error_at(
                        &p.span(),
                        format!(
                            "partition_by \"{}\" must be a date or timestamp column, it is {}",
                            p.get_ref(),
                            col.ty
                        ),
                    ));
                }
                p.get_ref().clone()
            }
        };
        let partition_timezone = self.partition_timezone(t, &columns, &partition_by)?;
        let key = match &t.key {
            None => Vec::new(),
            Some(k) => {
                for kc in k.get_ref() {
                    let Some(col) = columns.iter().find(|c| &c.name == kc) else {
                        return Err(self.error_at(
                            &k.span(),
                            format!("key column \"{kc}\" is not a column of \"{name}\""),
                        ));
                    };
                    if col.mask.is_some_and(|m| m != Mask::Sha256) {
                        return Err(self.error_at(
                            &k.span(),
                            format!("key column \"{kc}\" of \"{name}\": only mask = \"sha256\" keeps keys apart"),
                        ));
                    }
                }
                k.get_ref().clone()
            }
        };
        let (key, dedup) = self.window_dedup(t, name, &columns, key)?;
        let expectations = t
            .expect
            .iter()
            .map(|e| Expectation {
                name: e.name.clone(),
                sql: e.sql.get_ref().clone(),
                on_fail: e.on_fail,
                span: e.sql.span(),
            })
            .collect();
        let max_reject_rate = t.max_reject_rate.unwrap_or(file.defaults.max_reject_rate);
        if !(0.0..=1.0).contains(&max_reject_rate) {
            return Err(self.error_at(
                &span,
                format!("table \"{name}\": max_reject_rate must be between 0.0 and 1.0"),
            ));
        }
        Ok(SilverSpec {
            from: from.get_ref().clone(),
            partition_by,
            partition_timezone,
            key,
            columns,
            expectations,
            max_reject_rate,
            dedup,
            deletion_vectors: t.deletion_vectors.as_ref().is_some_and(|d| *d.get_ref()),
        })
    }

    /// `dedup = { key, window, time }`: instead of `key`; `time` a required date or timestamp
    /// column. The table's key becomes the dedup key plus each row's window.
    fn window_dedup(
        &self,
        t: &TableConfig,
        name: &str,
        columns: &[Column],
        key: Vec<String>,
    ) -> KaratResult<(Vec<String>, Option<WindowDedup>)> {
        let Some(d) = &t.dedup else {
            return Ok((key, None));
        };
        let at = d.span();
        let d = d.get_ref();
        let err = |m: String| self.error_at(&at, format!("table \"{name}\": dedup {m}"));
        if !key.is_empty() {
            return Err(err("replaces `key`: set one of them".into()));
        }
        if d.key.is_empty() {
            return Err(err("needs a key".into()));
        }
        for k in &d.key {
            if !columns.iter().any(|c| &c.name == k) {
                return Err(err(format!("key column \"{k}\" is not a column")));
            }
        }
        match columns.iter().find(|c| c.name == d.time) {
            Some(c) if matches!(c.ty, ColumnType::Date | ColumnType::Timestamp) && !c.nullable => {}
            _ => {
                return Err(err(format!(
                    "time \"{}\" must be a date or timestamp column with nullable = false",
                    d.time
                )));
            }
        }
        let window = humantime::parse_duration(&d.window)
            .ok()
            .filter(|w| w.as_secs() > 0)
            .ok_or_else(|| {
                err(format!(
                    "window \"{}\" is not a duration of a second or more, e.g. \"24h\"",
                    d.window
                ))
            })?;
        let mut key = d.key.clone();
        key.push(DEDUP_WINDOW.to_string());
        Ok((
            key,
            Some(WindowDedup {
                time: d.time.clone(),
                window,
            }),
        ))
    }

    /// `partition_timezone`: only with a timestamp `partition_by`, and a zone arrow knows.
    fn partition_timezone(
        &self,
        t: &TableConfig,
        columns: &[Column],
        partition_by: &str,
    ) -> KaratResult<Option<String>> {
        let Some(tz) = &t.partition_timezone else {
            return Ok(None);
        };
        let is_ts = columns
            .iter()
            .any(|c| c.name == partition_by && c.ty == ColumnType::Timestamp);
        if !is_ts {
            return Err(self.error_at(
                &tz.span(),
                format!(
                    "partition_timezone needs a timestamp partition_by; \"{partition_by}\" is not one"
                ),
            ));
        }
        tz.get_ref()
            .parse::<deltalake::arrow::array::timezone::Tz>()
            .map_err(|e| {
                self.error_at(
                    &tz.span(),
                    format!("partition_timezone \"{}\": {e}", tz.get_ref()),
                )
            })?;
        Ok(Some(tz.get_ref().clone()))
    }

    fn resolve_column(&self, table: &str, name: &str, c: &ColumnConfig) -> KaratResult<Column> {
        let ty = ColumnType::parse(c.ty.get_ref())
            .map_err(|m| self.error_at(&c.ty.span(), format!("{table}.{name}: {m}")))?;
        if name.starts_with('_') {
            return Err(self.error_at(&c.ty.span(), format!("{table}.{name}: column names starting with '_' are reserved for karat's provenance columns")));
        }
        let lit = |v: &toml::Value, what: &str| -> KaratResult<Literal> {
            literal(v, ty)
                .map_err(|m| self.error_at(&c.ty.span(), format!("{table}.{name}: {what}: {m}")))
        };
        if !c.normalize.is_empty() && ty != ColumnType::String {
            return Err(self.error_at(
                &c.ty.span(),
                format!("{table}.{name}: normalize applies to string columns, this one is {ty}"),
            ));
        }
        if c.mask.is_some() && ty != ColumnType::String {
            return Err(self.error_at(
                &c.ty.span(),
                format!("{table}.{name}: mask applies to string columns, this one is {ty}"),
            ));
        }
        if (c.regex.is_some() || c.max_length.is_some()) && ty != ColumnType::String {
            return Err(self.error_at(
                &c.ty.span(),
                format!(
                    "{table}.{name}: regex and max_length apply to string columns, this one is {ty}"
                ),
            ));
        }
        if let Some(r) = &c.regex {
            regex::Regex::new(r.get_ref())
                .map_err(|e| self.error_at(&r.span(), format!("{table}.{name}: bad regex: {e}")))?;
        }
        Ok(Column {
            name: name.to_string(),
            source_field: c.source_field.clone().unwrap_or_else(|| name.to_string()),
            ty,
            nullable: c.nullable,
            normalize: c.normalize.clone(),
            min: c.min.as_ref().map(|v| lit(v, "min")).transpose()?,
            max: c.max.as_ref().map(|v| lit(v, "max")).transpose()?,
            one_of: c
                .one_of
                .as_ref()
                .map(|vs| {
                    vs.iter()
                        .map(|v| lit(v, "one_of"))
                        .collect::<KaratResult<Vec<_>>>()
                })
                .transpose()?,
            regex: c.regex.as_ref().map(|r| r.get_ref().clone()),
            max_length: c.max_length,
            mask: c.mask,
        })
    }

    fn resolve_gold(&self, t: &TableConfig, name: &str) -> KaratResult<GoldSpec> {
        let span = t.name.span();
        if t.kind.as_ref().map(|k| *k.get_ref()) == Some(model::GoldKind::Scd2) {
            return self.resolve_scd2(t, name);
        }
        if let Some(f) = t
            .track
            .as_ref()
            .map(|x| x.span())
            .or(t.effective_from.as_ref().map(|x| x.span()))
        {
            return Err(self.error_at(
                &f,
                format!("table \"{name}\": track and effective_from are for kind = \"scd2\""),
            ));
        }
        if let Some(from) = &t.from {
            return Err(self.error_at(&from.span(), format!("table \"{name}\": `from` is for silver tables; gold tables are defined by `sql`")));
        }
        if let Some(d) = &t.deletion_vectors {
            return Err(self.error_at(&d.span(), format!("table \"{name}\": deletion_vectors is for silver tables (how superseded rows are deleted); gold partitions are recomputed whole")));
        }
        if !t.columns.is_empty() || t.key.is_some() || !t.expect.is_empty() {
            return Err(self.error_at(&span, format!("table \"{name}\": columns, key and expect are for silver tables; gold is defined by `sql` and [[table.check]]")));
        }
        let sql = t
            .sql
            .as_ref()
            .ok_or_else(|| self.error_at(&span, format!("gold table \"{name}\" needs `sql`")))?;
        Ok(GoldSpec {
            sql: sql.get_ref().clone(),
            sql_span: sql.span(),
            partition_by: t.partition_by.as_ref().map(|p| p.get_ref().clone()),
            checks: t
                .check
                .iter()
                .map(|c| Check {
                    name: c.name.clone(),
                    sql: c.sql.get_ref().clone(),
                    blocking: c.blocking,
                    span: c.sql.span(),
                })
                .collect(),
            scd2: None,
        })
    }

    /// `kind = "scd2"`: `from` a silver table, by `key`; checked against that table's contract
    /// once every table is known ([`Config::complete_scd2`]).
    fn resolve_scd2(&self, t: &TableConfig, name: &str) -> KaratResult<GoldSpec> {
        let span = t.name.span();
        if let Some(sql) = &t.sql {
            return Err(self.error_at(&sql.span(), format!("table \"{name}\": a kind = \"scd2\" table is defined by from, key and track, not sql")));
        }
        if !t.columns.is_empty() || !t.expect.is_empty() || t.partition_by.is_some() {
            return Err(self.error_at(&span, format!("table \"{name}\": a kind = \"scd2\" table takes from, key, track and effective_from")));
        }
        let from = t.from.as_ref().ok_or_else(|| {
            self.error_at(
                &span,
                format!("table \"{name}\": kind = \"scd2\" needs `from` (a silver table)"),
            )
        })?;
        Ok(GoldSpec {
            sql: String::new(),
            sql_span: from.span(),
            partition_by: None,
            checks: Vec::new(),
            scd2: Some(scd2::Scd2 {
                from: from.get_ref().clone(),
                key: t
                    .key
                    .as_ref()
                    .map(|k| k.get_ref().clone())
                    .unwrap_or_default(),
                track: t
                    .track
                    .as_ref()
                    .map(|k| k.get_ref().clone())
                    .unwrap_or_default(),
                effective_from: t
                    .effective_from
                    .as_ref()
                    .map(|e| e.get_ref().clone())
                    .unwrap_or_else(|| "_ingested_at".into()),
            }),
        })
    }

    /// Fills each SCD2 table's defaults from its silver table (key, every other column tracked),
    /// checks its columns exist there, and writes its query.
    fn complete_scd2(&mut self) -> KaratResult<()> {
        let silver: BTreeMap<String, SilverSpec> = self
            .tables
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.silver()?.clone())))
            .collect();
        let mut done = Vec::new();
        for t in &self.tables {
            let Some(g) = t.gold() else { continue };
            let Some(spec) = &g.scd2 else { continue };
            let err = |m: String| self.error_at(&g.sql_span, format!("table \"{}\": {m}", t.name));
            let s = silver
                .get(&spec.from)
                .ok_or_else(|| err(format!("scd2 from \"{}\" is not a silver table", spec.from)))?;
            let mut spec = spec.clone();
            if spec.key.is_empty() {
                spec.key = s.key.clone();
            }
            if spec.key.is_empty() {
                return Err(err(format!(
                    "scd2 needs a key: set `key`, or a key on silver table \"{}\"",
                    spec.from
                )));
            }
            let has = |c: &str| s.columns.iter().any(|x| x.name == c);
            if spec.track.is_empty() {
                spec.track = s
                    .columns
                    .iter()
                    .map(|c| c.name.clone())
                    .filter(|c| !spec.key.contains(c))
                    .collect();
            }
            for c in spec.key.iter().chain(&spec.track) {
                if !has(c) {
                    return Err(err(format!(
                        "scd2 column \"{c}\" is not a column of silver table \"{}\"",
                        spec.from
                    )));
                }
            }
            // a null effective time would sort last and leave two versions current
            let eff_ok = spec.effective_from == "_ingested_at"
                || s.columns.iter().any(|x| {
                    x.name == spec.effective_from
                        && !x.nullable
                        && matches!(x.ty, ColumnType::Date | ColumnType::Timestamp)
                });
            if !eff_ok {
                return Err(err(format!(
                    "scd2 effective_from \"{}\" is not a date or timestamp column (with nullable = false) of silver table \"{}\"",
                    spec.effective_from, spec.from
                )));
            }
            done.push((t.name.clone(), spec));
        }
        for (name, spec) in done {
            if let Some(Table {
                spec: TableSpec::Gold(g),
                ..
            }) = self.tables.iter_mut().find(|t| t.name == name)
            {
                g.sql = spec.sql(false);
                g.scd2 = Some(spec);
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

fn check_ident(cfg: &Config, name: &str, span: &Range<usize>, what: &str) -> KaratResult<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(cfg.error_at(span, format!("{what} name \"{name}\" must be lower-case letters, digits and '_' (it names folders and SQL tables)")))
    }
}

/// A config value as a SQL literal of the column's type.
fn literal(v: &toml::Value, ty: ColumnType) -> Result<Literal, String> {
    match v {
        toml::Value::Integer(i) if ty.is_numeric() => Ok(Literal {
            sql: i.to_string(),
            display: i.to_string(),
        }),
        toml::Value::Float(f) if ty.is_numeric() => Ok(Literal {
            sql: format!("{f:?}"),
            display: f.to_string(),
        }),
        toml::Value::Boolean(b) if ty == ColumnType::Bool => Ok(Literal {
            sql: b.to_string(),
            display: b.to_string(),
        }),
        toml::Value::String(s) if !ty.is_numeric() => {
            let quoted = format!("'{}'", s.replace('\'', "''"));
            let sql = match ty {
                ColumnType::Date => format!("CAST({quoted} AS DATE)"),
                ColumnType::Timestamp => format!("CAST({quoted} AS TIMESTAMP)"),
                _ => quoted,
            };
            Ok(Literal {
                sql,
                display: s.clone(),
            })
        }
        other => Err(format!("value {other} does not fit a {ty} column")),
    }
}
