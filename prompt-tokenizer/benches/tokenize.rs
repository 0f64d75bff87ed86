//! Cost of tokenising a ~4 KiB request in the proxy with the offline test tokenizer (byte-level
//! BPE): chat with a shared system prompt (the cache's case; the same question, then a new
//! question each time), chat with every prompt distinct, and a completions prompt (one piece).

use criterion::{criterion_group, criterion_main, Criterion};
use prompt_tokenizer::train::write_test_tokenizer;
use prompt_tokenizer::PromptTokenizer;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("prompt-tokenizer-bench-{}", std::process::id()));
    write_test_tokenizer(&dir).unwrap();
    let t = PromptTokenizer::load(&dir).unwrap();
    let system = "You are a helpful assistant for the customer support team. Answer each question briefly, cite the policy document and the order history you used, and write code in rust or python when asked. ".repeat(20);
    assert!(system.len() > 3800);
    let shared = json!([{"role": "system", "content": system}, {"role": "user", "content": "How do I translate my account history to french?"}]);
    let mut n = 0u64;
    c.bench_function("chat 4 KiB, shared system prompt", |b| {
        b.iter(|| t.tokenize_chat(&shared).unwrap().len())
    });
    let mut q = 0u64;
    c.bench_function("chat 4 KiB, shared system prompt, new question", |b| {
        b.iter(|| {
            q += 1;
            let m = json!([{"role": "system", "content": system}, {"role": "user", "content": format!("Question {q}: how do I translate my account history to french?")}]);
            t.tokenize_chat(&m).unwrap().len()
        })
    });
    c.bench_function("chat 4 KiB, every prompt distinct", |b| {
        b.iter(|| {
            n += 1;
            let m = json!([{"role": "system", "content": format!("{n} {system}")}, {"role": "user", "content": "Why?"}]);
            t.tokenize_chat(&m).unwrap().len()
        })
    });
    c.bench_function("completions 4 KiB", |b| {
        b.iter(|| t.tokenize_completion(&system).unwrap().len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
