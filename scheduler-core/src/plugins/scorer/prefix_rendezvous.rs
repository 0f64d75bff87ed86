//! `prefix-rendezvous-scorer`: the same endpoint for the same prompt prefix in every proxy — every
//! gateway replica and every Envoy worker — without shared state, within a bounded load.
//!
//! Each proxy's prefix index only knows the requests that proxy sent, so two replicas send the
//! same system prompt to different servers and the fleet caches it twice. This scorer derives
//! the choice from the prompt itself instead:
//!
//! 1. **Key**: `xxh64(target model ‖ 0 ‖ cache_salt ‖ 0 ‖ first prefixTokens·4 bytes of the
//!    prompt)` (4 characters per token, GIE's estimate), so prompts that share their beginning (a
//!    system prompt) share a key.
//! 2. **Rendezvous (highest-random-weight) hashing** (Thaler & Ravishankar, 1996): each candidate
//!    gets the weight `xxh64(address, seed = key)`; the highest weight wins. Removing an endpoint
//!    moves only the keys it won; adding one takes only the keys it now wins. Every proxy that sees
//!    the same candidates computes the same order.
//! 3. **Bounded load** (Mirrokni, Thorup & Zadimoghaddam, "Consistent Hashing with Bounded
//!    Loads", SODA 2018): an endpoint whose load exceeds `(1 + loadFactor) × mean + 1` is passed
//!    over: it ranks after every endpoint within the bound. A hot prefix therefore spills to its
//!    next endpoints in rendezvous order instead of melting one server. (The `+ 1` is the paper's
//!    ceiling: it keeps an idle pool from excluding everyone.)
//! 4. **Which load** (`loadAverage`, default true): the scraper's load average of each endpoint
//!    (waiting plus running requests, exponentially averaged over ~5 s,
//!    [`crate::model::endpoint::EndpointMetrics::load_average`]), and each key passes over an
//!    endpoint at its own point between `(1 + ε/2) × mean + 1` and `(1 + 3ε/2) × mean + 1` (from a
//!    second hash of key and address), so an overloaded endpoint sheds its keys a few at a time —
//!    the same keys in every proxy. With `loadAverage: false` the bound is on the last scraped
//!    sample, one threshold for every key. The last sample crosses the bound and falls back many
//!    times a second, each proxy sees those crossings at other moments, and every crossing sends
//!    requests (and a copy of the prefix) to the next endpoints: across 2 Wasm replicas × 4
//!    workers prefixes ended on 1.94–2.06 servers each, against 1.31–1.44 with the average
//!    (hit rate 96.7–97.1 % → 98.8–99.2 % of one picker's, TTFT p90 1.28–1.36× → 1.07–1.16×;
//!    `BENCHMARKS.md`). The price is a slower answer to one hot prefix: it moves between servers
//!    whole as the average crosses its threshold, where the last-sample bound splits it request
//!    by request (Zipf 1.2: TTFT p99 4.7× one picker's, against ~2.6×); `loadAverage: false` for
//!    such traffic. An endpoint whose metrics carry no average (not from the scraper) is bounded
//!    on its last sample.
//!
//! Score: the endpoint ranked `r` (0 = winner) scores `0.5^r`, so the winner stands out and the
//! fallbacks keep their order when filters or other scorers rule the winner out. It is meant to
//! run beside `prefix-cache-scorer`: a prefix this proxy already placed still scores there, and
//! for a cold prefix this scorer decides where it lands, the same way in every proxy.
//!
//! **Two (or more) choices.** With few prefixes per endpoint one endpoint often wins a large
//! share of them (16 system prompts hashed over 4 servers: the busiest wins ~6, and takes ~40 %
//! of the requests), and its queue sets the fleet's TTFT tail. With `choices: d` the first `d`
//! endpoints of the order all score 1 (the rest `0.5^(r − d + 1)`), so the load scorers beside
//! this one choose among them: the "power of d choices" (Mitzenmacher, "The Power of Two Choices
//! in Randomized Load Balancing", 2001), which brings the busiest endpoint's share close to the
//! mean. Each prefix is then cached on at most `d` endpoints — every proxy still agrees on which
//! `d` — at the price of up to `d − 1` more cold misses per prefix, and of the copies a busy
//! moment spills beyond them (at `loadFactor` ≤ 1 prefixes still reached a third endpoint).
//! Measured across 2 Wasm replicas × 4 workers (`BENCHMARKS.md`): with `d` = 2 the busiest
//! server's share fell from 44 % to 26–32 %, but the hit rate fell 3–5 points and TTFT p90 did
//! not improve, so the default stays 1.
//!
//! Parameters: `prefixTokens` (tokens of the prompt that form the key, default 64, > 0),
//! `loadFactor` (ε ≥ 0, default 0.25), `choices` (d ≥ 1, default 1), `loadAverage` (default
//! true). Category: Affinity.

use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;
use xxhash_rust::xxh64::{xxh64, Xxh64};

use crate::error::{ConfigError, FieldPath};
use crate::model::endpoint::Endpoint;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, Plugin, Scorer, ScorerCategory, TypedName};
use crate::plugins::producer::approx_prefix_cache::CHARS_PER_TOKEN;

/// Plugin type name.
pub const TYPE: &str = "prefix-rendezvous-scorer";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    prefix_tokens: i64,
    load_factor: f64,
    choices: i64,
    load_average: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            prefix_tokens: 64,
            load_factor: 0.25,
            choices: 1,
            load_average: true,
        }
    }
}

/// Builds a [`PrefixRendezvousScorer`].
///
/// # Errors
/// Unknown fields; `prefixTokens` ≤ 0; `loadFactor` negative or not finite; `choices` < 1.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    if p.prefix_tokens <= 0 {
        return Err(ConfigError::invalid(
            FieldPath::key("prefixTokens"),
            "must be > 0",
        ));
    }
    if !(p.load_factor.is_finite() && p.load_factor >= 0.0) {
        return Err(ConfigError::invalid(
            FieldPath::key("loadFactor"),
            "must be a finite number ≥ 0",
        ));
    }
    if p.choices < 1 {
        return Err(ConfigError::invalid(
            FieldPath::key("choices"),
            "must be ≥ 1",
        ));
    }
    Ok(Arc::new(PrefixRendezvousScorer {
        typed_name: TypedName::new(TYPE, name),
        prefix_bytes: usize::try_from(p.prefix_tokens)
            .unwrap_or(usize::MAX / CHARS_PER_TOKEN)
            .saturating_mul(CHARS_PER_TOKEN),
        load_factor: p.load_factor,
        choices: usize::try_from(p.choices).unwrap_or(usize::MAX),
        load_average: p.load_average,
    }))
}

/// See the module docs.
pub struct PrefixRendezvousScorer {
    typed_name: TypedName,
    prefix_bytes: usize,
    load_factor: f64,
    /// How many endpoints at the head of the order score 1 (≥ 1).
    choices: usize,
    /// Bound on the scraper's load average with per-key thresholds (else the last sample).
    load_average: bool,
}

/// The rendezvous key of a request (see the module docs).
pub fn prefix_key(target_model: &str, cache_salt: Option<&str>, prompt: &str, bytes: usize) -> u64 {
    prefix_key_of(target_model, cache_salt, ["", prompt], bytes)
}

/// [`prefix_key`] of the text `parts[0] ‖ parts[1]` (a chat request's tools, then its
/// messages: the order the server's template renders them in).
pub fn prefix_key_of(
    target_model: &str,
    cache_salt: Option<&str>,
    parts: [&str; 2],
    bytes: usize,
) -> u64 {
    let mut h = Xxh64::new(0);
    h.update(target_model.as_bytes());
    h.update(&[0]);
    h.update(cache_salt.unwrap_or("").as_bytes());
    h.update(&[0]);
    let mut left = bytes;
    for part in parts.map(str::as_bytes) {
        let take = part.get(..left.min(part.len())).unwrap_or(part);
        h.update(take);
        left -= take.len();
    }
    h.digest()
}

/// Which load the bound reads, and how the threshold is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSignal {
    /// The last scraped sample (waiting + running requests), one threshold
    /// `(1 + ε) × mean + 1` for every key.
    LastSample,
    /// The scraper's load average (the last sample where there is none), with each key's
    /// threshold between `(1 + ε/2) × mean + 1` and `(1 + 3ε/2) × mean + 1`.
    Average,
}

impl LoadSignal {
    fn load(self, e: &Endpoint) -> f64 {
        let m = &e.metrics;
        match self {
            LoadSignal::Average if m.load_average > 0.0 && m.load_average.is_finite() => {
                m.load_average
            }
            _ => f64::from(m.waiting_queue_size) + f64::from(m.running_requests),
        }
    }

    /// The smallest value [`LoadSignal::slack`] takes.
    fn min_slack(self) -> f64 {
        match self {
            LoadSignal::LastSample => 1.0,
            LoadSignal::Average => 0.5,
        }
    }

    /// The multiple of ε where `key` passes over the endpoint at `address`: 1, or a point in
    /// [0.5, 1.5) from a second hash.
    fn slack(self, key: u64, address: &[u8]) -> f64 {
        match self {
            LoadSignal::LastSample => 1.0,
            LoadSignal::Average => {
                let h = xxh64(address, key ^ 0x9e37_79b9_7f4a_7c15) >> 11;
                0.5 + h as f64 / (1u64 << 53) as f64
            }
        }
    }
}

/// Candidates (indexes into `endpoints`) in preference order for `key`: those within the load
/// bound by descending rendezvous weight, then the overloaded ones by descending weight; the
/// bound on the last scraped sample ([`LoadSignal::LastSample`]).
pub fn rendezvous_order(
    key: u64,
    endpoints: &[Endpoint],
    candidates: &[usize],
    load_factor: f64,
) -> Vec<usize> {
    order(
        key,
        endpoints,
        candidates,
        load_factor,
        LoadSignal::LastSample,
    )
}

/// [`rendezvous_order`] with the bound read from `signal`.
pub fn order(
    key: u64,
    endpoints: &[Endpoint],
    candidates: &[usize],
    load_factor: f64,
    signal: LoadSignal,
) -> Vec<usize> {
    let loads: Vec<f64> = candidates
        .iter()
        .map(|&i| endpoints.get(i).map_or(0.0, |e| signal.load(e)))
        .collect();
    let mean = if loads.is_empty() {
        0.0
    } else {
        loads.iter().sum::<f64>() / loads.len() as f64
    };
    let bound = |slack: f64| (1.0 + load_factor * slack) * mean + 1.0;
    // Below the lowest threshold no key passes an endpoint over: its own is not computed.
    let lowest = bound(signal.min_slack());
    let mut ranked: Vec<(bool, u64, usize)> = candidates
        .iter()
        .zip(&loads)
        .map(|(&i, &l)| {
            let Some(a) = endpoints.get(i).map(|e| e.address.as_bytes()) else {
                return (false, 0, i);
            };
            let over = l > lowest && l > bound(signal.slack(key, a));
            (over, xxh64(a, key), i)
        })
        .collect();
    // Within the bound first (false < true), then the higher weight first.
    ranked.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    ranked.into_iter().map(|(_, _, i)| i).collect()
}

impl Plugin for PrefixRendezvousScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for PrefixRendezvousScorer {
    fn category(&self) -> ScorerCategory {
        ScorerCategory::Affinity
    }

    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        let r = cx.request;
        let key = prefix_key_of(
            &r.target_model,
            r.cache_salt.as_deref(),
            [r.tools.as_deref().unwrap_or_default(), &r.prompt],
            self.prefix_bytes,
        );
        let signal = if self.load_average {
            LoadSignal::Average
        } else {
            LoadSignal::LastSample
        };
        let ranked = order(key, cx.endpoints, candidates, self.load_factor, signal);
        for (rank, i) in ranked.into_iter().enumerate() {
            if let Some(k) = candidates.iter().position(|&c| c == i) {
                if let Some(s) = scores.get_mut(k) {
                    *s = rank_score(rank, self.choices);
                }
            }
        }
    }
}

/// The score of the endpoint at `rank` (0-based) of the rendezvous order when the first
/// `choices` are equally preferred: 1 for those, then halving per rank (0.5, 0.25, …).
fn rank_score(rank: usize, choices: usize) -> f64 {
    let below = rank.saturating_sub(choices.saturating_sub(1));
    // Halving 1,100 times reaches 0.0 (no_std has no `powi`).
    (0..below.min(1_100)).fold(1.0, |s, _| s * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn pool(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(format!("10.0.{}.{}:8000", i / 250, i % 250)))
            .collect()
    }

    #[test]
    fn a_shared_beginning_is_one_key() {
        let sys = "You are the billing assistant. ".repeat(20);
        // Tools then messages key as their concatenation.
        assert_eq!(
            prefix_key_of("m", None, ["tools:", "messages"], 9),
            prefix_key("m", None, "tools:messages", 9)
        );
        let a = prefix_key("m", None, &format!("{sys} question 1"), 256);
        let b = prefix_key("m", None, &format!("{sys} question 2"), 256);
        assert_eq!(a, b);
        assert_ne!(a, prefix_key("other-model", None, &format!("{sys} q"), 256));
        assert_ne!(
            a,
            prefix_key("m", Some("tenant-b"), &format!("{sys} q"), 256)
        );
    }

    #[test]
    fn the_first_choices_score_alike_then_halve() {
        let one: Vec<f64> = (0..4).map(|r| rank_score(r, 1)).collect();
        assert_eq!(one, [1.0, 0.5, 0.25, 0.125]);
        let two: Vec<f64> = (0..4).map(|r| rank_score(r, 2)).collect();
        assert_eq!(two, [1.0, 1.0, 0.5, 0.25]);
        assert_eq!(rank_score(3, 8), 1.0);
    }

    #[test]
    fn choices_must_be_at_least_one() {
        use crate::plugin::registry::Handle;
        let bad = serde_json::json!({"choices": 0});
        assert!(factory("r", Some(&bad), &Handle::new(&[])).is_err());
        let good = serde_json::json!({"choices": 2, "loadFactor": 1.0});
        assert!(factory("r", Some(&good), &Handle::new(&[])).is_ok());
    }

    #[test]
    fn with_the_load_average_an_overloaded_endpoint_sheds_some_keys_first() {
        // Three idle endpoints and one at 2.2 requests on average: mean 0.55, thresholds between
        // (1 + 1/2)·0.55 + 1 ≈ 1.83 and (1 + 3/2)·0.55 + 1 ≈ 2.38 at ε = 1.
        let mut eps = pool(4);
        let all = [0, 1, 2, 3];
        if let Some(e) = eps.get_mut(3) {
            e.metrics.load_average = 2.2;
            // The last sample says idle: the average decides.
            e.metrics.waiting_queue_size = 0;
        }
        let (mut kept, mut shed) = (0, 0);
        for key in 0..4_000u64 {
            let free = rendezvous_order(key, &eps, &all, 1.0);
            if free[0] != 3 {
                continue;
            }
            // Every key it would win: passed over or not, by the key's own threshold.
            match order(key, &eps, &all, 1.0, LoadSignal::Average)[0] {
                3 => kept += 1,
                _ => shed += 1,
            }
        }
        assert!(kept > 100 && shed > 100, "kept {kept}, shed {shed}");
        // The same key decides the same way every time (every proxy alike).
        let again: Vec<Vec<usize>> = (0..2)
            .map(|_| order(7, &eps, &all, 1.0, LoadSignal::Average))
            .collect();
        assert_eq!(again[0], again[1]);
        // Far above every threshold, it ranks last for every key.
        if let Some(e) = eps.get_mut(3) {
            e.metrics.load_average = 10.0;
        }
        for key in 0..200u64 {
            assert_eq!(order(key, &eps, &all, 1.0, LoadSignal::Average)[3], 3);
        }
    }

    #[test]
    fn overloaded_endpoints_rank_last() {
        let mut eps = pool(4);
        let all = [0, 1, 2, 3];
        let free = rendezvous_order(42, &eps, &all, 0.25);
        let winner = free[0];
        if let Some(e) = eps.get_mut(winner) {
            e.metrics.waiting_queue_size = 40;
        }
        let order = rendezvous_order(42, &eps, &all, 0.25);
        assert_eq!(*order.last().unwrap(), winner);
        // The others keep their relative rendezvous order.
        let rest: Vec<usize> = free.iter().copied().filter(|&i| i != winner).collect();
        assert_eq!(&order[..3], rest.as_slice());
    }
}
