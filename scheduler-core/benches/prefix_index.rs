//! The approximate prefix index alone, in the shape of `scripts/bench-envoy.sh`'s distinct-prompt
//! run: 16 endpoints that each hold up to 27,215 blocks (auto-tuned from `num_gpu_blocks`), picks
//! spread over all of them, every request 64 new blocks (a 4 KiB prompt). Once the index is full
//! (~435,000 records, a 16 MiB table) each `add` inserts 64 records and evicts 64, at random
//! places in memory, which is what makes this workload cost more than typical chat.
//! Typical chat (a held shared prefix and a new question) is measured on the same index.
//! Run: `cargo bench -p scheduler-core --bench prefix_index`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scheduler_core::prefix::PrefixIndex;
use scheduler_core::{Rng, SplitMix64};

const ENDPOINTS: usize = 16;
const CAPACITY: usize = 27_215;
const BLOCKS: usize = 64;

fn bench_add_distinct(c: &mut Criterion) {
    add_distinct(c, CAPACITY, true);
    // The same churn on an index of 2,048 records (~100 KiB, within L2): what the add costs
    // when its memory is not what it pays for.
    add_distinct(c, 128, false);
}

fn add_distinct(c: &mut Criterion, capacity: usize, with_match: bool) {
    let addresses: Vec<String> = (0..ENDPOINTS).map(|i| format!("10.0.0.{i}:8000")).collect();
    let mut index = PrefixIndex::new();
    let mut rng = SplitMix64::new(7);
    let mut hashes = vec![0u64; BLOCKS];
    let mut next = |index: &mut PrefixIndex, i: usize| {
        for h in hashes.iter_mut() {
            *h = rng.next_u64();
        }
        index.add(&addresses[i % ENDPOINTS], &hashes, capacity);
    };
    // Fill every endpoint's LRU, so every measured add also evicts.
    for i in 0..(ENDPOINTS * capacity / BLOCKS + ENDPOINTS) {
        next(&mut index, i);
    }
    let mut i = 0;
    let name = format!("prefix_index_add_64_new_blocks_16x{capacity}");
    c.bench_function(&name, |b| {
        b.iter(|| {
            i += 1;
            next(&mut index, i);
            black_box(index.len());
        })
    });
    if !with_match {
        return;
    }
    let matched: Vec<u64> = (0..BLOCKS as u64).map(|k| k.wrapping_mul(0x9E37)).collect();
    index.add(&addresses[0], &matched, CAPACITY);
    let mut counts = scheduler_core::scratch::Scratch::new();
    c.bench_function("prefix_index_match_64_held_blocks_16x27215", |b| {
        b.iter(|| black_box(index.match_longest_prefix(black_box(&matched), &mut counts)))
    });
}

/// Typical chat on the same full index: a shared 62-block system prompt the endpoint already
/// holds as its most recent blocks, then 2 blocks of a new question (2 inserts, 2 evictions).
fn bench_add_shared(c: &mut Criterion) {
    let addresses: Vec<String> = (0..ENDPOINTS).map(|i| format!("10.0.0.{i}:8000")).collect();
    let mut index = PrefixIndex::new();
    let mut rng = SplitMix64::new(7);
    let mut hashes = vec![0u64; BLOCKS];
    for i in 0..(ENDPOINTS * CAPACITY / BLOCKS + ENDPOINTS) {
        for h in hashes.iter_mut() {
            *h = rng.next_u64();
        }
        index.add(&addresses[i % ENDPOINTS], &hashes, CAPACITY);
    }
    let shared: Vec<u64> = (0..BLOCKS as u64 - 2)
        .map(|k| k.wrapping_mul(0x9E37) + 1)
        .collect();
    let mut request = shared.clone();
    request.extend([0, 0]);
    let mut n = 0u64;
    c.bench_function("prefix_index_add_62_held_2_new_blocks_16x27215", |b| {
        b.iter(|| {
            n += 1;
            request[BLOCKS - 2] = rng.next_u64();
            request[BLOCKS - 1] = rng.next_u64();
            index.add(&addresses[0], black_box(&request), CAPACITY);
            black_box(n);
        })
    });
}

criterion_group!(benches, bench_add_distinct, bench_add_shared);
criterion_main!(benches);
