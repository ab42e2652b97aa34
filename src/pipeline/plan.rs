//! The plan: a loaded config made executable and checked end to end before anything runs.
//! Contracts are compiled, every gold SQL is planned by DataFusion against the silver contracts
//! and upstream gold outputs (so an unknown table or column is a config error with its line and
//! column), gold checks are planned against the gold output, and tables are put in dependency
//! order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;

use crate::config::{Config, Table, TableSpec, Zone};
use crate::error::{KaratError, KaratResult};
pub use crate::gold::plan::{GoldPlan, check_sql};
use crate::silver::Contract;

/// The executable pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: Arc<Config>,
    pub contracts: BTreeMap<String, Arc<Contract>>,
    /// Gold tables in dependency order.
    pub gold: Vec<GoldPlan>,
}

/// A gold table's `event_time` must be a date or timestamp column of its output.
fn check_event_time(config: &Config, t: &Table, schema: &SchemaRef) -> KaratResult<()> {
    let Some(col) = &t.event_time else {
        return Ok(());
    };
    match schema.field_with_name(col).map(|f| f.data_type()) {
        Ok(DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) => Ok(()),
        _ => {
            let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            Err(config.error_at(
                &t.span,
                format!(
                    "gold table {}: event_time \"{col}\" is not a date or timestamp output column; columns: {}",
                    t.name,
                    cols.join(", ")
                ),
            ))
        }
    }
}

impl Plan {
    /// Loads and checks `karat.toml`.
    pub async fn load(path: &Path) -> KaratResult<Plan> {
        let config = Config::load(path)?;
        Plan::new(config).await
    }

    /// Checks a loaded config.
    pub async fn new(config: Config) -> KaratResult<Plan> {
        let mut contracts = BTreeMap::new();
        let ctx = SessionContext::new();
        let mut schemas: BTreeMap<String, SchemaRef> = BTreeMap::new();
        for t in &config.tables {
            if let TableSpec::Silver(_) = &t.spec {
                let c = Contract::compile(&config, t)?;
                let schema = c.silver_schema.clone();
                register_empty(&ctx, &t.name, schema.clone())?;
                schemas.insert(t.name.clone(), schema);
                contracts.insert(t.name.clone(), Arc::new(c));
            }
        }
        // gold: resolve references, order, plan
        let dialect = ctx.state().config().options().sql_parser.dialect;
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // a query reading a table twice (a self-join) cannot be restricted to changed rows
        let mut self_joins: BTreeSet<String> = BTreeSet::new();
        for t in config.tables.iter().filter(|t| t.zone == Zone::Gold) {
            let g = t.gold().expect("gold table");
            let stmt = ctx
                .state()
                .sql_to_statement(&g.sql, &dialect)
                .map_err(|e| config.error_at(&g.sql_span, format!("gold table {}: {e}", t.name)))?;
            if let Some(kind) = not_a_query(&stmt) {
                return Err(config.error_at(
                    &g.sql_span,
                    format!(
                        "gold table {}: sql must be one read-only query (SELECT …), not {kind}",
                        t.name
                    ),
                ));
            }
            let refs = ctx
                .state()
                .resolve_table_references(&stmt)
                .map_err(|e| config.error_at(&g.sql_span, format!("gold table {}: {e}", t.name)))?;
            let mut inputs = BTreeSet::new();
            let mut read_twice = false;
            for r in refs {
                let name = r.table().to_string();
                match config.table(&name) {
                    Some(_) if name == t.name => {
                        return Err(config
                            .error_at(&g.sql_span, format!("gold table {} reads itself", t.name)));
                    }
                    Some(_) => {
                        read_twice |= !inputs.insert(name);
                    }
                    None => {
                        let known: Vec<&str> =
                            config.tables.iter().map(|t| t.name.as_str()).collect();
                        return Err(config.error_at(
                            &g.sql_span,
                            format!(
                                "gold table {}: SQL reads unknown table \"{name}\"; tables: {}",
                                t.name,
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            if read_twice {
                self_joins.insert(t.name.clone());
            }
            deps.insert(t.name.clone(), inputs.into_iter().collect());
        }
        let order = topo_order(&config, &deps)?;
        let mut gold = Vec::new();
        for name in order {
            let t = config.table(&name).expect("ordered tables exist");
            let g = t.gold().expect("gold table");
            let df = ctx
                .sql_with_options(&g.sql, crate::lake::delta::read_only())
                .await
                .map_err(|e| config.error_at(&g.sql_span, format!("gold table {}: {e}", t.name)))?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let derivable =
                !self_joins.contains(&name) && crate::gold::plan::derivable(df.logical_plan());
            let columns = crate::gold::columns::lineage(df.logical_plan());
            let mut incremental = false;
            if let Some(p) = &g.partition_by {
                let f = schema.field_with_name(p).map_err(|_| {
                    let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                    config.error_at(&t.span, format!("gold table {}: partition_by \"{p}\" is not an output column; columns: {}", t.name, cols.join(", ")))
                })?;
                incremental = f.data_type() == &DataType::Date32;
            }
            check_event_time(&config, t, &schema)?;
            register_empty(&ctx, "result", schema.clone())?;
            for c in &g.checks {
                ctx.sql_with_options(
                    &format!(
                        "SELECT CAST(({}) AS BOOLEAN) FROM result",
                        check_sql(&c.sql)
                    ),
                    crate::lake::delta::read_only(),
                )
                .await
                .map_err(|e| {
                    config.error_at(
                        &c.span,
                        format!("gold table {} check \"{}\": {e}", t.name, c.name),
                    )
                })?;
            }
            ctx.deregister_table("result")
                .map_err(|e| KaratError::sql("planning", e))?;
            register_empty(&ctx, &t.name, schema.clone())?;
            let inputs = deps.get(&name).cloned().unwrap_or_default();
            let fold = crate::gold::fold::of_table(
                &config,
                &name,
                &inputs,
                df.logical_plan(),
                incremental,
            );
            schemas.insert(name.clone(), schema.clone());
            gold.push(GoldPlan {
                name,
                inputs,
                schema,
                incremental,
                derivable,
                columns,
                fold,
            });
        }
        Ok(Plan {
            config: Arc::new(config),
            contracts,
            gold,
        })
    }

    /// Silver tables in config order.
    pub fn silver_tables(&self) -> impl Iterator<Item = &Table> {
        self.config.tables.iter().filter(|t| t.zone == Zone::Silver)
    }

    /// The gold plan of a table.
    /// The folder of every Delta table a run of this plan writes: silver, dead letters and
    /// superseded rows per silver table, then gold.
    pub fn data_tables(&self) -> Vec<String> {
        use crate::lake::layout;
        let mut out = Vec::new();
        for t in self.contracts.keys() {
            out.push(layout::table(crate::config::Zone::Silver, t));
            out.push(layout::dead_letters(t));
            out.push(layout::superseded(t));
        }
        out.extend(
            self.gold
                .iter()
                .map(|g| layout::table(crate::config::Zone::Gold, &g.name)),
        );
        out
    }

    pub fn gold_plan(&self, name: &str) -> Option<&GoldPlan> {
        self.gold.iter().find(|g| g.name == name)
    }
}

/// What a parsed statement is when it is not a plain query (e.g. `COPY`, `CREATE TABLE`).
fn not_a_query(stmt: &deltalake::datafusion::sql::parser::Statement) -> Option<String> {
    use deltalake::datafusion::sql::parser::Statement;
    use deltalake::datafusion::sql::sqlparser::ast::Statement as Sql;
    match stmt {
        Statement::Statement(s) if matches!(s.as_ref(), Sql::Query(_)) => None,
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            Some(words.join(" ").to_uppercase())
        }
    }
}

fn register_empty(ctx: &SessionContext, name: &str, schema: SchemaRef) -> KaratResult<()> {
    let _ = ctx.deregister_table(name);
    let t = MemTable::try_new(schema, vec![vec![]])
        .map_err(|e| KaratError::sql(format!("planning {name}"), e))?;
    ctx.register_table(name, Arc::new(t))
        .map_err(|e| KaratError::sql(format!("planning {name}"), e))?;
    Ok(())
}

fn topo_order(config: &Config, deps: &BTreeMap<String, Vec<String>>) -> KaratResult<Vec<String>> {
    let mut order = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut visiting: BTreeSet<String> = BTreeSet::new();
    fn visit(
        n: &str,
        config: &Config,
        deps: &BTreeMap<String, Vec<String>>,
        done: &mut BTreeSet<String>,
        visiting: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> KaratResult<()> {
        if done.contains(n) || !deps.contains_key(n) {
            return Ok(());
        }
        if !visiting.insert(n.to_string()) {
            let t = config.table(n).expect("known");
            return Err(config.error_at(
                &t.span,
                format!("gold table {n} is part of a dependency cycle"),
            ));
        }
        for d in &deps[n] {
            visit(d, config, deps, done, visiting, order)?;
        }
        visiting.remove(n);
        done.insert(n.to_string());
        order.push(n.to_string());
        Ok(())
    }
    for t in config.tables.iter().filter(|t| t.zone == Zone::Gold) {
        visit(&t.name, config, deps, &mut done, &mut visiting, &mut order)?;
    }
    Ok(order)
}
