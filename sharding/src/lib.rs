//! shardgate's MD5 consistent-hash ring, shard ids and cluster topology: a pure library with no I/O dependencies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
//!
//! # Placement rule (reproducible from any language)
//!
//! * A key's position is the first 8 bytes of `MD5(key)` read as a big-endian `u64`
//!   ([`key_position`]).
//! * Shard `i` is named `shard-i` and owns `vnodes` ring points (default
//!   [`DEFAULT_VNODES`] = 1000), at the positions of the labels `"shard-i#j"` for
//!   `j = 0..vnodes`, computed by the same rule.
//! * The points are sorted by `(position, shard id)`. A key belongs to the shard of the
//!   first point whose position is `>=` the key's position, wrapping around to the first
//!   point when there is none.
//!
//! [`Ring`] implements the rule, [`ShardId`] names a shard, [`Route`] is a routing
//! decision, and [`Topology`] describes where each shard's Postgres primary, replica and
//! PgBouncer listen (loaded from `config/topology.toml` plus environment overrides).

mod error;
mod ring;
mod shard_id;
mod topology;

pub use error::Error;
pub use ring::{key_position, Ring, DEFAULT_VNODES};
pub use shard_id::{Route, ShardId};
pub use topology::{Addr, ShardSpec, Topology};
