//! One scheduling cycle with the default GIE profile (queue 2, kv-cache 2, prefix 3, max-score
//! picker, single-profile handler, prefix producer) at 8, 64 and 1024 endpoints, without a prompt
//! to hash and with a 4 KiB chat prompt. Run: `cargo bench -p scheduler-core --bench scheduling`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scheduler_core::{load, InferenceRequest, Registry, RequestState, SplitMix64};

mod common;
use common::{pool, NOW_MS};

/// A ~4 KiB chat `messages` array, as the parser hands it to the prefix producer.
fn chat_prompt_4k() -> String {
    let system = "You are a helpful assistant that answers questions about the product catalogue. "
        .repeat(49);
    let p = format!(
        r#"[{{"role":"system","content":"{system}"}},{{"role":"user","content":"Which item ships fastest?"}}]"#
    );
    assert!((3900..4400).contains(&p.len()), "{}", p.len());
    p
}

fn bench_cycle(c: &mut Criterion) {
    let (picker, _) = load("{}", &Registry::with_builtins()).unwrap();
    let prompt = chat_prompt_4k();
    let mut group = c.benchmark_group("schedule_default_profile");
    for n in [8usize, 64, 1024] {
        let endpoints = pool(n);
        group.throughput(Throughput::Elements(n as u64));
        for (label, text) in [("no_prompt", ""), ("chat_4KiB", prompt.as_str())] {
            let req = InferenceRequest::new("meta-llama/Llama-3.1-8B-Instruct", text);
            let mut rng = SplitMix64::new(42);
            group.bench_with_input(BenchmarkId::new(label, n), &endpoints, |b, eps| {
                b.iter(|| {
                    let mut state = RequestState::new();
                    let r = picker
                        .schedule(black_box(&req), eps, NOW_MS, &mut rng, &mut state)
                        .unwrap();
                    black_box(r);
                })
            });
        }
    }
    group.finish();
}

/// Every request a new 4 KiB prompt (a counter at the front): each cycle hashes 64 blocks and
/// records all of them as new blocks in the prefix index, evicting once the per-endpoint LRU is
/// full. The worst case for the index; the cases above re-send one prompt.
fn bench_distinct_prompts(c: &mut Criterion) {
    let (picker, _) = load("{}", &Registry::with_builtins()).unwrap();
    let base = chat_prompt_4k();
    let mut group = c.benchmark_group("schedule_default_profile_distinct_prompts");
    for n in [8usize, 64] {
        let endpoints = pool(n);
        let mut rng = SplitMix64::new(42);
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::new("chat_4KiB", n), &endpoints, |b, eps| {
            b.iter(|| {
                i += 1;
                let prompt = format!("{i} {base}");
                let req = InferenceRequest::new("meta-llama/Llama-3.1-8B-Instruct", &prompt);
                let mut state = RequestState::new();
                black_box(
                    picker
                        .schedule(&req, eps, NOW_MS, &mut rng, &mut state)
                        .unwrap(),
                );
            })
        });
    }
    group.finish();
}

/// The latency family's profile (`predicted-latency-producer` with its default prefix and
/// in-flight producers, `slo-headroom-tier-filter`, `latency-scorer`, max-score picker) on a
/// 4 KiB chat prompt, with the model warm (trained on responses from every endpoint) and a TTFT
/// objective: the per-request cost of predicting every candidate.
fn bench_latency_profile(c: &mut Criterion) {
    use scheduler_core::model::response::{BodyChunk, ResponseInfo};
    let config = r#"{"plugins": [{"type": "predicted-latency-producer"}, {"type": "slo-headroom-tier-filter"},
        {"type": "latency-scorer"}, {"type": "max-score-picker"}],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "slo-headroom-tier-filter"},
        {"pluginRef": "latency-scorer"}, {"pluginRef": "max-score-picker"}]}]}"#;
    let (picker, _) = load(config, &Registry::with_builtins()).unwrap();
    let prompt = chat_prompt_4k();
    let mut group = c.benchmark_group("schedule_latency_profile");
    for n in [8usize, 64] {
        let endpoints = pool(n);
        let mut req = InferenceRequest::new("meta-llama/Llama-3.1-8B-Instruct", &prompt);
        req.headers = vec![("x-llm-d-slo-ttft-ms".into(), "200".into())];
        let mut rng = SplitMix64::new(42);
        // Warm: each endpoint answers in (10 + 10 × its queue) ms, the picker's choices taught
        // back through the response hook; the random picks of the cold model cover the pool.
        for k in 0..(40 * n as u64) {
            let mut state = RequestState::new();
            let r = picker
                .schedule(&req, &endpoints, NOW_MS, &mut rng, &mut state)
                .unwrap();
            let i = r.primary_targets()[0];
            let ms = 10 + 10 * u64::from(endpoints[i].metrics.waiting_queue_size) + k % 3;
            let info = ResponseInfo {
                status: 200,
                served_endpoint: Some(&endpoints[i].address),
                now_ms: NOW_MS + ms,
            };
            picker.response_body(
                &mut state,
                &info,
                &BodyChunk {
                    first: true,
                    end_of_stream: true,
                    usage: None,
                },
            );
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("chat_4KiB", n), &endpoints, |b, eps| {
            b.iter(|| {
                let mut state = RequestState::new();
                black_box(
                    picker
                        .schedule(black_box(&req), eps, NOW_MS, &mut rng, &mut state)
                        .unwrap(),
                );
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_cycle,
    bench_distinct_prompts,
    bench_latency_profile
);
criterion_main!(benches);
