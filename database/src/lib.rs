//! Per-shard PostgreSQL access for shardgate: pools, migrations and shard health.
//!
//! - [`ShardPools`]: for every shard a primary pool (through its PgBouncer, transaction
//!   mode) and a replica pool (the streaming standby), both lazy so a shard that is down
//!   at start-up does not stop the others.
//! - [`migrate`]: the embedded migrations of `database/migrations/`, applied to every
//!   primary *directly* (the migration lock is session-level, which transaction-mode
//!   PgBouncer cannot hold).
//! - [`HealthMonitor`]: per shard, does the primary answer, does the replica answer,
//!   how far behind is it. Request code asks it before routing a read or a write.
#![forbid(unsafe_code)]

mod config;
mod error;
mod health;
pub mod migrate;
mod pools;

pub use config::PoolConfig;
pub use error::Error;
pub use health::{HealthMonitor, ShardHealth};
pub use pools::{connect_options, Endpoint, Shard, ShardPools};
