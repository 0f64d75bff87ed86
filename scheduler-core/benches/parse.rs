//! Parsing costs on the request path and the scrape path:
//! - an OpenAI chat body of 4 KiB and of 200 KiB (GIE #2928's prompt size);
//! - a 30 KiB vLLM V1 `/metrics` page (`testdata/metrics/vllm_v1_full_30k.txt`), extracted with
//!   the vLLM mapping;
//! - a chat body with a 600 KB inline PNG: the body parse (which only searches the prompt for a
//!   media part type's name) and the read of its parts (`parse::media_tokens`: their token
//!   estimate, and whether there is one; bodies that name a media type only), and the
//!   mm-embeddings producer's read of them (`parse::media::media_items`: a hash of each).
//!
//! Run: `cargo bench -p scheduler-core --bench parse`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use scheduler_core::parse::engine::MetricsExtractor;
use scheduler_core::parse::openai::parse_body;

fn chat_body(bytes: usize) -> Vec<u8> {
    let turn = r#"{"role":"user","content":"Summarise the following log excerpt and list the anomalies you see in it."},{"role":"assistant","content":"Here is the summary of the excerpt with the anomalies listed one per line."},"#;
    let mut messages = String::from("[");
    while messages.len() + turn.len() + 120 < bytes {
        messages.push_str(turn);
    }
    messages.push_str(r#"{"role":"user","content":"thanks"}]"#);
    let body = format!(
        r#"{{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":{messages},"stream":true,"max_tokens":256,"temperature":0.7}}"#
    );
    body.into_bytes()
}

fn bench_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_request");
    for (label, size) in [("chat_4KiB", 4 * 1024), ("chat_200KiB", 200 * 1024)] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(label, |b| {
            b.iter(|| black_box(parse_body("/v1/chat/completions", black_box(&body)).unwrap()))
        });
    }
    g.finish();
}

#[path = "../tests/support/images.rs"]
mod images;

/// The `messages` JSON of a question about an inline PNG of 600,000 bytes.
fn image_messages() -> String {
    let url = images::png_data_url(1024, 768, 600_000);
    format!(
        r#"[{{"role":"user","content":[{{"type":"text","text":"What is in this picture?"}},{{"type":"image_url","image_url":{{"url":"{url}"}}}}]}}]"#
    )
}

fn bench_media(c: &mut Criterion) {
    use scheduler_core::parse::media_tokens::{media_tokens, EstimateParams, VideoMeta};
    let messages = image_messages();
    let body = format!(r#"{{"model":"m","messages":{messages}}}"#).into_bytes();
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse_chat_image_600KB", |b| {
        b.iter(|| black_box(parse_body("/v1/chat/completions", black_box(&body)).unwrap()))
    });
    let params = EstimateParams::default();
    g.bench_function("media_tokens_image_600KB", |b| {
        b.iter(|| {
            black_box(media_tokens(
                black_box(&messages),
                &params,
                &VideoMeta::default(),
            ))
        })
    });
    g.bench_function("media_items_image_600KB", |b| {
        b.iter(|| {
            black_box(scheduler_core::parse::media::media_items(black_box(
                &messages,
            )))
        })
    });
    g.finish();
}

fn bench_metrics(c: &mut Criterion) {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/metrics/vllm_v1_full_30k.txt"
    ))
    .unwrap();
    let x = MetricsExtractor::default();
    let vllm = x.engine("vllm").unwrap().clone();
    let mut g = c.benchmark_group("parse_metrics");
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("vllm_30KiB", |b| {
        b.iter(|| black_box(x.extract(&vllm, black_box(&page)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench_request, bench_metrics, bench_media);
criterion_main!(benches);
