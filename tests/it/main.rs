//! karat's integration tests: one binary, one module per area.

mod cli;
mod config_errors;
mod demo;
mod http_source;
mod ingest;
mod pty;
mod replay;
mod screens;
mod util;
