//! The approximate prefix index alone, in the shape of `scripts/bench-envoy.sh`'s distinct-prompt
//! run: 16 endpoints that each hold up to 27,215 blocks (auto-tuned from `num_gpu_blocks`), picks
//! spread over all of them, every request 64 new blocks (a 4 KiB prompt). Once the index is full
//! (~435,000 records, a 16 MiB table) each `add` inserts 64 records and evicts 64, at random
//! places in memory, which is what makes this workload cost more than typical chat.
//! Run: `cargo bench -p scheduler-core --bench prefix_index`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scheduler_core::prefix::PrefixIndex;
use scheduler_core::{Rng, SplitMix64};

const ENDPOINTS: usize = 16;
const CAPACITY: usize = 27_215;
const BLOCKS: usize = 64;

fn bench_add_distinct(c: &mut Criterion) {
    let addresses: Vec<String> = (0..ENDPOINTS).map(|i| format!("10.0.0.{i}:8000")).collect();
    let mut index = PrefixIndex::new();
    let mut rng = SplitMix64::new(7);
    let mut hashes = vec![0u64; BLOCKS];
    let mut next = |index: &mut PrefixIndex, i: usize| {
        for h in hashes.iter_mut() {
            *h = rng.next_u64();
        }
        index.add(&addresses[i % ENDPOINTS], &hashes, CAPACITY);
    };
    // Fill every endpoint's LRU, so every measured add also evicts.
    for i in 0..(ENDPOINTS * CAPACITY / BLOCKS + ENDPOINTS) {
        next(&mut index, i);
    }
    let mut i = 0;
    c.bench_function("prefix_index_add_64_new_blocks_16x27215", |b| {
        b.iter(|| {
            i += 1;
            next(&mut index, i);
            black_box(index.len());
        })
    });
    let matched: Vec<u64> = (0..BLOCKS as u64).map(|k| k.wrapping_mul(0x9E37)).collect();
    index.add(&addresses[0], &matched, CAPACITY);
    let mut counts = scheduler_core::scratch::Scratch::new();
    c.bench_function("prefix_index_match_64_held_blocks_16x27215", |b| {
        b.iter(|| black_box(index.match_longest_prefix(black_box(&matched), &mut counts)))
    });
}

criterion_group!(benches, bench_add_distinct);
criterion_main!(benches);
