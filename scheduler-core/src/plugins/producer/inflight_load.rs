//! `inflight-load-producer`: requests and tokens in flight to each endpoint, counted by the
//! picker itself (fresher than any scrape).
//!
//! Behaviour (GIE `dataproducer/inflightload/`, docs/SOURCES.md#gie-inflight-load):
//! - Produce: writes an [`InflightLoad`] per endpoint under [`INFLIGHT_LOAD`].
//! - PreRequest: adds one request and the token estimate to the first target of **each** profile
//!   result. Tokens: input = body bytes / 4 (at least 1), output = round(1.5 × input).
//! - ResponseBody: the `prefill` profile's endpoint is released on the first chunk, the others at
//!   end of stream.
//! - Released also when the request state is dropped (reset, client gone): the counts are held
//!   by an [`InflightGuard`] whose `Drop` releases them, so counters never leak and, because
//!   release saturates at zero and each charge is released once, never go negative.
//!
//! Parameters: none.

use alloc::sync::Arc;

use crate::lock::Lock;
use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::error::ConfigError;
use crate::model::response::{BodyChunk, ResponseInfo};
use crate::model::result::SchedulingResult;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, CycleState, DataKey, DataProducer, Plugin, PreRequest, ProduceContext,
    RequestState, ResponseBody, TypedName,
};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "inflight-load-producer";

/// Cycle-state key of the per-endpoint `Vec<InflightLoad>`.
pub const INFLIGHT_LOAD: DataKey = "InFlightLoadKey";

/// In-flight load of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InflightLoad {
    /// Requests sent and not finished.
    pub requests: u64,
    /// Estimated tokens (input + expected output) of those requests.
    pub tokens: u64,
}

/// Endpoints read per lock acquisition by [`InflightCounters::loads`].
pub const LOADS_PER_LOCK: usize = 64;

/// Per-endpoint in-flight counters shared by a plugin and the guards of its requests.
#[derive(Clone, Default)]
pub struct InflightCounters(Arc<Lock<HashMap<String, InflightLoad>>>);

impl InflightCounters {
    /// The load of `address` (zero when unknown).
    pub fn load(&self, address: &str) -> InflightLoad {
        self.0.lock().get(address).copied().unwrap_or_default()
    }

    /// The loads of `addresses`, in order, each read once (other workers of a native module
    /// charge and release between reads, so a caller that needs a count twice keeps it from
    /// here). The lock is taken once per [`LOADS_PER_LOCK`] endpoints: one round trip for a
    /// typical pool, and never held for a whole large pool while workers wait to charge.
    pub fn loads<'a>(
        &self,
        addresses: impl Iterator<Item = &'a str>,
        out: &mut impl Extend<InflightLoad>,
    ) {
        let mut addresses = addresses.peekable();
        while addresses.peek().is_some() {
            let m = self.0.lock();
            out.extend(
                addresses
                    .by_ref()
                    .take(LOADS_PER_LOCK)
                    .map(|a| m.get(a).copied().unwrap_or_default()),
            );
        }
    }

    /// Charges `address` with one request of `tokens` and returns the guard that releases it.
    pub fn charge(&self, address: &str, tokens: u64, prefill: bool) -> Charge {
        {
            let mut m = self.0.lock();
            let l = m.entry_ref(address).or_default();
            l.requests = l.requests.saturating_add(1);
            l.tokens = l.tokens.saturating_add(tokens);
        }
        Charge {
            address: address.into(),
            tokens,
            prefill,
        }
    }

    fn release(&self, c: &Charge) {
        {
            let mut m = self.0.lock();
            if let Some(l) = m.get_mut(c.address.as_str()) {
                l.requests = l.requests.saturating_sub(1);
                l.tokens = l.tokens.saturating_sub(c.tokens);
                if l.requests == 0 {
                    m.remove(c.address.as_str());
                }
            }
        }
    }

    /// Drops the counters of endpoints not in `addresses`.
    pub fn retain(&self, addresses: &[&str]) {
        self.0.lock().retain(|k, _| addresses.contains(&k.as_str()));
    }

    /// Total requests in flight over all endpoints.
    pub fn total_requests(&self) -> u64 {
        self.0.lock().values().map(|l| l.requests).sum()
    }
}

/// One charged endpoint of a request.
#[derive(Debug)]
pub struct Charge {
    address: String,
    tokens: u64,
    prefill: bool,
}

/// Holds a request's charges; dropping it releases whatever is still charged.
pub struct InflightGuard {
    counters: InflightCounters,
    charges: Vec<Charge>,
}

impl InflightGuard {
    /// A guard over `charges` made on `counters`.
    pub fn new(counters: InflightCounters, charges: Vec<Charge>) -> Self {
        InflightGuard { counters, charges }
    }

    /// Releases the prefill charges now (first response chunk).
    pub fn release_prefill(&mut self) {
        let counters = self.counters.clone();
        self.charges.retain(|c| {
            if c.prefill {
                counters.release(c);
            }
            !c.prefill
        });
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        for c in self.charges.drain(..) {
            self.counters.release(&c);
        }
    }
}

/// Token estimate for a request of `body_bytes` bytes: input + round(1.5 × input).
pub fn estimate_tokens(body_bytes: usize) -> u64 {
    let input = ((body_bytes / 4) as u64).max(1);
    input + (input * 3).div_ceil(2)
}

/// Builds an [`InflightLoadProducer`]; takes no parameters.
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(InflightLoadProducer {
        typed_name: TypedName::new(TYPE, name),
        counters: InflightCounters::default(),
    }))
}

/// See the module docs.
pub struct InflightLoadProducer {
    typed_name: TypedName,
    counters: InflightCounters,
}

impl InflightLoadProducer {
    /// The shared counters (for tests and stats).
    pub fn counters(&self) -> &InflightCounters {
        &self.counters
    }
}

impl Plugin for InflightLoadProducer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        Some(self)
    }
    fn as_response_body(&self) -> Option<&dyn ResponseBody> {
        Some(self)
    }
    fn produces(&self) -> &'static [DataKey] {
        &[INFLIGHT_LOAD]
    }
    fn pool_changed(&self, addresses: &[&str]) {
        self.counters.retain(addresses);
    }
}

/// The in-flight load of pool index `i` in what [`InflightLoadProducer`] wrote under
/// [`INFLIGHT_LOAD`] (`loads`); zero when it wrote nothing for it.
pub fn load_of(loads: Option<&Vec<InflightLoad>>, i: usize) -> InflightLoad {
    loads.and_then(|l| l.get(i)).copied().unwrap_or_default()
}

impl DataProducer for InflightLoadProducer {
    fn produce(
        &self,
        cx: &ProduceContext<'_>,
        _: &[usize],
        cycle: &mut CycleState,
        _: &mut RequestState,
    ) {
        let mut loads = Vec::with_capacity(cx.endpoints.len());
        self.counters
            .loads(cx.endpoints.iter().map(|e| e.address.as_str()), &mut loads);
        cycle.put(INFLIGHT_LOAD, loads);
    }
}

impl PreRequest for InflightLoadProducer {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let tokens = estimate_tokens(cx.request.body_size_bytes);
        let charges = charge_first_targets(&self.counters, cx, result, tokens);
        state.put(
            &self.typed_name.name,
            InflightGuard::new(self.counters.clone(), charges),
        );
    }
}

/// Charges the first target of each profile result; the `prefill` profile's charge is marked.
pub(crate) fn charge_first_targets(
    counters: &InflightCounters,
    cx: &CycleContext<'_>,
    result: &SchedulingResult,
    tokens: u64,
) -> Vec<Charge> {
    result
        .profile_results
        .iter()
        .filter_map(|(name, r)| {
            let first = *r.as_ref()?.targets.first()?;
            let ep = cx.endpoint(first)?;
            Some(counters.charge(&ep.address, tokens, name == "prefill"))
        })
        .collect()
}

impl ResponseBody for InflightLoadProducer {
    fn response_body(&self, state: &mut RequestState, _: &ResponseInfo<'_>, chunk: &BodyChunk) {
        release_on_chunk(state, &self.typed_name.name, chunk);
    }
}

/// Releases prefill charges on the first chunk and everything at end of stream.
pub(crate) fn release_on_chunk(state: &mut RequestState, owner: &str, chunk: &BodyChunk) {
    if chunk.end_of_stream {
        drop(state.take::<InflightGuard>(owner));
    } else if chunk.first {
        if let Some(g) = state.get_mut::<InflightGuard>(owner) {
            g.release_prefill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_releases_on_drop_and_never_goes_negative() {
        let c = InflightCounters::default();
        let g1 = InflightGuard::new(c.clone(), alloc::vec![c.charge("a:1", 10, false)]);
        let mut g2 = InflightGuard::new(
            c.clone(),
            alloc::vec![c.charge("a:1", 5, false), c.charge("p:1", 5, true)],
        );
        assert_eq!(
            c.load("a:1"),
            InflightLoad {
                requests: 2,
                tokens: 15
            }
        );
        g2.release_prefill();
        assert_eq!(c.load("p:1"), InflightLoad::default());
        drop(g1);
        drop(g2);
        assert_eq!(c.load("a:1"), InflightLoad::default());
        assert_eq!(c.total_requests(), 0);
    }

    #[test]
    fn loads_are_read_in_order_with_zero_for_unknown() {
        let c = InflightCounters::default();
        let _a = c.charge("a:1", 10, false);
        let _b = [c.charge("b:1", 5, false), c.charge("b:1", 7, false)];
        let mut out = alloc::vec::Vec::new();
        c.loads(["b:1", "x:1", "a:1"].into_iter(), &mut out);
        let requests: alloc::vec::Vec<u64> = out.iter().map(|l| l.requests).collect();
        assert_eq!(requests, [2, 0, 1]);
        assert_eq!(out[0].tokens, 12);
        // A pool larger than one lock's share is read whole, in order.
        let many: alloc::vec::Vec<alloc::string::String> = (0..LOADS_PER_LOCK * 2 + 3)
            .map(|i| alloc::format!("10.0.{}.{}:8000", i / 256, i % 256))
            .collect();
        let _c = c.charge(&many[LOADS_PER_LOCK + 1], 1, false);
        out.clear();
        c.loads(many.iter().map(|a| a.as_str()), &mut out);
        assert_eq!(out.len(), many.len());
        let busy: alloc::vec::Vec<usize> =
            (0..out.len()).filter(|&i| out[i].requests > 0).collect();
        assert_eq!(busy, [LOADS_PER_LOCK + 1]);
    }

    #[test]
    fn token_estimate() {
        // 400 bytes → 100 input tokens + 150 output.
        assert_eq!(estimate_tokens(400), 250);
        assert_eq!(estimate_tokens(0), 1 + 2);
    }
}
