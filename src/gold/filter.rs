//! The filter that restricts a gold query to some of its partitions, given by their labels
//! (the partition value as text). Where a label reads back exactly as the column's own type
//! (dates, integers, text) the value is compared as that type, so DataFusion pushes the filter
//! down to the inputs' scans and reads only the partitions it needs; any other type is
//! compared as text, which is exact but reads every input row.

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;

use crate::error::{KaratError, KaratResult};
use crate::silver::contract::ident;

/// `q.<pcol> IN (…)` for `labels` (not empty) of the gold query `sql`'s partition column.
pub async fn partition_filter(
    ctx: &SessionContext,
    sql: &str,
    pcol: &str,
    labels: &[String],
) -> KaratResult<String> {
    let context = format!("gold partition column {pcol}");
    let plan = ctx
        .sql(sql)
        .await
        .map_err(|e| KaratError::sql(context.clone(), e))?;
    let dt = plan
        .schema()
        .field_with_unqualified_name(pcol)
        .map_err(|e| KaratError::sql(context, e))?
        .data_type()
        .clone();
    Ok(filter_of(&dt, pcol, labels))
}

/// The filter for a partition column of type `dt`.
fn filter_of(dt: &DataType, pcol: &str, labels: &[String]) -> String {
    let quoted = |v: &String| format!("'{}'", v.replace('\'', "''"));
    let typed: Option<Vec<String>> = match dt {
        DataType::Date32 | DataType::Date64 => Some(
            labels
                .iter()
                .map(|v| format!("DATE {}", quoted(v)))
                .collect(),
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Some(labels.iter().map(quoted).collect())
        }
        t if t.is_integer() => labels
            .iter()
            .map(|v| v.parse::<i128>().ok().map(|n| n.to_string()))
            .collect(),
        _ => None,
    };
    let col = format!("q.{}", ident(pcol));
    match typed {
        Some(values) => format!("{col} IN ({})", values.join(", ")),
        None => format!(
            "CAST({col} AS VARCHAR) IN ({})",
            labels.iter().map(quoted).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dates_integers_and_text_compare_as_themselves_other_types_as_text() {
        let days = labels(&["2026-03-01", "2026-03-02"]);
        assert_eq!(
            filter_of(&DataType::Date32, "d", &days),
            "q.\"d\" IN (DATE '2026-03-01', DATE '2026-03-02')"
        );
        assert_eq!(
            filter_of(&DataType::Int64, "n", &labels(&["7", "-2"])),
            "q.\"n\" IN (7, -2)"
        );
        assert_eq!(
            filter_of(&DataType::Utf8View, "c", &labels(&["O'Neil"])),
            "q.\"c\" IN ('O''Neil')"
        );
        assert_eq!(
            filter_of(&DataType::Float64, "f", &labels(&["0.1"])),
            "CAST(q.\"f\" AS VARCHAR) IN ('0.1')"
        );
    }
}

#[cfg(test)]
mod pushdown {
    use std::sync::Arc;

    use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::lake::delta;

    #[tokio::test]
    async fn a_typed_filter_reaches_the_scan_and_prunes_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("t")).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Date32, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Date32Array::from(vec![20513, 20514, 20515])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        delta::write(
            &url,
            "t",
            schema,
            vec![rows],
            Some("d"),
            delta::Replace::Append,
            vec![],
        )
        .await
        .unwrap();
        let ctx = delta::session();
        assert!(delta::register(&ctx, "t", &url).await.unwrap());
        let sql = "SELECT d, SUM(n) AS n FROM t GROUP BY d";
        let day = ["2026-03-02".to_string()];
        let scanned = |only: String| {
            let (ctx, q) = (
                &ctx,
                format!("EXPLAIN ANALYZE SELECT * FROM ({sql}) AS q WHERE {only}"),
            );
            async move {
                let out = delta::query(ctx, &q, "explain").await.unwrap();
                let plan = deltalake::arrow::util::pretty::pretty_format_batches(&out)
                    .unwrap()
                    .to_string();
                plan.split("count_files_scanned=")
                    .nth(1)
                    .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                    .map(str::to_string)
                    .unwrap_or_else(|| panic!("no files scanned in {plan}"))
            }
        };
        let typed = partition_filter(&ctx, sql, "d", &day).await.unwrap();
        assert_eq!(
            scanned(typed).await,
            "1",
            "only the wanted partition is read"
        );
        let text = filter_of(&DataType::Float64, "d", &day);
        assert_eq!(
            scanned(text).await,
            "3",
            "compared as text, every partition is read"
        );
    }
}
