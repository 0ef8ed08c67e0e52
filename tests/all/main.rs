//! Eddy's end-to-end tests: each runs a real server in-process on a free port, with a fresh data folder, and talks
//! to it over HTTP as users do. Example UDFs are built from `udfs/` on first use (cached by source).

mod api;
mod attacks;
mod c_sdk;
mod cli;
mod cluster;
mod failures;
mod go_sdk;
mod kafka;
mod languages;
mod recovery;
mod restart;
mod s3;
mod savepoints;
mod seams;
mod seeds;
mod support;
mod tenancy;
mod time;
mod upgrades;
