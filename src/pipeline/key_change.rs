//! A silver table's `key` edited so that rows already stored may hold a key twice: a coarser
//! key (`[order_id, line]` → `[order_id]`), another key, or a key given to a table that had
//! none. Rows were de-duplicated by the key of the contract each batch was last processed
//! under; a normal run applies the new key to new batches only, so the table would hold old
//! rows twice under the new key, with the run green. Such a run is refused, naming both keys
//! and the replay that applies the new key to every stored batch (a replay is never refused).
//! A finer key (`[order_id]` → `[order_id, line]`) is accepted: rows unique by the old key are
//! unique by it. Window dedup's window is part of the key, with its length and time column:
//! editing either makes another key.

use std::collections::{BTreeMap, BTreeSet};

use crate::bronze::Manifest;
use crate::config::DEDUP_WINDOW;
use crate::error::KaratError;
use crate::ledger::{BatchRecord, ContractRecord};
use crate::silver::contract_doc::ContractDoc;

/// Whether rows unique by key `stored` (none: not de-duplicated at all) may hold key `now`
/// twice; both as [`effective_key`]s. A bare [`DEDUP_WINDOW`] (recorded before its windows
/// were) is taken as today's windows.
pub fn may_repeat(stored: &[String], now: &[String]) -> bool {
    let held = |c: &String| {
        now.contains(c) || (c == DEDUP_WINDOW && now.iter().any(|n| n.starts_with(DEDUP_WINDOW)))
    };
    !now.is_empty() && (stored.is_empty() || !stored.iter().all(held))
}

/// The key of contract `doc`, its [`DEDUP_WINDOW`] named with how it is cut (another window
/// length or time column makes another key: window numbers then mean other times).
pub fn effective_key(doc: &ContractDoc) -> Vec<String> {
    doc.key
        .iter()
        .map(|c| match (&doc.dedup, c == DEDUP_WINDOW) {
            (Some(d), true) => format!("{DEDUP_WINDOW} ({d})"),
            _ => c.clone(),
        })
        .collect()
}

/// Batches last processed under a key the table's key may repeat among.
#[derive(Debug, Clone, PartialEq)]
pub struct Repeating {
    /// That key (empty: none).
    pub stored: Vec<String>,
    pub batches: usize,
}

/// Among the `processed` batches of silver table `table`, each de-duplicated by the key of
/// the contract it was last processed under (read from `contracts`; a contract not recorded
/// is not judged), those whose key `now` may repeat among their rows. Only batches whose
/// manifest (in `manifests`) holds records are judged: a replay re-processes the batches that
/// contributed rows, so an empty one would keep its old contract, and runs refused, forever.
pub fn repeating(
    table: &str,
    now: &ContractDoc,
    processed: &[BatchRecord],
    contracts: &[ContractRecord],
    manifests: &[Manifest],
) -> Option<Repeating> {
    let holding: BTreeSet<&str> = manifests
        .iter()
        .filter(|m| m.records > 0)
        .map(|m| m.batch_id.as_str())
        .collect();
    let keys: BTreeMap<&str, Vec<String>> = contracts
        .iter()
        .filter(|c| c.table == table)
        .filter_map(|c| {
            let doc: ContractDoc = serde_json::from_str(&c.doc).ok()?;
            Some((c.fingerprint.as_str(), effective_key(&doc)))
        })
        .collect();
    let now = effective_key(now);
    let mut found: BTreeMap<&Vec<String>, usize> = BTreeMap::new();
    for b in processed
        .iter()
        .filter(|b| holding.contains(b.batch_id.as_str()))
    {
        if let Some(stored) = keys.get(b.contract.as_str())
            && may_repeat(stored, &now)
        {
            *found.entry(stored).or_default() += 1;
        }
    }
    let (stored, batches) = found.into_iter().next()?;
    Some(Repeating {
        stored: stored.clone(),
        batches,
    })
}

/// Why a normal run of silver table `table` (key `now`, partitions `partitions`) is refused.
pub fn refusal(
    table: &str,
    now: &ContractDoc,
    repeating: &Repeating,
    partitions: &BTreeSet<String>,
) -> KaratError {
    let now = effective_key(now);
    let replay = match (partitions.first(), partitions.last()) {
        (Some(first), Some(last)) => format!("karat replay {table} --from {first} --to {last}"),
        _ => format!("karat replay {table} --from … --to …"),
    };
    let stored = match repeating.stored.is_empty() {
        true => "no key (their rows were not de-duplicated)".to_string(),
        false => format!("key [{}]", repeating.stored.join(", ")),
    };
    KaratError::Other(format!(
        "silver table {table}: its key is now [{}], but {} stored batch(es) were processed \
         under {stored}, so the table may hold a key twice; apply the new key to every stored \
         batch with `{replay}` (every partition), or put the key back",
        now.join(", "),
        repeating.batches
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_coarser_other_or_new_key_may_repeat_and_a_finer_or_no_key_may_not() {
        assert!(!may_repeat(&v(&["id"]), &v(&["id"])));
        assert!(!may_repeat(&v(&["id"]), &v(&["line", "id"])), "finer");
        assert!(!may_repeat(&v(&["id"]), &[]), "no key: rows are appended");
        assert!(!may_repeat(&[], &[]));
        assert!(may_repeat(&v(&["id", "line"]), &v(&["id"])), "coarser");
        assert!(may_repeat(&v(&["id"]), &v(&["customer"])), "another");
        assert!(
            may_repeat(&[], &v(&["id"])),
            "a key given to a table without one"
        );
        let day = v(&["id", "_dedup_window (ts in 86400000000µs windows)"]);
        let two = v(&["id", "_dedup_window (ts in 172800000000µs windows)"]);
        assert!(may_repeat(&day, &two), "another window length");
        assert!(
            !may_repeat(&v(&["id", "_dedup_window"]), &day),
            "recorded before windows were"
        );
        assert!(
            !may_repeat(&v(&["id"]), &day),
            "window dedup of a keyed table is finer"
        );
    }

    fn now(key: &[&str]) -> ContractDoc {
        serde_json::from_str(&contract("now", key).doc).unwrap()
    }

    fn contract(fingerprint: &str, key: &[&str]) -> ContractRecord {
        let doc = serde_json::json!({
            "table": "orders", "fingerprint": fingerprint, "partition_by": "d",
            "key": key, "columns": [], "expectations": [],
        });
        ContractRecord {
            table: "orders".into(),
            fingerprint: fingerprint.into(),
            doc: doc.to_string(),
            run_id: "r".into(),
            recorded_at: "t".into(),
        }
    }

    fn batch(id: &str, contract: &str) -> BatchRecord {
        BatchRecord {
            table: "orders".into(),
            batch_id: id.into(),
            contract: contract.into(),
            run_id: "r".into(),
            processed_at: "t".into(),
        }
    }

    #[test]
    fn the_refusal_names_both_keys_and_the_replay_of_every_partition() {
        let contracts = [contract("a", &["id", "line"]), contract("b", &["id"])];
        let days = BTreeSet::from(["2026-03-27".to_string(), "2026-03-29".to_string()]);
        let manifests: Vec<Manifest> = ["1", "2", "3"]
            .iter()
            .map(|id| Manifest::example(id, 5))
            .collect();
        let under_b = [batch("1", "b"), batch("2", "b")];
        let now = now(&["id"]);
        assert_eq!(
            repeating("orders", &now, &under_b, &contracts, &manifests),
            None
        );
        let mixed = [batch("1", "a"), batch("2", "b"), batch("3", "unknown")];
        let r = repeating("orders", &now, &mixed, &contracts, &manifests);
        let r = r.expect("batch 1 may repeat");
        assert_eq!(r.batches, 1);
        let err = refusal("orders", &now, &r, &days).to_string();
        assert!(
            err.contains("silver table orders: its key is now [id]")
                && err.contains("1 stored batch(es) were processed under key [id, line]")
                && err.contains("karat replay orders --from 2026-03-27 --to 2026-03-29"),
            "{err}"
        );
    }

    /// No replay re-processes a batch without records: judged, it kept runs refused forever.
    #[test]
    fn a_batch_without_records_is_not_judged() {
        let contracts = [contract("a", &["id", "line"]), contract("b", &["id"])];
        let manifests = [Manifest::example("1", 0), Manifest::example("2", 5)];
        let processed = [batch("1", "a"), batch("2", "b")];
        let now = now(&["id"]);
        assert_eq!(
            repeating("orders", &now, &processed, &contracts, &manifests),
            None
        );
    }
}
