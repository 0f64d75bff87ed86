//! `session-affinity-filter` (llm-d, Alpha): pins the requests of a session to the endpoint
//! that served it, as a hard constraint: when that endpoint is a candidate it is the only one
//! left; with no session, or the session's endpoint gone, every candidate stays (the filter
//! never empties the list). llm-d-router `filter/sessionaffinity`, in our words.
//!
//! Strategies (`strategy`):
//! - `encoded_endpoint_header` (default, stateless): the request header
//!   `encodedEndpointHeaderConfig.header` (default `x-session-token`) holds base64 of the
//!   endpoint that served the session (here its `ip:port`; upstream names the pod); the filter
//!   writes it on every response so the client can send it back.
//! - `session_id` (stateful): the session id comes from `sessionIdConfig.sources` in order
//!   (each a request `header`; default `x-session-id`); the filter keeps a binding session →
//!   endpoint, refreshed on every request, moved to the new pick when the bound endpoint is no
//!   longer in the pool, dropped after `evictionTtlSeconds` (300) unused (swept every
//!   `evictionSweepSeconds`, 10, from the request path). Nothing is written to the client.
//!   The session id comes from the client, so what it may cost is bounded here (upstream bounds
//!   it by the TTL alone): bindings are keyed by a seeded 64-bit hash of the id, not the id
//!   itself (a header value can be tens of KiB), and at most `sessionIdConfig.maxBindings`
//!   (ours, default [`DEFAULT_MAX_BINDINGS`]; ~80 bytes each) are held. When the table is full a
//!   new session is routed as if it had none until a sweep frees room, and the next sweep logs
//!   how many went unbound. Known sessions keep their binding.
//!   `attribute` sources (values other plugins publish) are accepted and skipped with a warning:
//!   request attributes of other plugins do not reach this filter here.
//! - `profileName`: the profile whose pick is remembered (e.g. `prefill`); default the primary.
//!
//! `multicluster-session-affinity-filter` is the same filter under llm-d's multi-cluster name.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use base64::Engine as _;
use hashbrown::HashMap;
use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::lock::Lock;
use crate::model::response::ResponseInfo;
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, Filter, Plugin, PreRequest, RequestState, ResponseHeader, TypedName,
};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "session-affinity-filter";
/// llm-d's multi-cluster name of the same filter.
pub const MULTICLUSTER_TYPE: &str = "multicluster-session-affinity-filter";
/// Default header of `encoded_endpoint_header`.
pub const DEFAULT_TOKEN_HEADER: &str = "x-session-token";
/// Default header of `session_id`.
pub const DEFAULT_SESSION_ID_HEADER: &str = "x-session-id";
/// Default `sessionIdConfig.maxBindings`: sessions bound at once (~8 MiB at most).
pub const DEFAULT_MAX_BINDINGS: usize = 100_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    strategy: Option<String>,
    encoded_endpoint_header_config: TokenConfig,
    session_id_config: SessionIdConfig,
    profile_name: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TokenConfig {
    header: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct SessionIdConfig {
    sources: Vec<Source>,
    eviction_ttl_seconds: f64,
    eviction_sweep_seconds: f64,
    /// Ours: the most sessions bound at once (0: [`DEFAULT_MAX_BINDINGS`]).
    max_bindings: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Source {
    header: String,
    attribute: String,
    producer: String,
}

enum Strategy {
    Token { header: String },
    SessionId(SessionIds),
}

struct SessionIds {
    headers: Vec<String>,
    ttl_ms: u64,
    sweep_ms: u64,
    max_bindings: usize,
    /// Seed of the session-id hash (the host's entropy: clients cannot aim for collisions).
    seed: u64,
    bindings: Lock<Bindings>,
}

#[derive(Default)]
struct Bindings {
    /// xxh3 of the session id → (endpoint address, last used ms).
    by_id: HashMap<u64, (String, u64)>,
    last_sweep_ms: u64,
    /// New sessions left unbound since the last sweep because the table was full.
    refused: u64,
}

/// Builds a [`SessionAffinityFilter`] (either type name).
///
/// # Errors
/// Unknown fields; an unknown strategy; a source with both or neither of `header` and
/// `attribute`; a TTL or sweep interval ≤ 0 (explicitly set).
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let strategy = match p.strategy.as_deref().unwrap_or("encoded_endpoint_header") {
        "encoded_endpoint_header" => Strategy::Token {
            header: if p.encoded_endpoint_header_config.header.is_empty() {
                DEFAULT_TOKEN_HEADER.into()
            } else {
                p.encoded_endpoint_header_config.header.to_ascii_lowercase()
            },
        },
        "session_id" => {
            let c = p.session_id_config;
            let at = FieldPath::key("sessionIdConfig");
            let mut headers = Vec::new();
            for (i, s) in c.sources.iter().enumerate() {
                if s.header.is_empty() == s.attribute.is_empty() {
                    return Err(ConfigError::invalid(
                        at.clone().with_key("sources").with_index(i),
                        "exactly one of header or attribute must be set",
                    ));
                }
                if s.header.is_empty() {
                    log::warn!(
                        "{TYPE} '{name}': session id source attribute '{}' (producer '{}') is not read by the proxy; skipped",
                        s.attribute, s.producer
                    );
                } else {
                    headers.push(s.header.to_ascii_lowercase());
                }
            }
            if c.sources.is_empty() {
                headers.push(DEFAULT_SESSION_ID_HEADER.into());
            }
            let secs = |v: f64, default: f64, field: &str| -> Result<u64, ConfigError> {
                let v = if v == 0.0 { default } else { v };
                if !(v > 0.0 && v.is_finite()) {
                    return Err(ConfigError::invalid(
                        at.clone().with_key(field),
                        "must be > 0",
                    ));
                }
                Ok((v * 1000.0) as u64)
            };
            Strategy::SessionId(SessionIds {
                headers,
                ttl_ms: secs(c.eviction_ttl_seconds, 300.0, "evictionTtlSeconds")?,
                sweep_ms: secs(c.eviction_sweep_seconds, 10.0, "evictionSweepSeconds")?,
                max_bindings: match c.max_bindings {
                    0 => DEFAULT_MAX_BINDINGS,
                    n => n,
                },
                seed: handle.services().entropy,
                bindings: Lock::new(Bindings::default()),
            })
        }
        other => {
            return Err(ConfigError::invalid(
                FieldPath::key("strategy"),
                format!("must be encoded_endpoint_header or session_id, got '{other}'"),
            ))
        }
    };
    Ok(Arc::new(SessionAffinityFilter {
        typed_name: TypedName::new(TYPE, name),
        strategy,
        profile: (!p.profile_name.is_empty()).then_some(p.profile_name),
    }))
}

/// Builds the filter under its multi-cluster name.
///
/// # Errors
/// As [`factory`].
pub fn multicluster_factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    factory(name, params, handle)
}

/// See the module docs.
pub struct SessionAffinityFilter {
    typed_name: TypedName,
    strategy: Strategy,
    /// Profile whose pick is remembered (`None`: the primary).
    profile: Option<String>,
}

/// The endpoint this request's session names, if any.
fn session_target(f: &SessionAffinityFilter, cx: &CycleContext<'_>) -> Option<String> {
    match &f.strategy {
        Strategy::Token { header } => {
            let token = cx.request.header(header)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(token.trim())
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        Strategy::SessionId(s) => {
            let id = s.key(s.session_id(cx)?);
            s.bindings.lock().by_id.get(&id).map(|(a, _)| a.clone())
        }
    }
}

impl SessionIds {
    fn key(&self, session_id: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(session_id.as_bytes(), self.seed)
    }

    fn session_id<'r>(&self, cx: &'r CycleContext<'_>) -> Option<&'r str> {
        self.headers.iter().find_map(|h| {
            cx.request
                .header(h)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    }
}

impl SessionAffinityFilter {
    /// The address the profile of interest picked.
    fn picked<'a>(&self, cx: &'a CycleContext<'_>, result: &SchedulingResult) -> Option<&'a str> {
        let r = match &self.profile {
            Some(p) => result.profile(p),
            None => result.primary(),
        }?;
        let i = *r.targets.first()?;
        cx.endpoint(i).map(|e| e.address.as_str())
    }

    /// Sessions bound (session-id strategy).
    pub fn bound_sessions(&self) -> usize {
        match &self.strategy {
            Strategy::SessionId(s) => s.bindings.lock().by_id.len(),
            Strategy::Token { .. } => 0,
        }
    }
}

impl Plugin for SessionAffinityFilter {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_filter(&self) -> Option<&dyn Filter> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn as_response_header(&self) -> Option<&dyn ResponseHeader> {
        matches!(self.strategy, Strategy::Token { .. }).then_some(self as &dyn ResponseHeader)
    }
}

impl Filter for SessionAffinityFilter {
    fn filter(
        &self,
        cx: &CycleContext<'_>,
        candidates: &[usize],
        keep: &mut [bool],
        _: &mut dyn Rng,
    ) {
        let Some(target) = session_target(self, cx) else {
            return;
        };
        let Some(at) = candidates
            .iter()
            .position(|&i| cx.endpoint(i).is_some_and(|e| e.address == target))
        else {
            return;
        };
        for (j, k) in keep.iter_mut().enumerate() {
            *k = j == at;
        }
    }
}

/// The address the response header names (token strategy with a profile).
struct Picked(String);

impl PreRequest for SessionAffinityFilter {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let Some(picked) = self.picked(cx, result) else {
            return;
        };
        match &self.strategy {
            Strategy::Token { .. } => {
                if self.profile.is_some() {
                    state.put(&self.typed_name.name, Picked(picked.to_string()));
                }
            }
            Strategy::SessionId(s) => {
                let Some(id) = s.session_id(cx).map(|id| s.key(id)) else {
                    return;
                };
                let now = cx.now_ms;
                let mut b = s.bindings.lock();
                if now >= b.last_sweep_ms.saturating_add(s.sweep_ms) {
                    b.last_sweep_ms = now;
                    let ttl = s.ttl_ms;
                    b.by_id
                        .retain(|_, (_, seen)| now.saturating_sub(*seen) <= ttl);
                    if b.refused > 0 {
                        log::warn!(
                            "{}: {} new sessions were not bound (the table holds at most {} sessions, sessionIdConfig.maxBindings)",
                            self.typed_name.name, b.refused, s.max_bindings
                        );
                        b.refused = 0;
                    }
                }
                let in_pool = |a: &str| cx.endpoints.iter().any(|e| e.address == a);
                let full = b.by_id.len() >= s.max_bindings;
                match b.by_id.get_mut(&id) {
                    Some((addr, seen)) if addr == picked || !in_pool(addr) => {
                        // Same endpoint: refresh. Bound endpoint gone from the pool: move.
                        *addr = picked.to_string();
                        *seen = now;
                    }
                    Some((_, seen)) => {
                        // Routed elsewhere while the bound endpoint still serves (another
                        // filter dropped it this time): keep the binding.
                        *seen = now;
                    }
                    None if full => b.refused += 1,
                    None => {
                        b.by_id.insert(id, (picked.to_string(), now));
                    }
                }
            }
        }
    }
}

impl ResponseHeader for SessionAffinityFilter {
    fn response_header(
        &self,
        state: &mut RequestState,
        response: &ResponseInfo<'_>,
        out: &mut Vec<(String, String)>,
    ) {
        let Strategy::Token { header } = &self.strategy else {
            return;
        };
        let picked = state.take::<Picked>(&self.typed_name.name).map(|p| p.0);
        let Some(addr) = picked.or_else(|| response.served_endpoint.map(String::from)) else {
            return;
        };
        let token = base64::engine::general_purpose::STANDARD.encode(addr);
        out.push((header.clone(), token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::model::result::ProfileRunResult;
    use crate::plugin::CycleState;
    use crate::rng::SplitMix64;
    use alloc::vec;

    fn eps() -> Vec<Endpoint> {
        (1..=3)
            .map(|i| Endpoint::new(format!("10.0.0.{i}:8000")))
            .collect()
    }

    /// Runs the filter for a request with `headers`; returns the kept indices.
    fn kept(
        f: &Arc<dyn Plugin>,
        eps: &[Endpoint],
        headers: &[(&str, &str)],
        now_ms: u64,
    ) -> Vec<usize> {
        let mut req = InferenceRequest::new("m", "");
        for (k, v) in headers {
            req.headers
                .push((k.to_string().into(), v.to_string().into()));
        }
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: eps,
            state: &state,
            now_ms,
            peer: None,
        };
        let cands: Vec<usize> = (0..eps.len()).collect();
        let mut keep = vec![true; eps.len()];
        f.as_filter()
            .unwrap()
            .filter(&cx, &cands, &mut keep, &mut SplitMix64::new(1));
        cands.into_iter().filter(|&i| keep[i]).collect()
    }

    /// The PreRequest of a request with `headers` routed to `picked`.
    fn served(
        f: &Arc<dyn Plugin>,
        eps: &[Endpoint],
        headers: &[(&str, &str)],
        picked: usize,
        now_ms: u64,
    ) -> RequestState {
        let mut req = InferenceRequest::new("m", "");
        for (k, v) in headers {
            req.headers
                .push((k.to_string().into(), v.to_string().into()));
        }
        let state = CycleState::new();
        let cx = CycleContext {
            request: &req,
            endpoints: eps,
            state: &state,
            now_ms,
            peer: None,
        };
        let result = SchedulingResult {
            profile_results: vec![(
                "default".into(),
                Some(ProfileRunResult {
                    targets: vec![picked],
                    ..Default::default()
                }),
            )],
            primary_profile: 0,
            headers: vec![],
        };
        let mut rs = RequestState::new();
        f.as_pre_request()
            .unwrap()
            .pre_request(&cx, &result, &mut rs);
        rs
    }

    fn build(params: serde_json::Value) -> Arc<dyn Plugin> {
        factory(TYPE, Some(&params), &Handle::new(&[])).unwrap()
    }

    #[test]
    fn encoded_endpoint_header_pins_and_is_written_back() {
        let f = build(serde_json::json!({}));
        let eps = eps();
        let token = base64::engine::general_purpose::STANDARD.encode("10.0.0.2:8000");
        assert_eq!(kept(&f, &eps, &[("x-session-token", &token)], 1), vec![1]);
        assert_eq!(
            kept(&f, &eps, &[], 1),
            vec![0, 1, 2],
            "no session: all stay"
        );
        let gone = base64::engine::general_purpose::STANDARD.encode("10.9.9.9:8000");
        assert_eq!(
            kept(&f, &eps, &[("x-session-token", &gone)], 1),
            vec![0, 1, 2]
        );
        assert_eq!(
            kept(&f, &eps, &[("x-session-token", "%%%")], 1),
            vec![0, 1, 2]
        );
        let mut out = vec![];
        let info = ResponseInfo {
            status: 200,
            served_endpoint: Some("10.0.0.3:8000"),
            now_ms: 2,
        };
        f.as_response_header()
            .unwrap()
            .response_header(&mut RequestState::new(), &info, &mut out);
        let want = base64::engine::general_purpose::STANDARD.encode("10.0.0.3:8000");
        assert_eq!(out, vec![(String::from("x-session-token"), want)]);
    }

    #[test]
    fn session_ids_bind_refresh_move_and_expire() {
        let f = build(serde_json::json!({"strategy": "session_id",
            "sessionIdConfig": {"sources": [{"header": "X-Conversation"}], "evictionTtlSeconds": 10, "evictionSweepSeconds": 1}}));
        let mut eps = eps();
        let h = [("x-conversation", "c-1")];
        assert_eq!(
            kept(&f, &eps, &h, 0),
            vec![0, 1, 2],
            "unbound: no preference"
        );
        served(&f, &eps, &h, 2, 0);
        assert_eq!(kept(&f, &eps, &h, 1_000), vec![2]);
        // Routed elsewhere while 10.0.0.3 still serves: the binding stays.
        served(&f, &eps, &h, 0, 1_000);
        assert_eq!(kept(&f, &eps, &h, 1_000), vec![2]);
        // 10.0.0.3 leaves the pool: the next pick becomes the binding.
        eps.pop();
        assert_eq!(kept(&f, &eps, &h, 2_000), vec![0, 1]);
        served(&f, &eps, &h, 1, 2_000);
        assert_eq!(kept(&f, &eps, &h, 2_000), vec![1]);
        // Unused for longer than the TTL: swept by the next request's PreRequest.
        served(&f, &eps, &[("x-conversation", "c-2")], 0, 20_000);
        assert_eq!(kept(&f, &eps, &h, 20_000), vec![0, 1]);
        assert!(
            f.as_response_header().is_none(),
            "nothing is written to the client"
        );
    }

    /// Client-chosen session ids cannot grow the table past `maxBindings`: a new session is
    /// then routed unbound, known ones keep their endpoint, and a sweep makes room again.
    #[test]
    fn session_table_is_bounded() {
        let f = build(serde_json::json!({"strategy": "session_id",
            "sessionIdConfig": {"evictionTtlSeconds": 10, "evictionSweepSeconds": 1, "maxBindings": 3}}));
        let eps = eps();
        let long = "x".repeat(50_000);
        for (i, id) in ["a", "b", long.as_str(), "d", "e"].iter().enumerate() {
            served(&f, &eps, &[("x-session-id", id)], i % 3, 0);
        }
        assert_eq!(kept(&f, &eps, &[("x-session-id", "a")], 0), vec![0]);
        assert_eq!(
            kept(&f, &eps, &[("x-session-id", long.as_str())], 0),
            vec![2]
        );
        assert_eq!(
            kept(&f, &eps, &[("x-session-id", "d")], 0),
            vec![0, 1, 2],
            "the table was full: unbound"
        );
        // After the TTL the next request's sweep frees the table and the session binds.
        served(&f, &eps, &[("x-session-id", "d")], 1, 20_000);
        assert_eq!(kept(&f, &eps, &[("x-session-id", "d")], 20_000), vec![1]);
        assert_eq!(
            kept(&f, &eps, &[("x-session-id", "a")], 20_000),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn bad_parameters() {
        for (p, field) in [
            (serde_json::json!({"strategy": "cookie"}), "strategy"),
            (
                serde_json::json!({"strategy": "session_id", "sessionIdConfig": {"sources": [{"header": "a", "attribute": "b"}]}}),
                "sessionIdConfig.sources[0]",
            ),
            (
                serde_json::json!({"strategy": "session_id", "sessionIdConfig": {"evictionTtlSeconds": -1}}),
                "sessionIdConfig.evictionTtlSeconds",
            ),
        ] {
            let e = factory(TYPE, Some(&p), &Handle::new(&[])).err().unwrap();
            assert_eq!(e.path.to_string(), field, "{e}");
        }
    }
}
