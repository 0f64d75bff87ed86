//! `no-hit-lru-scorer` (llm-d): spreads *cold* requests — those no endpoint holds any prefix
//! block of — over the endpoints that took a cold request least recently, so new KV-cache
//! growth is spread evenly; warm requests get a neutral 0.5 everywhere and leave placement to
//! the prefix-cache scorer.
//!
//! Formula (llm-d-router `scheduling/scorer/nohitlru/no_hit_lru.go`): for a cold request over
//! `n` candidates, endpoints that never took a cold request come first in candidate order, then
//! the others from least to most recently used; the endpoint at rank `r` (0-based) scores
//! `1 − r / (n − 1)` (a single candidate scores 1). After scheduling, a cold request's primary
//! target, and the first target of a `prefill` profile, become the most recently used. The
//! recency list holds at most `lruSize` endpoints (default 1024).
//!
//! Coldness is read from the prefix match the `approx-prefix-cache-producer` writes (consumed,
//! so it is created when missing). Parameters: `lruSize`; `prefixPluginType`,
//! `prefixPluginName` are accepted; `prefixMatchInfoProducerName` names the producer whose match
//! to read (a `precise-prefix-cache-producer` declared earlier makes it read the precise match).
//! Category: Distribution.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::lock::Lock;
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, DataKey, Plugin, PreRequest, RequestState, Scorer, ScorerCategory, TypedName,
};
use crate::plugins::producer::approx_prefix_cache::PrefixMatch;

/// Plugin type name.
pub const TYPE: &str = "no-hit-lru-scorer";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    lru_size: i64,
    prefix_plugin_type: Option<String>,
    prefix_plugin_name: Option<String>,
    prefix_match_info_producer_name: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            lru_size: 1024,
            prefix_plugin_type: None,
            prefix_plugin_name: None,
            prefix_match_info_producer_name: None,
        }
    }
}

/// Builds a [`NoHitLruScorer`].
///
/// # Errors
/// Unknown fields.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let _accepted = (p.prefix_plugin_type, p.prefix_plugin_name);
    let key = crate::plugins::scorer::prefix_cache::match_key_for(
        p.prefix_match_info_producer_name.as_deref(),
        handle,
    );
    // As upstream: a size of 0 or less keeps the default.
    let size = if p.lru_size > 0 {
        usize::try_from(p.lru_size).unwrap_or(usize::MAX)
    } else {
        1024
    };
    Ok(Arc::new(NoHitLruScorer {
        typed_name: TypedName::new(TYPE, name),
        size,
        key,
        recency: Lock::new(Vec::new()),
    }))
}

/// See the module docs.
pub struct NoHitLruScorer {
    typed_name: TypedName,
    size: usize,
    /// Where the prefix match is read.
    key: DataKey,
    /// Endpoint addresses, least recently used first.
    recency: Lock<Vec<String>>,
}

/// True when none of `endpoints` (indexes) holds a prefix block of the request.
fn is_cold(
    cx: &CycleContext<'_>,
    key: DataKey,
    mut endpoints: impl Iterator<Item = usize>,
) -> bool {
    let Some(info) = cx.state.get::<Vec<PrefixMatch>>(key) else {
        return true;
    };
    !endpoints.any(|i| info.get(i).is_some_and(|m| m.matched_blocks > 0))
}

impl NoHitLruScorer {
    fn touch(&self, address: &str) {
        let mut r = self.recency.lock();
        if let Some(pos) = r.iter().position(|a| a == address) {
            let a = r.remove(pos);
            r.push(a);
        } else {
            r.push(address.into());
            if r.len() > self.size {
                r.remove(0);
            }
        }
    }
}

impl Plugin for NoHitLruScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        crate::plugins::scorer::prefix_cache::consumed(self.key)
    }
}

impl Scorer for NoHitLruScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Distribution
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        if !is_cold(cx, self.key, candidates.iter().copied()) {
            scores.iter_mut().for_each(|s| *s = 0.5);
            return;
        }
        let n = candidates.len();
        if n == 1 {
            scores.iter_mut().for_each(|s| *s = 1.0);
            return;
        }
        let recency = self.recency.lock();
        let position = |i: usize| {
            cx.endpoint(i)
                .and_then(|e| recency.iter().position(|a| *a == e.address))
        };
        let never_used = candidates
            .iter()
            .filter(|&&i| position(i).is_none())
            .count();
        let span = (n - 1) as f64;
        let mut next_unused = 0usize;
        // Used endpoints rank after every never-used one, in recency order among themselves.
        let mut used: Vec<(usize, usize)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(k, &i)| position(i).map(|p| (p, k)))
            .collect();
        used.sort_unstable();
        for (slot, &i) in scores.iter_mut().zip(candidates) {
            if position(i).is_none() {
                *slot = 1.0 - next_unused as f64 / span;
                next_unused += 1;
            }
        }
        for (rank, (_, k)) in used.into_iter().enumerate() {
            if let Some(slot) = scores.get_mut(k) {
                *slot = (1.0 - (never_used + rank) as f64 / span).max(0.0);
            }
        }
    }
}

impl PreRequest for NoHitLruScorer {
    fn pre_request(&self, cx: &CycleContext<'_>, result: &SchedulingResult, _: &mut RequestState) {
        if !is_cold(cx, self.key, 0..cx.endpoints.len()) {
            return;
        }
        let mut firsts: Vec<usize> = Vec::new();
        if let Some(&t) = result.primary_targets().first() {
            firsts.push(t);
        }
        for (name, r) in &result.profile_results {
            if name == "prefill" {
                if let Some(&t) = r.as_ref().and_then(|r| r.targets.first()) {
                    firsts.push(t);
                }
            }
        }
        for t in firsts {
            if let Some(e) = cx.endpoint(t) {
                self.touch(&e.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint::Endpoint;
    use crate::model::request::InferenceRequest;
    use crate::plugin::CycleState;
    use crate::plugins::producer::approx_prefix_cache::PREFIX_CACHE_MATCH_INFO;

    fn scorer() -> NoHitLruScorer {
        NoHitLruScorer {
            typed_name: TypedName::new(TYPE, "s"),
            size: 1024,
            key: PREFIX_CACHE_MATCH_INFO,
            recency: Lock::new(Vec::new()),
        }
    }

    fn scores(s: &NoHitLruScorer, eps: &[Endpoint], matched: Option<&[u32]>) -> Vec<f64> {
        let req = InferenceRequest::new("m", "p");
        let mut state = CycleState::new();
        if let Some(m) = matched {
            let info: Vec<PrefixMatch> = m
                .iter()
                .map(|&b| PrefixMatch {
                    matched_blocks: b,
                    total_blocks: 4,
                    block_size_tokens: 16,
                })
                .collect();
            state.put(PREFIX_CACHE_MATCH_INFO, info);
        }
        let cx = CycleContext {
            request: &req,
            endpoints: eps,
            state: &state,
            now_ms: 1,
            peer: None,
        };
        let candidates: Vec<usize> = (0..eps.len()).collect();
        let mut out = alloc::vec![0.0; eps.len()];
        s.score(&cx, &candidates, &mut out);
        out
    }

    #[test]
    fn cold_requests_go_to_the_least_recently_used() {
        let eps = [
            Endpoint::new("10.0.0.1:1"),
            Endpoint::new("10.0.0.2:1"),
            Endpoint::new("10.0.0.3:1"),
        ];
        let s = scorer();
        // Nobody used yet: candidate order, 1, 0.5, 0.
        assert_eq!(scores(&s, &eps, Some(&[0, 0, 0])), [1.0, 0.5, 0.0]);
        s.touch("10.0.0.1:1");
        s.touch("10.0.0.3:1");
        // Never used (2) first, then 1 (least recent), then 3 (most recent).
        assert_eq!(scores(&s, &eps, None), [0.5, 1.0, 0.0]);
        s.touch("10.0.0.1:1");
        assert_eq!(scores(&s, &eps, None), [0.0, 1.0, 0.5]);
        // A warm request: neutral everywhere.
        assert_eq!(scores(&s, &eps, Some(&[0, 2, 0])), [0.5, 0.5, 0.5]);
        // One candidate: 1.
        assert_eq!(scores(&s, &eps[..1], None), [1.0]);
    }

    #[test]
    fn the_recency_list_is_bounded() {
        let s = NoHitLruScorer {
            size: 2,
            ..scorer()
        };
        s.touch("a");
        s.touch("b");
        s.touch("c");
        assert_eq!(*s.recency.lock(), ["b", "c"]);
    }
}
