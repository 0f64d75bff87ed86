//! Engine counters and the `/metrics` page in vLLM V1's exposition format (or SGLang's names
//! with `--engine sglang`), labelled `model_name` (and `engine="0"` for vLLM), rendered the way
//! prometheus_client renders them (docs/SOURCES.md#vllm-fixture).

use std::fmt::Write as _;

use serde::Deserialize;

/// A Prometheus histogram with fixed buckets (seconds).
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// vLLM's `time_to_first_token_seconds` buckets.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's `inter_token_latency_seconds` buckets.
pub const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's `e2e_request_latency_seconds` buckets.
pub const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b:?}\"}} {}", *c as f64);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            self.count as f64
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count as f64);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
    }
}

/// Metric values pinned by `--fake-metrics` or `POST /admin/fake-metrics`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FakeMetrics {
    /// `num_requests_waiting`.
    #[serde(default)]
    pub waiting_requests: usize,
    /// `num_requests_running`.
    #[serde(default)]
    pub running_requests: usize,
    /// `kv_cache_usage_perc` (0..1).
    #[serde(default)]
    pub kv_cache_usage: f64,
    /// Running adapters.
    #[serde(default)]
    pub running_loras: Vec<String>,
    /// Waiting adapters.
    #[serde(default)]
    pub waiting_loras: Vec<String>,
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Requests in the running batch.
    pub running: usize,
    /// Requests waiting.
    pub waiting: usize,
    /// KV blocks in use / total.
    pub kv_usage: f64,
    /// Adapters with running requests.
    pub running_loras: Vec<String>,
    /// Adapters with waiting requests.
    pub waiting_loras: Vec<String>,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_queries: u64,
    /// Of those, tokens found.
    pub prefix_hits: u64,
    /// Prompt tokens admitted.
    pub prompt_tokens: u64,
    /// Output tokens generated.
    pub generation_tokens: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// Finished requests.
    pub success: u64,
    /// Requests aborted because their client went away.
    pub aborted: u64,
    /// Time to first token.
    pub ttft: Histogram,
    /// Inter-token latency.
    pub itl: Histogram,
    /// End-to-end latency.
    pub e2e: Histogram,
    /// Pinned values, when set.
    pub fake: Option<FakeMetrics>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            running: 0,
            waiting: 0,
            kv_usage: 0.0,
            running_loras: Vec::new(),
            waiting_loras: Vec::new(),
            prefix_queries: 0,
            prefix_hits: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            preemptions: 0,
            success: 0,
            aborted: 0,
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            fake: None,
        }
    }
}

/// Which engine's names to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// vLLM V1.
    Vllm,
    /// SGLang.
    Sglang,
}

/// Static facts for the page.
pub struct PageInfo<'a> {
    /// Served model.
    pub model: &'a str,
    /// Block size, tokens.
    pub block_size: usize,
    /// Number of blocks.
    pub num_gpu_blocks: u32,
    /// `--max-loras`.
    pub max_loras: usize,
    /// Unix time, seconds (the LoRA info gauge's value).
    pub now_unix: f64,
}

fn gauge(out: &mut String, name: &str, help: &str, labels: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {v:?}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, labels: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {v:?}"
    );
}

/// Renders the page.
pub fn render(s: &Stats, info: &PageInfo<'_>, dialect: Dialect) -> String {
    let (waiting, running, kv, rl, wl) = match &s.fake {
        Some(f) => (
            f.waiting_requests,
            f.running_requests,
            f.kv_cache_usage,
            f.running_loras.clone(),
            f.waiting_loras.clone(),
        ),
        None => (
            s.waiting,
            s.running,
            s.kv_usage,
            s.running_loras.clone(),
            s.waiting_loras.clone(),
        ),
    };
    let mut out = String::with_capacity(8 << 10);
    let model = info.model.replace('\\', "\\\\").replace('"', "\\\"");
    match dialect {
        Dialect::Sglang => {
            let l = format!("model_name=\"{model}\"");
            gauge(
                &mut out,
                "sglang:num_running_reqs",
                "The number of running requests.",
                &l,
                running as f64,
            );
            gauge(
                &mut out,
                "sglang:num_queue_reqs",
                "The number of requests in the waiting queue.",
                &l,
                waiting as f64,
            );
            gauge(&mut out, "sglang:token_usage", "The token usage.", &l, kv);
            let _ = writeln!(
                out,
                "# HELP sglang:cache_config_info Cache config.\n# TYPE sglang:cache_config_info gauge\nsglang:cache_config_info{{num_pages=\"{}\",page_size=\"{}\"}} 1.0",
                info.num_gpu_blocks, info.block_size
            );
            counter(
                &mut out,
                "sglang:prompt_tokens_total",
                "Number of prefill tokens processed.",
                &l,
                s.prompt_tokens as f64,
            );
            counter(
                &mut out,
                "sglang:generation_tokens_total",
                "Number of generation tokens processed.",
                &l,
                s.generation_tokens as f64,
            );
            s.ttft.render(
                &mut out,
                "sglang:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                &l,
            );
        }
        Dialect::Vllm => {
            let l = format!("engine=\"0\",model_name=\"{model}\"");
            gauge(
                &mut out,
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                &l,
                running as f64,
            );
            gauge(
                &mut out,
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                &l,
                waiting as f64,
            );
            gauge(
                &mut out,
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                &l,
                kv,
            );
            counter(
                &mut out,
                "vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
                &l,
                s.prefix_queries as f64,
            );
            counter(
                &mut out,
                "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.",
                &l,
                s.prefix_hits as f64,
            );
            counter(
                &mut out,
                "vllm:prompt_tokens_total",
                "Number of prefill tokens processed.",
                &l,
                s.prompt_tokens as f64,
            );
            counter(
                &mut out,
                "vllm:generation_tokens_total",
                "Number of generation tokens processed.",
                &l,
                s.generation_tokens as f64,
            );
            counter(
                &mut out,
                "vllm:num_preemptions_total",
                "Cumulative number of preemption from the engine.",
                &l,
                s.preemptions as f64,
            );
            let _ = writeln!(
                out,
                "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter\n\
                 vllm:request_success_total{{engine=\"0\",finished_reason=\"length\",model_name=\"{model}\"}} {:?}\n\
                 vllm:request_success_total{{engine=\"0\",finished_reason=\"abort\",model_name=\"{model}\"}} {:?}",
                s.success as f64,
                s.aborted as f64
            );
            s.ttft.render(
                &mut out,
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                &l,
            );
            s.itl.render(
                &mut out,
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                &l,
            );
            s.e2e.render(
                &mut out,
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                &l,
            );
            let _ = writeln!(
                out,
                "# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n\
                 vllm:lora_requests_info{{max_lora=\"{}\",running_lora_adapters=\"{}\",waiting_lora_adapters=\"{}\"}} {:?}",
                info.max_loras,
                rl.join(","),
                wl.join(","),
                info.now_unix
            );
            let _ = writeln!(
                out,
                "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\n\
                 vllm:cache_config_info{{block_size=\"{}\",cache_dtype=\"auto\",enable_prefix_caching=\"True\",engine=\"0\",num_gpu_blocks=\"{}\"}} 1.0",
                info.block_size, info.num_gpu_blocks
            );
        }
    }
    out
}
