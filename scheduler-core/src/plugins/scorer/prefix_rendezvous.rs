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
//!    Loads", SODA 2018): an endpoint whose load — waiting plus running requests from the scraped
//!    metrics, which every replica reads alike — exceeds `(1 + loadFactor) × mean + 1` is passed
//!    over: it ranks after every endpoint within the bound. A hot prefix therefore spills to its
//!    next endpoints in rendezvous order instead of melting one server. (The `+ 1` is the paper's
//!    ceiling: it keeps an idle pool from excluding everyone.)
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
//! `loadFactor` (ε ≥ 0, default 0.25), `choices` (d ≥ 1, default 1). Category: Affinity.

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
    smooth_load: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            prefix_tokens: 64,
            load_factor: 0.25,
            choices: 1,
            smooth_load: false,
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
        smooth_load: p.smooth_load,
    }))
}

/// See the module docs.
pub struct PrefixRendezvousScorer {
    typed_name: TypedName,
    prefix_bytes: usize,
    load_factor: f64,
    /// How many endpoints at the head of the order score 1 (≥ 1).
    choices: usize,
    /// Bound on the scraper's load average, graduated per key.
    smooth_load: bool,
}

/// The rendezvous key of a request (see the module docs).
pub fn prefix_key(target_model: &str, cache_salt: Option<&str>, prompt: &str, bytes: usize) -> u64 {
    let text = prompt.as_bytes();
    let head = text.get(..bytes.min(text.len())).unwrap_or(text);
    let mut h = Xxh64::new(0);
    h.update(target_model.as_bytes());
    h.update(&[0]);
    h.update(cache_salt.unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(head);
    h.digest()
}

fn load(e: &Endpoint) -> f64 {
    f64::from(e.metrics.waiting_queue_size) + f64::from(e.metrics.running_requests)
}

/// The load average, for `smoothLoad`.
fn average_load(e: &Endpoint) -> f64 {
    e.metrics.load_average
}

/// [`rendezvous_order`] on the load average, where each key passes over an endpoint at its own
/// point between `(1 + ε/2) × mean + 1` and `(1 + 3ε/2) × mean + 1` (from a second hash of the
/// key and the address), so an overloaded endpoint sheds its keys a few at a time, the same keys
/// in every proxy, instead of all at once.
pub fn graduated_order(
    key: u64,
    endpoints: &[Endpoint],
    candidates: &[usize],
    load_factor: f64,
) -> Vec<usize> {
    let loads: Vec<f64> = candidates
        .iter()
        .map(|&i| endpoints.get(i).map_or(0.0, average_load))
        .collect();
    let mean = if loads.is_empty() {
        0.0
    } else {
        loads.iter().sum::<f64>() / loads.len() as f64
    };
    let mut ranked: Vec<(bool, u64, usize)> = candidates
        .iter()
        .zip(&loads)
        .map(|(&i, &l)| {
            let (w, u) = endpoints.get(i).map_or((0, 0.0), |e| {
                let a = e.address.as_bytes();
                let u = (xxh64(a, key ^ 0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
                (xxh64(a, key), u)
            });
            let bound = (1.0 + load_factor * (0.5 + u)) * mean + 1.0;
            (l > bound, w, i)
        })
        .collect();
    ranked.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    ranked.into_iter().map(|(_, _, i)| i).collect()
}

/// Candidates (indexes into `endpoints`) in preference order for `key`: those within the load
/// bound by descending rendezvous weight, then the overloaded ones by descending weight.
pub fn rendezvous_order(
    key: u64,
    endpoints: &[Endpoint],
    candidates: &[usize],
    load_factor: f64,
) -> Vec<usize> {
    let loads: Vec<f64> = candidates
        .iter()
        .map(|&i| endpoints.get(i).map_or(0.0, load))
        .collect();
    let mean = if loads.is_empty() {
        0.0
    } else {
        loads.iter().sum::<f64>() / loads.len() as f64
    };
    let bound = (1.0 + load_factor) * mean + 1.0;
    let mut ranked: Vec<(bool, u64, usize)> = candidates
        .iter()
        .zip(&loads)
        .map(|(&i, &l)| {
            let w = endpoints
                .get(i)
                .map_or(0, |e| xxh64(e.address.as_bytes(), key));
            (l > bound, w, i)
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
        let key = prefix_key(
            &r.target_model,
            r.cache_salt.as_deref(),
            &r.prompt,
            self.prefix_bytes,
        );
        let order = if self.smooth_load {
            graduated_order(key, cx.endpoints, candidates, self.load_factor)
        } else {
            rendezvous_order(key, cx.endpoints, candidates, self.load_factor)
        };
        for (rank, i) in order.into_iter().enumerate() {
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
