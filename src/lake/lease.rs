//! The writer lease: one object, `_karat/lease`, that every writing command (run, replay, demo,
//! the dashboard's runs) holds while it writes, so two writers never interleave their Delta
//! commits. It is taken with a put-if-absent, names its holder (host, pid, command) and
//! expires unless renewed by a heartbeat, so a holder killed with `kill -9` blocks others for at
//! most [`TTL`]. Readers never need it. A store that ignores put-if-absent is refused.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::Lake;
use crate::error::{KaratError, KaratResult};

/// Where the lease lives.
pub const LEASE: &str = "_karat/lease";

/// Takeover markers, one per dead lease (by its id): only the process that creates it may
/// clear that lease, so two processes that both saw it expire never both clear it.
pub const TAKEN: &str = "_karat/lease.taken";

/// How long a lease lives without a heartbeat.
pub const TTL: Duration = Duration::from_secs(60);

/// Who holds the lake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Unique per acquisition.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub acquired_at: String,
    pub expires_at: String,
}

impl LeaseInfo {
    fn expired(&self, now: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(&self.expires_at)
            .map(|t| t.with_timezone(&Utc) < now)
            .unwrap_or(true)
    }

    /// Whether the holder was a process on this host that no longer runs (killed, crashed):
    /// its lease need not be waited out. Only where `/proc` tells; a reused pid looks alive,
    /// which only means waiting for the expiry.
    fn holder_died_here(&self) -> bool {
        let proc = std::path::Path::new("/proc");
        self.host == hostname()
            && proc.join("self").exists()
            && !proc.join(self.pid.to_string()).exists()
    }

    /// Whether its holder still holds it at `now`: not expired, and not a process of this host
    /// that has died.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        !self.expired(now) && !self.holder_died_here()
    }

    /// `karat run (pid 4242 on host-a) since 2026-…`
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}) since {}",
            self.command, self.pid, self.host, self.acquired_at
        )
    }
}

/// A held lease; renewed in the background until [`Lease::release`].
pub struct Lease {
    lake: Lake,
    info: LeaseInfo,
    heartbeat: tokio::task::JoinHandle<()>,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Lease {
    /// Takes the lease for `command`, waiting up to `wait` for another holder to finish.
    pub async fn acquire(lake: &Lake, command: &str, wait: Duration) -> KaratResult<Lease> {
        check_conditional_writes(lake).await?;
        let started = std::time::Instant::now();
        loop {
            let now = Utc::now();
            let info = LeaseInfo {
                id: uuid::Uuid::now_v7().to_string(),
                host: hostname(),
                pid: std::process::id(),
                command: command.to_string(),
                acquired_at: stamp(now),
                expires_at: stamp(now + TTL),
            };
            if lake.put_if_absent(LEASE, to_bytes(&info)).await? {
                let heartbeat = tokio::spawn(heartbeat(lake.clone(), info.clone()));
                return Ok(Lease {
                    lake: lake.clone(),
                    info,
                    heartbeat,
                });
            }
            match current(lake).await? {
                Some(held) if held.expired(Utc::now()) || held.holder_died_here() => {
                    // its holder died: one of those who saw it clears it (whoever creates its
                    // takeover marker, put-if-absent), then everyone races for it again
                    let marker = format!("{TAKEN}/{}", held.id);
                    if lake.put_if_absent(&marker, to_bytes(&info)).await?
                        && current(lake).await?.is_some_and(|h| h.id == held.id)
                    {
                        lake.delete(LEASE).await?;
                    } else {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Some(held) if started.elapsed() >= wait => {
                    return Err(KaratError::Usage(format!(
                        "lake {} is being written by {}; try again later or pass --wait",
                        lake.root(),
                        held.describe()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Who holds it.
    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    /// Gives the lease back (only if it is still ours).
    pub async fn release(self) -> KaratResult<()> {
        self.heartbeat.abort();
        if current(&self.lake)
            .await?
            .is_some_and(|h| h.id == self.info.id)
        {
            self.lake.delete(LEASE).await?;
        }
        Ok(())
    }
}

/// Runs `work` holding the lake's writer lease (waiting for it up to the lake's writer wait),
/// and gives the lease back whatever `work` returns; `work`'s error comes first.
pub async fn holding<T>(
    lake: &Lake,
    command: &str,
    work: impl std::future::Future<Output = KaratResult<T>>,
) -> KaratResult<T> {
    let lease = Lease::acquire(lake, command, lake.writer_wait()).await?;
    let result = work.await;
    let released = lease.release().await;
    let out = result?;
    released?;
    Ok(out)
}

/// The lease as stored now, if any.
pub async fn current(lake: &Lake) -> KaratResult<Option<LeaseInfo>> {
    match lake.get_opt(LEASE).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| KaratError::Other(format!("lake object {LEASE}: {e}"))),
    }
}

fn to_bytes(info: &LeaseInfo) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(info).expect("lease serialises"))
}

/// This machine's name, as leases and the action log record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Renews the lease every third of its lifetime while it is still ours.
async fn heartbeat(lake: Lake, mut info: LeaseInfo) {
    loop {
        tokio::time::sleep(TTL / 3).await;
        match current(&lake).await {
            Ok(Some(held)) if held.id == info.id => {
                info.expires_at = stamp(Utc::now() + TTL);
                let _ = lake.put(LEASE, to_bytes(&info)).await;
            }
            _ => return,
        }
    }
}

/// Refuses a store that silently ignores put-if-absent: concurrent writers there could
/// interleave commits.
async fn check_conditional_writes(lake: &Lake) -> KaratResult<()> {
    let probe = format!("_karat/probe-{}", uuid::Uuid::now_v7());
    let first = lake.put_if_absent(&probe, Bytes::from_static(b"1")).await?;
    let second = lake.put_if_absent(&probe, Bytes::from_static(b"2")).await?;
    lake.delete(&probe).await?;
    if first && !second {
        Ok(())
    } else {
        Err(KaratError::Usage(format!(
            "lake {} does not honour conditional writes (put-if-absent): karat will not write \
             to it, since two writers could interleave their commits",
            lake.root()
        )))
    }
}
