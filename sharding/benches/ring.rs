//! Lookup cost on the default 5 x 1000 ring.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sharding::{key_position, Ring, DEFAULT_VNODES};

const KEY: &str = "0192d5f0-7c3a-7def-8a41-3f9b2c6d8e10";

fn ring_lookup(c: &mut Criterion) {
    assert_eq!(KEY.len(), 36);
    let ring = Ring::new(5, DEFAULT_VNODES);
    c.bench_function("shard_for (36-char uuid, 5x1000)", |b| b.iter(|| ring.shard_for(black_box(KEY.as_bytes()))));
    c.bench_function("key_position (36-char uuid)", |b| b.iter(|| key_position(black_box(KEY.as_bytes()))));
    c.bench_function("Ring::new(5, 1000)", |b| b.iter(|| Ring::new(black_box(5), black_box(DEFAULT_VNODES))));
}

criterion_group!(benches, ring_lookup);
criterion_main!(benches);
