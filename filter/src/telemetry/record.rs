//! What one request leaves for the metrics, gathered by the request flow.

use std::sync::Arc;

use scheduler_core::{ExtensionPoint, Plugin, SchedulingObserver};

/// The labels of a request's series, as llm-d-router labels its request metrics: the model the
/// client asked for, the model it was sent to, its flow-control fairness id and its priority.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    /// The model the body named.
    pub model: String,
    /// The model the request went to (after any InferenceModelRewrite).
    pub target_model: String,
    /// The request's fairness id (its flow), cut as flow control cuts it; `None` for the
    /// default flow (`default-flow`), which needs no copy.
    pub fairness_id: Option<String>,
    /// The request's priority (its InferenceObjective's; 0 without one).
    pub priority: i32,
}

impl RequestLabels {
    /// The `fairness_id` label value.
    pub fn fairness(&self) -> &str {
        self.fairness_id
            .as_deref()
            .unwrap_or(scheduler_core::flowcontrol::DEFAULT_FAIRNESS_ID)
    }
}

/// One request's contribution to [`super::Telemetry`]. All times in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct RequestRecord {
    /// The request's labels once the body was parsed.
    pub labels: Option<RequestLabels>,
    /// The request went to its endpoint and was counted as running
    /// ([`super::Telemetry::started`]); its record ends that count.
    pub running: bool,
    /// The scheduling cycle ran and found no endpoint (a failed scheduling attempt).
    pub scheduling_failed: bool,
    /// What the prefix lookup found for the endpoint chosen, when a prefix index ran.
    pub prefix_hit: Option<scheduler_core::PrefixHit>,
    /// The InferenceModelRewrite whose rule chose the target model, if one applied.
    pub rewrite: Option<Arc<str>>,
    /// Parse + schedule time.
    pub scheduling_ns: Option<u64>,
    /// From the request headers until the request went on upstream with its decision (body
    /// receipt, flow control's wait and scheduling included): llm-d-router's request
    /// processing time.
    pub request_processing_ns: Option<u64>,
    /// From the response headers to the response's end, for a response that is not a stream
    /// (llm-d-router's response processing time for such responses; its per-chunk handler time
    /// of a stream is not measured here, as it would cost two clock reads per chunk).
    pub response_processing_ns: Option<u64>,
    /// (extension point, [`super::plugin_key`], duration) of each plugin call; a typical
    /// profile's calls fit inline, in the request's own allocation.
    pub plugins: smallvec::SmallVec<[(ExtensionPoint, usize, u64); 16]>,
    /// Status of the local error reply, if the request got one.
    pub error_status: Option<u32>,
    /// Request body size, bytes.
    pub request_bytes: u64,
    /// Response body bytes seen.
    pub response_bytes: u64,
    /// From the request headers to the end of the response, when the response completed.
    pub duration_ns: Option<u64>,
    /// From the request headers to the first response body byte (TTFT as the gateway sees it).
    pub first_byte_ns: Option<u64>,
    /// The request asked for a stream (`stream: true`) or the response is an SSE stream.
    pub streaming: bool,
    /// A stream's gaps between consecutive response body chunks, counted per bucket of
    /// [`super::families::ITL_SECONDS`] (the last slot above every bound).
    pub chunk_gaps: [u32; super::families::ITL_BUCKETS],
    /// (prompt tokens, completion tokens) from the response's `usage`.
    pub tokens: Option<(u64, u64)>,
    /// Prompt tokens the server read from its prefix cache, when its `usage` reported them.
    pub cached_tokens: Option<u64>,
    /// Measured against predicted latency, when a latency-predicting plugin learnt from the
    /// response.
    pub latency: Option<scheduler_core::model::response::LatencyOutcome>,
}

/// The observer handed to the scheduler: reads `clock` (ns) around each plugin call and keeps
/// the durations in `record`.
pub struct Timing<'a> {
    /// Monotonic clock, ns.
    pub clock: &'a dyn Fn() -> u64,
    /// Where durations go.
    pub record: &'a mut RequestRecord,
}

impl RequestRecord {
    /// Counts a gap of `ns` between two response chunks of a stream.
    pub fn chunk_gap(&mut self, ns: u64) {
        let i = super::families::ITL_SECONDS
            .limits
            .partition_point(|&l| l < ns);
        if let Some(c) = self.chunk_gaps.get_mut(i) {
            *c = c.saturating_add(1);
        }
    }
}

impl SchedulingObserver for Timing<'_> {
    fn now_ns(&mut self) -> Option<u64> {
        Some((self.clock)())
    }
    fn plugin_ran(&mut self, point: ExtensionPoint, plugin: &Arc<dyn Plugin>, ns: u64) {
        self.record
            .plugins
            .push((point, super::plugin_key(plugin), ns));
    }
    fn prefix_hit(&mut self, hit: scheduler_core::PrefixHit) {
        self.record.prefix_hit = Some(hit);
    }
}
