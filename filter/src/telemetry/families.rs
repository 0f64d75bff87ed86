//! Every metric family the picker exports, with GIE v1.5.0's names and label names where GIE has
//! the concept (`pkg/epp/metrics/metrics.go` and `collectors/inference_pool.go` upstream), and
//! the bucket bounds of each histogram.
//!
//! Envoy stats hold integers only, so a histogram is exported as Prometheus' classic series:
//! counters `<name>_bucket{…,le="<bound>"}` (cumulative, bounds written in the histogram's unit:
//! seconds, bytes, tokens), `<name>_count{…}`, and for integer units `<name>_sum{…}`. A duration
//! histogram has no `_sum` (its seconds are not integers). `histogram_quantile` needs only the
//! buckets. Values are recorded in an integer base unit (nanoseconds for durations) and compared
//! against [`Buckets::limits`] in that unit.

/// Counter or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; the sink adds deltas.
    Counter,
    /// Set to a value, or moved up and down by the sink (see [`super::StatSink::adjust`]).
    Gauge,
}

/// One exported series family: name, kind and label names (values are given in this order).
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// Prometheus name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
}

/// Bucket bounds of a histogram: `le` label values and the same bounds in the recorded unit.
#[derive(Debug)]
pub struct Buckets {
    /// `le` values as exported (seconds, bytes or tokens), ascending; `+Inf` is implicit.
    pub le: &'static [&'static str],
    /// The same bounds in the recorded unit (nanoseconds for durations).
    pub limits: &'static [u64],
}

/// A histogram family: its `_bucket`, `_count` and optional `_sum` series.
#[derive(Debug)]
pub struct HistogramFamily {
    /// `<name>_bucket` (labels plus `le`).
    pub bucket: Family,
    /// `<name>_count`.
    pub count: Family,
    /// `<name>_sum`, for integer units.
    pub sum: Option<Family>,
    /// Bucket bounds.
    pub buckets: &'static Buckets,
}

const MODEL: &[&str] = &["model_name", "target_model_name"];
const MODEL_LE: &[&str] = &["model_name", "target_model_name", "le"];
/// A request's series: llm-d-router's request labels (model, target model, the flow-control
/// fairness id and the priority; see [`super::RequestLabels`]).
const REQUEST: &[&str] = &["model_name", "target_model_name", "fairness_id", "priority"];
const REQUEST_LE: &[&str] = &[
    "model_name",
    "target_model_name",
    "fairness_id",
    "priority",
    "le",
];
const PLUGIN: &[&str] = &["extension_point", "plugin_type", "plugin_name"];
const PLUGIN_LE: &[&str] = &["extension_point", "plugin_type", "plugin_name", "le"];

macro_rules! histogram {
    ($id:ident, $name:literal, $labels:ident, $labels_le:ident, $buckets:ident, sum) => {
        histogram!(@ $id, $name, $labels, $labels_le, $buckets, Some(Family {
            name: concat!($name, "_sum"),
            kind: Kind::Counter,
            labels: $labels,
        }));
    };
    ($id:ident, $name:literal, $labels:ident, $labels_le:ident, $buckets:ident) => {
        histogram!(@ $id, $name, $labels, $labels_le, $buckets, None);
    };
    (@ $id:ident, $name:literal, $labels:ident, $labels_le:ident, $buckets:ident, $sum:expr) => {
        #[doc = concat!("`", $name, "`.")]
        pub static $id: HistogramFamily = HistogramFamily {
            bucket: Family {
                name: concat!($name, "_bucket"),
                kind: Kind::Counter,
                labels: $labels_le,
            },
            count: Family {
                name: concat!($name, "_count"),
                kind: Kind::Counter,
                labels: $labels,
            },
            sum: $sum,
            buckets: &$buckets,
        };
    };
}

/// Scheduling and plugin durations: 10 µs … 100 ms in 1-2-5 steps (GIE's 100 µs … 100 ms
/// bounds are a subset; an in-proxy picker needs the finer low end).
pub static FAST_SECONDS: Buckets = Buckets {
    le: &[
        "1e-05", "2e-05", "5e-05", "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01",
        "0.02", "0.05", "0.1",
    ],
    limits: &[
        10_000,
        20_000,
        50_000,
        100_000,
        200_000,
        500_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        20_000_000,
        50_000_000,
        100_000_000,
    ],
};

/// llm-d-router's request-processing bounds, 0.5 ms … 10 s.
pub static REQUEST_PROCESSING_SECONDS: Buckets = Buckets {
    le: &[
        "0.0005", "0.001", "0.002", "0.005", "0.01", "0.015", "0.025", "0.04", "0.06", "0.1",
        "0.25", "0.5", "1", "2.5", "5", "10",
    ],
    limits: &[
        500_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        15_000_000,
        25_000_000,
        40_000_000,
        60_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
    ],
};

/// llm-d-router's response-processing bounds, 0.1 ms … 5 s.
pub static RESPONSE_PROCESSING_SECONDS: Buckets = Buckets {
    le: &[
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25", "0.5", "1", "2.5", "5",
    ],
    limits: &[
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
    ],
};

/// Request latency: GIE's general latency bounds, 5 ms … 1 h.
pub static REQUEST_SECONDS: Buckets = Buckets {
    le: &[
        "0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5", "2", "3",
        "4", "5", "6", "8", "10", "15", "20", "30", "45", "60", "120", "180", "240", "300", "360",
        "480", "600", "900", "1200", "1800", "2700", "3600",
    ],
    limits: &[
        5_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        200_000_000,
        400_000_000,
        600_000_000,
        800_000_000,
        1_000_000_000,
        1_250_000_000,
        1_500_000_000,
        2_000_000_000,
        3_000_000_000,
        4_000_000_000,
        5_000_000_000,
        6_000_000_000,
        8_000_000_000,
        10_000_000_000,
        15_000_000_000,
        20_000_000_000,
        30_000_000_000,
        45_000_000_000,
        60_000_000_000,
        120_000_000_000,
        180_000_000_000,
        240_000_000_000,
        300_000_000_000,
        360_000_000_000,
        480_000_000_000,
        600_000_000_000,
        900_000_000_000,
        1_200_000_000_000,
        1_800_000_000_000,
        2_700_000_000_000,
        3_600_000_000_000,
    ],
};

/// Time per output token: llm-d's predictor bounds, 0.5 ms … 6 min.
pub static TPOT_SECONDS: Buckets = Buckets {
    le: &[
        "0.0005", "0.00205", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.125",
        "0.15", "0.2", "0.3", "0.4", "0.5", "0.6", "0.8", "1", "1.5", "2", "3", "4.5", "6", "12",
        "18", "24", "30", "36", "48", "60", "90", "120", "180", "270", "360",
    ],
    limits: &[
        500_000,
        2_050_000,
        5_000_000,
        10_000_000,
        20_000_000,
        40_000_000,
        60_000_000,
        80_000_000,
        100_000_000,
        125_000_000,
        150_000_000,
        200_000_000,
        300_000_000,
        400_000_000,
        500_000_000,
        600_000_000,
        800_000_000,
        1_000_000_000,
        1_500_000_000,
        2_000_000_000,
        3_000_000_000,
        4_500_000_000,
        6_000_000_000,
        12_000_000_000,
        18_000_000_000,
        24_000_000_000,
        30_000_000_000,
        36_000_000_000,
        48_000_000_000,
        60_000_000_000,
        90_000_000_000,
        120_000_000_000,
        180_000_000_000,
        270_000_000_000,
        360_000_000_000,
    ],
};

/// Request body sizes, bytes: 64 B … 1 GiB (GIE's bounds).
pub static REQUEST_BYTES: Buckets = Buckets {
    le: &[
        "64",
        "128",
        "256",
        "512",
        "1024",
        "2048",
        "4096",
        "8192",
        "16384",
        "32768",
        "65536",
        "131072",
        "262144",
        "524288",
        "1048576",
        "2097152",
        "4194304",
        "8388608",
        "16777216",
        "33554432",
        "67108864",
        "134217728",
        "268435456",
        "536870912",
        "1073741824",
    ],
    limits: &[
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        8192,
        16384,
        32768,
        65536,
        131_072,
        262_144,
        524_288,
        1_048_576,
        2_097_152,
        4_194_304,
        8_388_608,
        16_777_216,
        33_554_432,
        67_108_864,
        134_217_728,
        268_435_456,
        536_870_912,
        1_073_741_824,
    ],
};

/// Response body sizes, bytes (GIE's bounds, including its 32778).
pub static RESPONSE_BYTES: Buckets = Buckets {
    le: &[
        "1", "8", "16", "32", "64", "128", "256", "512", "1024", "2048", "4096", "8192", "16384",
        "32778", "65536",
    ],
    limits: &[
        1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536,
    ],
};

/// Prompt tokens (GIE's bounds, 1 … 1 Mi).
pub static INPUT_TOKENS: Buckets = Buckets {
    le: &[
        "1", "8", "16", "32", "64", "128", "256", "512", "1024", "2048", "4096", "8192", "16384",
        "32778", "65536", "131072", "262144", "524288", "1048576",
    ],
    limits: &[
        1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131_072,
        262_144, 524_288, 1_048_576,
    ],
};

/// Fraction of the prompt a prefix lookup matched, 0 … 1 in steps of 0.1 (GIE's bounds),
/// recorded in millionths.
pub static HIT_RATIO: Buckets = Buckets {
    le: &[
        "0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1",
    ],
    limits: &[
        0, 100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 700_000, 800_000, 900_000,
        1_000_000,
    ],
};

/// Prompt bytes a prefix lookup matched, 0 … 64 KiB (GIE's bounds).
pub static HIT_BYTES: Buckets = Buckets {
    le: &[
        "0", "16", "32", "64", "128", "256", "512", "1024", "2048", "4096", "8192", "16384",
        "32768", "65536",
    ],
    limits: &[
        0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
    ],
};

/// Completion tokens (GIE's bounds, 1 … 8192).
pub static OUTPUT_TOKENS: Buckets = Buckets {
    le: &[
        "1", "8", "16", "32", "64", "128", "256", "512", "1024", "2048", "4096", "8192",
    ],
    limits: &[1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
};

const NONE: &[&str] = &[];
const LE: &[&str] = &["le"];

histogram!(
    SCHEDULER_E2E,
    "inference_extension_scheduler_e2e_duration_seconds",
    NONE,
    LE,
    FAST_SECONDS
);
histogram!(
    REQUEST_PROCESSING,
    "llm_d_epp_request_processing_duration_seconds",
    NONE,
    LE,
    REQUEST_PROCESSING_SECONDS
);
histogram!(
    RESPONSE_PROCESSING,
    "llm_d_epp_response_processing_duration_seconds",
    NONE,
    LE,
    RESPONSE_PROCESSING_SECONDS
);
histogram!(
    PREFIX_HIT_RATIO,
    "inference_extension_prefix_indexer_hit_ratio",
    NONE,
    LE,
    HIT_RATIO
);
histogram!(
    PREFIX_HIT_BYTES,
    "inference_extension_prefix_indexer_hit_bytes",
    NONE,
    LE,
    HIT_BYTES,
    sum
);
histogram!(
    PLUGIN_DURATION,
    "inference_extension_plugin_duration_seconds",
    PLUGIN,
    PLUGIN_LE,
    FAST_SECONDS
);
histogram!(
    REQUEST_DURATION,
    "inference_objective_request_duration_seconds",
    REQUEST,
    REQUEST_LE,
    REQUEST_SECONDS
);
histogram!(
    REQUEST_SIZES,
    "inference_objective_request_sizes",
    REQUEST,
    REQUEST_LE,
    REQUEST_BYTES,
    sum
);
histogram!(
    RESPONSE_SIZES,
    "inference_objective_response_sizes",
    REQUEST,
    REQUEST_LE,
    RESPONSE_BYTES,
    sum
);
histogram!(
    INPUT_TOKENS_HIST,
    "inference_objective_input_tokens",
    REQUEST,
    REQUEST_LE,
    INPUT_TOKENS,
    sum
);
histogram!(
    OUTPUT_TOKENS_HIST,
    "inference_objective_output_tokens",
    REQUEST,
    REQUEST_LE,
    OUTPUT_TOKENS,
    sum
);
// Prompt tokens the server read from its prefix cache (`prompt_tokens_details.cached_tokens`,
// recorded only when the response reports it): GIE's bounds, those of the input tokens.
histogram!(
    PROMPT_CACHED_TOKENS,
    "inference_objective_prompt_cached_tokens",
    REQUEST,
    REQUEST_LE,
    INPUT_TOKENS,
    sum
);

/// Normalized time per output token: GIE's bounds, 1 ms … 10 s.
pub static NTPOT_SECONDS: Buckets = Buckets {
    le: &[
        "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10",
    ],
    limits: &[
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        20_000_000,
        50_000_000,
        100_000_000,
        200_000_000,
        500_000_000,
        1_000_000_000,
        2_000_000_000,
        5_000_000_000,
        10_000_000_000,
    ],
};
// A request's whole duration (request headers to the response's end) over its completion
// tokens, for responses that report at least one.
histogram!(
    REQUEST_NTPOT,
    "inference_objective_normalized_time_per_output_token_seconds",
    REQUEST,
    REQUEST_LE,
    NTPOT_SECONDS
);

/// Time to first token at the gateway: llm-d's bounds, 5 ms … 120 s.
pub static TTFT_SECONDS: Buckets = Buckets {
    le: &[
        "0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5", "2", "3",
        "4", "5", "6", "8", "10", "15", "20", "30", "45", "60", "120",
    ],
    limits: &[
        5_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        200_000_000,
        400_000_000,
        600_000_000,
        800_000_000,
        1_000_000_000,
        1_250_000_000,
        1_500_000_000,
        2_000_000_000,
        3_000_000_000,
        4_000_000_000,
        5_000_000_000,
        6_000_000_000,
        8_000_000_000,
        10_000_000_000,
        15_000_000_000,
        20_000_000_000,
        30_000_000_000,
        45_000_000_000,
        60_000_000_000,
        120_000_000_000,
    ],
};

/// Time per output token of a streamed response: llm-d's bounds, 0.5 ms … 2 s.
pub static STREAMING_TPOT_SECONDS: Buckets = Buckets {
    le: &[
        "0.0005", "0.00205", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.125",
        "0.15", "0.2", "0.3", "0.4", "0.5", "0.6", "0.8", "1", "2",
    ],
    limits: &[
        500_000,
        2_050_000,
        5_000_000,
        10_000_000,
        20_000_000,
        40_000_000,
        60_000_000,
        80_000_000,
        100_000_000,
        125_000_000,
        150_000_000,
        200_000_000,
        300_000_000,
        400_000_000,
        500_000_000,
        600_000_000,
        800_000_000,
        1_000_000_000,
        2_000_000_000,
    ],
};

/// Gap between a stream's consecutive response chunks: llm-d's bounds, 1 ms … 2 s.
pub static ITL_SECONDS: Buckets = Buckets {
    le: &[
        "0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.15", "0.2", "0.3",
        "0.5", "0.75", "1", "2",
    ],
    limits: &[
        1_000_000,
        5_000_000,
        10_000_000,
        20_000_000,
        40_000_000,
        60_000_000,
        80_000_000,
        100_000_000,
        150_000_000,
        200_000_000,
        300_000_000,
        500_000_000,
        750_000_000,
        1_000_000_000,
        2_000_000_000,
    ],
};

/// Buckets of [`ITL_SECONDS`], `+Inf` included: a request counts its gaps in an array of this
/// size (no allocation) and the telemetry adds it to the model's histogram.
pub const ITL_BUCKETS: usize = 16;

const REQUEST_STREAMING: &[&str] = &[
    "model_name",
    "target_model_name",
    "fairness_id",
    "priority",
    "streaming",
];
const REQUEST_STREAMING_LE: &[&str] = &[
    "model_name",
    "target_model_name",
    "fairness_id",
    "priority",
    "streaming",
    "le",
];
// From the request headers to the first byte of the response body, every response that has one
// (llm-d's series; `streaming` "true" for a streamed request or an SSE response, else "false").
histogram!(
    FIRST_BYTE,
    "llm_d_epp_request_ttft_seconds",
    REQUEST_STREAMING,
    REQUEST_STREAMING_LE,
    TTFT_SECONDS
);
// The gaps between a streamed response's consecutive body chunks (llm-d's series).
histogram!(
    STREAMING_ITL,
    "llm_d_epp_request_streaming_itl_seconds",
    REQUEST,
    REQUEST_LE,
    ITL_SECONDS
);
// A streamed response's (duration − TTFT) / (completion tokens − 1), when it reported two or
// more completion tokens (llm-d's series).
histogram!(
    STREAMING_TPOT,
    "llm_d_epp_request_streaming_tpot_seconds",
    REQUEST,
    REQUEST_LE,
    STREAMING_TPOT_SECONDS
);

/// llm-d's predictor series (`predicted-latency-producer`): labels of the predicted-latency
/// histograms, then of the objective-violation counter (`type`: `ttft` or `tpot`).
const PREDICTOR: &[&str] = &[
    "plugin_name",
    "plugin_type",
    "model_name",
    "target_model_name",
];
const PREDICTOR_LE: &[&str] = &[
    "plugin_name",
    "plugin_type",
    "model_name",
    "target_model_name",
    "le",
];
const PREDICTOR_TYPE: &[&str] = &[
    "plugin_name",
    "plugin_type",
    "model_name",
    "target_model_name",
    "type",
];
histogram!(
    REQUEST_TTFT,
    "inference_objective_request_ttft_seconds",
    MODEL,
    MODEL_LE,
    REQUEST_SECONDS
);
histogram!(
    REQUEST_TPOT,
    "inference_objective_request_tpot_seconds",
    MODEL,
    MODEL_LE,
    TPOT_SECONDS
);
histogram!(
    PREDICTED_TTFT,
    "llm_d_epp_request_predicted_ttft_seconds",
    PREDICTOR,
    PREDICTOR_LE,
    REQUEST_SECONDS
);
histogram!(
    PREDICTED_TPOT,
    "llm_d_epp_request_predicted_tpot_seconds",
    PREDICTOR,
    PREDICTOR_LE,
    TPOT_SECONDS
);

/// `llm_d_epp_request_slo_violation_total{plugin_name,plugin_type,model_name,target_model_name,type}`:
/// responses whose measured TTFT (`type="ttft"`) or TPOT (`type="tpot"`) exceeded the request's
/// objective header.
pub static SLO_VIOLATIONS: Family = Family {
    name: "llm_d_epp_request_slo_violation_total",
    kind: Kind::Counter,
    labels: PREDICTOR_TYPE,
};

/// `inference_objective_request_total{model_name,target_model_name,fairness_id,priority}`:
/// requests whose body was parsed (routed or answered locally).
pub static REQUEST_TOTAL: Family = Family {
    name: "inference_objective_request_total",
    kind: Kind::Counter,
    labels: REQUEST,
};

/// `inference_objective_request_error_total{model_name,target_model_name,fairness_id,priority,error_code}`:
/// local error replies; `error_code` is GIE's code for the status (BadRequest,
/// ResourceExhausted, Internal, ServiceUnavailable). Requests refused before their body was
/// read have empty model labels, the default flow and priority 0.
pub static REQUEST_ERROR_TOTAL: Family = Family {
    name: "inference_objective_request_error_total",
    kind: Kind::Counter,
    labels: &[
        "model_name",
        "target_model_name",
        "fairness_id",
        "priority",
        "error_code",
    ],
};

/// `inference_objective_running_requests{model_name,target_model_name,fairness_id,priority}`:
/// requests routed upstream and not yet finished (GIE's gauge, labelled by model only there;
/// llm-d-router's `llm_d_epp_request_running` carries these four labels): raised when the
/// request goes to its endpoint, lowered when its stream ends. Each worker's share reaches Envoy as a change
/// at the next telemetry flush, so the value lags by up to [`super::FLUSH_INTERVAL_MS`].
pub static RUNNING_REQUESTS: Family = Family {
    name: "inference_objective_running_requests",
    kind: Kind::Gauge,
    labels: REQUEST,
};

/// `inference_extension_scheduler_attempts_total{status,target_model_name,pod_name,namespace,port}`:
/// scheduling cycles of requests with a body. `success` carries the endpoint the request went to
/// (the primary profile's first pick): `pod_name` its host (the address without the port; this
/// engine knows endpoints by address), `namespace` empty, `port` its port. `failure` (no
/// endpoint passed the profile's filters, or none was picked) has the three empty, as GIE's.
pub static SCHEDULER_ATTEMPTS: Family = Family {
    name: "inference_extension_scheduler_attempts_total",
    kind: Kind::Counter,
    labels: &[
        "status",
        "target_model_name",
        "pod_name",
        "namespace",
        "port",
    ],
};

/// `inference_extension_model_rewrite_decisions_total{model_rewrite_name,model_name,target_model}`:
/// requests whose target model a model rewrite rule chose.
pub static MODEL_REWRITE_DECISIONS: Family = Family {
    name: "inference_extension_model_rewrite_decisions_total",
    kind: Kind::Counter,
    labels: &["model_rewrite_name", "model_name", "target_model"],
};

/// `endpoint_picker_picks{endpoint,profile}`: requests routed to an endpoint (primary) by a
/// profile (`""` for body-less requests).
pub static PICKS: Family = Family {
    name: "endpoint_picker_picks",
    kind: Kind::Counter,
    labels: &["endpoint", "profile"],
};

/// `endpoint_picker_local_replies{status}`: local replies by HTTP status.
pub static LOCAL_REPLIES: Family = Family {
    name: "endpoint_picker_local_replies",
    kind: Kind::Counter,
    labels: &["status"],
};

/// `inference_pool_ready_pods{name}`: endpoints with fresh metrics.
pub static POOL_READY: Family = Family {
    name: "inference_pool_ready_pods",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `inference_pool_per_pod_queue_size{name,model_server_pod}`: each endpoint's waiting queue
/// (0 once it leaves the pool).
pub static POOL_POD_QUEUE: Family = Family {
    name: "inference_pool_per_pod_queue_size",
    kind: Kind::Gauge,
    labels: &["name", "model_server_pod"],
};

/// `endpoint_picker_pool_average_kv_cache_utilization_ppm{name}`: mean KV-cache use of the
/// fresh endpoints in parts per million (a fraction cannot be an Envoy stat;
/// `dashboards/recording-rules.yaml` derives GIE's `inference_pool_average_kv_cache_utilization`).
pub static POOL_AVG_KV_PPM: Family = Family {
    name: "endpoint_picker_pool_average_kv_cache_utilization_ppm",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `endpoint_picker_pool_average_queue_size_milli{name}`: mean waiting queue ×1000 (GIE's
/// `inference_pool_average_queue_size` through the same recording rules).
pub static POOL_AVG_QUEUE_MILLI: Family = Family {
    name: "endpoint_picker_pool_average_queue_size_milli",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `inference_extension_prefix_indexer_size`: blocks the approximate prefix index holds, over
/// all endpoints (GIE's name; upstream's help text says megabytes, its code sets the entry
/// count, as here). The native build's index is one per process; in the Wasm build each worker
/// VM has its own and the gauge is their sum.
pub static PREFIX_INDEXER_SIZE: Family = Family {
    name: "inference_extension_prefix_indexer_size",
    kind: Kind::Gauge,
    labels: &[],
};

/// `endpoint_picker_pool_average_running_requests_milli{name}`: mean running requests of the
/// fresh endpoints ×1000 (GIE's `inference_pool_average_running_requests` through the same
/// recording rules).
pub static POOL_AVG_RUNNING_MILLI: Family = Family {
    name: "endpoint_picker_pool_average_running_requests_milli",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `endpoint_picker_pool_std_dev_kv_cache_utilization_ppm{name}`: the sample standard deviation
/// of the fresh endpoints' KV-cache use (n − 1 in the denominator, 0 for one endpoint), parts
/// per million (llm-d's `llm_d_epp_std_dev_kv_cache_utilization` through the recording rules).
pub static POOL_STD_DEV_KV_PPM: Family = Family {
    name: "endpoint_picker_pool_std_dev_kv_cache_utilization_ppm",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `endpoint_picker_pool_std_dev_queue_size_milli{name}`: the same for the waiting queues, ×1000
/// (llm-d's `llm_d_epp_std_dev_queue_size`).
pub static POOL_STD_DEV_QUEUE_MILLI: Family = Family {
    name: "endpoint_picker_pool_std_dev_queue_size_milli",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `endpoint_picker_pool_std_dev_running_requests_milli{name}`: the same for the servers'
/// running requests, ×1000 (llm-d's `llm_d_epp_std_dev_running_requests`).
pub static POOL_STD_DEV_RUNNING_MILLI: Family = Family {
    name: "endpoint_picker_pool_std_dev_running_requests_milli",
    kind: Kind::Gauge,
    labels: &["name"],
};

/// `inference_extension_info{commit,build_ref,version}` = 1.
pub static INFO: Family = Family {
    name: "inference_extension_info",
    kind: Kind::Gauge,
    labels: &["commit", "build_ref", "version"],
};

const FLOW_FAIRNESS_OUTCOME: &[&str] = &["fairness_id", "priority", "outcome"];
const FLOW_FAIRNESS_OUTCOME_LE: &[&str] = &["fairness_id", "priority", "outcome", "le"];
histogram!(
    FLOW_QUEUE_DURATION,
    "inference_extension_flow_control_request_queue_duration_seconds",
    FLOW_FAIRNESS_OUTCOME,
    FLOW_FAIRNESS_OUTCOME_LE,
    REQUEST_SECONDS
);

/// `inference_extension_flow_control_queue_size{fairness_id,priority}`: requests waiting in the
/// flow-control queue of a flow (GIE's name; upstream also labels the pool and model). Every
/// band shows its default flow (0 while nothing of it waits). Each writer moves the gauges by
/// its own changes ([`super::QueueGauges`]), so several gates add up.
pub static FLOW_QUEUE_SIZE: Family = Family {
    name: "inference_extension_flow_control_queue_size",
    kind: Kind::Gauge,
    labels: &["fairness_id", "priority"],
};

/// `inference_extension_flow_control_queue_bytes{fairness_id,priority}`: their request-body
/// bytes.
pub static FLOW_QUEUE_BYTES: Family = Family {
    name: "inference_extension_flow_control_queue_bytes",
    kind: Kind::Gauge,
    labels: &["fairness_id", "priority"],
};

/// `llm_d_epp_flow_control_revocations_issued_total{priority}`: sheddable requests in flight
/// evicted (`enableEviction`), by the priority of the waiting band they made room for
/// (llm-d-router's name; its `inference_pool` label is the Envoy configuration here).
pub static REVOCATIONS_ISSUED: Family = Family {
    name: "llm_d_epp_flow_control_revocations_issued_total",
    kind: Kind::Counter,
    labels: &["priority"],
};

/// `llm_d_epp_flow_control_revocations_total{outcome}`: evictions by how they ended —
/// `confirmed` (the victim's stream ended) or `timed_out` (it had not after 10 s).
pub static REVOCATIONS: Family = Family {
    name: "llm_d_epp_flow_control_revocations_total",
    kind: Kind::Counter,
    labels: &["outcome"],
};

/// `endpoint_picker_flow_control_reclaim_target_ppm`: eviction's last computed deficit
/// (saturation − the blocked band's ceiling) in millionths of the saturation detector's unit;
/// llm-d-router's `llm_d_epp_flow_control_reclaim_target` (a fraction cannot be an Envoy stat;
/// `dashboards/recording-rules.yaml` derives upstream's name).
pub static RECLAIM_TARGET_PPM: Family = Family {
    name: "endpoint_picker_flow_control_reclaim_target_ppm",
    kind: Kind::Gauge,
    labels: NONE,
};

/// `endpoint_picker_flow_control_pending_reclaim_ppm`: capacity eviction still expects from its
/// victims (not yet ended, or in their grace), same unit; llm-d-router's
/// `llm_d_epp_flow_control_pending_reclaim`.
pub static PENDING_RECLAIM_PPM: Family = Family {
    name: "endpoint_picker_flow_control_pending_reclaim_ppm",
    kind: Kind::Gauge,
    labels: NONE,
};

/// `endpoint_picker_flow_control_pool_saturation_ppm{stage}`: the saturation detector's reading
/// of the pool, in millionths (10⁶ is the set point, above it oversubscribed; an empty pool
/// reads 10⁶), set at each metrics flush while flow control is on: `stage="prefill"` and
/// `"decode"` over the endpoints of each stage (while the pool has any), `"effective"` the
/// higher of them, which gates flow control. GIE's
/// `inference_extension_flow_control_pool_saturation` and llm-d's
/// `llm_d_epp_flow_control_pool_saturation` (recording rules).
pub static POOL_SATURATION_PPM: Family = Family {
    name: "endpoint_picker_flow_control_pool_saturation_ppm",
    kind: Kind::Gauge,
    labels: &["stage"],
};

/// Eviction to the victim's end: llm-d-router's bounds, 5 ms … 10 s.
pub static REVOCATION_SECONDS: Buckets = Buckets {
    le: &[
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
    ],
    limits: &[
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
    ],
};
histogram!(
    REVOCATION_CONFIRMATION,
    "llm_d_epp_flow_control_revocation_confirmation_seconds",
    NONE,
    LE,
    REVOCATION_SECONDS
);

/// `llm_d_epp_flow_control_requests_total{outcome,priority}`: every request flow control
/// decided, by how it ended (`Dispatched` — at once or after waiting —, `RejectedCapacity`,
/// `RejectedNoEndpoints`, `EvictedTTL`, `EvictedNoEndpoints`, `EvictedContextCancelled`;
/// llm-d-router's outcome names). Upstream also labels the pool, here the Envoy configuration.
pub static FLOW_REQUESTS: Family = Family {
    name: "llm_d_epp_flow_control_requests_total",
    kind: Kind::Counter,
    labels: &["outcome", "priority"],
};

/// `endpoint_picker_flow_control_capacity_utilization_requests_ppm{priority}`: requests queued
/// in a band over its request limit, in millionths (10⁶ = full); every configured band and
/// every band that has held a request. llm-d-router's
/// `llm_d_epp_flow_control_capacity_utilization_requests` (recording rules).
pub static CAPACITY_REQUESTS_PPM: Family = Family {
    name: "endpoint_picker_flow_control_capacity_utilization_requests_ppm",
    kind: Kind::Gauge,
    labels: &["priority"],
};

/// `endpoint_picker_flow_control_capacity_utilization_bytes_ppm{priority}`: the same for
/// request-body bytes; llm-d's `llm_d_epp_flow_control_capacity_utilization_bytes`.
pub static CAPACITY_BYTES_PPM: Family = Family {
    name: "endpoint_picker_flow_control_capacity_utilization_bytes_ppm",
    kind: Kind::Gauge,
    labels: &["priority"],
};

/// `endpoint_picker_flow_control_global_capacity_utilization_ppm{resource}`: requests
/// (`resource="requests"`) or body bytes (`"bytes"`) queued over all bands against the global
/// limit, in millionths, set only when that limit is configured (as upstream, which leaves the
/// series out rather than report 0; a labelled family, because Envoy shows a label-less stat
/// of a dynamic module from its definition on). llm-d's
/// `llm_d_epp_flow_control_global_capacity_utilization_requests` / `_bytes` (recording rules).
pub static GLOBAL_CAPACITY_PPM: Family = Family {
    name: "endpoint_picker_flow_control_global_capacity_utilization_ppm",
    kind: Kind::Gauge,
    labels: &["resource"],
};

/// `llm_d_epp_flow_control_stale_endpoints{detector}`: endpoints the saturation detector (by
/// its plugin name) scored as fully saturated at the last flush because their metrics were
/// missing or stale — a dispatch stall with this above 0 is a scraping problem, not overload.
/// Only for detectors that read scraped metrics (`utilization-detector`).
pub static STALE_ENDPOINTS: Family = Family {
    name: "llm_d_epp_flow_control_stale_endpoints",
    kind: Kind::Gauge,
    labels: &["detector"],
};

/// Flow control's own work per call: llm-d-router's bounds, 100 µs … 100 ms.
pub static FLOW_WORK_SECONDS: Buckets = Buckets {
    le: &[
        "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1",
    ],
    limits: &[
        100_000,
        200_000,
        500_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        20_000_000,
        50_000_000,
        100_000_000,
    ],
};
histogram!(
    FLOW_DISPATCH_CYCLE,
    "llm_d_epp_flow_control_dispatch_cycle_duration_seconds",
    NONE,
    LE,
    FLOW_WORK_SECONDS
);
histogram!(
    FLOW_ENQUEUE,
    "llm_d_epp_flow_control_request_enqueue_duration_seconds",
    FLOW_FAIRNESS_OUTCOME,
    FLOW_FAIRNESS_OUTCOME_LE,
    FLOW_WORK_SECONDS
);

/// Every histogram family.
pub static HISTOGRAMS: [&HistogramFamily; 24] = [
    &SCHEDULER_E2E,
    &REQUEST_PROCESSING,
    &RESPONSE_PROCESSING,
    &PREFIX_HIT_RATIO,
    &PREFIX_HIT_BYTES,
    &PLUGIN_DURATION,
    &REQUEST_DURATION,
    &REQUEST_SIZES,
    &RESPONSE_SIZES,
    &INPUT_TOKENS_HIST,
    &OUTPUT_TOKENS_HIST,
    &PROMPT_CACHED_TOKENS,
    &REQUEST_NTPOT,
    &FIRST_BYTE,
    &STREAMING_TPOT,
    &STREAMING_ITL,
    &FLOW_QUEUE_DURATION,
    &REQUEST_TTFT,
    &REQUEST_TPOT,
    &PREDICTED_TTFT,
    &PREDICTED_TPOT,
    &REVOCATION_CONFIRMATION,
    &FLOW_DISPATCH_CYCLE,
    &FLOW_ENQUEUE,
];

/// Every family a request-path sink defines (the histograms' series included).
pub fn request_families() -> impl Iterator<Item = &'static Family> {
    [
        &REQUEST_TOTAL,
        &REQUEST_ERROR_TOTAL,
        &RUNNING_REQUESTS,
        &SCHEDULER_ATTEMPTS,
        &PREFIX_INDEXER_SIZE,
        &MODEL_REWRITE_DECISIONS,
        &PICKS,
        &LOCAL_REPLIES,
        &FLOW_QUEUE_SIZE,
        &FLOW_QUEUE_BYTES,
        &REVOCATIONS_ISSUED,
        &REVOCATIONS,
        &RECLAIM_TARGET_PPM,
        &PENDING_RECLAIM_PPM,
        &POOL_SATURATION_PPM,
        &SLO_VIOLATIONS,
        &FLOW_REQUESTS,
        &CAPACITY_REQUESTS_PPM,
        &CAPACITY_BYTES_PPM,
        &GLOBAL_CAPACITY_PPM,
        &STALE_ENDPOINTS,
    ]
    .into_iter()
    .chain(
        HISTOGRAMS
            .iter()
            .flat_map(|h| [Some(&h.bucket), Some(&h.count), h.sum.as_ref()])
            .flatten(),
    )
}

/// Every family the scraper sets.
pub static POOL_FAMILIES: [&Family; 9] = [
    &POOL_READY,
    &POOL_POD_QUEUE,
    &POOL_AVG_KV_PPM,
    &POOL_AVG_QUEUE_MILLI,
    &POOL_AVG_RUNNING_MILLI,
    &POOL_STD_DEV_KV_PPM,
    &POOL_STD_DEV_QUEUE_MILLI,
    &POOL_STD_DEV_RUNNING_MILLI,
    &INFO,
];

/// Every distinct label name (Envoy's `stats_tags` needs one rule per name in the Wasm build).
pub fn label_names() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = request_families()
        .chain(POOL_FAMILIES.iter().copied())
        .flat_map(|f| f.labels.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// GIE's error code for a local reply status (`pkg/common/error` codes; 413 is a bad request;
/// 412 is llm-d-router's conditional-decode refusal).
pub fn error_code(status: u32) -> &'static str {
    match status {
        400 | 413 => "BadRequest",
        412 => "PreconditionFailed",
        429 => "ResourceExhausted",
        503 => "ServiceUnavailable",
        500 => "Internal",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itl_bucket_count_covers_every_bound() {
        assert_eq!(ITL_BUCKETS, ITL_SECONDS.limits.len() + 1);
    }

    #[test]
    fn bucket_labels_and_limits_agree() {
        for b in [
            &FAST_SECONDS,
            &REQUEST_SECONDS,
            &REQUEST_BYTES,
            &RESPONSE_BYTES,
            &INPUT_TOKENS,
            &OUTPUT_TOKENS,
            &REVOCATION_SECONDS,
            &FLOW_WORK_SECONDS,
            &NTPOT_SECONDS,
            &TTFT_SECONDS,
            &STREAMING_TPOT_SECONDS,
            &ITL_SECONDS,
            &TPOT_SECONDS,
            &HIT_RATIO,
            &HIT_BYTES,
        ] {
            assert_eq!(b.le.len(), b.limits.len());
            assert!(b.limits.windows(2).all(|w| w[0] < w[1]), "ascending");
            // The recorded unit per exported one: 1 (bytes, tokens), 1e6 (fractions in
            // millionths) or 1e9 (seconds in nanoseconds), read off the largest bound.
            let last: f64 = b.le.last().unwrap().parse().unwrap();
            let unit = [1.0, 1e6, 1e9]
                .into_iter()
                .find(|u| (last * u - *b.limits.last().unwrap() as f64).abs() < 0.5)
                .expect("a known unit");
            for (le, &limit) in b.le.iter().zip(b.limits) {
                let v: f64 = le.parse().unwrap();
                assert!(((v * unit) - limit as f64).abs() < 0.5, "{le} vs {limit}");
            }
        }
    }

    #[test]
    fn label_names_are_the_union() {
        let names = label_names();
        for l in [
            "model_name",
            "target_model_name",
            "error_code",
            "le",
            "plugin_name",
            "name",
        ] {
            assert!(names.contains(&l), "{l}");
        }
    }
}
