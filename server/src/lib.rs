//! shardgate: a sharded API service. See docs/ARCHITECTURE.md for the request flow.
//!
//! A request's path through the code, in order: [`serve`] (processes, listener) ->
//! [`http::server`] (accept loop) -> [`http::handle`] (request id, deadline, metrics,
//! access log) -> [`http::router`] -> a feature module ([`users`], [`cache`], [`presence`], [`sale`], [`system`]) ->
//! [`db`] (health gate, timeout) -> the shard's pool (`database` crate). gRPC requests
//! (content-type `application/grpc`) leave at the accept loop for [`presence::grpc`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod observability;
pub mod openapi;
pub mod presence;
pub mod redis;
pub mod reshard;
pub mod sale;
pub mod serve;
pub mod state;
pub mod system;
pub mod users;
