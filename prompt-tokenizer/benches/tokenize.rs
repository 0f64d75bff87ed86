//! Cost of tokenising a ~4 KiB request in the proxy with the offline test tokenizer (byte-level
//! BPE): chat with a shared system prompt (every piece repeats; a new question each time), chat
//! whose text is all new, and completions prompts (the same; a shared prefix with a new
//! question; all new).

use criterion::{criterion_group, criterion_main, Criterion};
use prompt_tokenizer::train::write_test_tokenizer;
use prompt_tokenizer::PromptTokenizer;
use serde_json::json;

/// ~`bytes` of text no earlier call produced (words drawn by a counter-seeded xorshift).
fn fresh_text(seed: u64, bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "account", "billing", "invoice", "policy", "refund", "shipping", "order", "customer",
        "support", "product", "warranty", "delivery", "payment", "balance", "service", "the",
        "answer", "question", "briefly", "region", "report", "zebra", "quantum", "harbor",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::with_capacity(bytes + 16);
    while s.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        s.push(if x % 11 == 0 { ',' } else { ' ' });
    }
    s
}

/// The offline test tokenizer, loaded from a temporary directory (removed when the guard drops).
fn test_tokenizer() -> (tempfile::TempDir, PromptTokenizer) {
    let dir = tempfile::Builder::new()
        .prefix("prompt-tokenizer-bench-")
        .tempdir()
        .unwrap();
    write_test_tokenizer(dir.path()).unwrap();
    let t = PromptTokenizer::load(dir.path()).unwrap();
    (dir, t)
}

fn bench(c: &mut Criterion) {
    let (_dir, t) = test_tokenizer();
    let system = "You are a helpful assistant for the customer support team. Answer each question briefly, cite the policy document and the order history you used, and write code in rust or python when asked. ".repeat(20);
    assert!(system.len() > 3800);
    let shared = json!([{"role": "system", "content": system}, {"role": "user", "content": "How do I translate my account history to french?"}]);
    c.bench_function("chat 4 KiB, every piece seen before", |b| {
        b.iter(|| t.tokenize_chat(&shared).unwrap().len())
    });
    // Where a chat request's time goes before encoding: the chat template alone, and the
    // messages' JSON parsed first (the native module receives them as JSON text).
    c.bench_function("chat 4 KiB, chat template only", |b| {
        b.iter(|| t.render_chat(&shared).unwrap().len())
    });
    let shared_text = shared.to_string();
    c.bench_function("chat 4 KiB, messages JSON parsed, template rendered", |b| {
        b.iter(|| {
            let m: serde_json::Value = serde_json::from_str(&shared_text).unwrap();
            t.render_chat(&m).unwrap().len()
        })
    });
    let mut q = 0u64;
    c.bench_function("chat 4 KiB, shared system prompt, new question", |b| {
        b.iter(|| {
            q += 1;
            let m = json!([{"role": "system", "content": system}, {"role": "user", "content": format!("Question {q}: how do I translate my account history to french?")}]);
            t.tokenize_chat(&m).unwrap().len()
        })
    });
    let mut n = 0u64;
    c.bench_function("chat 4 KiB, all text new", |b| {
        b.iter(|| {
            n += 1;
            let m = json!([{"role": "system", "content": fresh_text(n, 4000)}, {"role": "user", "content": "Why?"}]);
            t.tokenize_chat(&m).unwrap().len()
        })
    });
    // What the precise prefix cache pays when no server holds the prompt's first block: the
    // template is rendered whole, then encoding stops after the first stretch (one block, 16
    // tokens).
    let mut n = 0u64;
    c.bench_function("chat 4 KiB, all text new, to the first block", |b| {
        b.iter(|| {
            n += 1;
            let m = json!([{"role": "system", "content": fresh_text(2_000_000 + n, 4000)}, {"role": "user", "content": "Why?"}]);
            let text = t.render_chat(&m).unwrap();
            let mut out = Vec::new();
            t.tokenize_rendered_while(&text, &mut out, &mut |ids| ids.len() < 16);
            out.len()
        })
    });
    c.bench_function("completions 4 KiB, same prompt", |b| {
        b.iter(|| t.tokenize_completion(&system).unwrap().len())
    });
    let mut k = 0u64;
    c.bench_function("completions 4 KiB, shared prefix, new question", |b| {
        b.iter(|| {
            k += 1;
            t.tokenize_completion(&format!(
                "{system} Question {k}: how do I translate my account history?"
            ))
            .unwrap()
            .len()
        })
    });
    let mut j = 0u64;
    c.bench_function("completions 4 KiB, all text new", |b| {
        b.iter(|| {
            j += 1;
            t.tokenize_completion(&fresh_text(1_000_000 + j, 4000))
                .unwrap()
                .len()
        })
    });
}

fn bench_first_block(c: &mut Criterion) {
    let (_dir, t) = test_tokenizer();
    let mut j = 0u64;
    c.bench_function("completions 4 KiB, all text new, to the first block", |b| {
        b.iter(|| {
            j += 1;
            let mut out = Vec::new();
            t.tokenize_completion_while(&fresh_text(3_000_000 + j, 4000), &mut out, &mut |ids| {
                ids.len() < 16
            })
            .unwrap();
            out.len()
        })
    });
}

criterion_group!(benches, bench, bench_first_block);
criterion_main!(benches);
