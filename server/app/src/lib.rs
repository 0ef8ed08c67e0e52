//! Eddy's server and command-line client.
//!
//! - [`server::start`] opens the data folder ([`store`]), loads modules ([`modules`]), resumes jobs ([`jobs`]) and
//!   serves the HTTP API ([`api`]).
//! - [`cli`] is a thin client of that API, plus `serve`, `demo` and `bench`.
//! - [`s3`] keeps checkpoints in an S3 bucket.
//! - [`examples`] builds the example UDFs of `udfs/` (for the demo, the benchmarks and the tests).

pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod examples;
pub mod jobs;
pub mod modules;
pub mod quotas;
pub mod run;
pub mod s3;
pub mod server;
pub mod storage;
pub mod store;
pub mod testing;
