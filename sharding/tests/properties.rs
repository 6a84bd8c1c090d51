//! Property tests of the ring's placement rule.

use std::sync::LazyLock;

use proptest::prelude::*;
use sharding::{Ring, ShardId, DEFAULT_VNODES};

static RING5: LazyLock<Ring> = LazyLock::new(|| Ring::new(5, DEFAULT_VNODES));
static RING5_AGAIN: LazyLock<Ring> = LazyLock::new(|| Ring::new(5, DEFAULT_VNODES));
static RING6: LazyLock<Ring> = LazyLock::new(|| Ring::new(6, DEFAULT_VNODES));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn shard_is_in_range_and_deterministic(key in proptest::collection::vec(any::<u8>(), 0..64)) {
        let s = RING5.shard_for(&key);
        prop_assert!(s.index() < RING5.shard_count());
        prop_assert_eq!(s, RING5.shard_for(&key));
        // A separately built ring agrees: placement depends only on (shards, vnodes, key).
        prop_assert_eq!(s, RING5_AGAIN.shard_for(&key));
    }

    #[test]
    fn str_and_bytes_agree(key in ".{0,40}") {
        prop_assert_eq!(RING5.shard_for_str(&key), RING5.shard_for(key.as_bytes()));
    }

    #[test]
    fn a_sixth_shard_only_takes_keys(key in proptest::collection::vec(any::<u8>(), 0..64)) {
        let before = RING5.shard_for(&key);
        let after = RING6.shard_for(&key);
        prop_assert!(after == before || after == ShardId::new(5),
            "moved from {} to {}", before, after);
    }

    #[test]
    fn small_rings_stay_in_range(shards in 1usize..12, vnodes in 1usize..20,
                                 key in proptest::collection::vec(any::<u8>(), 0..16)) {
        let ring = Ring::new(shards, vnodes);
        prop_assert_eq!(ring.point_count(), shards * vnodes);
        prop_assert!(ring.shard_for(&key).index() < shards);
        let sum: f64 = ring.shares().iter().sum();
        prop_assert!((sum - 1.0).abs() < 1e-12);
    }
}
