//! [`ShardId`] and [`Route`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id of one shard: `0..shard_count`. Shard `i` is named `shard-i` (see [`ShardId::name`]),
/// and that name is what its ring points are derived from.
///
/// Serializes as a bare integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(u16);

impl ShardId {
    /// The shard with number `id`.
    pub const fn new(id: u16) -> Self {
        ShardId(id)
    }

    /// The shard number as a `u16`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The shard number as an index into per-shard arrays (`shards[id.index()]`).
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The shard's canonical name, `shard-N`. The ring's vnode labels are `shard-N#j`.
    pub fn name(&self) -> String {
        format!("shard-{}", self.0)
    }
}

impl From<u16> for ShardId {
    fn from(id: u16) -> Self {
        ShardId(id)
    }
}

impl From<ShardId> for u16 {
    fn from(id: ShardId) -> Self {
        id.0
    }
}

/// Prints the bare number (`3`), not the name (`shard-3`).
impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a request must go: to exactly one shard (it carries a shard key), or to every
/// shard (scatter-gather, e.g. a query without a shard key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Route {
    /// Only this shard holds the data.
    One(ShardId),
    /// The data may be on any shard: fan out to all of them.
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_and_formatting() {
        let id = ShardId::new(3);
        assert_eq!(id.get(), 3);
        assert_eq!(id.index(), 3);
        assert_eq!(id.to_string(), "3");
        assert_eq!(id.name(), "shard-3");
        assert_eq!(format!("{id:?}"), "ShardId(3)");
        assert_eq!(ShardId::from(7u16), ShardId::new(7));
        assert_eq!(u16::from(ShardId::new(7)), 7);
        assert!(ShardId::new(1) < ShardId::new(2));
    }

    #[test]
    fn route_is_a_plain_value() {
        let r = Route::One(ShardId::new(2));
        assert_eq!(r, Route::One(ShardId::new(2)));
        assert_ne!(r, Route::All);
    }
}
