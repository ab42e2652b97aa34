//! `karat ack`: a person acknowledges a failure that no run will clear by itself (a bronze file
//! that failed and was removed, a partition given up on). The failure stays in the ledger's
//! history; a later step of the same unit, marked `ack` with who and why, makes it count as
//! resolved in the status, the exit codes and the dashboard.

use chrono::{SecondsFormat, Utc};

use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::lake::Lake;
use crate::lake::lease::Lease;
use crate::ledger::status::latest_partition_states;
use crate::ledger::{Ledger, StepRecord};
use crate::silver::PartitionStatus;

/// Records that `by` acknowledged the failed unit (`zone`, `table`, `unit`) because `reason`.
pub async fn ack(
    lake: &Lake,
    zone: Zone,
    table: &str,
    unit: &str,
    reason: &str,
    by: &str,
) -> KaratResult<StepRecord> {
    if reason.trim().is_empty() {
        return Err(KaratError::Usage("ack needs a --reason".into()));
    }
    let ledger = Ledger::new(lake);
    let steps = ledger.steps().await?;
    let latest = latest_partition_states(&steps);
    let key = (zone, table.to_string(), unit.to_string());
    let Some(failed) = latest.get(&key).filter(|s| !s.status.promoted()) else {
        let open: Vec<String> = latest
            .iter()
            .filter(|(_, s)| !s.status.promoted())
            .map(|((z, t, p), _)| format!("{z} {t} {p}"))
            .collect();
        return Err(KaratError::Usage(format!(
            "{zone} {table} {unit} is not failed; failed now: {}",
            if open.is_empty() {
                "none".to_string()
            } else {
                open.join(", ")
            }
        )));
    };
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let step = StepRecord {
        run_id: uuid::Uuid::now_v7().to_string(),
        trigger: crate::ledger::Trigger::Ack,
        zone,
        table: table.into(),
        partition: unit.into(),
        status: PartitionStatus::Ok,
        started_at: now.clone(),
        finished_at: now,
        rows_in: 0,
        rows_out: 0,
        dead: 0,
        duplicates: 0,
        messages: Some(format!(
            "acknowledged by {by}: {reason} (was {}: {})",
            failed.status.as_str(),
            failed
                .messages
                .clone()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
        )),
        dead_by_rule: None,
        schema_fingerprint: None,
        delta_version: None,
    };
    let lease = Lease::acquire(
        lake,
        &format!("karat ack {zone} {table} {unit}"),
        lake.writer_wait(),
    )
    .await?;
    let written = ledger.append_steps(std::slice::from_ref(&step)).await;
    lease.release().await?;
    written?;
    Ok(step)
}
