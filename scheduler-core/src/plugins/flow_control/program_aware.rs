//! `program-aware-fairness` (llm-d, Beta): fairness between the flows of a priority band by the
//! service each *program* (flow: the request's fairness id) has already received, not by
//! request count. A program that consumed many tokens waits behind one that consumed few, and
//! service fades with a half-life so a program that went idle competes almost afresh when it
//! returns (llm-d-router `fairness/program-aware`, strategy `las`, in our words).
//!
//! **Least attained service (LAS).** A program's attained service is the sum, over its finished
//! requests, of `prompt_tokens + 2 × completion_tokens` from the response's `usage` (output
//! tokens weighted double for their compute cost), multiplied by `2^(−Δt / half-life)` as wall
//! time passes (`lasHalfLifeSeconds`; 0 keeps it forever). To pick the next flow, every
//! non-empty flow of the band is scored
//!
//! `score = wS · (1 − norm(service)) + wW · norm(head wait)`
//!
//! with `norm(x) = (x − min) / (max − min)` over those flows (0.5 when all are equal), `wS =
//! lasWeightService` (0.8) and `wW = lasWeightHeadWait` (0.2); the highest score is served (a tie
//! goes to the older head). Min–max normalisation makes the score independent of the time it is
//! computed at, so services are compared decayed to a common instant and head waits by their
//! enqueue times.
//!
//! **Lifecycle.** PreRequest counts the request in flight for its program; the end of the
//! response adds its usage to the program's service (decayed to then) and records the
//! completion. A request that ends without a response (reset) is released when its state is
//! dropped. Programs with nothing in flight and no completion for `evictionTtlSeconds` (3600) are
//! forgotten, checked every `evictionSweepSeconds` (300) from the request path.
//!
//! **Bounds.** Programs are named by the client (the fairness-id header), so at most
//! [`MAX_PROGRAMS`] are tracked, each by its id cut to 128 bytes as the flow queues cut it (the
//! two must agree: a longer id would otherwise never find its service and always count as
//! unserved). A program first seen while the table is full is not tracked and counts as
//! unserved, as any new program does; sweeps make room again.
//!
//! Parameters: `strategy` (`las`, the only one), `lasWeightService`, `lasWeightHeadWait`,
//! `lasHalfLifeSeconds`, `evictionTtlSeconds`, `evictionSweepSeconds` (> 0); negative values are
//! errors. Upstream's Prometheus series (per-program average wait, attained service, Jain's
//! index) are not exported here.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use hashbrown::HashMap;
use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::flowcontrol::queues::cut_fairness_id;
use crate::flowcontrol::{DEFAULT_FAIRNESS_ID, FAIRNESS_ID};
use crate::lock::Lock;
use crate::model::response::{BodyChunk, ResponseInfo};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, FairnessPolicy, FlowHead, OrderingPolicy, Plugin, PreRequest, RequestState,
    ResponseBody, TypedName,
};

/// Plugin type name.
pub const TYPE: &str = "program-aware-fairness";

/// Weight of an input (prompt) token in attained service.
const WEIGHT_INPUT_TOKEN: f64 = 1.0;
/// Weight of an output (completion) token in attained service.
const WEIGHT_OUTPUT_TOKEN: f64 = 2.0;

/// Parameters (upstream's defaults; an explicit 0 is kept, as Go's decoder keeps it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    strategy: String,
    eviction_ttl_seconds: f64,
    eviction_sweep_seconds: f64,
    las_weight_service: f64,
    las_weight_head_wait: f64,
    las_half_life_seconds: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            strategy: String::from("las"),
            eviction_ttl_seconds: 3600.0,
            eviction_sweep_seconds: 300.0,
            las_weight_service: 0.8,
            las_weight_head_wait: 0.2,
            las_half_life_seconds: 60.0,
        }
    }
}

/// Builds a [`ProgramAware`].
///
/// # Errors
/// Unknown fields; a strategy other than `las`; a negative weight, half-life or TTL; a sweep
/// interval ≤ 0.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    Ok(Arc::new(ProgramAware::new(name, params)?))
}

impl ProgramAware {
    /// A policy named `name` with `params` (see [`factory`]).
    ///
    /// # Errors
    /// As [`factory`].
    pub fn new(name: &str, params: Option<&serde_json::Value>) -> Result<Self, ConfigError> {
        let p: Params = parse_params(params)?;
        if !(p.strategy.is_empty() || p.strategy == "las") {
            return Err(ConfigError::invalid(
                FieldPath::key("strategy"),
                format!(
                    "unknown scoring strategy '{}': only 'las' is supported",
                    p.strategy
                ),
            ));
        }
        for (field, v) in [
            ("evictionTtlSeconds", p.eviction_ttl_seconds),
            ("lasWeightService", p.las_weight_service),
            ("lasWeightHeadWait", p.las_weight_head_wait),
            ("lasHalfLifeSeconds", p.las_half_life_seconds),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(ConfigError::invalid(FieldPath::key(field), "must be >= 0"));
            }
        }
        if !(p.eviction_sweep_seconds > 0.0 && p.eviction_sweep_seconds.is_finite()) {
            return Err(ConfigError::invalid(
                FieldPath::key("evictionSweepSeconds"),
                "must be > 0",
            ));
        }
        Ok(ProgramAware {
            typed_name: TypedName::new(TYPE, name),
            weight_service: p.las_weight_service,
            weight_head_wait: p.las_weight_head_wait,
            half_life_ms: p.las_half_life_seconds * 1000.0,
            eviction_ttl_ms: (p.eviction_ttl_seconds * 1000.0) as u64,
            sweep_ms: (p.eviction_sweep_seconds * 1000.0) as u64,
            programs: Arc::new(Lock::new(Programs::default())),
        })
    }
}

/// What is known of one program.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Program {
    /// Attained service (weighted tokens) as of `anchor_ms`.
    service: f64,
    /// When `service` was last decayed; `None` before the first completion.
    anchor_ms: Option<u64>,
    /// Requests dispatched and not finished.
    in_flight: u64,
    /// Last completion (or first dispatch), ms since the Unix epoch.
    last_seen_ms: u64,
}

impl Program {
    /// The service decayed to `at_ms` (never grows; 0 half-life: no decay).
    fn service_at(&self, at_ms: u64, half_life_ms: f64) -> f64 {
        match self.anchor_ms {
            Some(a) if half_life_ms > 0.0 && at_ms > a => {
                self.service * libm::exp2(-((at_ms - a) as f64) / half_life_ms)
            }
            _ => self.service,
        }
    }
}

/// Programs tracked at once (each ~200 bytes at most: ~20 MiB).
pub const MAX_PROGRAMS: usize = 100_000;

#[derive(Default)]
struct Programs {
    by_id: HashMap<String, Program>,
    last_sweep_ms: u64,
}

impl Programs {
    /// `program`'s entry, made if there is room (see [`MAX_PROGRAMS`]).
    fn tracked(&mut self, program: &str) -> Option<&mut Program> {
        if !self.by_id.contains_key(program) && self.by_id.len() >= MAX_PROGRAMS {
            return None;
        }
        Some(self.by_id.entry_ref(program).or_default())
    }
}

/// See the module docs.
pub struct ProgramAware {
    typed_name: TypedName,
    weight_service: f64,
    weight_head_wait: f64,
    /// Half-life of attained service, ms (0: none).
    half_life_ms: f64,
    /// Idle programs are forgotten after this long (0: never).
    eviction_ttl_ms: u64,
    sweep_ms: u64,
    programs: Arc<Lock<Programs>>,
}

impl ProgramAware {
    /// The attained service of `program` decayed to `at_ms` (0 for an unknown program).
    pub fn attained_service(&self, program: &str, at_ms: u64) -> f64 {
        self.programs
            .lock()
            .by_id
            .get(program)
            .map_or(0.0, |p| p.service_at(at_ms, self.half_life_ms))
    }

    /// Programs currently tracked.
    pub fn tracked_programs(&self) -> usize {
        self.programs.lock().by_id.len()
    }

    fn sweep(&self, programs: &mut Programs, now_ms: u64) {
        if self.eviction_ttl_ms == 0
            || now_ms < programs.last_sweep_ms.saturating_add(self.sweep_ms)
        {
            return;
        }
        programs.last_sweep_ms = now_ms;
        let ttl = self.eviction_ttl_ms;
        programs
            .by_id
            .retain(|_, p| p.in_flight > 0 || now_ms.saturating_sub(p.last_seen_ms) <= ttl);
    }
}

/// Range normalisation as upstream's LAS strategy does it: 0.5 when every value is equal.
fn normalize(v: f64, min: f64, max: f64) -> f64 {
    if max == min {
        0.5
    } else {
        (v - min) / (max - min)
    }
}

impl Plugin for ProgramAware {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_fairness_policy(&self) -> Option<&dyn FairnessPolicy> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn as_response_body(&self) -> Option<&dyn ResponseBody> {
        Some(self)
    }
}

impl FairnessPolicy for ProgramAware {
    fn pick(
        &self,
        flows: &[FlowHead<'_>],
        ordering: &dyn OrderingPolicy,
        _: &mut Option<String>,
    ) -> Option<usize> {
        let programs = self.programs.lock();
        // Services decayed to one common instant (the latest anchor), which min–max
        // normalisation makes equivalent to decaying all of them to "now".
        let at = flows
            .iter()
            .filter(|f| f.head.is_some())
            .filter_map(|f| programs.by_id.get(f.id).and_then(|p| p.anchor_ms))
            .max()
            .unwrap_or(0);
        let mut lo = (f64::INFINITY, u64::MAX);
        let mut hi = (f64::NEG_INFINITY, 0u64);
        let entry = |f: &FlowHead<'_>| -> Option<(f64, u64)> {
            let h = f.head?;
            let s = programs
                .by_id
                .get(f.id)
                .map_or(0.0, |p| p.service_at(at, self.half_life_ms));
            Some((s, h.enqueued_ms))
        };
        for (s, enq) in flows.iter().filter_map(entry) {
            lo = (lo.0.min(s), lo.1.min(enq));
            hi = (hi.0.max(s), hi.1.max(enq));
        }
        let mut best: Option<(usize, f64)> = None;
        for (i, f) in flows.iter().enumerate() {
            let (Some((s, enq)), Some(h)) = (entry(f), f.head) else {
                continue;
            };
            // The oldest head has the longest wait: normalise enqueue times reversed.
            let wait = normalize(hi.1 as f64 - enq as f64, 0.0, hi.1 as f64 - lo.1 as f64);
            let score = self.weight_service * (1.0 - normalize(s, lo.0, hi.0))
                + self.weight_head_wait * wait;
            let better = match best {
                None => true,
                Some((b, bs)) => {
                    score > bs
                        || (score == bs
                            && flows
                                .get(b)
                                .and_then(|bf| bf.head)
                                .is_some_and(|bh| ordering.less(h, bh)))
                }
            };
            if better {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Held in the request state from dispatch to the end of the response; releases the program's
/// in-flight count when dropped (also for a request that never completes).
struct InFlight {
    programs: Arc<Lock<Programs>>,
    program: String,
    /// Whether PreRequest counted it (not when the table was full then).
    counted: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        if let Some(p) = self.programs.lock().by_id.get_mut(&self.program) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}

impl PreRequest for ProgramAware {
    fn pre_request(&self, cx: &CycleContext<'_>, _: &SchedulingResult, state: &mut RequestState) {
        let program = String::from(cut_fairness_id(
            cx.state
                .get::<String>(FAIRNESS_ID)
                .map_or(DEFAULT_FAIRNESS_ID, String::as_str),
        ));
        let counted = {
            let mut programs = self.programs.lock();
            self.sweep(&mut programs, cx.now_ms);
            programs.tracked(&program).map(|p| {
                p.in_flight += 1;
                p.last_seen_ms = p.last_seen_ms.max(cx.now_ms);
            })
        }
        .is_some();
        state.put(
            &self.typed_name.name,
            InFlight {
                programs: self.programs.clone(),
                program,
                counted,
            },
        );
    }
}

impl ResponseBody for ProgramAware {
    fn response_body(
        &self,
        state: &mut RequestState,
        response: &ResponseInfo<'_>,
        chunk: &BodyChunk,
    ) {
        if !chunk.end_of_stream {
            return;
        }
        let Some(flight) = state.take::<InFlight>(&self.typed_name.name) else {
            return;
        };
        let now = response.now_ms;
        {
            let mut programs = self.programs.lock();
            if let Some(p) = programs.tracked(&flight.program) {
                if let Some(u) = chunk.usage {
                    let cost = WEIGHT_INPUT_TOKEN * u.prompt_tokens as f64
                        + WEIGHT_OUTPUT_TOKEN * u.completion_tokens as f64;
                    p.service = p.service_at(now, self.half_life_ms) + cost;
                    p.anchor_ms = Some(p.anchor_ms.map_or(now, |a| a.max(now)));
                }
                p.last_seen_ms = p.last_seen_ms.max(now);
            }
        }
        drop(flight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::model::response::Usage;
    use crate::plugin::{CycleState, QueuedRequest};
    use crate::plugins::flow_control::fcfs;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    fn build(params: serde_json::Value) -> ProgramAware {
        ProgramAware::new(TYPE, Some(&params)).unwrap()
    }

    /// Dispatches one request of `program` at `at_ms` and completes it with `usage` at `done_ms`.
    fn serve(p: &ProgramAware, program: &str, at_ms: u64, done_ms: u64, usage: Option<Usage>) {
        let req = InferenceRequest::new("m", "");
        let mut cycle = CycleState::new();
        cycle.put(FAIRNESS_ID, String::from(program));
        let eps: Vec<Endpoint> = vec![];
        let cx = CycleContext {
            request: &req,
            endpoints: &eps,
            state: &cycle,
            now_ms: at_ms,
            peer: None,
        };
        let mut state = RequestState::new();
        p.as_pre_request()
            .unwrap()
            .pre_request(&cx, &SchedulingResult::default(), &mut state);
        let info = ResponseInfo {
            status: 200,
            served_endpoint: None,
            now_ms: done_ms,
        };
        let chunk = BodyChunk {
            first: true,
            end_of_stream: true,
            usage,
        };
        p.as_response_body()
            .unwrap()
            .response_body(&mut state, &info, &chunk);
    }

    fn usage(prompt: u64, completion: u64) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: None,
        })
    }

    fn pick(p: &ProgramAware, flows: &[(&str, Option<u64>)]) -> Option<usize> {
        let heads: Vec<Option<QueuedRequest>> = flows
            .iter()
            .map(|(_, enq)| {
                enq.map(|e| QueuedRequest {
                    enqueued_ms: e,
                    ..Default::default()
                })
            })
            .collect();
        let views: Vec<FlowHead<'_>> = flows
            .iter()
            .zip(&heads)
            .map(|((id, _), h)| FlowHead {
                id,
                head: h.as_ref(),
            })
            .collect();
        let o = fcfs::factory("o", None, &Handle::new(&[])).unwrap();
        p.as_fairness_policy()
            .unwrap()
            .pick(&views, o.as_ordering_policy().unwrap(), &mut None)
    }

    #[test]
    fn attained_service_weights_output_double_and_halves_per_half_life() {
        let p = build(serde_json::json!({}));
        serve(&p, "a", 0, 1_000, usage(100, 50));
        let pa = &p;
        assert_eq!(pa.attained_service("a", 1_000), 200.0);
        assert!((pa.attained_service("a", 61_000) - 100.0).abs() < 1e-9);
        serve(&p, "a", 61_000, 61_000, usage(10, 0));
        assert!((pa.attained_service("a", 61_000) - 110.0).abs() < 1e-9);
        assert_eq!(pa.attained_service("unknown", 0), 0.0);
        let no_decay = build(serde_json::json!({"lasHalfLifeSeconds": 0}));
        serve(&no_decay, "a", 0, 0, usage(100, 0));
        assert_eq!(no_decay.attained_service("a", 10_000_000), 100.0);
    }

    /// A fairness id longer than the queues keep is cut alike here, so the flow finds its
    /// service (before, such a program always counted as unserved and always went first).
    #[test]
    fn a_long_fairness_id_finds_its_service() {
        let p = build(serde_json::json!({}));
        let long = "t".repeat(300);
        serve(&p, &long, 0, 1_000, usage(10_000, 1_000));
        serve(&p, "light", 0, 1_000, usage(10, 1));
        let flow_id = cut_fairness_id(&long);
        assert_eq!(p.attained_service(flow_id, 1_000), 12_000.0);
        assert_eq!(pick(&p, &[(flow_id, Some(9)), ("light", Some(9))]), Some(1));
    }

    /// Client-chosen ids cannot grow the table past [`MAX_PROGRAMS`]; a program beyond it counts
    /// as unserved, and tracked ones keep their service.
    #[test]
    fn the_program_table_is_bounded() {
        let p = build(serde_json::json!({}));
        serve(&p, "first", 0, 0, usage(100, 0));
        for i in 1..MAX_PROGRAMS + 10 {
            serve(&p, &i.to_string(), 0, 0, usage(1, 0));
        }
        assert_eq!(p.tracked_programs(), MAX_PROGRAMS);
        assert_eq!(p.attained_service("first", 0), 100.0);
        assert_eq!(p.attained_service(&(MAX_PROGRAMS + 5).to_string(), 0), 0.0);
    }

    #[test]
    fn the_least_served_program_goes_first() {
        let p = build(serde_json::json!({}));
        serve(&p, "heavy", 0, 1_000, usage(10_000, 1_000));
        serve(&p, "light", 0, 1_000, usage(10, 1));
        // The heavy program's head is older, yet the light one is served: 0.8·1 + 0.2·0 beats
        // 0.8·0 + 0.2·1.
        assert_eq!(pick(&p, &[("heavy", Some(5)), ("light", Some(9))]), Some(1));
        // A program never served counts as 0 service: with heads of the same age it goes
        // before both.
        assert_eq!(
            pick(
                &p,
                &[("heavy", Some(1)), ("light", Some(1)), ("new", Some(1))]
            ),
            Some(2)
        );
        // Empty flows are skipped.
        assert_eq!(pick(&p, &[("light", None), ("heavy", Some(5))]), Some(1));
        assert_eq!(pick(&p, &[("light", None)]), None);
    }

    #[test]
    fn equal_service_goes_to_the_older_head() {
        let p = build(serde_json::json!({}));
        assert_eq!(pick(&p, &[("a", Some(20)), ("b", Some(10))]), Some(1));
        assert_eq!(pick(&p, &[("a", Some(10)), ("b", Some(10))]), Some(0));
        // Head wait alone decides with lasWeightService 0.
        let w = build(serde_json::json!({"lasWeightService": 0.0, "lasWeightHeadWait": 1.0}));
        serve(&w, "a", 0, 0, usage(1_000, 0));
        assert_eq!(pick(&w, &[("a", Some(1)), ("b", Some(2))]), Some(0));
    }

    #[test]
    fn decay_lets_a_returning_program_compete_again() {
        let p = build(serde_json::json!({"lasHalfLifeSeconds": 10}));
        // "old" consumed a lot long ago; "recent" a little just now.
        serve(&p, "old", 0, 0, usage(10_000, 0));
        serve(&p, "recent", 200_000, 200_000, usage(100, 0));
        // 10,000 halved 20 times is ~0.01 < 100: "old" is now the less served.
        assert_eq!(pick(&p, &[("recent", Some(1)), ("old", Some(2))]), Some(1));
    }

    #[test]
    fn in_flight_is_released_and_idle_programs_are_evicted() {
        let p = build(serde_json::json!({"evictionTtlSeconds": 10, "evictionSweepSeconds": 1}));
        let pa = &p;
        // A request whose response never ends: dropping its state releases the count.
        {
            let req = InferenceRequest::new("m", "");
            let cycle = CycleState::new();
            let cx = CycleContext {
                request: &req,
                endpoints: &[],
                state: &cycle,
                now_ms: 0,
                peer: None,
            };
            let mut state = RequestState::new();
            p.as_pre_request()
                .unwrap()
                .pre_request(&cx, &SchedulingResult::default(), &mut state);
            assert_eq!(
                pa.programs
                    .lock()
                    .by_id
                    .get(DEFAULT_FAIRNESS_ID)
                    .unwrap()
                    .in_flight,
                1
            );
        }
        assert_eq!(
            pa.programs
                .lock()
                .by_id
                .get(DEFAULT_FAIRNESS_ID)
                .unwrap()
                .in_flight,
            0
        );
        serve(&p, "a", 1_000, 2_000, usage(1, 1));
        assert_eq!(pa.tracked_programs(), 2);
        // 20 s later both are idle past the TTL: the next dispatch sweeps them.
        serve(&p, "b", 22_000, 22_000, usage(1, 1));
        let mut ids: Vec<String> = pa.programs.lock().by_id.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, vec![String::from("b")]);
    }

    #[test]
    fn bad_parameters_are_errors() {
        for (params, field) in [
            (serde_json::json!({"strategy": "wfq"}), "strategy"),
            (
                serde_json::json!({"lasWeightService": -1}),
                "lasWeightService",
            ),
            (
                serde_json::json!({"lasHalfLifeSeconds": -1}),
                "lasHalfLifeSeconds",
            ),
            (
                serde_json::json!({"evictionTtlSeconds": -5}),
                "evictionTtlSeconds",
            ),
            (
                serde_json::json!({"evictionSweepSeconds": 0}),
                "evictionSweepSeconds",
            ),
        ] {
            let err = factory(TYPE, Some(&params), &Handle::new(&[]))
                .err()
                .unwrap();
            assert_eq!(err.path.to_string(), field, "{err}");
        }
    }
}
