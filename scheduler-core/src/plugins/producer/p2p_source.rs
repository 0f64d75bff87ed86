//! `p2p-source-producer` (llm-d, Alpha): names, in the `x-kv-cache-source-host-port` request
//! header, another endpoint that already holds more of the prompt's prefix than the endpoint
//! chosen to compute it, so the server side (llm-d's routing sidecar with vLLM's offloading
//! connector and a peer-to-peer tier) pulls those KV blocks from it instead of recomputing them
//! (llm-d-router `requestcontrol/dataproducer/p2psource`, read at the commit in
//! `testdata/upstream/README.md`; our own reading, in our words).
//!
//! Before scheduling, from the prefix-match info of a prefix producer (each candidate's matched
//! blocks × block size = its cached prompt tokens, T):
//! - the band: the candidates with `T > 0` and `T + blockSize ≥ max T` (within one block of the
//!   best, so a replica one block behind still shares the pull traffic);
//! - one of them sampled with weight `1 / (1 + waiting queue)` (the scraped queue length), at a
//!   point in `[0, 1)` fixed by a hash of the request id: the same request always names the
//!   same source, and busy sources are chosen less.
//!
//! After scheduling: the computing endpoint is the first target of the profile named
//! `prefillProfileName` when that profile ran and picked one (disaggregated serving), else the
//! primary target. The header is set to the sampled source's address when it is not the
//! computing endpoint and holds at least `minCachedTokenDelta` more cached tokens than it;
//! otherwise the client's own value of the header, if any, is removed (an empty header value in
//! [`crate::model::result::SchedulingResult::headers`]). Our prefix producers report no
//! per-tier (GPU/CPU) counts, so every cached block counts as pullable; upstream counts only
//! CPU-tier blocks when its producer reports tiers. With `precise-prefix-cache-producer` the
//! matched blocks are its medium-weighted score (a CPU block counts 0.8 by default), the same on
//! both sides of the comparison.
//!
//! Parameters: `prefixMatchInfoProducerName` (the producer to read, as for
//! `prefix-cache-scorer`; default the approximate producer), `minCachedTokenDelta` (tokens,
//! ≥ 1, default 1), `prefillProfileName` (default `prefill`).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{ConfigError, FieldPath};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, Plugin, PreRequest, ProduceContext,
    RequestState, TypedName,
};
use crate::plugins::producer::approx_prefix_cache::PrefixMatch;
use crate::plugins::scorer::prefix_cache::match_key_for;

/// Plugin type name.
pub const TYPE: &str = "p2p-source-producer";

/// The request header naming the endpoint to pull KV blocks from (`host:port`).
pub const KV_SOURCE_HEADER: &str = "x-kv-cache-source-host-port";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    prefix_match_info_producer_name: Option<String>,
    min_cached_token_delta: i64,
    prefill_profile_name: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            prefix_match_info_producer_name: None,
            min_cached_token_delta: 1,
            prefill_profile_name: String::new(),
        }
    }
}

/// Builds a [`P2pSourceProducer`].
///
/// # Errors
/// Unknown fields; `minCachedTokenDelta` < 1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    handle: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let min_delta = u64::try_from(p.min_cached_token_delta)
        .ok()
        .filter(|&d| d >= 1)
        .ok_or_else(|| {
            ConfigError::invalid(FieldPath::key("minCachedTokenDelta"), "must be ≥ 1")
        })?;
    let key = match_key_for(p.prefix_match_info_producer_name.as_deref(), handle);
    let prefill = p.prefill_profile_name.trim();
    Ok(Arc::new(P2pSourceProducer {
        typed_name: TypedName::new(TYPE, name),
        key,
        min_delta,
        prefill_profile: String::from(if prefill.is_empty() {
            "prefill"
        } else {
            prefill
        }),
    }))
}

/// See the module docs.
pub struct P2pSourceProducer {
    typed_name: TypedName,
    key: DataKey,
    /// Tokens.
    min_delta: u64,
    prefill_profile: String,
}

/// The source sampled before scheduling, kept for the pre-request hook.
struct Source {
    /// Pool index.
    endpoint: usize,
    /// Its cached prompt tokens.
    tokens: u64,
}

/// Cached prompt tokens of one match.
fn tokens(m: &PrefixMatch) -> u64 {
    u64::from(m.matched_blocks) * u64::from(m.block_size_tokens)
}

/// A point in `[0, 1)` fixed by the request id.
fn spread(request_id: &str) -> f64 {
    (xxh3_64(request_id.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

impl P2pSourceProducer {
    fn sample(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        info: &[PrefixMatch],
    ) -> Option<Source> {
        let held = |i: usize| {
            info.get(i)
                .map(|m| (tokens(m), u64::from(m.block_size_tokens)))
        };
        let best = candidates
            .iter()
            .filter_map(|&i| held(i).map(|(t, _)| t))
            .max()
            .filter(|&t| t > 0)?;
        // (pool index, tokens, weight) of the band, in candidate order.
        let band = || {
            candidates.iter().filter_map(move |&i| {
                let (t, block) = held(i)?;
                let waiting = cx.endpoints.get(i)?.metrics.waiting_queue_size;
                (t > 0 && t + block >= best).then(|| (i, t, 1.0 / (1.0 + f64::from(waiting))))
            })
        };
        let total: f64 = band().map(|(.., w)| w).sum();
        let mut at = spread(&cx.request.request_id) * total;
        let mut last = None;
        for (i, t, w) in band() {
            last = Some(Source {
                endpoint: i,
                tokens: t,
            });
            if at < w {
                break;
            }
            at -= w;
        }
        last
    }
}

impl Plugin for P2pSourceProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn consumes(&self) -> &'static [DataKey] {
        crate::plugins::scorer::prefix_cache::consumed(self.key)
    }
}

impl DataProducer for P2pSourceProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        candidates: &[usize],
        cycle: &mut CycleState,
        state: &mut RequestState,
    ) {
        let Some(info) = cycle.get::<Vec<PrefixMatch>>(self.key) else {
            return;
        };
        if let Some(source) = self.sample(cx, candidates, info) {
            state.put(&self.typed_name.name, source);
        }
    }
}

impl PreRequest for P2pSourceProducer {
    fn pre_request(&self, _: &CycleContext<'_>, _: &SchedulingResult, _: &mut RequestState) {}

    fn request_headers(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &RequestState,
        out: &mut Vec<(String, String)>,
    ) {
        let computing = result
            .profile(&self.prefill_profile)
            .and_then(|r| r.targets.first().copied())
            .or_else(|| result.primary_targets().first().copied());
        let source = state
            .get::<Source>(&self.typed_name.name)
            .zip(computing)
            .filter(|(s, c)| s.endpoint != *c)
            .and_then(|(s, c)| {
                let theirs = cx
                    .state
                    .get::<Vec<PrefixMatch>>(self.key)
                    .and_then(|info| info.get(c))
                    .map_or(0, tokens);
                (s.tokens >= theirs + self.min_delta)
                    .then(|| cx.endpoint(s.endpoint))
                    .flatten()
            });
        match source {
            Some(e) => out.push((String::from(KV_SOURCE_HEADER), e.address.clone())),
            // Only a client's own value needs removing (a removal is a header mutation).
            None if cx.request.header(KV_SOURCE_HEADER).is_some() => {
                out.push((String::from(KV_SOURCE_HEADER), String::new()));
            }
            None => {}
        }
    }
}
