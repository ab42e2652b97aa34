//! Masking sensitive columns (`mask = "sha256" | "redact" | "last4"`). Rules judge the real
//! value; then the silver value, the value quoted in a dead letter's reasons and the field
//! inside a dead letter's raw record are masked, so nothing past bronze (silver, dead letters,
//! gold, exports) holds it. Bronze stays raw and immutable.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, StringArray};

use super::contract::Contract;
use crate::config::Mask;

/// The masked form of `v`.
pub fn apply(mask: Mask, v: &str) -> String {
    match mask {
        Mask::Sha256 => {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(v.as_bytes()))
        }
        Mask::Redact => "[redacted]".to_string(),
        Mask::Last4 => {
            let n = v.chars().count();
            let keep = n.saturating_sub(4);
            v.chars()
                .enumerate()
                .map(|(i, c)| if i < keep || n <= 4 { '*' } else { c })
                .collect()
        }
    }
}

/// A string column with every value masked (nulls stay null).
pub fn column(mask: Mask, values: &ArrayRef) -> ArrayRef {
    let s = values.as_string::<i32>();
    let out: StringArray = (0..s.len())
        .map(|i| s.is_valid(i).then(|| apply(mask, s.value(i))))
        .collect();
    Arc::new(out)
}

/// True when the contract masks any column.
pub fn any(contract: &Contract) -> bool {
    contract.spec.columns.iter().any(|c| c.mask.is_some())
}

/// A dead letter's raw record with its masked fields masked. A raw line that is not a JSON
/// object cannot be searched for them, so it is withheld whole (bronze keeps it).
pub fn raw(contract: &Contract, raw: &str) -> String {
    let Ok(serde_json::Value::Object(mut record)) = serde_json::from_str(raw) else {
        return format!(
            "[withheld: not a JSON object, and table {} masks columns; bronze keeps the original]",
            contract.table
        );
    };
    for c in &contract.spec.columns {
        let (Some(mask), Some(v)) = (c.mask, record.get_mut(&c.source_field)) else {
            continue;
        };
        let text = match &*v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *v = serde_json::Value::String(apply(mask, &text));
    }
    serde_json::Value::Object(record).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(apply(Mask::Last4, "4111111111111111"), "************1111");
        assert_eq!(apply(Mask::Last4, "abc"), "***");
        assert_eq!(apply(Mask::Redact, "x"), "[redacted]");
        assert_eq!(
            apply(Mask::Sha256, "a"),
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
    }
}
