//! Request → decision, with no host calls: the HTTP context gathers the inputs, calls this, and
//! applies the [`Outcome`]. Tested natively below and end to end in real Envoy (`tests/`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use scheduler_core::{
    Endpoint, EndpointPicker, FailureMode, PoolConfig, RequestError, RequestState, Rng,
    SchedulingResult,
};

use crate::picker::reply::Reply;
use crate::picker::subset::EndpointSubset;
use crate::telemetry::{RequestLabels, Timing};

/// What the filter does with one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Forward to the picked endpoints.
    Route(Route),
    /// Answer locally.
    Reply(Reply),
    /// Forward untouched, for the cluster's own load balancer (FailOpen without usable metrics).
    PassThrough,
    /// Wait in the flow-control queue (the admission hook said [`Gate::Wait`]).
    Queued,
}

/// What flow control says about a parsed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Schedule it now.
    Go,
    /// It waits in the queue.
    Wait,
    /// Refused (429 queue full, 503 no endpoints).
    Reject(RequestError),
}

/// A routing decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Value of `x-gateway-destination-endpoint`: `ip:port`, or an ordered comma list whose
    /// first entry is the primary endpoint ([`Route::primary`]).
    pub destination: String,
    /// The scheduling profile that chose it (`""` for a body-less request, which no profile
    /// schedules).
    pub profile: String,
    /// Further request headers plugins asked for (e.g. `x-prefiller-host-port`).
    pub headers: Vec<(String, String)>,
    /// The decision explained (pick, per-scorer scores, candidates, the best few), when asked
    /// for: the debug response header and the debug-level decision log.
    pub debug: Option<String>,
    /// The request body to forward instead of the client's: its `model` rewritten to the
    /// target model ([`scheduler_core::parse::model_field`]); `None` to forward it unchanged.
    pub body: Option<Vec<u8>>,
    /// With `pool.emitEndpointScores`: every endpoint the primary profile scored, as
    /// `(ip:port, total weighted score)`; empty otherwise (and for a body-less request, which
    /// no profile scores), so it costs nothing when off.
    pub endpoint_scores: Vec<(String, f64)>,
}

impl Route {
    /// True when a scheduling profile chose the destination (profile names are never empty:
    /// the loader refuses one); false for a body-less request, which the candidates take in
    /// turn ([`PickerCore::route_headers_only`]).
    pub fn scheduled(&self) -> bool {
        !self.profile.is_empty()
    }

    /// The primary endpoint: the first entry of [`Route::destination`].
    pub fn primary(&self) -> &str {
        self.destination
            .split_once(',')
            .map_or(self.destination.as_str(), |(first, _)| first)
    }
}

/// One request with its whole body, as the host gathered it.
pub struct RequestInput<'a> {
    /// `:path`.
    pub path: &'a str,
    /// Request headers (names lower-case), borrowed where the host holds them.
    pub headers: Vec<scheduler_core::model::request::Header<'a>>,
    /// The whole body.
    pub body: &'a [u8],
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// Explain the decision ([`Route::debug`]): the client asked for the debug header, or
    /// the decision log is on.
    pub explain: bool,
    /// Flow control's admission, asked once the body parsed with the request and the current
    /// candidates (before they are checked: an empty pool is a reason to wait, not to fail);
    /// `None` admits.
    pub admit: Option<&'a mut AdmitFn<'a>>,
    /// The request's endpoint subset hint, when it carries one (and the pool honours it):
    /// only the pool endpoints it admits are candidates.
    pub subset: Option<&'a EndpointSubset>,
}

/// Flow control's admission hook: the parsed request and the current candidates → [`Gate`].
pub type AdmitFn<'a> =
    dyn FnMut(&scheduler_core::model::request::InferenceRequest<'_>, &[Endpoint]) -> Gate + 'a;

/// The immutable part of a picker VM: the loaded scheduler and the pool settings.
pub struct PickerCore {
    /// The loaded picker.
    pub picker: EndpointPicker,
    /// The `pool` section.
    pub pool: PoolConfig,
    /// The next turn of [`Self::route_headers_only`] (shared by every worker in the native
    /// build, per VM in the Wasm build).
    headers_only_turn: AtomicUsize,
}

impl PickerCore {
    /// The picker and `pool` section of a loaded configuration.
    pub fn new(picker: EndpointPicker, pool: PoolConfig) -> Self {
        PickerCore {
            picker,
            pool,
            headers_only_turn: AtomicUsize::new(0),
        }
    }

    /// The reply for a declared `content-length` above the body limit, if it is.
    pub fn check_declared_length(&self, content_length: Option<&str>) -> Option<Reply> {
        let n: u64 = content_length?.trim().parse().ok()?;
        (n > self.pool.body_limit_bytes as u64).then(|| self.too_large())
    }

    /// The 503 reply when the body-buffer budget is spent.
    pub fn buffer_full(&self) -> Reply {
        Reply::from_error(&RequestError::BufferFull(self.pool.max_buffered_body_bytes))
    }

    /// The 413 reply.
    pub fn too_large(&self) -> Reply {
        Reply::from_error(&RequestError::BodyTooLarge(self.pool.body_limit_bytes))
    }

    /// No candidates: 503 with FailClose, pass-through with FailOpen.
    fn unusable(&self) -> Outcome {
        match self.pool.failure_mode {
            FailureMode::FailClose => Outcome::Reply(Reply::from_error(&RequestError::NoSnapshot)),
            FailureMode::FailOpen => Outcome::PassThrough,
        }
    }

    /// A request without a body (e.g. `GET /v1/models`): the next fresh endpoint in turn.
    /// With `explain`, the route carries its explanation ([`Route::debug`]); it is made only
    /// then, as this path is the filter's fixed per-request cost.
    ///
    /// A body-less request (a model list, a health probe) has no prompt to schedule on: the
    /// candidates take it in turn. Round robin, not a random pick, because it keeps each
    /// endpoint's upstream connections busy one request at a time: picked at random, two
    /// requests often land on one endpoint at once and Envoy opens another connection for the
    /// second (measured on GET with 16 endpoints and 16 client connections: 114 upstream
    /// connections against 66, and 85 % of plain Envoy's throughput against ~100 %).
    ///
    /// With a `subset` only the endpoints it admits take turns; none → 503.
    pub fn route_headers_only(
        &self,
        candidates: &[Endpoint],
        subset: Option<&EndpointSubset>,
        explain: bool,
    ) -> Outcome {
        let mut kept = Vec::new();
        let candidates = match restrict(candidates, subset, &mut kept) {
            Ok(c) => c,
            Err(reply) => return Outcome::Reply(reply),
        };
        let turn = self.headers_only_turn.fetch_add(1, Ordering::Relaxed);
        match candidates.get(turn.checked_rem(candidates.len()).unwrap_or(0)) {
            None => self.unusable(),
            Some(e) => Outcome::Route(Route {
                destination: e.address.clone(),
                profile: String::new(),
                headers: Vec::new(),
                debug: explain.then(|| {
                    format!(
                        "picked={} reason=no-body candidates={}",
                        e.address,
                        candidates.len()
                    )
                }),
                body: None,
                endpoint_scores: Vec::new(),
            }),
        }
    }

    /// A request with its whole body: parse, admit, schedule. With `explain`, the route
    /// carries the decision's explanation ([`Route::debug`]: scores of the best candidates).
    pub fn route_request(
        &self,
        candidates: &[Endpoint],
        input: RequestInput<'_>,
        rng: &mut dyn Rng,
        state: &mut RequestState,
        timing: &mut Timing<'_>,
    ) -> Outcome {
        let RequestInput {
            path,
            headers,
            body,
            now_ms,
            explain,
            admit,
            subset,
        } = input;
        if body.len() > self.pool.body_limit_bytes {
            return Outcome::Reply(self.too_large());
        }
        let mut request = match self.picker.parse_request(path, body, headers) {
            Ok(r) => r,
            Err(e) => return Outcome::Reply(Reply::from_error(&e)),
        };
        timing.record.rewrite = self.picker.rewrite_model(&mut request, rng);
        let fairness_id = self.picker.fairness_id(&request);
        timing.record.labels = Some(RequestLabels {
            model: request.model.as_ref().to_string(),
            target_model: request.target_model.as_ref().to_string(),
            // The default flow is labelled without a copy of its name.
            fairness_id: (fairness_id != scheduler_core::flowcontrol::DEFAULT_FAIRNESS_ID)
                .then(|| fairness_id.to_string()),
            priority: request.priority,
        });
        timing.record.streaming = request.stream;
        let mut kept = Vec::new();
        let candidates = match restrict(candidates, subset, &mut kept) {
            Ok(c) => c,
            Err(reply) => return Outcome::Reply(reply),
        };
        if let Some(admit) = admit {
            match admit(&request, candidates) {
                Gate::Go => {}
                Gate::Wait => return Outcome::Queued,
                Gate::Reject(e) => return Outcome::Reply(Reply::from_error(&e)),
            }
        }
        if candidates.is_empty() {
            return self.unusable();
        }
        request.debug = explain;
        request.emit_scores = self.pool.emit_endpoint_scores;
        match self
            .picker
            .schedule_observed(&request, candidates, now_ms, rng, state, timing)
        {
            Err(e) => {
                // GIE counts the scheduler's own failures, not admission's refusals.
                timing.record.scheduling_failed = matches!(e, RequestError::NoTargetEndpoint(_));
                Outcome::Reply(Reply::from_error(&e))
            }
            Ok(result) => {
                let mut outcome = self.route_for(result, candidates);
                timing.record.scheduling_failed = matches!(outcome, Outcome::Reply(_));
                if let Outcome::Route(r) = &mut outcome {
                    // The server must see the model it is to serve (GIE rewrites the body too).
                    if request.target_model != request.model {
                        r.body = scheduler_core::parse::model_field::rewrite_model(
                            body,
                            &request.target_model,
                        );
                    }
                }
                outcome
            }
        }
    }

    fn route_for(&self, mut result: SchedulingResult, candidates: &[Endpoint]) -> Outcome {
        let destination = self.picker.destination(&result, candidates);
        let Some(primary) = destination.split(',').next().filter(|p| !p.is_empty()) else {
            return Outcome::Reply(Reply::from_error(&RequestError::NoTargetEndpoint(
                "no target".into(),
            )));
        };
        let debug = result
            .profile_results
            .get(result.primary_profile)
            .and_then(|(_, r)| r.as_ref())
            .filter(|r| r.candidates > 0)
            .map(|_| debug_value(&result, primary, candidates));
        let endpoint_scores = result
            .primary()
            .map(|r| {
                r.scored
                    .iter()
                    .filter_map(|&(i, score)| Some((candidates.get(i)?.address.clone(), score)))
                    .collect()
            })
            .unwrap_or_default();
        // The result is done with: its profile name and headers move into the route.
        let profile = result
            .profile_results
            .get_mut(result.primary_profile)
            .map(|(name, _)| core::mem::take(name))
            .unwrap_or_default();
        Outcome::Route(Route {
            destination,
            profile,
            headers: core::mem::take(&mut result.headers),
            debug,
            body: None,
            endpoint_scores,
        })
    }
}

/// The candidates a request's subset hint leaves ([`EndpointSubset::restrict`], copies in
/// `kept`): all of them without a hint; a 503 reply ("failed to find endpoint candidates", as
/// GIE answers it) when the pool has endpoints but the hint admits none. An empty pool stays
/// empty, for the caller's own answer (wait for metrics, or the failure mode).
fn restrict<'a>(
    candidates: &'a [Endpoint],
    subset: Option<&EndpointSubset>,
    kept: &'a mut Vec<Endpoint>,
) -> Result<&'a [Endpoint], Reply> {
    match subset {
        Some(s) if !candidates.is_empty() => {
            let admitted = s.restrict(candidates, kept);
            if admitted.is_empty() {
                return Err(Reply::from_error(&RequestError::NoCandidates));
            }
            Ok(admitted)
        }
        _ => Ok(candidates),
    }
}

/// `picked=<ip:port> profile=<name> score=<total> <scorer>=<score>x<weight> … candidates=<after
/// filters>/<pool> top=<ip:port>:<total>(<score>,…);…` — the best few candidates with each
/// scorer's raw score in the order listed before.
fn debug_value(result: &SchedulingResult, primary: &str, pool: &[Endpoint]) -> String {
    let mut s = format!("picked={primary}");
    if let Some((name, Some(r))) = result.profile_results.get(result.primary_profile) {
        let _ = write!(s, " profile={name}");
        if let Some(total) = r.scores.first() {
            let _ = write!(s, " score={total:.3}");
        }
        for (scorer, score, weight) in &r.breakdown {
            let _ = write!(s, " {scorer}={score:.3}x{weight}");
        }
        let _ = write!(s, " candidates={}/{} top=", r.candidates, pool.len());
        for (i, (endpoint, total, scores)) in r.ranked.iter().enumerate() {
            let address = pool.get(*endpoint).map_or("?", |e| e.address.as_str());
            let _ = write!(s, "{}{address}:{total:.3}(", if i > 0 { ";" } else { "" });
            for (j, v) in scores.iter().enumerate() {
                let _ = write!(s, "{}{v:.2}", if j > 0 { "," } else { "" });
            }
            s.push(')');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::RequestRecord;
    use scheduler_core::{PickerConfig, Registry, SplitMix64};

    fn core(extra: &str) -> PickerCore {
        let json = format!(r#"{{"pool": {{"cluster": "c", "bodyLimitBytes": 1000 {extra}}}}}"#);
        let l = PickerConfig::load(&json, &Registry::with_builtins()).unwrap();
        PickerCore::new(l.picker, l.pool)
    }

    fn pool() -> Vec<Endpoint> {
        [(3, 0.2), (0, 0.1), (10, 0.2)]
            .iter()
            .enumerate()
            .map(|(i, &(q, kv))| {
                let mut e = Endpoint::new(format!("127.0.0.{}:8000", i + 1));
                e.metrics.waiting_queue_size = q;
                e.metrics.kv_cache_usage = kv;
                e.metrics.update_time_ms = 1000;
                e
            })
            .collect()
    }

    fn route(c: &PickerCore, eps: &[Endpoint], body: &str) -> Outcome {
        route_recorded(c, eps, body, &[]).0
    }

    /// Routes `body` with `headers`; also returns what the request left for the metrics.
    fn route_recorded(
        c: &PickerCore,
        eps: &[Endpoint],
        body: &str,
        headers: &[(&'static str, &'static str)],
    ) -> (Outcome, RequestRecord) {
        let mut record = RequestRecord::default();
        let outcome = c.route_request(
            eps,
            RequestInput {
                path: "/v1/completions",
                headers: headers.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
                body: body.as_bytes(),
                now_ms: 1000,
                explain: true,
                admit: None,
                subset: None,
            },
            &mut SplitMix64::new(1),
            &mut RequestState::new(),
            &mut Timing {
                clock: &|| 0,
                record: &mut record,
            },
        );
        (outcome, record)
    }

    /// A core from a whole picker JSON.
    fn core_of(json: &str) -> PickerCore {
        let l = PickerConfig::load(json, &Registry::with_builtins()).unwrap();
        PickerCore::new(l.picker, l.pool)
    }

    #[test]
    fn picks_by_metrics_and_reports_debug() {
        let c = core(r#", "debug": true"#);
        let Outcome::Route(r) = route(&c, &pool(), r#"{"model":"m","prompt":"hello"}"#) else {
            panic!()
        };
        assert_eq!(r.destination, "127.0.0.2:8000");
        let d = r.debug.unwrap();
        assert!(
            d.starts_with("picked=127.0.0.2:8000 profile=default score="),
            "{d}"
        );
        assert!(d.contains("queue-scorer=1.000x2"), "{d}");
    }

    #[test]
    fn endpoint_scores_cover_every_scored_endpoint_only_when_asked() {
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let Outcome::Route(off) = route(&core(""), &pool(), body) else {
            panic!()
        };
        assert!(off.endpoint_scores.is_empty(), "{:?}", off.endpoint_scores);
        let c = core(r#", "emitEndpointScores": true"#);
        let Outcome::Route(r) = route(&c, &pool(), body) else {
            panic!()
        };
        let addresses: Vec<&str> = r.endpoint_scores.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            addresses,
            ["127.0.0.1:8000", "127.0.0.2:8000", "127.0.0.3:8000"],
            "every candidate, not only the pick"
        );
        // The pick has the best total; the others score less (the default profile's weighted
        // sum: the empty queue and the lowest KV-cache use win).
        let score = |a: &str| r.endpoint_scores.iter().find(|(x, _)| x == a).unwrap().1;
        assert_eq!(r.destination, "127.0.0.2:8000");
        assert!(score("127.0.0.2:8000") > score("127.0.0.1:8000"));
        assert!(score("127.0.0.1:8000") > score("127.0.0.3:8000"));
        // A body-less request is not scored.
        let Outcome::Route(get) = c.route_headers_only(&pool(), None, false) else {
            panic!()
        };
        assert!(get.endpoint_scores.is_empty());
    }

    #[test]
    fn local_replies() {
        let c = core("");
        let cases = [("not json", 400), (r#"{"prompt":"x"}"#, 400)];
        for (body, status) in cases {
            let Outcome::Reply(r) = route(&c, &pool(), body) else {
                panic!("{body}")
            };
            assert_eq!(r.status, status, "{body}");
        }
        let big = format!(r#"{{"model":"m","prompt":"{}"}}"#, "x".repeat(2000));
        assert!(matches!(
            route(&c, &pool(), &big),
            Outcome::Reply(Reply { status: 413, .. })
        ));
        assert_eq!(
            c.check_declared_length(Some("5000")).map(|r| r.status),
            Some(413)
        );
        assert_eq!(c.check_declared_length(Some("10")), None);
        assert!(matches!(
            route(&c, &[], r#"{"model":"m","prompt":"x"}"#),
            Outcome::Reply(Reply { status: 503, .. })
        ));
    }

    #[test]
    fn a_scheduling_cycle_that_finds_no_endpoint_is_a_failed_attempt() {
        let c = core_of(
            r#"{"pool": {"cluster": "c"},
              "plugins": [{"type": "by-label", "parameters": {"label": "tier", "validValues": ["gold"]}},
                {"type": "max-score-picker"}],
              "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "by-label"},
                {"pluginRef": "max-score-picker"}]}]}"#,
        );
        let attempt = |eps: &[Endpoint]| {
            let (outcome, record) = route_recorded(&c, eps, r#"{"model":"m","prompt":"x"}"#, &[]);
            (outcome, record.scheduling_failed)
        };
        let (outcome, failed) = attempt(&pool());
        assert!(matches!(outcome, Outcome::Reply(_)), "{outcome:?}");
        assert!(failed, "no endpoint has tier=gold");
        let mut gold = pool();
        gold[1].labels.push(("tier".into(), "gold".into()));
        let (outcome, failed) = attempt(&gold);
        assert!(matches!(outcome, Outcome::Route(_)), "{outcome:?}");
        assert!(!failed);
        // Refused before any cycle (no candidates at all): not an attempt.
        assert!(!attempt(&[]).1);
    }

    #[test]
    fn a_model_rewrite_rule_picks_the_target_and_the_body_carries_it() {
        let c = core_of(
            r#"{"pool": {"cluster": "c"},
              "inferenceModelRewrites": [{"name": "canary", "rules": [
                {"matches": [{"model": {"value": "m"}}], "targets": [{"modelRewrite": "m-v2"}]}]}]}"#,
        );
        let send = |body: &str, headers: &[(&'static str, &'static str)]| {
            let (outcome, record) = route_recorded(&c, &pool(), body, headers);
            let Outcome::Route(r) = outcome else {
                panic!("{outcome:?}")
            };
            (r.body.map(|b| String::from_utf8(b).unwrap()), record)
        };
        let (body, record) = send(r#"{"model":"m","prompt":"hi"}"#, &[]);
        assert_eq!(body.as_deref(), Some(r#"{"model":"m-v2","prompt":"hi"}"#));
        let labels = record.labels.expect("labelled");
        assert_eq!((&*labels.model, &*labels.target_model), ("m", "m-v2"));
        assert_eq!(record.rewrite.as_deref(), Some("canary"));
        // The rule wins over the rewrite header (as in GIE); another model keeps its body.
        let (body, _) = send(
            r#"{"model":"m","prompt":"hi"}"#,
            &[("x-gateway-model-name-rewrite", "other")],
        );
        assert_eq!(body.as_deref(), Some(r#"{"model":"m-v2","prompt":"hi"}"#));
        let (body, record) = send(r#"{"model":"n","prompt":"hi"}"#, &[]);
        assert_eq!(body, None);
        assert_eq!(record.rewrite, None);
    }

    #[test]
    fn the_record_is_labelled_with_the_flow_and_the_objective_s_priority() {
        let c = core_of(
            r#"{"pool": {"cluster": "c"},
              "inferenceObjectives": [{"name": "critical", "priority": 10}]}"#,
        );
        let labels = |headers: &[(&'static str, &'static str)]| {
            let (_, record) =
                route_recorded(&c, &pool(), r#"{"model":"m","prompt":"hi"}"#, headers);
            record.labels.expect("labelled once parsed")
        };
        let tenant = labels(&[
            ("x-llm-d-inference-fairness-id", "tenant-a"),
            ("x-llm-d-inference-objective", "critical"),
        ]);
        assert_eq!(tenant.fairness_id.as_deref(), Some("tenant-a"));
        assert_eq!((tenant.fairness(), tenant.priority), ("tenant-a", 10));
        // GIE's older header names; an unknown objective is priority 0.
        let old = labels(&[
            ("x-gateway-inference-fairness-id", "tenant-b"),
            ("x-gateway-inference-objective", "unknown"),
        ]);
        assert_eq!((old.fairness(), old.priority), ("tenant-b", 0));
        // The default flow is named without a copy.
        let default = labels(&[]);
        assert_eq!(default.fairness_id, None);
        assert_eq!((default.fairness(), default.priority), ("default-flow", 0));
    }

    #[test]
    fn a_body_without_model_gets_the_generic_rule_s_target_or_a_400() {
        let with_rule = core_of(
            r#"{"pool": {"cluster": "c"},
              "inferenceModelRewrites": [{"name": "default-model", "rules": [
                {"targets": [{"modelRewrite": "base"}]}]}]}"#,
        );
        let (outcome, record) = route_recorded(
            &with_rule,
            &pool(),
            r#"{"prompt":"hi","stream":false}"#,
            &[],
        );
        let Outcome::Route(r) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            r.body.map(|b| String::from_utf8(b).unwrap()).as_deref(),
            Some(r#"{"model":"base","prompt":"hi","stream":false}"#)
        );
        let labels = record.labels.expect("labelled");
        assert_eq!((&*labels.model, &*labels.target_model), ("", "base"));
        // Without a rule: llm-d's 400; the rewrite header alone names the model too.
        let without = core("");
        let (outcome, _) = route_recorded(&without, &pool(), r#"{"prompt":"hi"}"#, &[]);
        assert!(
            matches!(&outcome, Outcome::Reply(Reply { status: 400, body, .. }) if body.contains("model_not_found_in_body")),
            "{outcome:?}"
        );
        let (outcome, _) = route_recorded(
            &without,
            &pool(),
            r#"{"prompt":"hi"}"#,
            &[("x-llm-d-model-name-rewrite", "m-lora")],
        );
        let Outcome::Route(r) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            r.body.map(|b| String::from_utf8(b).unwrap()).as_deref(),
            Some(r#"{"model":"m-lora","prompt":"hi"}"#)
        );
        // Rules that name only other models leave a model-less body refused.
        let exact_only = core_of(
            r#"{"pool": {"cluster": "c"},
              "inferenceModelRewrites": [{"name": "canary", "rules": [
                {"matches": [{"model": {"value": "m"}}], "targets": [{"modelRewrite": "m-v2"}]}]}]}"#,
        );
        let (outcome, _) = route_recorded(&exact_only, &pool(), r#"{"prompt":"hi"}"#, &[]);
        assert!(
            matches!(outcome, Outcome::Reply(Reply { status: 400, .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn fail_open_passes_through_without_candidates() {
        let c = core(r#", "failureMode": "FailOpen""#);
        assert_eq!(
            route(&c, &[], r#"{"model":"m","prompt":"x"}"#),
            Outcome::PassThrough
        );
        assert_eq!(c.route_headers_only(&[], None, false), Outcome::PassThrough);
        // A bad body is still a 400, whatever the failure mode.
        assert!(matches!(
            route(&c, &[], "{"),
            Outcome::Reply(Reply { status: 400, .. })
        ));
    }

    #[test]
    fn headers_only_takes_the_candidates_in_turn() {
        let c = core("");
        let eps = pool();
        let picks: Vec<String> = (0..6)
            .map(|_| match c.route_headers_only(&eps, None, false) {
                Outcome::Route(r) => r.destination,
                other => panic!("{other:?}"),
            })
            .collect();
        let order: Vec<String> = eps.iter().map(|e| e.address.clone()).collect();
        assert_eq!(picks[..3], order[..], "each candidate once, in order");
        assert_eq!(picks[3..], order[..], "then again");
        // A pool that shrank between requests is still served (the turn wraps).
        let Outcome::Route(r) = c.route_headers_only(&eps[..1], None, false) else {
            panic!()
        };
        assert_eq!(r.destination, eps[0].address);
    }
}
