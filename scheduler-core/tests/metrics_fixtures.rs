//! Real exposition text from vLLM (V1, V1 data-parallel, 0.10 with `_created`, V0, OpenMetrics),
//! SGLang (old and new label sets), Triton TensorRT-LLM, TGI, llm-d-inference-sim and an
//! adversarial page, read through the public API. Fixtures come from docs/SOURCES.md#exposition-quirks;
//! `vllm_0.32_cpu.txt` is a whole page captured from vLLM 0.32.0's CPU build serving a tiny
//! model with a LoRA adapter and three requests running (`scripts/real-vllm/`, 2026-12-04).

use scheduler_core::parse::engine::MetricsExtractor;
use scheduler_core::parse::prometheus::{samples, validate};
use scheduler_core::Endpoint;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/testdata/metrics/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn extract(engine: &str, file: &str) -> scheduler_core::parse::engine::Extracted {
    let x = MetricsExtractor::default();
    let ep = Endpoint::new("10.0.0.1:8000").with_label("engine-type", engine);
    let mapping = x.mapping_for(&ep).unwrap();
    assert_eq!(mapping.name, engine, "{file}");
    x.extract(mapping, &fixture(file)).unwrap()
}

#[test]
fn every_fixture_is_valid_prometheus_text() {
    for f in [
        "vllm_0.32_cpu.txt",
        "vllm_v1.txt",
        "vllm_v1_dp.txt",
        "vllm_0.10_created.txt",
        "vllm_v0.txt",
        "vllm_v1_openmetrics.txt",
        "sglang_old.txt",
        "sglang_new.txt",
        "triton_trtllm.txt",
        "tgi.txt",
        "llmd_sim.txt",
        "adversarial.txt",
    ] {
        let n = validate(&fixture(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(n > 0, "{f}");
    }
}

#[test]
fn vllm_v1_single_engine_with_stale_lora_series() {
    let m = extract("vllm", "vllm_v1.txt").metrics;
    assert_eq!(m.waiting_queue_size, 2);
    assert_eq!(m.running_requests, 7);
    assert!((m.kv_cache_usage - 0.4130859375).abs() < 1e-12);
    // The series with the highest value (1.7954e9) wins, though it is not the last line.
    assert_eq!(m.active_lora_adapters, ["sql-lora"]);
    assert_eq!(m.waiting_lora_adapters, ["tweet-lora"]);
    assert_eq!(m.max_lora_adapters, 2);
    assert_eq!(m.cache_block_size_tokens, 16);
    assert_eq!(m.cache_num_blocks, 27215);
}

/// vLLM 0.32 still names the metrics as the mapping expects: queue, running, KV-cache usage,
/// the newest LoRA info series, and the cache geometry (its CPU build's 32-token blocks).
#[test]
fn vllm_0_32_cpu_build_page() {
    let m = extract("vllm", "vllm_0.32_cpu.txt").metrics;
    assert_eq!(m.waiting_queue_size, 0);
    assert_eq!(m.running_requests, 3);
    assert!((m.kv_cache_usage - 0.003906369212927641).abs() < 1e-15);
    assert_eq!(m.active_lora_adapters, ["sql-lora"]);
    assert_eq!(m.waiting_lora_adapters, ["sql-lora"]);
    assert_eq!(m.max_lora_adapters, 1);
    assert_eq!(m.cache_block_size_tokens, 32);
    assert_eq!(m.cache_num_blocks, 32768);
}

#[test]
fn vllm_data_parallel_ranks_are_aggregated() {
    let m = extract("vllm", "vllm_v1_dp.txt").metrics;
    assert_eq!(m.waiting_queue_size, 1 + 5, "summed, not first wins");
    assert_eq!(m.running_requests, 3 + 4);
    assert!(
        (m.kv_cache_usage - 0.5).abs() < 1e-12,
        "mean of 0.25 and 0.75"
    );
    assert_eq!(m.cache_num_blocks, 9271);
}

#[test]
fn vllm_created_series_and_histograms_do_not_confuse_reading() {
    let x = extract("vllm", "vllm_0.10_created.txt");
    assert_eq!(x.metrics.running_requests, 2);
    assert!((x.metrics.kv_cache_usage - 0.1).abs() < 1e-12);
    assert_eq!(x.fields_found, 3);
}

#[test]
fn vllm_v0_lora_by_value_and_none_cache_blocks() {
    let m = extract("vllm", "vllm_v0.txt").metrics;
    assert_eq!(m.waiting_queue_size, 3);
    // Highest value: running test-lora, nothing waiting (1.73955757239e9 > 1.73955757176e9).
    assert_eq!(m.active_lora_adapters, ["test-lora"]);
    assert!(m.waiting_lora_adapters.is_empty());
    assert_eq!(m.cache_block_size_tokens, 16);
    assert_eq!(m.cache_num_blocks, 0, "\"None\" leaves the field unknown");
    assert_eq!(
        m.kv_cache_usage, 0.0,
        "V0 only has gpu_cache_usage_perc, not mapped by default"
    );
}

#[test]
fn openmetrics_underscore_names_still_match() {
    let m = extract("vllm", "vllm_v1_openmetrics.txt").metrics;
    assert_eq!(m.running_requests, 7);
    assert_eq!(m.waiting_queue_size, 2);
    let text = fixture("vllm_v1_openmetrics.txt");
    let weird = samples(&text)
        .map(Result::unwrap)
        .find(|s| s.name == "weird_label_values")
        .unwrap();
    assert_eq!(weird.label("v").unwrap(), "a\"b\\c\nd,{x}");
    assert!(weird.value.is_nan());
}

#[test]
fn sglang_old_and_new() {
    let m = extract("sglang", "sglang_old.txt").metrics;
    assert_eq!((m.waiting_queue_size, m.running_requests), (2826, 162));
    assert!((m.kv_cache_usage - 0.28).abs() < 1e-12);
    let m = extract("sglang", "sglang_new.txt").metrics;
    assert_eq!(
        (m.waiting_queue_size, m.running_requests),
        (3 + 1, 24 + 26),
        "tp ranks summed"
    );
    assert!((m.kv_cache_usage - 0.72).abs() < 1e-9);
    assert_eq!((m.cache_block_size_tokens, m.cache_num_blocks), (1, 50000));
}

#[test]
fn triton_tensorrt_llm_any_label_order() {
    let m = extract("triton-tensorrt-llm", "triton_trtllm.txt").metrics;
    assert_eq!((m.waiting_queue_size, m.running_requests), (1, 1));
    assert!((m.kv_cache_usage - 0.4875).abs() < 1e-12);
    assert_eq!((m.cache_block_size_tokens, m.cache_num_blocks), (64, 6239));
}

#[test]
fn simulator_dialect() {
    let m = extract("vllm", "llmd_sim.txt").metrics;
    assert_eq!((m.waiting_queue_size, m.running_requests), (200, 4));
    assert_eq!(m.active_lora_adapters, ["lora4", "lora2"]);
    assert_eq!(m.waiting_lora_adapters, ["lora3"]);
    assert_eq!((m.cache_block_size_tokens, m.cache_num_blocks), (8, 16));
}

#[test]
fn adversarial_page_crlf_escapes_specials_no_final_newline() {
    let text = fixture("adversarial.txt");
    let all: Vec<_> = samples(&text).map(Result::unwrap).collect();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].label("a").unwrap(), "x\"y\\z\n{}");
    assert_eq!(all[0].label("b").unwrap(), "1,2,3");
    assert_eq!(all[0].value, 1e6);
    assert_eq!(all[0].timestamp, Some("1700000000000"));
    assert!(all[1].value.is_infinite() && all[1].value > 0.0);
    assert!(all[2].value.is_infinite() && all[2].value < 0.0);
    assert_eq!(all[5].name, "last_line_no_newline");
    assert_eq!(
        extract("vllm", "adversarial.txt")
            .metrics
            .waiting_queue_size,
        4
    );
}

#[test]
fn megabyte_label_and_garbage() {
    let big = format!(
        "vllm_config_info{{c=\"{}\"}} 1\nvllm:num_requests_waiting 3\n",
        "x".repeat(1 << 20)
    );
    assert_eq!(validate(&big).unwrap(), 2);
    for garbage in [
        "<html><body>502 Bad Gateway</body></html>",
        "{\"queue\": 3}",
        "vllm:x{a=\"1\"",
        "x 1 2 3 4",
    ] {
        assert!(validate(garbage).is_err(), "{garbage}");
        let x = MetricsExtractor::default();
        let m = x.engine("vllm").unwrap();
        assert!(x.extract(m, garbage).is_err(), "{garbage}");
    }
}

#[test]
fn engine_from_gie_label_key_and_default() {
    let x = MetricsExtractor::default();
    let ep = Endpoint::new("a:1").with_label("inference.networking.k8s.io/engine-type", "sglang");
    assert_eq!(x.mapping_for(&ep).unwrap().name, "sglang");
    assert_eq!(x.mapping_for(&Endpoint::new("a:1")).unwrap().name, "vllm");
    let unknown = Endpoint::new("a:1").with_label("engine-type", "nope");
    assert_eq!(
        x.mapping_for(&unknown).unwrap().name,
        "vllm",
        "unknown engine falls back to the default"
    );
}
