//! karat's integration tests: one binary, one module per area.

mod alerts;
mod bounded;
mod cli;
mod config_errors;
mod corpus;
#[cfg(feature = "failpoints")]
mod crash;
mod dedup;
mod deletion_vectors;
mod delta_writes;
mod demo;
mod diff;
mod evolution;
mod gold_fold;
mod hostile;
mod http_source;
mod ingest;
mod log_counts;
mod maintain;
mod openlineage;
mod pty;
mod replay;
mod replay_rebuild;
#[cfg(feature = "cloud")]
mod s3;
mod scd2;
mod screens;
mod serve;
mod silver_v2;
mod slo;
mod util;
mod writers;
