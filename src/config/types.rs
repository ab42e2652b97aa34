//! Column types of a silver contract and their Arrow / SQL equivalents.

use deltalake::arrow::datatypes::{DataType, TimeUnit};

/// A contract column type, as written in `karat.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int64,
    Float64,
    Decimal { precision: u8, scale: i8 },
    String,
    Bool,
    Date,
    Timestamp,
}

/// Every spelling `ColumnType::parse` accepts, for error messages.
pub const TYPE_NAMES: &str = "int64, float64, decimal(p,s), string, bool, date, timestamp";

impl ColumnType {
    /// Parses `int64`, `decimal(12,2)`, ... ; `None` names what was expected.
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        let t = text.trim().to_ascii_lowercase();
        let ty = match t.as_str() {
            "int64" | "bigint" | "long" => ColumnType::Int64,
            "float64" | "double" => ColumnType::Float64,
            "string" | "utf8" => ColumnType::String,
            "bool" | "boolean" => ColumnType::Bool,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            _ => {
                let inner = t
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!("unknown type \"{text}\"; expected one of {TYPE_NAMES}")
                    })?;
                let (p, s) = inner.split_once(',').ok_or_else(|| {
                    format!("decimal needs precision and scale, e.g. decimal(12,2), got \"{text}\"")
                })?;
                let precision: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("decimal precision \"{}\" is not a number", p.trim()))?;
                let scale: i8 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("decimal scale \"{}\" is not a number", s.trim()))?;
                if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                    return Err(format!(
                        "decimal({precision},{scale}): precision must be 1..=38 and 0 <= scale <= precision"
                    ));
                }
                ColumnType::Decimal { precision, scale }
            }
        };
        Ok(ty)
    }

    /// The Arrow type silver stores this column as.
    pub fn arrow(&self) -> DataType {
        match self {
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::String => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// True for types whose values are compared as numbers (min/max are numbers).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            ColumnType::Int64 | ColumnType::Float64 | ColumnType::Decimal { .. }
        )
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::String => f.write_str("string"),
            ColumnType::Bool => f.write_str("bool"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_rejects_unknown() {
        assert_eq!(ColumnType::parse("int64").unwrap(), ColumnType::Int64);
        assert_eq!(
            ColumnType::parse("decimal(12, 2)").unwrap(),
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert!(ColumnType::parse("decimal(2,5)").is_err());
        let err = ColumnType::parse("money").unwrap_err();
        assert!(err.contains("int64"), "{err}");
    }
}
