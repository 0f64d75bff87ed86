//! The queues of the flow-control layer and its dispatch cycle (see the module docs of
//! [`crate::flowcontrol`] for the rules). Host-independent and single-threaded: a host keeps one
//! [`FlowQueues`] behind its own lock and hands each queued request a waker `W` (a handle that
//! resumes that request on its worker), which comes back in a [`Released`].
//!
//! One request is released at a time: after a release nothing more is dispatched until the
//! released request has been scheduled ([`FlowQueues::scheduled`]) or has gone
//! ([`FlowQueues::cancel`]), so the saturation detector sees its load before the next decision.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::error::RequestError;
use crate::flowcontrol::eviction::{
    EvictionCounts, EvictionGauges, EvictionReport, InFlight, Tracked,
};
use crate::flowcontrol::settings::{BandSettings, FlowControl};
use crate::plugin::{FlowHead, OrderingPolicy, QueuedRequest};
use crate::scratch::Scratch;

/// Identifies one queued request.
pub type Ticket = u64;

/// Longest fairness id kept (bytes); a longer header value is cut (ids are untrusted).
pub const MAX_FAIRNESS_ID_BYTES: usize = 128;

/// A request's flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// Tenant (the fairness-id header, or `default-flow`).
    pub fairness_id: String,
    /// Priority (its InferenceObjective's).
    pub priority: i32,
}

/// What admission decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go on now: nothing is queued ahead and the pool has capacity.
    Dispatch,
    /// Wait; the waker comes back in a [`Released`].
    Queued(Ticket),
    /// Refused: 429 `queue_full`, or 503 when the pool has no endpoints.
    Rejected(RequestError),
}

/// How a queued request ends its wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Released to be scheduled.
    Dispatched,
    /// Waited its whole budget: 429 `queue_timeout`, or 503 when the pool had no endpoints.
    Expired(RequestError),
    /// Not queued: a sheddable request already sent to a server, cut short for waiting
    /// higher-priority requests (`enableEviction`; 429 `evicted`).
    Evicted,
}

/// A request leaving the queue, for the host to wake.
#[derive(Debug)]
pub struct Released<W> {
    /// The waker the host gave at admission.
    pub waker: W,
    /// The request's ticket.
    pub ticket: Ticket,
    /// Its band's priority.
    pub priority: i32,
    /// How long it waited (ms).
    pub waited_ms: u64,
    /// Why it leaves.
    pub outcome: Outcome,
}

struct Entry<W> {
    ticket: Ticket,
    req: QueuedRequest,
    waker: W,
}

struct Flow<W> {
    id: String,
    items: VecDeque<Entry<W>>,
    /// Body bytes of `items`, kept as they come and go (the gauges read it on every tick).
    bytes: u64,
}

struct Band<W> {
    settings: BandSettings,
    flows: Vec<Flow<W>>,
    len: u64,
    bytes: u64,
    /// The fairness policy's state (e.g. the last flow served). A `Cell` so a dispatch cycle can
    /// lend it to the policy while the flows are borrowed, without copying it.
    cursor: Cell<Option<String>>,
}

/// Queue depth of one flow: a fairness id in a band.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowDepth {
    /// The flow's fairness id (cut as [`cut_fairness_id`] cuts it).
    pub fairness_id: String,
    /// The band's priority.
    pub priority: i32,
    /// Requests waiting.
    pub requests: u64,
    /// Their body bytes.
    pub bytes: u64,
}

/// How full one band's queue is against its limits, each a fraction 0..1 (llm-d-router's
/// `flow_control_capacity_utilization_requests` / `_bytes`: queued over the band's limit, a
/// band without its own limit using the default one, [`crate::flowcontrol::settings`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandUtilization {
    /// The band's priority.
    pub priority: i32,
    /// Requests queued / the band's request limit; `None` when the band has no limit (0).
    pub requests: Option<f64>,
    /// Body bytes queued / the band's byte limit; `None` when it has none.
    pub bytes: Option<f64>,
}

/// How full the queues are (llm-d-router's capacity-utilization gauges).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CapacityUtilization {
    /// Every configured band and every band that has held a request, highest priority first.
    pub bands: Vec<BandUtilization>,
    /// Requests queued over all bands / the global request limit; `None` when there is none
    /// (upstream leaves the all-bands series out rather than report 0).
    pub requests: Option<f64>,
    /// Body bytes queued over all bands / the global byte limit; `None` when there is none.
    pub bytes: Option<f64>,
}

/// `used / limit` as a fraction, `None` for no limit (0).
fn fraction(used: u64, limit: u64) -> Option<f64> {
    (limit > 0).then(|| used as f64 / limit as f64)
}

/// The queues; see the module docs.
pub struct FlowQueues<W> {
    settings: Arc<FlowControl>,
    /// Highest priority first.
    bands: Vec<Band<W>>,
    len: u64,
    bytes: u64,
    next_seq: u64,
    /// Released, not yet scheduled.
    in_transit: Vec<Ticket>,
    /// Since when the pool has had no endpoints (ms), if it has none.
    empty_since: Option<u64>,
    /// The requests flow control let through, with `enableEviction`.
    in_flight: Option<InFlight<W>>,
    /// Victims of the last eviction decision, for the host to answer.
    evicted: Vec<Released<W>>,
}

/// The index of the next request of `flow` by `ordering`.
fn head_index<W>(flow: &Flow<W>, ordering: &dyn OrderingPolicy) -> Option<usize> {
    if ordering.is_fifo() {
        return (!flow.items.is_empty()).then_some(0);
    }
    let mut best: Option<(usize, &QueuedRequest)> = None;
    for (i, e) in flow.items.iter().enumerate() {
        if best.is_none_or(|(_, b)| ordering.less(&e.req, b)) {
            best = Some((i, &e.req));
        }
    }
    best.map(|(i, _)| i)
}

impl<W> FlowQueues<W> {
    /// Empty queues with `settings`. `scrape_lag_ms` (the pool's scrape interval plus its
    /// staleness limit) paces eviction decisions when the saturation detector reads scraped
    /// metrics ([`crate::flowcontrol::eviction::Sensor::grace_ms`]).
    pub fn new(settings: Arc<FlowControl>, scrape_lag_ms: u64) -> Self {
        let in_flight = settings
            .eviction
            .map(|sensor| InFlight::new(sensor.grace_ms(scrape_lag_ms)));
        FlowQueues {
            settings,
            bands: Vec::new(),
            len: 0,
            bytes: 0,
            next_seq: 0,
            in_transit: Vec::new(),
            empty_since: None,
            in_flight,
            evicted: Vec::new(),
        }
    }

    /// With `enableEviction`, starts tracking a request of `priority` routed at `now_ms`;
    /// `victim` is the handle that resumes it on its worker to be answered if it is evicted
    /// (only a sheddable request, priority < 0, needs one). `None` (and the handle dropped) when
    /// eviction is off. End the tracking with [`FlowQueues::untrack`] when the request ends.
    pub fn track(&mut self, priority: i32, now_ms: u64, victim: Option<W>) -> Option<Tracked> {
        self.in_flight
            .as_mut()
            .map(|f| f.track(priority, now_ms, victim))
    }

    /// The tracked request `t` ended at `now_ms`; returns its handle if it was still evictable.
    pub fn untrack(&mut self, t: Tracked, now_ms: u64) -> Option<W> {
        self.in_flight.as_mut().and_then(|f| f.untrack(t, now_ms))
    }

    /// The victims of the eviction decisions since the last call ([`Outcome::Evicted`]), for
    /// the host to wake and answer.
    pub fn take_evicted(&mut self) -> Vec<Released<W>> {
        core::mem::take(&mut self.evicted)
    }

    /// What eviction has done, when it is on.
    pub fn eviction_counts(&self) -> Option<EvictionCounts> {
        self.in_flight.as_ref().map(InFlight::counts)
    }

    /// Eviction's sizing state (for metrics), when it is on.
    pub fn eviction_gauges(&self) -> Option<EvictionGauges> {
        self.in_flight.as_ref().map(InFlight::gauges)
    }

    /// What eviction did since the last call (for metrics), when it is on.
    pub fn take_eviction_report(&mut self) -> Option<EvictionReport> {
        self.in_flight.as_mut().map(InFlight::take_report)
    }

    /// At a dispatch cycle held at band `held` (the saturation reached its ceiling): the
    /// eviction trigger of [`crate::flowcontrol::eviction`]; victims go to `self.evicted`.
    fn maybe_evict(
        &mut self,
        now_ms: u64,
        sat: f64,
        priorities: &[i32],
        ceilings: &[f64],
        held: usize,
    ) {
        let Some(f) = self.in_flight.as_mut() else {
            return;
        };
        if !f.gate_open(now_ms) {
            return;
        }
        let Some(victim) = f.victim_priority() else {
            return;
        };
        for (j, (&priority, &ceiling)) in priorities.iter().zip(ceilings).enumerate().skip(held) {
            if priority <= victim {
                return;
            }
            if ceiling <= 0.0 || sat < ceiling {
                continue;
            }
            if self.bands.get(j).is_none_or(|b| b.len == 0) {
                continue;
            }
            let victims = f.reclaim(now_ms, sat, ceiling, priority);
            self.evicted
                .extend(victims.into_iter().map(|(t, waker)| Released {
                    waker,
                    ticket: 0,
                    priority: t.priority(),
                    waited_ms: 0,
                    outcome: Outcome::Evicted,
                }));
            return;
        }
    }

    /// Requests waiting, over all bands.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Requests released and not yet scheduled.
    pub fn in_transit(&self) -> usize {
        self.in_transit.len()
    }

    /// Depth of every flow with requests waiting, band by band, and of
    /// the default flow of every band that has none waiting but is configured or has held a
    /// request (0: the band's series exist before its first wait, as upstream's do).
    pub fn depths(&self) -> Vec<FlowDepth> {
        let mut out = Vec::new();
        let empty_band = |priority| FlowDepth {
            fairness_id: String::from(super::DEFAULT_FAIRNESS_ID),
            priority,
            ..FlowDepth::default()
        };
        for b in &self.bands {
            let priority = b.settings.priority;
            // A flow leaves its band when its last request does, so every flow listed waits.
            if b.flows.is_empty() {
                out.push(empty_band(priority));
            }
            out.extend(b.flows.iter().map(|f| FlowDepth {
                fairness_id: f.id.clone(),
                priority,
                requests: f.items.len() as u64,
                bytes: f.bytes,
            }));
        }
        for c in &self.settings.bands {
            if !self.bands.iter().any(|b| b.settings.priority == c.priority) {
                out.push(empty_band(c.priority));
            }
        }
        out
    }

    /// How full every band and the whole layer are against their limits.
    pub fn capacity_utilization(&self) -> CapacityUtilization {
        let mut bands: Vec<BandUtilization> = self
            .bands
            .iter()
            .map(|b| BandUtilization {
                priority: b.settings.priority,
                requests: fraction(b.len, b.settings.max_requests),
                bytes: fraction(b.bytes, b.settings.max_bytes),
            })
            .collect();
        // A configured band reports before its first request, as upstream's do.
        for c in &self.settings.bands {
            if !bands.iter().any(|b| b.priority == c.priority) {
                bands.push(BandUtilization {
                    priority: c.priority,
                    requests: fraction(0, c.max_requests),
                    bytes: fraction(0, c.max_bytes),
                });
            }
        }
        bands.sort_unstable_by_key(|b| core::cmp::Reverse(b.priority));
        CapacityUtilization {
            bands,
            requests: fraction(self.len, self.settings.max_requests),
            bytes: fraction(self.bytes, self.settings.max_bytes),
        }
    }

    /// Tells the queues whether the pool has endpoints (it changes which TTL applies).
    pub fn set_pool_empty(&mut self, empty: bool, now_ms: u64) {
        match (empty, self.empty_since) {
            (true, None) => self.empty_since = Some(now_ms),
            (false, Some(_)) => self.empty_since = None,
            _ => {}
        }
    }

    fn band_index(&mut self, priority: i32) -> usize {
        if let Some(i) = self
            .bands
            .iter()
            .position(|b| b.settings.priority == priority)
        {
            return i;
        }
        let at = self
            .bands
            .iter()
            .position(|b| b.settings.priority < priority)
            .unwrap_or(self.bands.len());
        self.bands.insert(
            at,
            Band {
                settings: self.settings.band_for(priority),
                flows: Vec::new(),
                len: 0,
                bytes: 0,
                cursor: Cell::new(None),
            },
        );
        at
    }

    /// True when something waits in a band of priority ≥ `priority`.
    fn queued_at_or_above(&self, priority: i32) -> bool {
        self.bands
            .iter()
            .take_while(|b| b.settings.priority >= priority)
            .any(|b| b.len > 0)
    }

    /// The ceilings of `priorities` (every band that has held a request, highest first; bands
    /// are never dropped, where upstream forgets a band idle for ten minutes) at `saturation`.
    fn ceilings(&self, saturation: f64, priorities: &[i32]) -> Scratch<f64> {
        let mut ceilings = Scratch::from_elem(1.0, priorities.len());
        if let Some(u) = self.settings.usage_limit() {
            u.ceilings(saturation, priorities, &mut ceilings);
        }
        ceilings
    }

    /// Admits a request of `key` with `req` (its `enqueued_ms` and `seq` are set here) at
    /// `now_ms`. `saturation` is asked at most once, only when nothing waits ahead.
    ///
    /// A [`Admission::Dispatch`] needs no waker (it is dropped); the caller schedules at once.
    pub fn admit(
        &mut self,
        key: &FlowKey,
        mut req: QueuedRequest,
        waker: W,
        now_ms: u64,
        saturation: &mut dyn FnMut() -> f64,
    ) -> Admission {
        let b = self.band_index(key.priority);
        // Fast path: nothing ahead, nothing in transit, and the pool under the ceiling of every
        // band down to this one (the ceilings are computed over every active band, as a
        // policy's ceilings may depend on how many there are).
        if self.in_transit.is_empty() && !self.queued_at_or_above(key.priority) {
            let sat = saturation();
            let priorities: Scratch<i32> = self.bands.iter().map(|b| b.settings.priority).collect();
            let ceilings = self.ceilings(sat, &priorities);
            if ceilings.iter().take(b + 1).all(|&c| sat < c) {
                return Admission::Dispatch;
            }
        }
        let Some(band) = self.bands.get_mut(b) else {
            return Admission::Rejected(RequestError::QueueFull);
        };
        let over = |limit: u64, now: u64, add: u64| limit > 0 && now.saturating_add(add) > limit;
        if over(self.settings.max_requests, self.len, 1)
            || over(self.settings.max_bytes, self.bytes, req.bytes)
            || over(band.settings.max_requests, band.len, 1)
            || over(band.settings.max_bytes, band.bytes, req.bytes)
        {
            return Admission::Rejected(if self.empty_since.is_some() {
                RequestError::NoCandidates
            } else {
                RequestError::QueueFull
            });
        }
        self.next_seq += 1;
        let ticket = self.next_seq;
        req.seq = ticket;
        req.enqueued_ms = now_ms;
        let id = cut_fairness_id(&key.fairness_id);
        let flow = match band.flows.iter().position(|f| f.id == id) {
            Some(i) => i,
            None => {
                band.flows.push(Flow {
                    id: String::from(id),
                    items: VecDeque::new(),
                    bytes: 0,
                });
                band.flows.len() - 1
            }
        };
        if let Some(f) = band.flows.get_mut(flow) {
            f.bytes = f.bytes.saturating_add(req.bytes);
            f.items.push_back(Entry { ticket, req, waker });
        }
        band.len += 1;
        band.bytes = band.bytes.saturating_add(req.bytes);
        self.len += 1;
        self.bytes = self.bytes.saturating_add(req.bytes);
        Admission::Queued(ticket)
    }

    /// One dispatch cycle at `now_ms`: releases the next request if the pool has capacity for
    /// it, else `None`. Does nothing while a released request is in transit.
    pub fn dispatch(
        &mut self,
        now_ms: u64,
        saturation: &mut dyn FnMut() -> f64,
    ) -> Option<Released<W>> {
        if self.len == 0 || !self.in_transit.is_empty() {
            return None;
        }
        let sat = saturation();
        let priorities: Scratch<i32> = self.bands.iter().map(|b| b.settings.priority).collect();
        let ceilings = self.ceilings(sat, &priorities);
        for (b, ceiling) in ceilings.iter().enumerate() {
            if sat >= *ceiling {
                // This band is held; no lower band may overtake it. Waiting demand may evict
                // sheddable requests in flight.
                self.maybe_evict(now_ms, sat, &priorities, &ceilings, b);
                return None;
            }
            let Some(band) = self.bands.get(b) else {
                break;
            };
            if band.len == 0 {
                continue;
            }
            let (Some(fairness), Some(ordering)) =
                (band.settings.fairness(), band.settings.ordering())
            else {
                continue;
            };
            let heads: Scratch<Option<usize>> =
                band.flows.iter().map(|f| head_index(f, ordering)).collect();
            let views: Scratch<FlowHead<'_>> = band
                .flows
                .iter()
                .zip(&heads)
                .map(|(f, h)| FlowHead {
                    id: &f.id,
                    head: h.and_then(|i| f.items.get(i)).map(|e| &e.req),
                })
                .collect();
            let mut cursor = band.cursor.take();
            let picked = fairness.pick(&views, ordering, &mut cursor);
            band.cursor.set(cursor);
            // The views borrow the band (and an inline list is dropped at the end of scope).
            drop(views);
            let Some(flow) = picked else {
                continue;
            };
            let Some(item) = heads.get(flow).copied().flatten() else {
                continue;
            };
            let released = self.take(b, flow, item, now_ms, Outcome::Dispatched)?;
            self.in_transit.push(released.ticket);
            return Some(released);
        }
        None
    }

    /// Removes entry `item` of flow `flow` of band `b`.
    fn take(
        &mut self,
        b: usize,
        flow: usize,
        item: usize,
        now_ms: u64,
        outcome: Outcome,
    ) -> Option<Released<W>> {
        let band = self.bands.get_mut(b)?;
        let f = band.flows.get_mut(flow)?;
        let e = f.items.remove(item)?;
        f.bytes = f.bytes.saturating_sub(e.req.bytes);
        if f.items.is_empty() {
            band.flows.remove(flow);
        }
        band.len = band.len.saturating_sub(1);
        band.bytes = band.bytes.saturating_sub(e.req.bytes);
        self.len = self.len.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(e.req.bytes);
        Some(Released {
            waker: e.waker,
            ticket: e.ticket,
            priority: band.settings.priority,
            waited_ms: now_ms.saturating_sub(e.req.enqueued_ms),
            outcome,
        })
    }

    /// Releases every request whose budget ran out by `now_ms` (429 `queue_timeout`; 503 when
    /// the pool has no endpoints and the no-endpoint budget ran out).
    pub fn expire(&mut self, now_ms: u64) -> Vec<Released<W>> {
        let (budget, error, floor) = match self.empty_since {
            Some(since) => (
                self.settings.no_endpoint_ttl_ms,
                RequestError::NoCandidates,
                since,
            ),
            None => (self.settings.request_ttl_ms, RequestError::QueueTimeout, 0),
        };
        let mut out = Vec::new();
        if budget == 0 || self.len == 0 {
            return out;
        }
        let mut expired: Vec<(usize, usize, usize)> = Vec::new();
        for (b, band) in self.bands.iter().enumerate() {
            for (fi, f) in band.flows.iter().enumerate() {
                for (i, e) in f.items.iter().enumerate() {
                    // A pool that emptied starts a fresh budget, as upstream charges from the
                    // later of enqueue time and the last change of regime.
                    let from = e.req.enqueued_ms.max(floor);
                    if now_ms >= from.saturating_add(budget) {
                        expired.push((b, fi, i));
                    }
                }
            }
        }
        // Remove from the back so earlier indices stay valid (a flow removed when it empties
        // is always at a higher index than those still to visit in its band).
        for &(b, fi, i) in expired.iter().rev() {
            if let Some(r) = self.take(b, fi, i, now_ms, Outcome::Expired(error.clone())) {
                out.push(r);
            }
        }
        out
    }

    /// The released request `ticket` went through scheduling (whatever the result): the next
    /// can be released.
    pub fn scheduled(&mut self, ticket: Ticket) {
        self.in_transit.retain(|&t| t != ticket);
    }

    /// The request `ticket` is gone at `now_ms` (client left, stream reset): frees its slot,
    /// whether it was waiting or released. Returns it (waker, band, wait) if it was still
    /// waiting.
    pub fn cancel(&mut self, ticket: Ticket, now_ms: u64) -> Option<Released<W>> {
        self.scheduled(ticket);
        let mut at = None;
        'find: for (b, band) in self.bands.iter().enumerate() {
            for (fi, f) in band.flows.iter().enumerate() {
                if let Some(i) = f.items.iter().position(|e| e.ticket == ticket) {
                    at = Some((b, fi, i));
                    break 'find;
                }
            }
        }
        let (b, fi, i) = at?;
        self.take(b, fi, i, now_ms, Outcome::Dispatched)
    }
}

/// `id` cut to [`MAX_FAIRNESS_ID_BYTES`] at a character boundary.
pub fn cut_fairness_id(id: &str) -> &str {
    if id.len() <= MAX_FAIRNESS_ID_BYTES {
        return id;
    }
    let mut end = MAX_FAIRNESS_ID_BYTES;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.get(..end).unwrap_or("")
}
