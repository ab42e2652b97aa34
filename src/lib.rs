//! karat runs medallion data pipelines on Delta Lake: raw data lands immutable in **bronze**,
//! is typed, validated and de-duplicated into **silver** (broken rows go to dead letters, never
//! dropped), and aggregated by SQL into **gold**, with a quality gate at each step and a ledger
//! of every run stored in the lake itself.
//!
//! The modules follow the data: [`config`] → [`lake`] → [`bronze`] → [`silver`] → [`gold`] →
//! [`pipeline`] → [`ledger`] → [`lineage`] / [`schema`] → [`tui`] → [`export`].

pub mod alert;
pub mod bench;
pub mod bronze;
pub mod config;
pub mod demo;
pub mod error;
pub mod events;
pub mod export;
pub mod gold;
pub mod lake;
pub mod ledger;
pub mod lineage;
pub mod malloc;
pub mod pipeline;
pub mod schema;
pub mod serve;
pub mod silver;
pub mod summary;
pub mod timings;
pub mod tui;
pub mod webhook;

pub use error::{KaratError, KaratResult};
