//! A gold table planned for execution (its inputs, output schema, how it is recomputed), and
//! the check of whether the partitions it must recompute can be derived from changed input rows.

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::logical_expr::LogicalPlan;

/// A gold table ready to run.
#[derive(Debug, Clone)]
pub struct GoldPlan {
    pub name: String,
    /// Silver and gold tables its SQL reads.
    pub inputs: Vec<String>,
    /// Output schema as planned.
    pub schema: SchemaRef,
    /// Recomputed per partition (true) or replaced whole (false): true when the output is
    /// partitioned by a date column.
    pub incremental: bool,
    /// True when the partitions a change feeds can be found by running the query over the
    /// changed rows alone (see [`derivable`]); otherwise a change recomputes the whole table.
    pub derivable: bool,
    /// Where each output column comes from.
    pub columns: Vec<super::columns::ColumnLineage>,
    /// How a run's changes fold into it, or why they do not ([`super::fold`]).
    pub fold: Result<super::fold::Fold, String>,
}

/// Replaces `row_count` in a check by `COUNT(*)`.
pub fn check_sql(check: &str) -> String {
    let re = regex::Regex::new(r"(?i)\brow_count\b").expect("static regex");
    re.replace_all(check, "COUNT(*)").into_owned()
}

/// True when every output row of `plan` is fed only by input rows that reach it through
/// projections, filters on rows, joins, unions and grouping: then the query run over changed
/// input rows yields every output partition they feed. A filter over an aggregate (HAVING),
/// a window, a limit or a subquery can hide a partition, so such a query is not derivable.
pub fn derivable(plan: &LogicalPlan) -> bool {
    let here = match plan {
        LogicalPlan::Projection(_)
        | LogicalPlan::Aggregate(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::TableScan(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Distinct(_)
        | LogicalPlan::Union(_)
        | LogicalPlan::Join(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Values(_) => true,
        LogicalPlan::Filter(f) => {
            !below_aggregate(&f.input) && !f.predicate.to_string().contains("ubquery")
        }
        _ => false,
    };
    here && plan.inputs().iter().all(|i| derivable(i))
}

fn below_aggregate(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) | LogicalPlan::Limit(_)
    ) || plan.inputs().iter().any(|i| below_aggregate(i))
}
