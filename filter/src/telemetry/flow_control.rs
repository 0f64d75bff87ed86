//! Flow control's series: queue depths, capacity utilization, saturation, stale endpoints,
//! eviction's counters and gauges, and the timings of flow control's own work (see
//! [`super::families`] for their names and units). The gates keep the state; these functions
//! turn it into stat updates at each flush.

use scheduler_core::flowcontrol::eviction::{EvictionGauges, EvictionReport};
use scheduler_core::flowcontrol::queues::{CapacityUtilization, FlowDepth};
use scheduler_core::PoolSaturation;
use std::sync::atomic::{AtomicU8, Ordering};

use super::families;
use super::histogram::Histogram;
use super::{FairnessLabels, StatSink};

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

/// One writer's share of the flow-control queue gauges (`queue_size`, `queue_bytes` by fairness
/// id and priority): what it last reported per flow, so each publish moves a gauge by this
/// writer's change ([`StatSink::adjust`]) and the gauges are the sum over writers (Wasm worker
/// VMs, native gates). A flow no longer reported drops to 0 and is forgotten; fairness ids are
/// bounded as the request series' are ([`FairnessLabels`]).
#[derive(Default)]
pub struct QueueGauges {
    flows: FairnessLabels,
    /// ((fairness id label, priority), (requests, bytes)) as last reported.
    shown: Vec<((String, i32), (u64, u64))>,
}

impl QueueGauges {
    /// Reports `depths` (of one gate, or of several: flows that share a label add up), sending
    /// only the flows whose depth changed.
    pub fn publish<I: IntoIterator<Item = FlowDepth>>(
        &mut self,
        depths: I,
        sink: &mut dyn StatSink,
    ) {
        let mut now: Vec<((String, i32), (u64, u64))> = Vec::new();
        for d in depths {
            let label = self.flows.label(&d.fairness_id);
            match now
                .iter_mut()
                .find(|((f, p), _)| f == label && *p == d.priority)
            {
                Some((_, (requests, bytes))) => {
                    *requests = requests.saturating_add(d.requests);
                    *bytes = bytes.saturating_add(d.bytes);
                }
                None => now.push(((label.to_string(), d.priority), (d.requests, d.bytes))),
            }
        }
        // Flows shown before and gone now report 0 once, then are forgotten.
        let gone: Vec<((String, i32), (u64, u64))> = self
            .shown
            .iter()
            .filter(|(key, _)| !now.iter().any(|(k, _)| k == key))
            .map(|(key, _)| (key.clone(), (0, 0)))
            .collect();
        let delta = |now: u64, before: u64| {
            i64::try_from(now)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(before).unwrap_or(i64::MAX))
        };
        for (key, (requests, bytes)) in now.iter().chain(&gone) {
            let before = self.shown.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
            if before == Some((*requests, *bytes)) {
                continue;
            }
            let (r0, b0) = before.unwrap_or((0, 0));
            let p = key.1.to_string();
            let labels = [key.0.as_str(), p.as_str()];
            sink.adjust(&families::FLOW_QUEUE_SIZE, &labels, delta(*requests, r0));
            sink.adjust(&families::FLOW_QUEUE_BYTES, &labels, delta(*bytes, b0));
        }
        self.shown = now;
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
    enqueues: super::histogram::FlowKeyed,
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
        super::histogram::record_keyed(
            &mut self.enqueues,
            (fairness, priority, outcome),
            &families::FLOW_ENQUEUE,
            ns,
        );
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
