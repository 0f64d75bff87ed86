//! In-flight eviction (`flowControl.enableEviction`, llm-d-router `flowcontrol/eviction` and
//! `controller/internal/reclamation.go`; docs/SOURCES.md#flow-control-eviction): when requests of
//! a higher priority wait because the pool is saturated, sheddable requests (priority < 0)
//! already sent to a model server are cut short to give their capacity back.
//!
//! The rules, in our words:
//! - **Who is tracked.** Every request that flow control let through and that was routed counts
//!   as in flight until its stream ends. Only a sheddable one (priority < 0, upstream's
//!   `sheddable-eviction-filter`) can be a victim.
//! - **Victim order** (upstream's `priority-then-time-eviction-order-policy`): lowest priority
//!   first; among equals the most recently dispatched first (it has the least KV-cache work
//!   invested).
//! - **Trigger.** A dispatch cycle stops at a band whose ceiling the saturation reaches. From that
//!   band down, the first band that holds queued requests, whose priority is strictly above the
//!   next victim's and whose ceiling is above 0 and reached, is the demand (a band above the
//!   saturation will dispatch on a later cycle; a zero ceiling never dispatches, so evicting for
//!   it would never end).
//! - **Sizing.** All in the saturation detector's units: the excess is `saturation − ceiling`, one
//!   request's share is `saturation / in-flight count`, and `n = max(1, ⌈(excess − pending) /
//!   share⌉)`, at most [`MAX_REVOCATIONS_PER_DECISION`] and at most the evictable count. Victims
//!   of one decision all have priorities strictly below the demand band's.
//! - **Pacing.** Stop-and-wait: a new decision runs only when every earlier victim's stream has
//!   ended (or [`CONFIRMATION_TIMEOUT_MS`] passed since it was evicted) and a grace has passed
//!   since, so the saturation signal shows the freed capacity before anyone decides again. The
//!   grace is the sensor's lag: [`LEADING_SENSOR_GRACE_MS`] for `concurrency-detector`, whose
//!   counts drop when the stream ends; for a scraped detector the scrape interval plus the
//!   staleness limit plus [`ENGINE_RECLAIM_BUDGET_MS`] for the engine to free the KV cache.
//!
//! Host-independent and single-threaded: [`crate::flowcontrol::FlowQueues`] keeps one
//! [`InFlight`] behind the host's lock; the host gives each sheddable request a handle `V` that
//! resumes it on its own worker, and answers an evicted one 429 (upstream sends Envoy an
//! immediate response, which also resets the stream to the model server).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Most requests one eviction decision cuts (llm-d-router's default; not configurable there).
pub const MAX_REVOCATIONS_PER_DECISION: usize = 2;
/// An evicted request whose stream has not ended after this long (ms) counts as ended.
pub const CONFIRMATION_TIMEOUT_MS: u64 = 10_000;
/// Grace after the last victim ended when the detector counts in-flight requests (ms).
pub const LEADING_SENSOR_GRACE_MS: u64 = 10;
/// The engine's time to abort a request and free its KV blocks, added to a scraped detector's
/// grace (ms).
pub const ENGINE_RECLAIM_BUDGET_MS: u64 = 250;

/// How the saturation detector sees capacity freed by an eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sensor {
    /// At once, from the proxy's own in-flight counts (`concurrency-detector`).
    Leading,
    /// After the engine frees it and a fresh scrape shows it (every other detector).
    Scraped,
}

impl Sensor {
    /// The pacing grace (ms) for this sensor; `scrape_lag_ms` is the scrape interval plus the
    /// staleness limit of the pool's metrics.
    pub fn grace_ms(self, scrape_lag_ms: u64) -> u64 {
        match self {
            Sensor::Leading => LEADING_SENSOR_GRACE_MS,
            Sensor::Scraped => scrape_lag_ms.saturating_add(ENGINE_RECLAIM_BUDGET_MS),
        }
    }
}

/// One tracked request, as the host keeps it to end the tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    token: u64,
    priority: i32,
    dispatched_ms: u64,
}

impl Tracked {
    /// The request's priority.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Victim order: ascending keys are evicted first (lowest priority, then newest dispatch,
    /// then the later-tracked of two in the same millisecond).
    fn key(&self) -> (i32, u64, u64) {
        (
            self.priority,
            u64::MAX - self.dispatched_ms,
            u64::MAX - self.token,
        )
    }
}

/// An issued eviction whose stream has not ended yet.
struct Revocation {
    token: u64,
    /// The share of saturation it was expected to free.
    credit: f64,
    issued_ms: u64,
}

/// What eviction did since the last [`InFlight::take_report`], for the host's metrics
/// (llm-d-router's `flow_control_revocations_issued_total{priority}` and
/// `flow_control_revocations_total{outcome}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvictionReport {
    /// Evictions issued, by the priority of the band they made room for.
    pub issued: Vec<(i32, u64)>,
    /// Evicted requests whose stream then ended (`confirmed`).
    pub confirmed: u64,
    /// Evicted requests counted as ended after [`CONFIRMATION_TIMEOUT_MS`] (`timed_out`).
    pub timed_out: u64,
    /// For each `confirmed` one, the time from its eviction to its stream's end, ms
    /// (llm-d-router's `flow_control_revocation_confirmation_seconds`).
    pub confirmation_ms: Vec<u64>,
}

impl EvictionReport {
    /// True when nothing happened.
    pub fn is_empty(&self) -> bool {
        self.issued.is_empty() && self.confirmed == 0 && self.timed_out == 0
    }
}

/// Eviction's sizing state now, in the saturation detector's units (llm-d-router's
/// `flow_control_reclaim_target` and `flow_control_pending_reclaim` gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvictionGauges {
    /// The last computed deficit: saturation − the blocked band's ceiling (0 before any
    /// decision).
    pub reclaim_target: f64,
    /// Capacity expected from victims not yet ended or still in their grace.
    pub pending_reclaim: f64,
}

/// Counts of what eviction did since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictionCounts {
    /// Requests evicted.
    pub issued: u64,
    /// Evicted requests whose stream then ended.
    pub confirmed: u64,
    /// Evicted requests counted as ended after [`CONFIRMATION_TIMEOUT_MS`].
    pub timed_out: u64,
}

/// The in-flight requests and the eviction decisions; see the module docs.
pub struct InFlight<V> {
    /// Sheddable requests with a handle, in victim order.
    evictable: BTreeMap<(i32, u64, u64), (Tracked, V)>,
    /// Every tracked request (evictable or not, evicted or not) until its tracking ends.
    len: usize,
    next_token: u64,
    grace_ms: u64,
    outstanding: Vec<Revocation>,
    /// Debits of ended victims, until their grace ends (credit, until ms).
    cooling: Vec<(f64, u64)>,
    pending: f64,
    /// The last sizing decision's deficit (saturation − ceiling).
    reclaim_target: f64,
    counts: EvictionCounts,
    report: EvictionReport,
}

impl<V> InFlight<V> {
    /// Nothing tracked; decisions paced by `grace_ms` (see [`Sensor::grace_ms`]).
    pub fn new(grace_ms: u64) -> Self {
        InFlight {
            evictable: BTreeMap::new(),
            len: 0,
            next_token: 0,
            grace_ms,
            outstanding: Vec::new(),
            cooling: Vec::new(),
            pending: 0.0,
            reclaim_target: 0.0,
            counts: EvictionCounts::default(),
            report: EvictionReport::default(),
        }
    }

    /// Tracks a request of `priority` dispatched at `now_ms`. It can be evicted when it is
    /// sheddable (priority < 0) and `victim` (the host's handle to answer it) is given;
    /// otherwise the handle is dropped and the request only counts.
    pub fn track(&mut self, priority: i32, now_ms: u64, victim: Option<V>) -> Tracked {
        self.next_token = self.next_token.wrapping_add(1);
        let t = Tracked {
            token: self.next_token,
            priority,
            dispatched_ms: now_ms,
        };
        self.len += 1;
        if let (true, Some(v)) = (priority < 0, victim) {
            self.evictable.insert(t.key(), (t, v));
        }
        t
    }

    /// The request `t` ended at `now_ms` (completed, failed, reset, or answered as evicted).
    /// Returns its handle if it was still evictable, for the host to drop outside its lock.
    pub fn untrack(&mut self, t: Tracked, now_ms: u64) -> Option<V> {
        self.len = self.len.saturating_sub(1);
        if let Some(i) = self.outstanding.iter().position(|r| r.token == t.token) {
            let r = self.outstanding.swap_remove(i);
            self.counts.confirmed += 1;
            self.report.confirmed += 1;
            self.report
                .confirmation_ms
                .push(now_ms.saturating_sub(r.issued_ms));
            self.cooling
                .push((r.credit, now_ms.saturating_add(self.grace_ms)));
        }
        self.evictable.remove(&t.key()).map(|(_, v)| v)
    }

    /// Requests tracked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Requests that could be evicted now.
    pub fn evictable_len(&self) -> usize {
        self.evictable.len()
    }

    /// What eviction has done so far.
    pub fn counts(&self) -> EvictionCounts {
        self.counts
    }

    /// The sizing state now (see [`EvictionGauges`]).
    pub fn gauges(&self) -> EvictionGauges {
        EvictionGauges {
            reclaim_target: self.reclaim_target,
            pending_reclaim: self.pending,
        }
    }

    /// What eviction did since the last call.
    pub fn take_report(&mut self) -> EvictionReport {
        core::mem::take(&mut self.report)
    }

    /// The priority of the next victim, if any.
    pub fn victim_priority(&self) -> Option<i32> {
        self.evictable.values().next().map(|(t, _)| t.priority)
    }

    /// Whether a new decision may run at `now_ms`: every earlier victim ended (or timed out)
    /// and its grace passed.
    pub fn gate_open(&mut self, now_ms: u64) -> bool {
        let grace = self.grace_ms;
        let mut i = 0;
        while let Some(r) = self.outstanding.get(i) {
            if now_ms.saturating_sub(r.issued_ms) >= CONFIRMATION_TIMEOUT_MS {
                let r = self.outstanding.swap_remove(i);
                self.counts.timed_out += 1;
                self.report.timed_out += 1;
                self.cooling.push((r.credit, now_ms.saturating_add(grace)));
            } else {
                i += 1;
            }
        }
        let before = self.cooling.len();
        let mut freed = 0.0;
        self.cooling.retain(|&(credit, until)| {
            let keep = now_ms < until;
            if !keep {
                freed += credit;
            }
            keep
        });
        if self.cooling.len() != before {
            self.pending = (self.pending - freed).max(0.0);
        }
        self.outstanding.is_empty() && self.cooling.is_empty()
    }

    /// One sizing decision at `now_ms` for demand in a band of `demand_priority` held at
    /// `ceiling` by `saturation` (see the module docs). Returns the victims, each removed from
    /// the evictable set (they stay tracked until the host ends them with
    /// [`InFlight::untrack`]). The caller checked [`InFlight::gate_open`] in the same cycle.
    pub fn reclaim(
        &mut self,
        now_ms: u64,
        saturation: f64,
        ceiling: f64,
        demand_priority: i32,
    ) -> Vec<(Tracked, V)> {
        let mut out = Vec::new();
        if self.len == 0 || self.evictable.is_empty() {
            return out;
        }
        let credit = saturation / self.len as f64;
        if !credit.is_finite() || credit <= 0.0 {
            return out;
        }
        self.reclaim_target = saturation - ceiling;
        let net = self.reclaim_target - self.pending;
        if net < 0.0 || (net == 0.0 && self.pending > 0.0) {
            return out;
        }
        // At the boundary (net 0, nothing pending) the band stays blocked unless one goes.
        let wanted = libm::ceil(net / credit).max(1.0);
        let n = (wanted as usize)
            .min(MAX_REVOCATIONS_PER_DECISION)
            .min(self.evictable.len());
        for _ in 0..n {
            let Some(entry) = self.evictable.first_entry() else {
                break;
            };
            // Every later victim is at or above this one: stop at the demand's priority.
            if entry.get().0.priority >= demand_priority {
                break;
            }
            let (t, v) = entry.remove();
            self.outstanding.push(Revocation {
                token: t.token,
                credit,
                issued_ms: now_ms,
            });
            self.pending += credit;
            self.counts.issued += 1;
            out.push((t, v));
        }
        if !out.is_empty() {
            let n = out.len() as u64;
            match self
                .report
                .issued
                .iter_mut()
                .find(|(p, _)| *p == demand_priority)
            {
                Some((_, c)) => *c += n,
                None => self.report.issued.push((demand_priority, n)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victims_are_the_lowest_priority_then_the_newest_and_only_sheddable_ones() {
        let mut f: InFlight<&str> = InFlight::new(10);
        let _critical = f.track(0, 0, Some("critical"));
        let _old = f.track(-1, 10, Some("old"));
        let _new = f.track(-1, 20, Some("new"));
        let _lowest = f.track(-5, 5, Some("lowest"));
        let _blind = f.track(-9, 5, None);
        assert_eq!(f.len(), 5);
        assert_eq!(
            f.evictable_len(),
            3,
            "priority ≥ 0 or no handle: not a victim"
        );
        assert_eq!(f.victim_priority(), Some(-5));
        // 5 in flight at saturation 1.5 against a ceiling of 1.0: a share is 0.3, so ⌈0.5/0.3⌉
        // = 2 victims.
        assert!(f.gate_open(100));
        let v: Vec<&str> = f
            .reclaim(100, 1.5, 1.0, 0)
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(v, ["lowest", "new"]);
        assert_eq!(f.counts().issued, 2);
        let r = f.take_report();
        assert_eq!(r.issued, [(0, 2)], "by the demand band's priority");
        assert!(f.take_report().is_empty(), "reported once");
    }

    #[test]
    fn a_decision_waits_for_its_victims_to_end_and_then_for_the_grace() {
        let mut f: InFlight<u8> = InFlight::new(10);
        let a = f.track(-1, 0, Some(1));
        let _b = f.track(-1, 1, Some(2));
        let _c = f.track(0, 2, None);
        assert!(f.gate_open(5));
        // Just at the ceiling: one victim, so the band can move.
        let v = f.reclaim(5, 1.0, 1.0, 0);
        assert_eq!(v.len(), 1);
        // One request's share of saturation 1.0 over 3 in flight is pending; the deficit is 0.
        let g = f.gauges();
        assert_eq!(g.reclaim_target, 0.0);
        assert!((g.pending_reclaim - 1.0 / 3.0).abs() < 1e-9, "{g:?}");
        assert!(!f.gate_open(6), "a victim is still running");
        let (t, _) = v[0];
        assert_ne!(t, a, "the newest goes first");
        assert_eq!(f.untrack(t, 8), None, "no longer evictable");
        assert_eq!(f.counts().confirmed, 1);
        assert_eq!(
            f.take_report().confirmation_ms,
            [3],
            "evicted at 5, ended at 8"
        );
        assert!(!f.gate_open(17), "within the grace");
        assert!(
            f.gauges().pending_reclaim > 0.0,
            "still debited in the grace"
        );
        assert!(f.gate_open(18));
        assert_eq!(f.gauges().pending_reclaim, 0.0);
        assert_eq!(
            f.untrack(a, 20),
            Some(1),
            "a completed request hands back its handle"
        );
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn a_victim_that_never_ends_stops_holding_the_gate_after_the_timeout() {
        let mut f: InFlight<u8> = InFlight::new(10);
        f.track(-1, 0, Some(1));
        assert_eq!(f.reclaim(0, 2.0, 1.0, 0).len(), 1);
        assert!(!f.gate_open(CONFIRMATION_TIMEOUT_MS - 1));
        assert!(
            !f.gate_open(CONFIRMATION_TIMEOUT_MS),
            "timed out, now cooling"
        );
        assert_eq!(f.counts().timed_out, 1);
        assert!(f.gate_open(CONFIRMATION_TIMEOUT_MS + 10));
    }

    #[test]
    fn no_victim_at_or_above_the_demand_and_none_under_the_ceiling() {
        let mut f: InFlight<u8> = InFlight::new(10);
        f.track(-1, 0, Some(1));
        f.track(-1, 0, Some(2));
        assert!(f.reclaim(0, 0.9, 1.0, 0).is_empty(), "not saturated");
        assert!(
            f.reclaim(0, 3.0, 1.0, -1).is_empty(),
            "same band as the demand"
        );
        assert_eq!(f.reclaim(0, 3.0, 1.0, 0).len(), 2, "capped at two");
    }

    #[test]
    fn grace_follows_the_sensor() {
        assert_eq!(Sensor::Leading.grace_ms(250), LEADING_SENSOR_GRACE_MS);
        assert_eq!(Sensor::Scraped.grace_ms(250), 500);
    }
}
