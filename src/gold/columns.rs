//! Column lineage of a gold table: for each output column, the input table columns it is
//! computed from, read off the DataFusion logical plan of its SQL (through projections,
//! aggregates, joins, unions, filters and aliases). OpenLineage's `columnLineage` facet and the
//! lineage view use it.

use std::collections::BTreeSet;

use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};
use serde::Serialize;

/// One input column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InputColumn {
    pub table: String,
    pub column: String,
}

/// An output column and where it comes from (empty: a constant, or a plan shape not followed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnLineage {
    pub column: String,
    pub inputs: BTreeSet<InputColumn>,
}

/// The lineage of every output column of `plan`.
pub fn lineage(plan: &LogicalPlan) -> Vec<ColumnLineage> {
    plan.schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| ColumnLineage {
            column: f.name().clone(),
            inputs: sources(plan, i),
        })
        .collect()
}

/// The input columns behind the columns `expr` reads from `input`.
fn through(expr: &Expr, input: &LogicalPlan) -> BTreeSet<InputColumn> {
    let mut out = BTreeSet::new();
    for c in expr.column_refs() {
        if let Ok(i) = input.schema().index_of_column(c) {
            out.extend(sources(input, i));
        }
    }
    out
}

/// The input columns behind output column `i` of `plan`.
fn sources(plan: &LogicalPlan, i: usize) -> BTreeSet<InputColumn> {
    match plan {
        LogicalPlan::TableScan(s) => s
            .projected_schema
            .fields()
            .get(i)
            .map(|f| {
                BTreeSet::from([InputColumn {
                    table: s.table_name.table().to_string(),
                    column: f.name().clone(),
                }])
            })
            .unwrap_or_default(),
        LogicalPlan::Projection(p) => p
            .expr
            .get(i)
            .map(|e| through(e, &p.input))
            .unwrap_or_default(),
        LogicalPlan::Aggregate(a) => {
            let exprs: Vec<&Expr> = a.group_expr.iter().chain(a.aggr_expr.iter()).collect();
            exprs
                .get(i)
                .map(|e| through(e, &a.input))
                .unwrap_or_default()
        }
        LogicalPlan::Join(j) => {
            let left = j.left.schema().fields().len();
            if i < left {
                sources(&j.left, i)
            } else {
                sources(&j.right, i - left)
            }
        }
        LogicalPlan::Union(u) => u.inputs.iter().flat_map(|p| sources(p, i)).collect(),
        LogicalPlan::Window(w) => {
            let own = w.input.schema().fields().len();
            if i < own {
                sources(&w.input, i)
            } else {
                w.window_expr
                    .get(i - own)
                    .map(|e| through(e, &w.input))
                    .unwrap_or_default()
            }
        }
        // one input, the same columns
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Distinct(_) => plan
            .inputs()
            .first()
            .map(|p| sources(p, i))
            .unwrap_or_default(),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::prelude::SessionContext;
    use std::sync::Arc;

    fn table(ctx: &SessionContext, name: &str, cols: &[(&str, DataType)]) {
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(c, t)| Field::new(*c, t.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let t = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table(name, Arc::new(t)).unwrap();
    }

    #[tokio::test]
    async fn aggregates_and_joins_trace_back_to_their_input_columns() {
        let ctx = SessionContext::new();
        table(
            &ctx,
            "orders",
            &[
                ("order_date", DataType::Date32),
                ("customer_id", DataType::Utf8),
                ("amount", DataType::Float64),
            ],
        );
        table(
            &ctx,
            "customers",
            &[("customer_id", DataType::Utf8), ("country", DataType::Utf8)],
        );
        let df = ctx
            .sql(
                "SELECT o.order_date, c.country, SUM(o.amount) AS revenue, COUNT(*) AS orders \
                 FROM orders o JOIN customers c ON o.customer_id = c.customer_id \
                 WHERE o.amount > 0 GROUP BY 1, 2",
            )
            .await
            .unwrap();
        let l = lineage(df.logical_plan());
        let of = |c: &str| -> Vec<String> {
            l.iter()
                .find(|x| x.column == c)
                .unwrap()
                .inputs
                .iter()
                .map(|i| format!("{}.{}", i.table, i.column))
                .collect()
        };
        assert_eq!(of("order_date"), ["orders.order_date"]);
        assert_eq!(of("country"), ["customers.country"]);
        assert_eq!(of("revenue"), ["orders.amount"]);
        assert!(of("orders").is_empty(), "COUNT(*) reads no column");
    }
}
