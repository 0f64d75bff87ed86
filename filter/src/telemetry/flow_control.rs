//! Flow control's series: queue depths, capacity utilization, saturation, stale endpoints,
//! eviction's counters and gauges, and the timings of flow control's own work (see
//! [`super::families`] for their names and units). The gates keep the state; these functions
//! turn it into stat updates at each flush.

use scheduler_core::flowcontrol::eviction::{EvictionGauges, EvictionReport};
use scheduler_core::flowcontrol::queues::{BandDepth, CapacityUtilization};
use scheduler_core::PoolSaturation;
use std::sync::atomic::{AtomicU8, Ordering};

use super::families;
use super::histogram::Histogram;
use super::StatSink;

/// The queue depths of several flow-control gates as one: requests and bytes added up per
/// priority, highest priority first (the process-wide series of the native build, where every
/// filter configuration with flow control — one per listener or route — has its own gate).
pub fn sum_depths<I>(gates: I) -> Vec<BandDepth>
where
    I: IntoIterator,
    I::Item: IntoIterator<Item = BandDepth>,
{
    let mut sum: Vec<BandDepth> = Vec::new();
    for d in gates.into_iter().flatten() {
        match sum.iter_mut().find(|s| s.priority == d.priority) {
            Some(s) => {
                s.requests = s.requests.saturating_add(d.requests);
                s.bytes = s.bytes.saturating_add(d.bytes);
            }
            None => sum.push(d),
        }
    }
    sum.sort_unstable_by_key(|d| std::cmp::Reverse(d.priority));
    sum
}

/// Adds what in-flight eviction did since the last flush to its counters and to the
/// confirmation-time histogram (whose series are counters, so this flush's observations are
/// added as they are).
pub fn add_eviction_report(r: &EvictionReport, sink: &mut dyn StatSink) {
    for (priority, n) in &r.issued {
        sink.add(&families::REVOCATIONS_ISSUED, &[&priority.to_string()], *n);
    }
    for (outcome, n) in [("confirmed", r.confirmed), ("timed_out", r.timed_out)] {
        if n > 0 {
            sink.add(&families::REVOCATIONS, &[outcome], n);
        }
    }
    if !r.confirmation_ms.is_empty() {
        let mut h = Histogram::new(&families::REVOCATION_CONFIRMATION);
        for ms in &r.confirmation_ms {
            h.record(ms.saturating_mul(1_000_000));
        }
        h.flush(&[], sink);
    }
}

/// Sets eviction's sizing gauges (millionths of the saturation detector's unit; a negative
/// deficit shows as 0).
pub fn set_eviction_gauges(g: &EvictionGauges, sink: &mut dyn StatSink) {
    sink.set(&families::RECLAIM_TARGET_PPM, &[], ppm(g.reclaim_target));
    sink.set(&families::PENDING_RECLAIM_PPM, &[], ppm(g.pending_reclaim));
}

/// Sets the flow-control pool saturation gauge (millionths: 10⁶ is the gating set point).
/// `shown` remembers which stage series this writer set before (bit 0 prefill, bit 1 decode):
/// a stage that lost its last endpoint drops to 0 (upstream deletes the series; an Envoy stat
/// cannot be deleted), instead of keeping its last value.
pub fn set_pool_saturation(s: &PoolSaturation, shown: &AtomicU8, sink: &mut dyn StatSink) {
    sink.set(
        &families::POOL_SATURATION_PPM,
        &["effective"],
        ppm(s.effective),
    );
    let mut bits = shown.load(Ordering::Relaxed);
    for (i, (stage, v)) in [("prefill", s.prefill), ("decode", s.decode)]
        .into_iter()
        .enumerate()
    {
        let bit = 1u8 << i;
        match v {
            Some(v) => {
                sink.set(&families::POOL_SATURATION_PPM, &[stage], ppm(v));
                bits |= bit;
            }
            None if bits & bit != 0 => {
                sink.set(&families::POOL_SATURATION_PPM, &[stage], 0);
                bits &= !bit;
            }
            None => {}
        }
    }
    shown.store(bits, Ordering::Relaxed);
}

/// The saturation of several configurations' pools as one: per stage the highest (the native
/// build's process-wide series).
pub fn max_saturation(a: PoolSaturation, b: PoolSaturation) -> PoolSaturation {
    PoolSaturation {
        effective: a.effective.max(b.effective),
        prefill: max_of(a.prefill, b.prefill),
        decode: max_of(a.decode, b.decode),
    }
}

/// The larger of two optional values; either when only one is there.
fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// `v` in millionths, for a gauge (Envoy stats are integers); negative or not finite: 0.
pub(super) fn ppm(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        (v * 1e6).round() as u64
    } else {
        0
    }
}

/// Sets the flow-control queue gauges from `depths` (every band that has held a request).
pub fn set_queue_depths(depths: &[BandDepth], sink: &mut dyn StatSink) {
    for d in depths {
        let p = d.priority.to_string();
        sink.set(&families::FLOW_QUEUE_SIZE, &[&p], d.requests);
        sink.set(&families::FLOW_QUEUE_BYTES, &[&p], d.bytes);
    }
}

/// Sets the capacity-utilization gauges from `u` (millionths of each limit; the all-bands
/// gauges only when a global limit is configured).
pub fn set_capacity_utilization(u: &CapacityUtilization, sink: &mut dyn StatSink) {
    for b in &u.bands {
        let p = b.priority.to_string();
        if let Some(r) = b.requests {
            sink.set(&families::CAPACITY_REQUESTS_PPM, &[&p], ppm(r));
        }
        if let Some(r) = b.bytes {
            sink.set(&families::CAPACITY_BYTES_PPM, &[&p], ppm(r));
        }
    }
    for (resource, r) in [("requests", u.requests), ("bytes", u.bytes)] {
        if let Some(r) = r {
            sink.set(&families::GLOBAL_CAPACITY_PPM, &[resource], ppm(r));
        }
    }
}

/// The capacity utilization of several gates as one: per priority and for the global limits,
/// the fullest gate's (a request is refused by the gate it meets, so the fullest is the one that
/// refuses first; the native build's process-wide series).
pub fn max_utilization<I>(gates: I) -> CapacityUtilization
where
    I: IntoIterator<Item = CapacityUtilization>,
{
    let mut out = CapacityUtilization::default();
    for g in gates {
        for b in g.bands {
            match out.bands.iter_mut().find(|o| o.priority == b.priority) {
                Some(o) => {
                    o.requests = max_of(o.requests, b.requests);
                    o.bytes = max_of(o.bytes, b.bytes);
                }
                None => out.bands.push(b),
            }
        }
        out.requests = max_of(out.requests, g.requests);
        out.bytes = max_of(out.bytes, g.bytes);
    }
    out.bands
        .sort_unstable_by_key(|b| std::cmp::Reverse(b.priority));
    out
}

/// Sets `llm_d_epp_flow_control_stale_endpoints{detector}` to `n`.
pub fn set_stale_endpoints(detector: &str, n: usize, sink: &mut dyn StatSink) {
    let detector = super::label_value(detector);
    sink.set(&families::STALE_ENDPOINTS, &[&detector], n as u64);
}

/// Flow control's own timings between two flushes: each dispatch cycle, and each admission by
/// band and outcome (llm-d-router's `flow_control_dispatch_cycle_duration_seconds` and
/// `flow_control_request_enqueue_duration_seconds`). A gate records into one and hands it over
/// whole at the flush ([`std::mem::take`]), so no stat is sent under the gate's lock.
#[derive(Default)]
pub struct FlowTimings {
    dispatch_cycles: Option<Histogram>,
    /// (fairness id label value, band priority, outcome) → admission times.
    enqueues: Vec<((String, i32, &'static str), Histogram)>,
}

impl FlowTimings {
    /// One dispatch cycle that took `ns` nanoseconds.
    pub fn dispatch_cycle(&mut self, ns: u64) {
        self.dispatch_cycles
            .get_or_insert_with(|| Histogram::new(&families::FLOW_DISPATCH_CYCLE))
            .record(ns);
    }

    /// One admission of the flow labelled `fairness` (a [`super::FairnessLabels`] value) to
    /// band `priority` that took `ns` nanoseconds and ended `outcome` (`Dispatched` at once,
    /// `NotYetFinalized` — queued, upstream's label for an item still waiting —,
    /// `RejectedCapacity`, `RejectedNoEndpoints`). Allocates once per flow between flushes.
    pub fn enqueue(&mut self, fairness: &str, priority: i32, outcome: &'static str, ns: u64) {
        match self
            .enqueues
            .iter_mut()
            .find(|((f, p, o), _)| f == fairness && *p == priority && *o == outcome)
        {
            Some((_, h)) => h.record(ns),
            None => super::histogram::record_keyed(
                &mut self.enqueues,
                (fairness.to_string(), priority, outcome),
                &families::FLOW_ENQUEUE,
                ns,
            ),
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.dispatch_cycles.is_none() && self.enqueues.is_empty()
    }

    /// Adds every observation to the histograms' counters.
    pub fn flush(mut self, sink: &mut dyn StatSink) {
        if let Some(h) = &mut self.dispatch_cycles {
            h.flush(&[], sink);
        }
        for ((fairness, priority, outcome), h) in &mut self.enqueues {
            h.flush(&[fairness, &priority.to_string(), outcome], sink);
        }
    }
}
