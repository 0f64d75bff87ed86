//! Flow control for the hosts (issue 12): one [`FlowGate`] per picker state — process-wide in the
//! native module, per worker VM in Wasm — holding the queues of [`scheduler_core::flowcontrol`]
//! behind a short lock, and the [`Waiter`] each queued request leaves there.
//!
//! A queued request stays paused in Envoy with its body buffered. When the queues release it
//! (a dispatch cycle, or its TTL), the gate writes the outcome into the request's [`WaitSlot`]
//! and calls its [`Wake`], which the host implements: the native module posts an event to the
//! request's worker (Envoy's per-filter scheduler), the Wasm module resumes the stream's context.
//! The request then reads the slot (`RequestFlow::on_wake`) and is scheduled or answered.
//!
//! Dispatch cycles run when a request is queued, when a released request has been scheduled,
//! when a request's response ends (its endpoint has capacity again), and on the host's tick
//! (which also expires TTLs). Wakers run after the lock is released.
//!
//! With `enableEviction` the gate also tracks every request it let through until the request
//! ends ([`FlowGate::track`]); a sheddable one leaves a [`Waiter`] too, and a dispatch cycle held
//! by saturation may evict it: its slot gets [`Outcome::Evicted`] and it is woken like a queued
//! request, to be answered 429 on its own worker.

use std::sync::{Arc, Mutex};

use scheduler_core::flowcontrol::eviction::{
    EvictionCounts, EvictionGauges, EvictionReport, Tracked,
};
use scheduler_core::flowcontrol::queues::{CapacityUtilization, FlowDepth, Outcome};
use scheduler_core::flowcontrol::{Admission, FlowControl, FlowKey, FlowQueues, Released, Ticket};
use scheduler_core::plugin::QueuedRequest;

use crate::telemetry::{FairnessLabels, FlowTimings, QueueGauges, StatSink};

/// Resumes one paused request on its own worker. Called from any thread.
pub trait Wake: Send {
    /// Schedules the request's `on_wake`.
    fn wake(&self);
}

/// How a queued request's wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitEnd {
    /// Released or expired.
    pub outcome: Outcome,
    /// Its band's priority.
    pub priority: i32,
    /// How long it waited, ms.
    pub waited_ms: u64,
}

/// Where a gate leaves a paused request's outcome (`T`) for the request to read on its own
/// worker: flow control's [`WaitSlot`], the burst window's [`crate::burst::BurstSlot`].
pub struct Slot<T>(Mutex<Option<T>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(Mutex::new(None))
    }
}

impl<T> Slot<T> {
    /// Takes the outcome, if the wait ended.
    pub fn take(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    pub(crate) fn put(&self, end: T) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(end);
        }
    }
}

/// Where the gate leaves a queued request's [`WaitEnd`] for it to read.
pub type WaitSlot = Slot<WaitEnd>;

/// What the gate keeps of a queued request.
pub struct Waiter {
    /// Where its outcome goes.
    pub slot: Arc<WaitSlot>,
    /// How it is resumed.
    pub wake: Box<dyn Wake>,
}

/// Upstream's outcome label for a queue wait that ended with `o`; `None` for an eviction in
/// flight, which ends no queue wait.
pub fn outcome_label(o: &Outcome) -> Option<&'static str> {
    match o {
        Outcome::Dispatched => Some("Dispatched"),
        Outcome::Expired(scheduler_core::RequestError::NoCandidates) => Some("EvictedNoEndpoints"),
        Outcome::Expired(_) => Some("EvictedTTL"),
        Outcome::Evicted => None,
    }
}

/// Upstream's outcome label for an admission: `NotYetFinalized` for a request left waiting
/// (llm-d-router labels an item still in its queue so), else how it ended (`Dispatched`,
/// `RejectedNoEndpoints`, `RejectedCapacity`).
pub fn admission_label(a: &Admission) -> &'static str {
    match a {
        Admission::Dispatch => "Dispatched",
        Admission::Queued(_) => "NotYetFinalized",
        Admission::Rejected(scheduler_core::RequestError::NoCandidates) => "RejectedNoEndpoints",
        Admission::Rejected(_) => "RejectedCapacity",
    }
}

/// What the gate's lock guards: the queues, the timings of work done on them and the fairness
/// ids those timings are labelled with.
struct Guarded {
    queues: FlowQueues<Waiter>,
    timings: FlowTimings,
    flows: FairnessLabels,
}

/// The queues of one picker state; see the module docs.
pub struct FlowGate {
    state: Mutex<Guarded>,
    /// This gate's share of the queue gauges (apart from `state`: no stat is sent under the
    /// queues' lock).
    gauges: Mutex<QueueGauges>,
    /// A monotonic clock in nanoseconds, for the timings (the host's).
    clock_ns: fn() -> u64,
}

impl FlowGate {
    /// A gate with `settings`; `scrape_lag_ms` is the pool's scrape interval plus its staleness
    /// limit (it paces eviction under a scraped saturation detector); `clock_ns` times each
    /// admission and dispatch cycle (nanoseconds; steps back count as 0).
    pub fn new(settings: Arc<FlowControl>, scrape_lag_ms: u64, clock_ns: fn() -> u64) -> Self {
        FlowGate {
            state: Mutex::new(Guarded {
                queues: FlowQueues::new(settings, scrape_lag_ms),
                timings: FlowTimings::default(),
                flows: FairnessLabels::default(),
            }),
            gauges: Mutex::default(),
            clock_ns,
        }
    }

    /// The timings recorded since the last call, for the metrics flush.
    pub fn take_timings(&self) -> FlowTimings {
        self.state
            .lock()
            .map(|mut g| std::mem::take(&mut g.timings))
            .unwrap_or_default()
    }

    /// How full the queues are against their limits.
    pub fn capacity_utilization(&self) -> CapacityUtilization {
        self.state
            .lock()
            .map(|g| g.queues.capacity_utilization())
            .unwrap_or_default()
    }

    /// Tracks a routed request of `priority` at `now_ms` (see [`FlowQueues::track`]); a
    /// sheddable one passes the `waiter` that answers it if it is evicted.
    pub fn track(&self, priority: i32, now_ms: u64, waiter: Option<Waiter>) -> Option<Tracked> {
        match self.state.lock() {
            Ok(mut g) => g.queues.track(priority, now_ms, waiter),
            Err(_) => None,
        }
    }

    /// The tracked request `t` ended at `now_ms`.
    pub fn untrack(&self, t: Tracked, now_ms: u64) {
        // A waiter handed back is dropped after the lock.
        let _waiter = match self.state.lock() {
            Ok(mut g) => g.queues.untrack(t, now_ms),
            Err(_) => None,
        };
    }

    /// What eviction has done, when it is on.
    pub fn eviction_counts(&self) -> Option<EvictionCounts> {
        self.state
            .lock()
            .ok()
            .and_then(|g| g.queues.eviction_counts())
    }

    /// Eviction's sizing state, when it is on.
    pub fn eviction_gauges(&self) -> Option<EvictionGauges> {
        self.state
            .lock()
            .ok()
            .and_then(|g| g.queues.eviction_gauges())
    }

    /// What eviction did since the last call, for the metrics flush.
    pub fn take_eviction_report(&self) -> Option<EvictionReport> {
        self.state
            .lock()
            .ok()
            .and_then(|mut g| g.queues.take_eviction_report())
    }

    /// Admits one request (see [`FlowQueues::admit`]); `saturation` is the pool's, asked only
    /// when nothing waits ahead of it. A poisoned lock admits (never loses a request). The
    /// admission is timed, by band and outcome.
    pub fn admit(
        &self,
        key: &FlowKey,
        req: QueuedRequest,
        waiter: Waiter,
        now_ms: u64,
        saturation: &mut dyn FnMut() -> f64,
    ) -> Admission {
        match self.state.lock() {
            Ok(mut g) => {
                let start = (self.clock_ns)();
                let a = g.queues.admit(key, req, waiter, now_ms, saturation);
                let ns = (self.clock_ns)().saturating_sub(start);
                let Guarded { timings, flows, .. } = &mut *g;
                let fairness = flows.label(&key.fairness_id);
                timings.enqueue(fairness, key.priority, admission_label(&a), ns);
                a
            }
            Err(_) => Admission::Dispatch,
        }
    }

    /// Runs a dispatch cycle (timed); wakes what it released. Returns how many it released.
    pub fn pump(&self, now_ms: u64, saturation: &mut dyn FnMut() -> f64) -> usize {
        let (released, evicted) = match self.state.lock() {
            Ok(mut g) => {
                let start = (self.clock_ns)();
                let r = g.queues.dispatch(now_ms, saturation);
                let ns = (self.clock_ns)().saturating_sub(start);
                g.timings.dispatch_cycle(ns);
                (r, g.queues.take_evicted())
            }
            Err(_) => (None, Vec::new()),
        };
        for v in evicted {
            deliver(v);
        }
        match released {
            Some(r) => {
                deliver(r);
                1
            }
            None => 0,
        }
    }

    /// Expires the requests whose budget ran out, wakes them, then runs a dispatch cycle (the
    /// host's tick). `empty_pool` says whether the pool has endpoints now.
    pub fn tick(&self, now_ms: u64, empty_pool: bool, saturation: &mut dyn FnMut() -> f64) {
        let expired = match self.state.lock() {
            Ok(mut g) => {
                g.queues.set_pool_empty(empty_pool, now_ms);
                g.queues.expire(now_ms)
            }
            Err(_) => Vec::new(),
        };
        for r in expired {
            deliver(r);
        }
        self.pump(now_ms, saturation);
    }

    /// The released request `ticket` went through scheduling.
    pub fn scheduled(&self, ticket: Ticket) {
        if let Ok(mut g) = self.state.lock() {
            g.queues.scheduled(ticket);
        }
    }

    /// The request `ticket` is gone at `now_ms`: frees its slot. Returns its band and wait
    /// (ms) when it was still waiting.
    pub fn cancel(&self, ticket: Ticket, now_ms: u64) -> Option<(i32, u64)> {
        // The waiter (and with it the host's wake handle) is dropped after the lock.
        let released = match self.state.lock() {
            Ok(mut g) => g.queues.cancel(ticket, now_ms),
            Err(_) => None,
        };
        released.map(|r| (r.priority, r.waited_ms))
    }

    /// Queue depth per flow ([`FlowQueues::depths`]).
    pub fn depths(&self) -> Vec<FlowDepth> {
        self.state
            .lock()
            .map(|g| g.queues.depths())
            .unwrap_or_default()
    }

    /// Moves the queue gauges by this gate's changes since its last call (the flush's).
    pub fn publish_depths(&self, sink: &mut dyn StatSink) {
        let depths = self.depths();
        if let Ok(mut g) = self.gauges.lock() {
            g.publish(depths, sink);
        }
    }

    /// Requests waiting.
    pub fn len(&self) -> u64 {
        self.state.lock().map(|g| g.queues.len()).unwrap_or(0)
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn deliver(r: Released<Waiter>) {
    r.waker.slot.put(WaitEnd {
        outcome: r.outcome,
        priority: r.priority,
        waited_ms: r.waited_ms,
    });
    r.waker.wake.wake();
}
