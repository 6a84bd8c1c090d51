//! The MD5 consistent-hash ring.

use std::fmt::{self, Write as _};

use md5::{Digest, Md5};

use crate::{Error, ShardId};

/// Ring points per shard unless configured otherwise.
pub const DEFAULT_VNODES: usize = 1000;

/// The most shards a ring can hold: every [`ShardId`] is a `u16`.
const MAX_SHARDS: usize = u16::MAX as usize + 1;

/// A key's position on the ring: the first 8 bytes of `MD5(key)`, read as a big-endian
/// `u64`.
///
/// The same rule places the vnode labels `"shard-i#j"`, so any language with MD5 can
/// reproduce it:
///
/// ```
/// // MD5("") = d41d8cd98f00b204e9800998ecf8427e
/// assert_eq!(sharding::key_position(b""), 0xd41d_8cd9_8f00_b204);
/// ```
#[inline]
pub fn key_position(key: &[u8]) -> u64 {
    let digest = Md5::digest(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// An MD5 consistent-hash ring of `shard_count` shards with `vnodes` points each.
///
/// # Placement rule
///
/// Shard `i` (named `shard-i`) owns `vnodes` points, at [`key_position`]`("shard-i#j")`
/// for `j = 0..vnodes`. The points are sorted by `(position, shard id)`. A key belongs to
/// the shard of the first point whose position is `>=` [`key_position`]`(key)`, wrapping
/// around to the first point when the key lies after the last one.
///
/// Adding shard `n` to a ring of `n` shards only adds points, so every key either stays
/// where it was or moves to the new shard.
///
/// Lookups do a binary search over a sorted `Vec<u64>` of positions (with a parallel
/// `Vec<ShardId>` of owners) and allocate nothing.
///
/// ```
/// use sharding::{Ring, ShardId, DEFAULT_VNODES};
///
/// let ring = Ring::new(5, DEFAULT_VNODES);
/// assert_eq!(ring.shard_for_str("user123"), ShardId::new(2));
/// assert_eq!(ring.shard_for(b"alice"), ShardId::new(2));
/// assert_eq!(ring.point_count(), 5000);
/// ```
#[derive(Clone)]
pub struct Ring {
    /// Point positions, ascending (ties broken by shard id).
    positions: Vec<u64>,
    /// `owners[k]` is the shard of the point at `positions[k]`.
    owners: Vec<ShardId>,
    shard_count: usize,
    vnodes: usize,
    /// Per-shard fraction of the circle, precomputed.
    shares: Vec<f64>,
}

impl Ring {
    /// Builds the ring for shards `0..shard_count` with `vnodes` points each.
    ///
    /// # Panics
    ///
    /// If `shard_count` or `vnodes` is 0 (a ring without points can place no key), or if
    /// `shard_count` exceeds 65,536 (shard ids are `u16`). Use [`Ring::try_new`] to get an
    /// [`Error`] instead.
    pub fn new(shard_count: usize, vnodes: usize) -> Ring {
        match Ring::try_new(shard_count, vnodes) {
            Ok(ring) => ring,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Ring::new`], but returns [`Error::InvalidRing`] instead of panicking when
    /// `shard_count` or `vnodes` is 0, `shard_count` exceeds 65,536, or the point count
    /// overflows `usize`.
    pub fn try_new(shard_count: usize, vnodes: usize) -> Result<Ring, Error> {
        if shard_count == 0 {
            return Err(Error::InvalidRing("shard_count is 0: a ring needs at least one shard".into()));
        }
        if vnodes == 0 {
            return Err(Error::InvalidRing("vnodes is 0: each shard needs at least one ring point".into()));
        }
        if shard_count > MAX_SHARDS {
            return Err(Error::InvalidRing(format!(
                "shard_count {shard_count} exceeds {MAX_SHARDS} (shard ids are u16)"
            )));
        }
        let total = shard_count.checked_mul(vnodes).ok_or_else(|| {
            Error::InvalidRing(format!("{shard_count} shards x {vnodes} vnodes overflows the point count"))
        })?;

        let mut points: Vec<(u64, ShardId)> = Vec::with_capacity(total);
        let mut label = String::with_capacity(32);
        for shard in 0..shard_count {
            // `shard < MAX_SHARDS`, so this cannot truncate.
            let id = ShardId::new(shard as u16);
            for j in 0..vnodes {
                label.clear();
                write!(label, "shard-{shard}#{j}").expect("writing to a String cannot fail");
                points.push((key_position(label.as_bytes()), id));
            }
        }
        points.sort_unstable();

        let (positions, owners): (Vec<u64>, Vec<ShardId>) = points.into_iter().unzip();
        let shares = compute_shares(&positions, &owners, shard_count);
        Ok(Ring { positions, owners, shard_count, vnodes, shares })
    }

    /// The shard that owns `key`. Allocation-free: one MD5 on the stack and a binary
    /// search.
    #[inline]
    pub fn shard_for(&self, key: &[u8]) -> ShardId {
        self.shard_at(key_position(key))
    }

    /// The shard that owns the UTF-8 bytes of `key`.
    #[inline]
    pub fn shard_for_str(&self, key: &str) -> ShardId {
        self.shard_for(key.as_bytes())
    }

    /// The shard that owns ring position `position` (see [`key_position`]).
    #[inline]
    pub fn shard_at(&self, position: u64) -> ShardId {
        let k = self.positions.partition_point(|&p| p < position);
        // Past the last point: wrap around to the first one.
        let k = if k == self.positions.len() { 0 } else { k };
        self.owners[k]
    }

    /// Each shard's fraction of the 2^64 circle, indexed by shard id; sums to 1.0.
    ///
    /// The arc from the previous point (exclusive) to a point (inclusive) belongs to that
    /// point's shard; the first point also gets the wrap-around arc after the last point.
    pub fn shares(&self) -> Vec<f64> {
        self.shares.clone()
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// Points per shard.
    pub fn vnodes(&self) -> usize {
        self.vnodes
    }

    /// Total points on the ring (`shard_count * vnodes`).
    pub fn point_count(&self) -> usize {
        self.positions.len()
    }
}

/// Summarizes rather than dumping every point.
impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("shard_count", &self.shard_count)
            .field("vnodes", &self.vnodes)
            .field("point_count", &self.positions.len())
            .finish()
    }
}

fn compute_shares(positions: &[u64], owners: &[ShardId], shard_count: usize) -> Vec<f64> {
    const CIRCLE: u128 = 1 << 64;
    let mut arcs = vec![0u128; shard_count];
    let last = positions[positions.len() - 1] as u128;
    let mut prev: Option<u64> = None;
    for (&pos, owner) in positions.iter().zip(owners) {
        let arc = match prev {
            Some(p) => (pos - p) as u128,
            // The wrap-around arc: (last, 2^64) plus [0, first]. A single point owns it all.
            None => CIRCLE - last + pos as u128,
        };
        arcs[owner.index()] += arc;
        prev = Some(pos);
    }
    debug_assert_eq!(arcs.iter().sum::<u128>(), CIRCLE);
    arcs.into_iter().map(|a| a as f64 / CIRCLE as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's golden placements for 5 shards x 1000 vnodes.
    const GOLDEN: &[(&str, u16)] = &[
        ("user123", 2),
        ("user456", 1),
        ("alice", 2),
        ("item1", 3),
        ("x", 0),
        ("0192d5f0-0000-7000-8000-000000000000", 0),
    ];

    #[test]
    fn key_position_is_first_8_md5_bytes_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(key_position(b""), 0xd41d_8cd9_8f00_b204);
        // MD5("abc") = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(key_position(b"abc"), 0x9001_5098_3cd2_4fb0);
    }

    #[test]
    fn golden_vectors() {
        let ring = Ring::new(5, DEFAULT_VNODES);
        for &(key, shard) in GOLDEN {
            assert_eq!(ring.shard_for_str(key), ShardId::new(shard), "key {key:?}");
            assert_eq!(ring.shard_for(key.as_bytes()), ShardId::new(shard), "key {key:?}");
        }
    }

    #[test]
    fn golden_shares() {
        let ring = Ring::new(5, DEFAULT_VNODES);
        let percent: Vec<String> = ring.shares().iter().map(|s| format!("{:.2}", s * 100.0)).collect();
        assert_eq!(percent, ["20.02", "19.84", "20.16", "19.55", "20.43"]);
        let sum: f64 = ring.shares().iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "shares sum to {sum}");
    }

    #[test]
    fn counts() {
        let ring = Ring::new(5, 1000);
        assert_eq!(ring.shard_count(), 5);
        assert_eq!(ring.vnodes(), 1000);
        assert_eq!(ring.point_count(), 5000);
        assert_eq!(format!("{ring:?}"), "Ring { shard_count: 5, vnodes: 1000, point_count: 5000 }");
    }

    #[test]
    fn points_are_sorted_and_lookup_follows_the_rule() {
        let ring = Ring::new(3, 50);
        assert!(ring.positions.windows(2).zip(ring.owners.windows(2)).all(|(p, o)| (p[0], o[0]) <= (p[1], o[1])));
        // A position exactly on a point belongs to that point; one past it, to the next.
        for k in 0..ring.point_count() - 1 {
            let p = ring.positions[k];
            assert_eq!(ring.shard_at(p), ring.owners[k]);
            if ring.positions[k + 1] != p {
                assert_eq!(ring.shard_at(p + 1), ring.owners[k + 1]);
            }
        }
        // Past the last point, and at 0 before the first, wrap to the first point.
        let last = *ring.positions.last().unwrap();
        if last != u64::MAX {
            assert_eq!(ring.shard_at(last + 1), ring.owners[0]);
        }
        assert_eq!(ring.shard_at(u64::MAX), ring.owners[0]);
        assert_eq!(ring.shard_at(0), ring.owners[0]);
    }

    #[test]
    fn vnode_labels_match_the_spec() {
        let ring = Ring::new(2, 3);
        let mut expected: Vec<(u64, ShardId)> = (0..2u16)
            .flat_map(|i| (0..3).map(move |j| (key_position(format!("shard-{i}#{j}").as_bytes()), ShardId::new(i))))
            .collect();
        expected.sort();
        let actual: Vec<(u64, ShardId)> = ring.positions.iter().copied().zip(ring.owners.iter().copied()).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn single_point_ring_owns_everything() {
        let ring = Ring::new(1, 1);
        assert_eq!(ring.shares(), vec![1.0]);
        assert_eq!(ring.shard_for(b"anything"), ShardId::new(0));
    }

    #[test]
    fn shares_sum_to_one() {
        for (n, v) in [(1, 10), (2, 1), (7, 100), (16, 1000)] {
            let ring = Ring::new(n, v);
            let shares = ring.shares();
            assert_eq!(shares.len(), n);
            let sum: f64 = shares.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "{n}x{v}: sum {sum}");
        }
    }

    #[test]
    fn try_new_refuses_bad_parameters() {
        let e = Ring::try_new(0, 1000).unwrap_err().to_string();
        assert!(e.contains("shard_count is 0"), "{e}");
        let e = Ring::try_new(5, 0).unwrap_err().to_string();
        assert!(e.contains("vnodes is 0"), "{e}");
        let e = Ring::try_new(65_537, 1).unwrap_err().to_string();
        assert!(e.contains("65537"), "{e}");
        let e = Ring::try_new(2, usize::MAX).unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
    }

    #[test]
    #[should_panic(expected = "shard_count is 0")]
    fn new_panics_on_zero_shards() {
        let _ = Ring::new(0, 1000);
    }

    #[test]
    #[should_panic(expected = "vnodes is 0")]
    fn new_panics_on_zero_vnodes() {
        let _ = Ring::new(5, 0);
    }
}
