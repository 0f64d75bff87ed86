//! The Prometheus text parser and the engine extraction over it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::parse::engine::MetricsExtractor;
use scheduler_core::parse::prometheus::samples;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for s in samples(text) {
        let Ok(s) = s else { break };
        for (k, v) in s.labels() {
            let _ = (k.len(), v.len());
        }
    }
    let x = MetricsExtractor::default();
    for engine in ["vllm", "sglang", "trtllm-serve", "triton-tensorrt-llm"] {
        if let Some(m) = x.engine(engine) {
            let _ = x.extract(m, text);
        }
    }
});
