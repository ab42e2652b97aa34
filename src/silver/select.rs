//! Picking rows out of a run's validated chunks by their number across all chunks (row `i` of
//! the rows as if concatenated), without concatenating them: the rows that stay are filtered
//! chunk by chunk (a chunk that keeps every row is passed on as it is), and the few rows picked
//! one by one are interleaved from the chunks that hold them.

use deltalake::arrow::array::{BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::compute::interleave_record_batch;
use deltalake::arrow::error::ArrowError;

/// Chunks of rows numbered as one sequence.
pub struct Chunks<'a> {
    chunks: &'a [RecordBatch],
    /// The number of each chunk's first row.
    starts: Vec<usize>,
}

impl<'a> Chunks<'a> {
    pub fn new(chunks: &'a [RecordBatch]) -> Chunks<'a> {
        let starts = chunks
            .iter()
            .scan(0, |next, c| {
                let start = *next;
                *next += c.num_rows();
                Some(start)
            })
            .collect();
        Chunks { chunks, starts }
    }

    /// The chunk holding row `row`, and the row's place in it.
    fn locate(&self, row: u32) -> (usize, usize) {
        let row = row as usize;
        let chunk = self.starts.partition_point(|s| *s <= row) - 1;
        (chunk, row - self.starts[chunk])
    }

    /// The rows `keep` (in ascending order), chunk by chunk.
    pub fn keep(&self, keep: &[u32]) -> Result<Vec<RecordBatch>, ArrowError> {
        debug_assert!(keep.is_sorted(), "rows to keep in ascending order");
        let mut out = Vec::with_capacity(self.chunks.len());
        let mut next = keep.iter().peekable();
        for (chunk, start) in self.chunks.iter().zip(&self.starts) {
            let end = start + chunk.num_rows();
            let mut mask = vec![false; chunk.num_rows()];
            let mut kept = 0;
            while let Some(row) = next.next_if(|r| (**r as usize) < end) {
                mask[*row as usize - start] = true;
                kept += 1;
            }
            match kept {
                0 => {}
                k if k == chunk.num_rows() => out.push(chunk.clone()),
                _ => out.push(filter_record_batch(chunk, &BooleanArray::from(mask))?),
            }
        }
        Ok(out)
    }

    /// The rows `rows`, in that order, as one batch.
    pub fn pick(&self, rows: &[u32]) -> Result<RecordBatch, ArrowError> {
        let Some(first) = self.chunks.first() else {
            return Err(ArrowError::InvalidArgumentError(
                "no rows to pick from".into(),
            ));
        };
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(first.schema()));
        }
        let from: Vec<&RecordBatch> = self.chunks.iter().collect();
        let at: Vec<(usize, usize)> = rows.iter().map(|r| self.locate(*r)).collect();
        interleave_record_batch(&from, &at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{AsArray, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn chunk(values: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn rows_are_numbered_across_chunks() {
        let chunks = [chunk(0..3), chunk(3..3), chunk(3..7)];
        let c = Chunks::new(&chunks);
        let kept = c.keep(&[0, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(values(&kept), vec![0, 2, 3, 4, 5, 6]);
        assert_eq!(kept.len(), 2, "the empty chunk keeps nothing");
        assert_eq!(
            kept[1].num_rows(),
            4,
            "a chunk keeping every row passes whole"
        );
        let picked = c.pick(&[6, 0, 3]).unwrap();
        assert_eq!(values(&[picked]), vec![6, 0, 3]);
        assert_eq!(c.pick(&[]).unwrap().num_rows(), 0);
    }
}
