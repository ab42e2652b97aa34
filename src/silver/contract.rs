//! A silver contract compiled for execution: the typed silver schema, the dead-letter schema,
//! and every rule and expectation as a DataFusion physical expression that evaluates a whole
//! Arrow batch at once.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::prelude::SessionContext;

use crate::config::{
    Column, Config, DEDUP_WINDOW, INGEST_DATE, Normalizer, OnFail, PARTITION_DATE, SilverSpec,
    Table,
};
use crate::error::{KaratError, KaratResult};

/// What a rule checks, to word its dead-letter reason.
#[derive(Debug, Clone)]
pub enum RuleKind {
    Min(String),
    Max(String),
    OneOf(Vec<String>),
    Regex(String),
    MaxLength(u32),
}

/// One column rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Index into the contract columns.
    pub column: usize,
    /// Stable id used to group dead letters, e.g. `currency.one_of`.
    pub id: String,
    pub kind: RuleKind,
    pub expr: Arc<dyn PhysicalExpr>,
}

/// One expectation, compiled.
#[derive(Debug, Clone)]
pub struct CompiledExpectation {
    pub name: String,
    pub sql: String,
    pub on_fail: OnFail,
    pub expr: Arc<dyn PhysicalExpr>,
}

/// Everything needed to validate rows of one silver table.
#[derive(Debug, Clone)]
pub struct Contract {
    pub table: String,
    pub spec: SilverSpec,
    /// Source field names, in column order (what the decoder extracts).
    pub source_fields: Vec<String>,
    /// Per column: normaliser over the decoded chunk (`upper(btrim(c3))`), if any.
    pub normalizers: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub rules: Vec<Rule>,
    pub expectations: Vec<CompiledExpectation>,
    /// Schema of the silver Delta table.
    pub silver_schema: SchemaRef,
    /// Index of the Delta partition column in `silver_schema`.
    pub partition_index: usize,
    /// The Delta partition column's name (see [`SilverSpec::partition_column`]).
    pub partition_column: String,
    /// Index of the `partition_by` column (a timestamp when partitioned by its day).
    pub partition_by_index: usize,
    /// Schema of the superseded-rows table.
    pub superseded_schema: SchemaRef,
    /// See [`fingerprint`].
    pub fingerprint: String,
    /// Indexes of the key columns in `silver_schema`.
    pub key_indexes: Vec<usize>,
}

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Timestamps in silver: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The silver table's schema: contract columns, `_ingest_date` when partitioned by it (or
/// `_partition_date` when partitioned by a timestamp's day), then provenance (`_batch_id`,
/// `_ingested_at`, `_line`).
pub fn silver_schema(spec: &SilverSpec) -> SchemaRef {
    let mut fields: Vec<Field> = spec
        .columns
        .iter()
        .map(|c| Field::new(&c.name, c.ty.arrow(), true))
        .collect();
    if spec.partition_by == INGEST_DATE {
        fields.push(Field::new(INGEST_DATE, DataType::Date32, true));
    } else if spec.partitioned_by_timestamp() {
        fields.push(Field::new(PARTITION_DATE, DataType::Date32, true));
    }
    if spec.dedup.is_some() {
        fields.push(Field::new(DEDUP_WINDOW, DataType::Int64, true));
    }
    fields.push(Field::new("_batch_id", DataType::Utf8, true));
    fields.push(Field::new("_ingested_at", timestamp_type(), true));
    fields.push(Field::new("_line", DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// The dead-letter table's schema (one per silver table).
pub fn dead_letter_schema() -> SchemaRef {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, true),
        Field::new("rules", list.clone(), true),
        Field::new("reasons", list, true),
        Field::new("raw", DataType::Utf8, true),
        Field::new("batch_id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("file", DataType::Utf8, true),
        Field::new("line", DataType::Int64, true),
        Field::new("ingested_at", timestamp_type(), true),
    ]))
}

/// Partition column of every dead-letter table.
pub const DEAD_LETTER_PARTITION: &str = "partition";

/// Column of a superseded row naming the batch of the version that won.
pub const SUPERSEDED_BY: &str = "_superseded_by";
/// Partition column of a superseded table: the silver partition of the winning version, so a
/// key's winner and its losers are always rewritten together.
pub const WINNER_PARTITION: &str = "_winner_partition";

/// The schema of a silver table's superseded rows: the silver row, then which batch's version
/// replaced it and where that version lives.
pub fn superseded_schema(silver: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = silver.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(SUPERSEDED_BY, DataType::Utf8, true));
    fields.push(Field::new(WINNER_PARTITION, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// A short fingerprint of what decides a row's fate (columns, types, rules, key, partitioning,
/// expectations): recorded per processed batch as the contract it was processed with.
pub fn fingerprint(spec: &SilverSpec) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("{:?}", spec.columns));
    h.update(format!(
        "|{}|{:?}|{:?}|",
        spec.partition_by, spec.partition_timezone, spec.key
    ));
    for e in &spec.expectations {
        h.update(format!("{}={}:{:?};", e.name, e.sql, e.on_fail));
    }
    if let Some(d) = &spec.dedup {
        h.update(format!("|dedup {}/{:?}", d.time, d.window));
    }
    hex::encode(h.finalize())[..12].to_string()
}

impl Contract {
    /// Compiles the contract of a silver table. SQL errors point into the config file.
    pub fn compile(cfg: &Config, table: &Table) -> KaratResult<Contract> {
        let spec = table
            .silver()
            .ok_or_else(|| {
                KaratError::Usage(format!("table {} is not a silver table", table.name))
            })?
            .clone();
        let ctx = SessionContext::new();
        let source_fields: Vec<String> = spec
            .columns
            .iter()
            .map(|c| c.source_field.clone())
            .collect();
        let chunk_schema = super::decode::chunk_schema(&source_fields);
        let chunk_df = DFSchema::try_from(chunk_schema.as_ref().clone())
            .map_err(|e| KaratError::sql(format!("table {}", table.name), e))?;
        let silver_schema = silver_schema(&spec);
        let silver_df = DFSchema::try_from(silver_schema.as_ref().clone())
            .map_err(|e| KaratError::sql(format!("table {}", table.name), e))?;
        let compile = |sql: &str, df: &DFSchema| -> Result<Arc<dyn PhysicalExpr>, String> {
            let expr = ctx.parse_sql_expr(sql, df).map_err(|e| e.to_string())?;
            ctx.create_physical_expr(expr, df)
                .map_err(|e| e.to_string())
        };

        let mut normalizers = Vec::new();
        for (i, c) in spec.columns.iter().enumerate() {
            if c.normalize.is_empty() {
                normalizers.push(None);
                continue;
            }
            let mut sql = format!("c{i}");
            for n in &c.normalize {
                sql = match n {
                    Normalizer::Trim => format!("btrim({sql})"),
                    Normalizer::Upper => format!("upper({sql})"),
                    Normalizer::Lower => format!("lower({sql})"),
                };
            }
            normalizers.push(Some(compile(&sql, &chunk_df).map_err(|m| {
                cfg.error_at(
                    &table.span,
                    format!("{}.{}: normalize: {m}", table.name, c.name),
                )
            })?));
        }

        let mut rules = Vec::new();
        for (i, c) in spec.columns.iter().enumerate() {
            for (suffix, kind, sql) in rule_sql(c) {
                let expr = compile(&sql, &silver_df).map_err(|m| {
                    cfg.error_at(
                        &table.span,
                        format!("{}.{}: {suffix}: {m}", table.name, c.name),
                    )
                })?;
                rules.push(Rule {
                    column: i,
                    id: format!("{}.{suffix}", c.name),
                    kind,
                    expr,
                });
            }
        }

        let mut expectations = Vec::new();
        for e in &spec.expectations {
            let expr = compile(&e.sql, &silver_df).map_err(|m| {
                cfg.error_at(
                    &e.span,
                    format!("table {} expectation \"{}\": {m}", table.name, e.name),
                )
            })?;
            expectations.push(CompiledExpectation {
                name: e.name.clone(),
                sql: e.sql.clone(),
                on_fail: e.on_fail,
                expr,
            });
        }

        let partition_column = spec.partition_column().to_string();
        let partition_index = silver_schema
            .index_of(&partition_column)
            .map_err(|e| KaratError::arrow(format!("table {}", table.name), e))?;
        let partition_by_index = silver_schema
            .index_of(&spec.partition_by)
            .map_err(|e| KaratError::arrow(format!("table {}", table.name), e))?;
        let key_indexes = spec
            .key
            .iter()
            .map(|k| silver_schema.index_of(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| KaratError::arrow(format!("table {}", table.name), e))?;
        Ok(Contract {
            table: table.name.clone(),
            superseded_schema: superseded_schema(&silver_schema),
            fingerprint: fingerprint(&spec),
            partition_column,
            partition_by_index,
            spec,
            source_fields,
            normalizers,
            rules,
            expectations,
            silver_schema,
            partition_index,
            key_indexes,
        })
    }

    /// True when the column must have a value: declared not nullable, part of the key, or the
    /// partition column.
    pub fn required(&self, column: usize) -> bool {
        let c = &self.spec.columns[column];
        !c.nullable || self.spec.key.contains(&c.name) || c.name == self.spec.partition_by
    }
}

fn rule_sql(c: &Column) -> Vec<(&'static str, RuleKind, String)> {
    let col = ident(&c.name);
    let mut out = Vec::new();
    if let Some(m) = &c.min {
        out.push((
            "min",
            RuleKind::Min(m.display.clone()),
            format!("{col} >= {}", m.sql),
        ));
    }
    if let Some(m) = &c.max {
        out.push((
            "max",
            RuleKind::Max(m.display.clone()),
            format!("{col} <= {}", m.sql),
        ));
    }
    if let Some(vals) = &c.one_of {
        let list: Vec<&str> = vals.iter().map(|v| v.sql.as_str()).collect();
        out.push((
            "one_of",
            RuleKind::OneOf(vals.iter().map(|v| v.display.clone()).collect()),
            format!("{col} IN ({})", list.join(", ")),
        ));
    }
    if let Some(r) = &c.regex {
        out.push((
            "regex",
            RuleKind::Regex(r.clone()),
            format!("regexp_like({col}, {})", quote(r)),
        ));
    }
    if let Some(n) = c.max_length {
        out.push((
            "max_length",
            RuleKind::MaxLength(n),
            format!("character_length({col}) <= {n}"),
        ));
    }
    out
}
