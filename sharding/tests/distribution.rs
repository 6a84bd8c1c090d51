//! Balance and stability over 1,000,000 random (v4) UUID keys.
//!
//! The UUIDs come from a fixed-seed generator so a run is reproducible; they are valid
//! version-4 UUIDs, formatted as 36-char lowercase strings.

use sharding::{key_position, Ring, ShardId, DEFAULT_VNODES};
use uuid::Builder;

const KEYS: usize = 1_000_000;

/// splitmix64: a tiny, well-mixed deterministic generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Calls `f` with each of `KEYS` random v4 UUID strings, without allocating.
fn for_each_uuid(seed: u64, mut f: impl FnMut(&[u8])) {
    let mut rng = SplitMix64(seed);
    let mut buf = [0u8; 36];
    for _ in 0..KEYS {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&rng.next().to_le_bytes());
        bytes[8..].copy_from_slice(&rng.next().to_le_bytes());
        let uuid = Builder::from_random_bytes(bytes).into_uuid();
        let s = uuid.hyphenated().encode_lower(&mut buf);
        f(s.as_bytes());
    }
}

#[test]
fn generated_keys_are_v4_uuid_strings() {
    let mut n = 0;
    for_each_uuid(7, |k| {
        if n < 100 {
            let s = std::str::from_utf8(k).unwrap();
            let u = uuid::Uuid::parse_str(s).unwrap();
            assert_eq!(u.get_version_num(), 4, "{s}");
            assert_eq!(s.len(), 36);
        }
        n += 1;
    });
    assert_eq!(n, KEYS);
}

#[test]
fn a_million_uuids_spread_evenly_over_5_shards() {
    let ring = Ring::new(5, DEFAULT_VNODES);
    let mut counts = [0usize; 5];
    for_each_uuid(0x5eed_0001, |k| counts[ring.shard_for(k).index()] += 1);
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / KEYS as f64).collect();
    let (min, max) = min_max(&shares);
    println!("1M uuid shares over 5 shards: {shares:.4?} (min {min:.4}, max {max:.4})");
    for (i, &s) in shares.iter().enumerate() {
        assert!((0.19..=0.21).contains(&s), "shard {i} got {s:.4} of the keys");
    }
}

#[test]
fn adding_a_sixth_shard_moves_keys_only_to_it() {
    let ring5 = Ring::new(5, DEFAULT_VNODES);
    let ring6 = Ring::new(6, DEFAULT_VNODES);
    let new_shard = ShardId::new(5);
    let mut moved = 0usize;
    for_each_uuid(0x5eed_0002, |k| {
        // One MD5 for both rings: `shard_for(k)` is `shard_at(key_position(k))`.
        let position = key_position(k);
        let before = ring5.shard_at(position);
        let after = ring6.shard_at(position);
        if before != after {
            assert_eq!(
                after,
                new_shard,
                "key {:?} moved from shard {before} to shard {after}",
                std::str::from_utf8(k).unwrap()
            );
            moved += 1;
        }
    });
    let fraction = moved as f64 / KEYS as f64;
    println!("adding shard 5 to a 5x1000 ring moved {fraction:.4} of 1M uuid keys (ideal 1/6 = 0.1667)");
    assert!((0.14..=0.19).contains(&fraction), "moved fraction {fraction:.4}");
}

fn min_max(xs: &[f64]) -> (f64, f64) {
    xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}
