//! What an update of a silver table would do, computed exactly as [`super::update`] computes it
//! (decode, validate, merge against the stored rows) but written nowhere: the partitions it
//! would rewrite and where the re-processed records would go. `karat replay --dry-run` and the
//! dashboard's replay confirmation show it.

use std::collections::BTreeSet;
use std::sync::Arc;

use deltalake::arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::bronze::Manifest;
use crate::error::KaratResult;
use crate::events::Events;
use crate::lake::Lake;

use super::contract::Contract;
use super::store::Store;
use super::{Changed, Input, apply, collect, partition_labels};

/// An update not made.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SilverPreview {
    /// Bronze batches re-processed, and their records.
    pub batches: BTreeSet<String>,
    pub records: u64,
    /// Partitions whose rows, dead letters or outcome would be rewritten.
    pub partitions: BTreeSet<String>,
    /// Where the records would go.
    pub valid: u64,
    pub dead: u64,
    pub superseded: u64,
    /// Rows that would enter or leave silver (what gold recomputes from).
    #[serde(skip)]
    pub changed: Changed,
}

/// Previews [`super::update`] of `batches` with `contract` (`targets` as there).
pub async fn preview(
    lake: &Lake,
    contract: Arc<Contract>,
    batches: Vec<Manifest>,
    targets: &BTreeSet<String>,
) -> KaratResult<SilverPreview> {
    let ids: BTreeSet<String> = batches.iter().map(|m| m.batch_id.clone()).collect();
    let records = batches.iter().map(|m| m.records).sum();
    let events = Events::none();
    let collected = collect::collect(lake, contract.clone(), batches, "dry-run", &events).await?;
    let store = Store::open(lake, contract.clone()).await?;
    let mut clock = crate::timings::Clock::new("dry run".to_string(), &events);
    let of_batches = store.partitions_of_batches(&ids).await?;
    let input = Input {
        valid: &collected.valid,
        ids: &ids,
        of_batches: of_batches.clone(),
        targets,
    };
    let applied = apply(&store, &contract, input, &mut clock).await?;
    let mut partitions: BTreeSet<String> = collected.rows_in.keys().cloned().collect();
    partitions.extend(targets.iter().cloned());
    partitions.extend(partition_labels(&contract, &applied.changed)?);
    partitions.extend(applied.replace.iter().flatten().cloned());
    partitions.extend(of_batches);
    Ok(SilverPreview {
        batches: ids,
        records,
        partitions,
        valid: rows(&collected.valid),
        dead: rows(&collected.dead),
        superseded: rows(&applied.superseded),
        changed: Changed {
            promoted: applied.changed,
            failed: Vec::new(),
            signed: None,
        },
    })
}

fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}
