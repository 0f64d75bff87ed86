//! Does the picker's shared state serialise the threads that use it? One loaded picker (GIE's
//! default profile, 16 endpoints) scheduled from 1 and from 2 threads at once, as the native
//! Envoy module's workers do; every cycle ends with the pre-request hook, so the approximate
//! prefix index is written under its lock on every request. Reported time is wall time per
//! cycle over all threads: with no serialisation the 2-thread figure is half the 1-thread one
//! (on a machine with at least 2 free cores).
//!
//! Built with the `std` feature, so the lock is the OS mutex the native module uses (without it,
//! the Wasm build's spin lock). Run:
//! `cargo bench -p scheduler-core --features std --bench shared_state`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use scheduler_core::{
    load, Endpoint, EndpointPicker, InferenceRequest, Registry, RequestState, SplitMix64,
};

mod common;
use common::{pool, NOW_MS};

/// ~4 KiB: one shared system prompt and a short question (typical chat).
fn system_prompt() -> String {
    "You are a helpful assistant that answers questions about the product catalogue. ".repeat(49)
}

/// Runs `iters` cycles on each of `threads` threads at once; wall time divided by `threads`.
fn run(
    picker: &EndpointPicker,
    endpoints: &[Endpoint],
    threads: usize,
    iters: u64,
    distinct: bool,
) -> Duration {
    let system = system_prompt();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let system = &system;
            s.spawn(move || {
                let mut rng = SplitMix64::new(42 + t as u64);
                for i in 0..iters {
                    // Distinct: a new prefix every cycle (64 new blocks recorded, 64 evicted
                    // once the endpoint's list is full). Shared: the same system prompt.
                    let prompt = if distinct {
                        format!("{t} {i} {system} Which item ships fastest?")
                    } else {
                        format!("{system} Question {i}: which item ships fastest?")
                    };
                    let req = InferenceRequest::new("meta-llama/Llama-3.1-8B-Instruct", &prompt);
                    let mut state = RequestState::new();
                    let r = picker.schedule(&req, endpoints, NOW_MS, &mut rng, &mut state);
                    criterion::black_box(r.ok());
                }
            });
        }
    });
    start.elapsed() / threads as u32
}

fn bench_threads(c: &mut Criterion) {
    let endpoints = pool(16);
    let mut group = c.benchmark_group("shared_picker_threads");
    for (label, distinct) in [("typical_chat", false), ("distinct_prompts", true)] {
        // One picker per workload, shared by both thread counts (its index fills up and stays
        // full, as in a running proxy).
        let (picker, _) = load("{}", &Registry::with_builtins()).expect("default config loads");
        for threads in [1usize, 2] {
            group.bench_with_input(BenchmarkId::new(label, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| run(&picker, &endpoints, threads, iters, distinct))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_threads);
criterion_main!(benches);
