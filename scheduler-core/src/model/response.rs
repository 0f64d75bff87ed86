//! What the response path tells the request-control plugins.

/// Token counts from an OpenAI `usage` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens`.
    pub prompt_tokens: u64,
    /// `completion_tokens`.
    pub completion_tokens: u64,
    /// `prompt_tokens_details.cached_tokens` (prompt tokens the server read from its prefix
    /// cache); `None` when the server did not report it (vLLM only does with
    /// `--enable-prompt-tokens-details`).
    pub cached_tokens: Option<u64>,
}

/// The response as seen at its headers.
#[derive(Clone, Copy, Debug)]
pub struct ResponseInfo<'a> {
    /// HTTP status of the response.
    pub status: u16,
    /// `ip:port` of the endpoint that actually served (Envoy's `upstream.address`), if known.
    pub served_endpoint: Option<&'a str>,
    /// When the hook runs, ms since the Unix epoch.
    pub now_ms: u64,
}

/// One piece of the response body as it passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyChunk {
    /// True for the first chunk of the body.
    pub first: bool,
    /// True for the last call (end of stream).
    pub end_of_stream: bool,
    /// Usage parsed from the body so far, once it was seen.
    pub usage: Option<Usage>,
}

/// [`crate::RequestState`] owner under which a latency-predicting plugin leaves one
/// [`LatencyOutcome`] at the end of a response, for the host's metrics. Not a valid-looking
/// plugin name (it starts with a NUL), so no configured plugin's state is replaced by it.
pub const LATENCY_OUTCOME: &str = "\0latency-outcome";

/// What a latency-predicting plugin saw of one response: the latency it measured, what it had
/// predicted for the endpoint that served, and the request's objectives. The host turns it into
/// llm-d's predictor series (`llm_d_epp_request_predicted_ttft_seconds`, …,
/// `llm_d_epp_request_slo_violation_total`). All times in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyOutcome {
    /// Name of the plugin instance that measured it (the `plugin_name` label).
    pub plugin_name: alloc::sync::Arc<str>,
    /// Its type (the `plugin_type` label).
    pub plugin_type: &'static str,
    /// Measured time to first token (end-to-end latency where the plugin learns that instead).
    pub ttft_ms: f64,
    /// TTFT predicted for the serving endpoint when it was chosen; `None` when no prediction
    /// was made (model or endpoint not warm yet).
    pub predicted_ttft_ms: Option<f64>,
    /// The request's TTFT objective; 0 when it had none.
    pub ttft_objective_ms: f64,
    /// Measured time per output token, when the response streamed more than one token.
    pub tpot_ms: Option<f64>,
    /// TPOT predicted for the serving endpoint; `None` where TPOT was not predicted.
    pub predicted_tpot_ms: Option<f64>,
    /// The request's TPOT objective (before any buffer factor); 0 when it had none.
    pub tpot_objective_ms: f64,
}

impl LatencyOutcome {
    /// The measured TTFT exceeded a set objective.
    pub fn ttft_violated(&self) -> bool {
        self.ttft_objective_ms > 0.0 && self.ttft_ms > self.ttft_objective_ms
    }

    /// The measured TPOT exceeded a set objective.
    pub fn tpot_violated(&self) -> bool {
        self.tpot_objective_ms > 0.0 && self.tpot_ms.is_some_and(|t| t > self.tpot_objective_ms)
    }
}
