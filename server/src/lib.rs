//! shardgate: a sharded API service. See docs/ARCHITECTURE.md for the request flow.
#![forbid(unsafe_code)]
pub mod admin;
pub mod cli;
pub mod config;
