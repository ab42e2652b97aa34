//! Partition labels (`YYYY-MM-DD`) of rows: the text of their Date32 partition value, formatted
//! once per distinct day rather than once per row (a chunk of a million rows spans a few days).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use deltalake::arrow::array::{Array, ArrayRef, AsArray, Date32Array, StringArray, StringBuilder};
use deltalake::arrow::compute;
use deltalake::arrow::datatypes::{DataType, Date32Type};
use deltalake::arrow::error::ArrowError;

/// The label of every row (null where the value is null), as Arrow's cast to text writes it.
pub fn of(values: &ArrayRef) -> Result<StringArray, ArrowError> {
    let Some(days) = values.as_primitive_opt::<Date32Type>() else {
        return Ok(compute::cast(values, &DataType::Utf8)?
            .as_string::<i32>()
            .clone());
    };
    let mut names: HashMap<i32, Option<String>> = HashMap::new();
    let mut out = StringBuilder::with_capacity(days.len(), days.len() * 10);
    // rows of one day mostly come together: the previous row's label is tried first
    let mut last: Option<(i32, Option<String>)> = None;
    for day in days.iter() {
        match day {
            None => out.append_null(),
            Some(d) => {
                if let Some((same, name)) = &last
                    && *same == d
                {
                    out.append_option(name.as_deref());
                    continue;
                }
                let name = match names.entry(d) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(label(d)?),
                };
                out.append_option(name.as_deref());
                last = Some((d, name.clone()));
            }
        }
    }
    Ok(out.finish())
}

/// The distinct labels of the rows.
pub fn distinct(values: &ArrayRef) -> Result<BTreeSet<String>, ArrowError> {
    let Some(days) = values.as_primitive_opt::<Date32Type>() else {
        return Ok(of(values)?.iter().flatten().map(str::to_string).collect());
    };
    let unique: BTreeSet<i32> = days.iter().flatten().collect();
    let mut out = BTreeSet::new();
    for d in unique {
        out.extend(label(d)?);
    }
    Ok(out)
}

fn label(day: i32) -> Result<Option<String>, ArrowError> {
    let one = compute::cast(&Date32Array::from(vec![day]), &DataType::Utf8)?;
    let text = one.as_string::<i32>();
    Ok(text.is_valid(0).then(|| text.value(0).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn labels_are_what_a_cast_writes() {
        let days: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(20_540),
            None,
            Some(0),
            Some(20_540),
            Some(-1),
            Some(3_000_000),
        ]));
        let cast = compute::cast(&days, &DataType::Utf8).unwrap();
        assert_eq!(&of(&days).unwrap(), cast.as_string::<i32>());
        let want: BTreeSet<String> = cast
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(str::to_string)
            .collect();
        assert_eq!(distinct(&days).unwrap(), want);
    }
}
