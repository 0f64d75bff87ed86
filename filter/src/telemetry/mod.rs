//! The picker's GIE-named metrics: each request leaves a [`RequestRecord`]; a [`Telemetry`]
//! aggregates records in module memory and [`Telemetry::flush`]es the changes (at most once per
//! [`FLUSH_INTERVAL_MS`]: on the scrape tick, and in the Wasm build also on the request path) to
//! a [`StatSink`] that turns them into Envoy stats. Aggregating keeps the per-request cost to a few additions: a
//! histogram is 15–36 counters, far too many host calls to make per request.
//!
//! The Wasm build has one `Telemetry` per VM (per worker); the native build one per worker
//! shard. Envoy sums the counters of all of them, as the stats share names.

mod fairness;
pub mod families;
mod flow_control;
mod histogram;
mod record;

use std::collections::{HashMap, HashSet};

use scheduler_core::flowcontrol::DEFAULT_FAIRNESS_ID;
use std::sync::Arc;

use scheduler_core::model::response::LatencyOutcome;
use scheduler_core::snapshot::{EndpointState, PoolSnapshot};
use scheduler_core::{EndpointPicker, ExtensionPoint, Plugin};

pub use fairness::{FairnessLabels, MAX_FAIRNESS_IDS};
use families::Family;
pub use flow_control::{
    add_eviction_report, max_saturation, max_utilization, set_capacity_utilization,
    set_eviction_gauges, set_pool_saturation, set_stale_endpoints, FlowTimings, QueueGauges,
};
use histogram::Histogram;
pub use record::{RequestLabels, RequestRecord, Timing};

/// Longest time a record waits in module memory before its stats are flushed, ms (while
/// requests keep coming; an idle Wasm VM flushes on its scrape tick).
pub const FLUSH_INTERVAL_MS: u64 = 1000;

/// Distinct (model, target model) label pairs kept; further pairs are counted under
/// [`OTHER_MODEL`] (model names come from request bodies: untrusted, so bounded).
pub const MAX_MODEL_PAIRS: usize = 256;
/// Label value standing for every model pair beyond [`MAX_MODEL_PAIRS`] (and every fairness id
/// beyond [`MAX_FAIRNESS_IDS`]).
pub const OTHER_MODEL: &str = "_other";

/// Distinct request label sets (model pair, fairness id, priority) kept per writer; a further
/// set counts under its pair and priority with the fairness id [`OTHER_MODEL`]. With
/// [`MAX_MODEL_PAIRS`] it bounds the request series: at most this many sets, plus one
/// overflow set per pair and configured priority.
pub const MAX_REQUEST_SERIES: usize = 512;

/// Distinct endpoints kept in the pick counts; picks of further endpoints are counted under
/// [`OTHER_MODEL`]'s label value. Pod churn alone does not reach it: once more than half of it is
/// in use, a flush drops the endpoints not picked since the previous flush (their counts are
/// already sent, and Envoy keeps the series, so nothing is lost if they return).
pub const MAX_PICK_ENDPOINTS: usize = 4096;

/// Where flushed values go: Envoy stats in each build.
pub trait StatSink {
    /// Adds `delta` (possibly 0: defines the series) to the counter `family{labels}`;
    /// `labels` are values in the family's label order.
    fn add(&mut self, family: &'static Family, labels: &[&str], delta: u64);
    /// Sets the gauge `family{labels}` to `value`.
    fn set(&mut self, family: &'static Family, labels: &[&str], value: u64);
    /// Moves the gauge `family{labels}` by `delta` (up or down; 0 defines the series). Every
    /// writer's changes add up in Envoy, so a gauge several worker VMs or shards share is
    /// written this way, never [`StatSink::set`].
    fn adjust(&mut self, family: &'static Family, labels: &[&str], delta: i64);
}

/// A counter between flushes.
#[derive(Default)]
struct Count {
    total: u64,
    flushed: u64,
}

impl Count {
    fn flush(&mut self, family: &'static Family, labels: &[&str], sink: &mut dyn StatSink) {
        if self.total != self.flushed {
            sink.add(family, labels, self.total - self.flushed);
            self.flushed = self.total;
        }
    }
}

/// Adds one to the count of `key` in the short list `list`, appending the key (made by `owned`,
/// so a known key costs no allocation) on first use.
fn count_one<K, Q>(list: &mut Vec<(K, Count)>, key: &Q, owned: impl FnOnce() -> K)
where
    K: core::borrow::Borrow<Q>,
    Q: PartialEq + ?Sized,
{
    match list.iter_mut().find(|(k, _)| k.borrow() == key) {
        Some((_, c)) => c.total += 1,
        None => list.push((
            owned(),
            Count {
                total: 1,
                flushed: 0,
            },
        )),
    }
}

/// This writer's share of a gauge that several writers (worker VMs, native shards) move
/// together with [`StatSink::adjust`]: the value it last added (`None` before its first report).
#[derive(Default)]
struct GaugeShare(Option<i64>);

impl GaugeShare {
    /// Moves `family{labels}` by the change from this writer's last value to `now`; the first
    /// report sends even no change, which defines the series (a share that is 0 when first
    /// reported must still show).
    fn report(
        &mut self,
        family: &'static Family,
        labels: &[&str],
        now: i64,
        sink: &mut dyn StatSink,
    ) {
        let before = self.0.unwrap_or(0);
        if self.0.is_none() || now != before {
            sink.adjust(family, labels, now.saturating_sub(before));
            self.0 = Some(now);
        }
    }
}

/// Requests of one model pair routed upstream (`started`) and finished since (`ended`), and
/// this writer's share of the running-requests gauge.
#[derive(Default)]
struct Running {
    started: u64,
    ended: u64,
    share: GaugeShare,
}

impl Running {
    /// Moves `inference_objective_running_requests{labels}` by the change since the last flush.
    fn flush(&mut self, labels: &[&str], sink: &mut dyn StatSink) {
        if self.started == 0 {
            return; // a label set never routed (refused, or counted only as requests)
        }
        let now = i64::try_from(self.started.saturating_sub(self.ended)).unwrap_or(i64::MAX);
        self.share
            .report(&families::RUNNING_REQUESTS, labels, now, sink);
    }
}

/// Endpoints kept per model pair in the scheduling-attempt counts; attempts on further
/// endpoints count under [`OTHER_MODEL`]. Past half of it, a flush drops the endpoints that had
/// no attempt since the previous flush (their counts are sent; Envoy keeps the series).
pub const MAX_ATTEMPT_ENDPOINTS: usize = 1024;

/// The label values of one request series, as exported (see [`RequestLabels`]).
struct SeriesLabels {
    model: String,
    target: String,
    fairness: String,
    priority: String,
}

impl SeriesLabels {
    fn of(l: &RequestLabels) -> Self {
        SeriesLabels {
            model: l.model.clone(),
            target: l.target_model.clone(),
            fairness: l.fairness().to_string(),
            priority: l.priority.to_string(),
        }
    }
}

/// The series of one request label set ([`RequestLabels`]).
struct ModelSeries {
    requests: Count,
    running: Running,
    /// Successful scheduling attempts by the endpoint picked.
    attempts: HashMap<String, Count>,
    /// Scheduling attempts that found no endpoint.
    failed_attempts: Count,
    /// Requests a model rewrite rule sent to this pair's target, by the rewrite's name.
    rewrites: Vec<(Arc<str>, Count)>,
    errors: Vec<(&'static str, Count)>,
    duration: Histogram,
    request_sizes: Histogram,
    response_sizes: Histogram,
    input_tokens: Histogram,
    output_tokens: Histogram,
    /// Prompt tokens read from the server's prefix cache, as responses report them.
    cached_tokens: Histogram,
    /// Duration over completion tokens (GIE's NTPOT).
    ntpot: Histogram,
    /// Time to the first response byte, by `streaming` (false, true).
    first_byte: [Histogram; 2],
    /// (Duration − TTFT) / (completion tokens − 1) of streamed responses.
    streaming_tpot: Histogram,
    /// Gaps between a stream's consecutive response chunks.
    streaming_itl: Histogram,
    /// Measured TTFT and TPOT, from the first response a latency-predicting plugin measured.
    ttft: Option<Histogram>,
    tpot: Option<Histogram>,
    /// One entry per latency-predicting plugin instance (normally one).
    predictors: Vec<PredictorSeries>,
}

/// llm-d's predictor series of one plugin instance for one model pair.
struct PredictorSeries {
    plugin_name: Arc<str>,
    plugin_type: &'static str,
    predicted_ttft: Histogram,
    predicted_tpot: Histogram,
    ttft_violations: Count,
    tpot_violations: Count,
}

/// Milliseconds (a model's output: possibly negative or not finite) as whole nanoseconds.
fn ms_to_ns(ms: f64) -> u64 {
    // `as` saturates: negative and NaN become 0, huge values u64::MAX.
    (ms * 1e6) as u64
}

impl ModelSeries {
    fn new() -> Self {
        ModelSeries {
            requests: Count::default(),
            running: Running::default(),
            attempts: HashMap::new(),
            failed_attempts: Count::default(),
            rewrites: Vec::new(),
            errors: Vec::new(),
            duration: Histogram::new(&families::REQUEST_DURATION),
            request_sizes: Histogram::new(&families::REQUEST_SIZES),
            response_sizes: Histogram::new(&families::RESPONSE_SIZES),
            input_tokens: Histogram::new(&families::INPUT_TOKENS_HIST),
            output_tokens: Histogram::new(&families::OUTPUT_TOKENS_HIST),
            cached_tokens: Histogram::new(&families::PROMPT_CACHED_TOKENS),
            ntpot: Histogram::new(&families::REQUEST_NTPOT),
            first_byte: [
                Histogram::new(&families::FIRST_BYTE),
                Histogram::new(&families::FIRST_BYTE),
            ],
            streaming_tpot: Histogram::new(&families::STREAMING_TPOT),
            streaming_itl: Histogram::new(&families::STREAMING_ITL),
            ttft: None,
            tpot: None,
            predictors: Vec::new(),
        }
    }

    /// Adds what a latency-predicting plugin measured and had predicted for one response.
    fn latency(&mut self, o: &LatencyOutcome) {
        self.ttft
            .get_or_insert_with(|| Histogram::new(&families::REQUEST_TTFT))
            .record(ms_to_ns(o.ttft_ms));
        if let Some(t) = o.tpot_ms {
            self.tpot
                .get_or_insert_with(|| Histogram::new(&families::REQUEST_TPOT))
                .record(ms_to_ns(t));
        }
        let i = match self
            .predictors
            .iter()
            .position(|p| p.plugin_name == o.plugin_name && p.plugin_type == o.plugin_type)
        {
            Some(i) => i,
            None => {
                self.predictors.push(PredictorSeries {
                    plugin_name: o.plugin_name.clone(),
                    plugin_type: o.plugin_type,
                    predicted_ttft: Histogram::new(&families::PREDICTED_TTFT),
                    predicted_tpot: Histogram::new(&families::PREDICTED_TPOT),
                    ttft_violations: Count::default(),
                    tpot_violations: Count::default(),
                });
                self.predictors.len() - 1
            }
        };
        let Some(p) = self.predictors.get_mut(i) else {
            return;
        };
        if let Some(t) = o.predicted_ttft_ms {
            p.predicted_ttft.record(ms_to_ns(t));
        }
        if let Some(t) = o.predicted_tpot_ms {
            p.predicted_tpot.record(ms_to_ns(t));
        }
        p.ttft_violations.total += u64::from(o.ttft_violated());
        p.tpot_violations.total += u64::from(o.tpot_violated());
    }
}

/// One configured plugin: its identity and a histogram per extension point it ran at.
struct PluginSeries {
    key: usize,
    plugin_type: &'static str,
    name: String,
    by_point: [Option<Histogram>; 8],
}

/// See the module docs.
pub struct Telemetry {
    plugins: Vec<PluginSeries>,
    scheduler: Histogram,
    /// llm-d-router's request and response processing times.
    request_processing: Histogram,
    response_processing: Histogram,
    /// What the prefix lookup found for each request's endpoint: fraction (millionths), bytes.
    prefix_hit_ratio: Histogram,
    prefix_hit_bytes: Histogram,
    /// Request labels → index into `series`: a known set is found without copying it.
    models: HashMap<RequestLabels, usize>,
    series: Vec<(SeriesLabels, ModelSeries)>,
    /// (model, target model) pairs and fairness ids with series of their own, each bounded
    /// ([`MAX_MODEL_PAIRS`], [`MAX_FAIRNESS_IDS`]).
    pairs: HashSet<(String, String)>,
    flows: FairnessLabels,
    /// endpoint → (profile, picks): `endpoint_picker_picks{endpoint,profile}`.
    picks: HashMap<String, Vec<(String, Count)>>,
    /// status → local replies: `endpoint_picker_local_replies{status}`.
    replies: Vec<(u32, Count)>,
    /// (fairness id, band priority, outcome) → queue waits of flow control.
    queue_waits: histogram::FlowKeyed,
    /// This writer's share of `inference_extension_prefix_indexer_size` (Wasm: one per VM).
    index_blocks: GaugeShare,
    last_flush_ms: u64,
}

/// The identity of a plugin instance (its allocation), as [`Timing`] reports it.
pub fn plugin_key(p: &Arc<dyn Plugin>) -> usize {
    Arc::as_ptr(p) as *const () as usize
}

impl Telemetry {
    /// Empty series for the plugins of `picker`.
    pub fn new(picker: &EndpointPicker) -> Self {
        let mut plugins: Vec<PluginSeries> = picker
            .plugins()
            .iter()
            .map(|(name, p)| PluginSeries {
                key: plugin_key(p),
                plugin_type: p.typed_name().type_name,
                name: name.clone(),
                by_point: Default::default(),
            })
            .collect();
        plugins.sort_by_key(|p| p.key);
        Telemetry {
            plugins,
            scheduler: Histogram::new(&families::SCHEDULER_E2E),
            request_processing: Histogram::new(&families::REQUEST_PROCESSING),
            response_processing: Histogram::new(&families::RESPONSE_PROCESSING),
            prefix_hit_ratio: Histogram::new(&families::PREFIX_HIT_RATIO),
            prefix_hit_bytes: Histogram::new(&families::PREFIX_HIT_BYTES),
            models: HashMap::new(),
            series: Vec::new(),
            pairs: HashSet::new(),
            flows: FairnessLabels::default(),
            picks: HashMap::new(),
            replies: Vec::new(),
            queue_waits: Vec::new(),
            index_blocks: GaugeShare::default(),
            last_flush_ms: 0,
        }
    }

    /// One request routed to `endpoint` by `profile` (a known pair costs no allocation).
    pub fn pick(&mut self, endpoint: &str, profile: &str) {
        let by_profile = match self.picks.get_mut(endpoint) {
            Some(v) => v,
            None => {
                let key = if self.picks.len() < MAX_PICK_ENDPOINTS {
                    endpoint
                } else {
                    OTHER_MODEL
                };
                self.picks.entry(key.to_string()).or_default()
            }
        };
        count_one(by_profile, profile, || profile.to_string());
    }

    /// One local reply with `status`.
    pub fn reply(&mut self, status: u32) {
        count_one(&mut self.replies, &status, || status);
    }

    /// One request of the flow `fairness_id` (`None`: the default flow) left the flow-control
    /// queue of band `priority` after `waited_ms` with `outcome` (upstream's names:
    /// `Dispatched`, `EvictedTTL`, `EvictedNoEndpoints`, `EvictedContextCancelled`,
    /// `RejectedCapacity`, `RejectedNoEndpoints`). A known flow costs no allocation.
    pub fn queue_wait(
        &mut self,
        fairness_id: Option<&str>,
        priority: i32,
        outcome: &'static str,
        waited_ms: u64,
    ) {
        let fairness = self.flows.label(fairness_id.unwrap_or(DEFAULT_FAIRNESS_ID));
        histogram::record_keyed(
            &mut self.queue_waits,
            (fairness, priority, outcome),
            &families::FLOW_QUEUE_DURATION,
            waited_ms.saturating_mul(1_000_000),
        );
    }

    /// One request labelled `labels` was scheduled to `endpoint` and went there: a successful
    /// scheduling attempt, and a request that counts in `inference_objective_running_requests`
    /// until [`Telemetry::record`] gets its record with [`RequestRecord::running`] set. A known
    /// label set and endpoint cost no allocation.
    pub fn started(&mut self, labels: &RequestLabels, endpoint: &str) {
        let Some(m) = self.model_series(Some(labels)) else {
            return;
        };
        m.running.started += 1;
        if let Some(c) = m.attempts.get_mut(endpoint) {
            c.total += 1;
            return;
        }
        let key = if m.attempts.len() < MAX_ATTEMPT_ENDPOINTS {
            endpoint
        } else {
            OTHER_MODEL
        };
        m.attempts.entry(key.to_string()).or_default().total += 1;
    }

    /// Adds one finished request.
    pub fn record(&mut self, r: &RequestRecord) {
        if let Some(ns) = r.scheduling_ns {
            self.scheduler.record(ns);
        }
        if let Some(ns) = r.request_processing_ns {
            self.request_processing.record(ns);
        }
        if let Some(ns) = r.response_processing_ns {
            self.response_processing.record(ns);
        }
        if let Some(hit) = r.prefix_hit {
            self.prefix_hit_bytes.record(hit.matched_bytes);
            if let Some(ratio) = hit.ratio() {
                self.prefix_hit_ratio.record(flow_control::ppm(ratio));
            }
        }
        for &(point, key, ns) in &r.plugins {
            if let Ok(i) = self.plugins.binary_search_by_key(&key, |p| p.key) {
                if let Some(slot) = self
                    .plugins
                    .get_mut(i)
                    .and_then(|p| p.by_point.get_mut(point.index()))
                {
                    slot.get_or_insert_with(|| Histogram::new(&families::PLUGIN_DURATION))
                        .record(ns);
                }
            }
        }
        if r.labels.is_none() && r.error_status.is_none() {
            return; // never parsed and not refused: a body-less request or a pass-through
        }
        let Some(m) = self.model_series(r.labels.as_ref()) else {
            return;
        };
        if r.running {
            m.running.ended += 1;
        }
        if r.scheduling_failed {
            m.failed_attempts.total += 1;
        }
        if let Some(name) = &r.rewrite {
            count_one(&mut m.rewrites, &**name, || name.clone());
        }
        if r.labels.is_some() {
            m.requests.total += 1;
            m.request_sizes.record(r.request_bytes);
        }
        if let Some(status) = r.error_status {
            let code = families::error_code(status);
            count_one(&mut m.errors, code, || code);
            return;
        }
        if let Some(ns) = r.duration_ns {
            m.duration.record(ns);
            m.response_sizes.record(r.response_bytes);
        }
        if r.chunk_gaps.iter().any(|&n| n > 0) {
            m.streaming_itl.record_counts(&r.chunk_gaps);
        }
        if let Some(first) = r.first_byte_ns {
            if let Some(h) = m.first_byte.get_mut(usize::from(r.streaming)) {
                h.record(first);
            }
        }
        if let Some((input, output)) = r.tokens {
            m.input_tokens.record(input);
            m.output_tokens.record(output);
            if let (Some(ns), true) = (r.duration_ns, output > 0) {
                m.ntpot.record(ns / output);
            }
            // llm-d's streaming TPOT: the decode time over the tokens after the first.
            if let (true, Some(ns), Some(first)) = (r.streaming, r.duration_ns, r.first_byte_ns) {
                if output > 1 && ns > first {
                    m.streaming_tpot.record((ns - first) / (output - 1));
                }
            }
        }
        if let Some(cached) = r.cached_tokens {
            m.cached_tokens.record(cached);
        }
        if let Some(o) = &r.latency {
            m.latency(o);
        }
    }

    /// The series of `labels` (`None`: a request refused before its body was read), created
    /// on first use within the bounds: a pair beyond [`MAX_MODEL_PAIRS`] counts as
    /// ([`OTHER_MODEL`], [`OTHER_MODEL`]), a fairness id beyond [`MAX_FAIRNESS_IDS`], or any new
    /// set beyond [`MAX_REQUEST_SERIES`], under the fairness id [`OTHER_MODEL`].
    fn model_series(&mut self, labels: Option<&RequestLabels>) -> Option<&mut ModelSeries> {
        let none = RequestLabels::default();
        let key = labels.unwrap_or(&none);
        let i = match self.models.get(key) {
            Some(&i) => i,
            None => {
                let bounded = self.bounded(key, labels.is_none());
                match self.models.get(&bounded) {
                    Some(&i) => i,
                    None => {
                        self.series
                            .push((SeriesLabels::of(&bounded), ModelSeries::new()));
                        self.models.insert(bounded, self.series.len() - 1);
                        self.series.len() - 1
                    }
                }
            }
        };
        self.series.get_mut(i).map(|(_, m)| m)
    }

    /// `key` as it may be kept (see [`Telemetry::model_series`]); admits its pair and fairness
    /// id when there is room. The key of a refused request (`unparsed`) is always kept.
    fn bounded(&mut self, key: &RequestLabels, unparsed: bool) -> RequestLabels {
        let pair = (key.model.clone(), key.target_model.clone());
        let (model, target_model) = if unparsed || self.pairs.contains(&pair) {
            pair
        } else if self.pairs.len() < MAX_MODEL_PAIRS {
            self.pairs.insert(pair.clone());
            pair
        } else {
            (OTHER_MODEL.to_string(), OTHER_MODEL.to_string())
        };
        let fairness_id = key
            .fairness_id
            .as_deref()
            .map(|f| self.flows.label(f).to_string());
        let mut bounded = RequestLabels {
            model,
            target_model,
            fairness_id,
            priority: key.priority,
        };
        if self.series.len() >= MAX_REQUEST_SERIES && !self.models.contains_key(&bounded) {
            bounded.fairness_id = Some(OTHER_MODEL.to_string());
        }
        bounded
    }

    /// Reports `blocks`, the size of this writer's own prefix index, as its share of
    /// `inference_extension_prefix_indexer_size`: a build with one index per worker VM sums
    /// them this way (the native build, one index per process, sets the gauge instead).
    pub fn share_index_blocks(&mut self, blocks: usize, sink: &mut dyn StatSink) {
        let now = i64::try_from(blocks).unwrap_or(i64::MAX);
        self.index_blocks
            .report(&families::PREFIX_INDEXER_SIZE, &[], now, sink);
    }

    /// Whether a flush is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_flush_ms) >= FLUSH_INTERVAL_MS
    }

    /// Sends every change since the previous flush to `sink`.
    pub fn flush(&mut self, now_ms: u64, sink: &mut dyn StatSink) {
        self.last_flush_ms = now_ms;
        let prune_idle = self.picks.len() > MAX_PICK_ENDPOINTS / 2;
        self.picks.retain(|endpoint, by_profile| {
            let mut picked = false;
            for (profile, c) in by_profile.iter_mut() {
                picked |= c.total != c.flushed;
                c.flush(
                    &families::PICKS,
                    &[endpoint.as_str(), profile.as_str()],
                    sink,
                );
            }
            picked || !prune_idle
        });
        for (status, c) in &mut self.replies {
            if c.total != c.flushed {
                c.flush(&families::LOCAL_REPLIES, &[&status.to_string()], sink);
            }
        }
        self.scheduler.flush(&[], sink);
        self.request_processing.flush(&[], sink);
        self.response_processing.flush(&[], sink);
        self.prefix_hit_ratio.flush(&[], sink);
        self.prefix_hit_bytes.flush(&[], sink);
        for ((fairness, priority, outcome), h) in &mut self.queue_waits {
            let p = priority.to_string();
            let n = h.flush(&[fairness, &p, outcome], sink);
            if n > 0 {
                sink.add(&families::FLOW_REQUESTS, &[outcome, &p], n);
            }
        }
        for p in &mut self.plugins {
            for (point, h) in ExtensionPoint::ALL.iter().zip(p.by_point.iter_mut()) {
                if let Some(h) = h {
                    h.flush(&[point.label(), p.plugin_type, &p.name], sink);
                }
            }
        }
        for (l, m) in &mut self.series {
            let (model, target) = (l.model.as_str(), l.target.as_str());
            let pair = [model, target];
            let labels = [model, target, l.fairness.as_str(), l.priority.as_str()];
            m.requests.flush(&families::REQUEST_TOTAL, &labels, sink);
            m.running.flush(&labels, sink);
            for (name, c) in &mut m.rewrites {
                c.flush(
                    &families::MODEL_REWRITE_DECISIONS,
                    &[name, model, target],
                    sink,
                );
            }
            m.failed_attempts.flush(
                &families::SCHEDULER_ATTEMPTS,
                &["failure", target, "", "", ""],
                sink,
            );
            let prune_idle = m.attempts.len() > MAX_ATTEMPT_ENDPOINTS / 2;
            m.attempts.retain(|endpoint, c| {
                let attempted = c.total != c.flushed;
                if attempted {
                    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, ""));
                    c.flush(
                        &families::SCHEDULER_ATTEMPTS,
                        &["success", target, host, "", port],
                        sink,
                    );
                }
                attempted || !prune_idle
            });
            for (code, c) in &mut m.errors {
                let [model, target, fairness, priority] = labels;
                c.flush(
                    &families::REQUEST_ERROR_TOTAL,
                    &[model, target, fairness, priority, code],
                    sink,
                );
            }
            for h in [
                &mut m.duration,
                &mut m.request_sizes,
                &mut m.response_sizes,
                &mut m.input_tokens,
                &mut m.output_tokens,
                &mut m.cached_tokens,
                &mut m.ntpot,
            ] {
                h.flush(&labels, sink);
            }
            m.streaming_tpot.flush(&labels, sink);
            m.streaming_itl.flush(&labels, sink);
            for (streaming, h) in ["false", "true"].into_iter().zip(&mut m.first_byte) {
                let [model, target, fairness, priority] = labels;
                h.flush(&[model, target, fairness, priority, streaming], sink);
            }
            for h in [&mut m.ttft, &mut m.tpot].into_iter().flatten() {
                h.flush(&pair, sink);
            }
            for p in &mut m.predictors {
                let labels = [&*p.plugin_name, p.plugin_type, model, target];
                p.predicted_ttft.flush(&labels, sink);
                p.predicted_tpot.flush(&labels, sink);
                for (c, kind) in [
                    (&mut p.ttft_violations, "ttft"),
                    (&mut p.tpot_violations, "tpot"),
                ] {
                    c.flush(
                        &families::SLO_VIOLATIONS,
                        &[&*p.plugin_name, p.plugin_type, model, target, kind],
                        sink,
                    );
                }
            }
        }
    }
}

/// The scraper's pool gauges: GIE's `inference_pool_*` series for the pool `name` (the
/// cluster), set from each published snapshot.
pub struct PoolGauges {
    name: String,
    /// Addresses reported by the previous snapshot (an endpoint that left drops to 0).
    reported: Vec<String>,
    info_set: bool,
}

impl PoolGauges {
    /// Gauges of the pool `name`.
    pub fn new(name: &str) -> Self {
        PoolGauges {
            name: name.to_string(),
            reported: Vec::new(),
            info_set: false,
        }
    }

    /// Sets the gauges from `snap` (and `inference_extension_info` the first time).
    pub fn publish(&mut self, snap: &PoolSnapshot, sink: &mut dyn StatSink) {
        if !self.info_set {
            set_info(sink);
            self.info_set = true;
        }
        let name = self.name.as_str();
        let fresh: Vec<&EndpointState> = snap.endpoints.iter().filter(|e| !e.stale).collect();
        sink.set(&families::POOL_READY, &[name], fresh.len() as u64);
        for e in &snap.endpoints {
            let queue = u64::from(e.endpoint.metrics.waiting_queue_size);
            sink.set(
                &families::POOL_POD_QUEUE,
                &[name, &e.endpoint.address],
                queue,
            );
        }
        for gone in &self.reported {
            if !snap.endpoints.iter().any(|e| &e.endpoint.address == gone) {
                sink.set(&families::POOL_POD_QUEUE, &[name, gone], 0);
            }
        }
        self.reported = snap
            .endpoints
            .iter()
            .map(|e| e.endpoint.address.clone())
            .collect();
        let n = fresh.len().max(1) as f64;
        let kv: f64 = fresh
            .iter()
            .map(|e| e.endpoint.metrics.kv_cache_usage.clamp(0.0, 1.0))
            .sum::<f64>()
            / n;
        let mean =
            |f: fn(&EndpointState) -> u32| fresh.iter().map(|e| f64::from(f(e))).sum::<f64>() / n;
        let queue = mean(|e| e.endpoint.metrics.waiting_queue_size);
        let running = mean(|e| e.endpoint.metrics.running_requests);
        // llm-d's pool spread: the sample standard deviation (n − 1, at least 1).
        let std_dev = |value: &dyn Fn(&EndpointState) -> f64, mean: f64| {
            let squares: f64 = fresh.iter().map(|e| (value(e) - mean).powi(2)).sum();
            (squares / (n - 1.0).max(1.0)).sqrt()
        };
        let kv_sd = std_dev(&|e| e.endpoint.metrics.kv_cache_usage.clamp(0.0, 1.0), kv);
        let queue_sd = std_dev(&|e| f64::from(e.endpoint.metrics.waiting_queue_size), queue);
        let running_sd = std_dev(&|e| f64::from(e.endpoint.metrics.running_requests), running);
        sink.set(&families::POOL_AVG_KV_PPM, &[name], flow_control::ppm(kv));
        sink.set(
            &families::POOL_AVG_QUEUE_MILLI,
            &[name],
            (queue * 1e3).round() as u64,
        );
        sink.set(
            &families::POOL_AVG_RUNNING_MILLI,
            &[name],
            (running * 1e3).round() as u64,
        );
        sink.set(
            &families::POOL_STD_DEV_KV_PPM,
            &[name],
            flow_control::ppm(kv_sd),
        );
        for (family, v) in [
            (&families::POOL_STD_DEV_QUEUE_MILLI, queue_sd),
            (&families::POOL_STD_DEV_RUNNING_MILLI, running_sd),
        ] {
            sink.set(family, &[name], (v * 1e3).round() as u64);
        }
    }
}

/// Sets `inference_extension_info{commit,build_ref,version} 1`.
pub fn set_info(sink: &mut dyn StatSink) {
    sink.set(
        &families::INFO,
        &[
            crate::version::COMMIT,
            crate::version::BUILD_REF,
            crate::version::VERSION,
        ],
        1,
    );
}

/// The Envoy `stats_tags` regex that turns `;<label>=<value>` in a Wasm stat name into the tag
/// `label` (the first group is removed from the name, the second is the value). `;label=`
/// cannot occur inside another label's segment, as values never contain `;` or `=`
/// ([`label_value`]).
pub fn stats_tag_regex(label: &str) -> String {
    format!("(;{label}=([^;]*))")
}

/// The bootstrap `stats_config` that gives the Wasm build's stats their labels (one tag rule
/// per label name of [`families`]); harmless for the native build, whose stats carry labels.
pub fn stats_config_yaml() -> String {
    let mut out = String::from(
        "stats_config:\n  # The picker's labelled series: the Wasm build writes `<name>;<label>=<value>` stat names,\n  # these rules turn each segment into a Prometheus label.\n  use_all_default_tags: true\n  stats_tags:\n",
    );
    for l in families::label_names() {
        out.push_str(&format!(
            "  - {{ tag_name: {l}, regex: '{}' }}\n",
            stats_tag_regex(l)
        ));
    }
    out
}

/// Makes a label value safe for every sink: at most 128 bytes, and none of the characters the
/// Wasm build uses to carry labels in stat names (`;`, `=`) or control characters.
pub fn label_value(v: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c == ';' || c == '=' || c.is_control();
    if v.len() <= 128 && !v.contains(bad) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out: String = v.chars().map(|c| if bad(c) { '_' } else { c }).collect();
    if out.len() > 128 {
        let mut end = 128;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests;
