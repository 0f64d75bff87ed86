//! Scrape bookkeeping: one slot per endpoint with its latest metrics, the callout in flight and
//! the consecutive failures; and the snapshot built from them.
//!
//! Rules: at most one callout per endpoint in flight; only an HTTP 200 whose body is valid
//! Prometheus text with at least one mapped metric counts as a success (timeouts and refusals
//! arrive from Envoy as synthetic 504/503, docs/SOURCES.md#wasm-callouts); a failure keeps the
//! last metrics (their age then makes the endpoint stale).

use scheduler_core::config::pool::{PoolConfig, PoolEndpoint};
use scheduler_core::plugin::MetricsExtraction;
use scheduler_core::snapshot::{EndpointState, PoolSnapshot};
use scheduler_core::Endpoint;

/// Endpoints scraped per wake-up of the staggered scraper ([`ScrapeState::take_due`]): a burst
/// of four responses holds the main thread ~0.2 ms, and four callouts per wake keep the
/// wake-ups' own cost to about a quarter of the callouts'.
pub const SCRAPES_PER_WAKE: u64 = 4;

/// What one scrape produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScrapeOutcome {
    /// Metrics read.
    Ok,
    /// Non-200 status (includes Envoy's synthetic 503/504 for refused or timed-out calls).
    BadStatus,
    /// Body larger than `scrape.maxBodyBytes`.
    TooLarge,
    /// Not Prometheus text, or none of the engine's metrics.
    BadBody,
    /// The callout could not be dispatched.
    DispatchFailed,
}

struct Slot {
    member: PoolEndpoint,
    endpoint: Endpoint,
    in_flight: Option<u64>,
    failures: u32,
    /// One per page source (`dataLayer` second pages, e.g. DCGM), in source order.
    pages: Vec<PageSlot>,
    /// When the next staggered scrape is due, ms since the Unix epoch (0: at once; see
    /// [`ScrapeState::take_due`]).
    next_ms: u64,
}

/// A page source's fetch state for one endpoint.
#[derive(Clone, Default)]
struct PageSlot {
    in_flight: Option<u64>,
    /// When it was last fetched, ms since the Unix epoch (0: never).
    last_ms: u64,
    /// What it read last (kept across a failed fetch, like the metrics).
    attributes: Vec<(String, f64)>,
}

impl Slot {
    fn new(member: &PoolEndpoint, pages: usize) -> Slot {
        Slot {
            member: member.clone(),
            endpoint: member.to_endpoint(),
            in_flight: None,
            failures: 0,
            pages: vec![PageSlot::default(); pages],
            next_ms: 0,
        }
    }

    /// The endpoint with its page attributes appended to its metrics' attributes.
    fn published(&self) -> Endpoint {
        let mut e = self.endpoint.clone();
        for p in &self.pages {
            // A page's value replaces one of the same key (e.g. adopted from another scraper's
            // snapshot).
            e.metrics
                .attributes
                .retain(|(k, _)| !p.attributes.iter().any(|(pk, _)| pk == k));
            e.metrics.attributes.extend(p.attributes.iter().cloned());
        }
        e
    }
}

/// Where and how often one page source is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFetch<'a> {
    /// URL path.
    pub path: &'a str,
    /// Port on the endpoint's IP; `None`: the endpoint's own (serving) address.
    pub port: Option<u16>,
    /// Least time between two fetches, ms.
    pub interval_ms: u64,
}

/// The `ip:port` a page of `member` is fetched from.
fn page_address(member: &PoolEndpoint, port: Option<u16>) -> String {
    match port {
        None => member.address.clone(),
        Some(p) => {
            let ip = Endpoint::new(member.address.as_str()).ip().to_string();
            if ip.contains(':') {
                format!("[{ip}]:{p}")
            } else {
                format!("{ip}:{p}")
            }
        }
    }
}

/// See the module docs.
pub struct ScrapeState {
    slots: Vec<Slot>,
    /// Page sources per endpoint.
    pages: usize,
    generation: u64,
    dirty: bool,
    last_stale: Vec<bool>,
    /// When a host last considered publishing ([`ScrapeState::publish_due`]), ms since the
    /// Unix epoch.
    last_publish_ms: u64,
}

impl ScrapeState {
    /// Slots for every pool member, none scraped yet.
    pub fn new(pool: &PoolConfig) -> Self {
        Self::with_pages(pool, 0)
    }

    /// Slots for every pool member with `pages` page sources each, none scraped yet.
    pub fn with_pages(pool: &PoolConfig, pages: usize) -> Self {
        ScrapeState {
            pages,
            slots: pool.endpoints.iter().map(|m| Slot::new(m, pages)).collect(),
            generation: 0,
            dirty: true,
            last_stale: Vec::new(),
            last_publish_ms: 0,
        }
    }

    /// Replaces the members with `members` (a pool change published by the filter), keeping
    /// the metrics, failure count and in-flight callout of every endpoint whose address stays.
    /// A callout of a removed endpoint finds no slot when it completes and is dropped. Returns
    /// whether anything changed.
    pub fn set_members(&mut self, members: &[PoolEndpoint]) -> bool {
        let same = members.len() == self.slots.len()
            && members.iter().zip(&self.slots).all(|(m, s)| *m == s.member);
        if same {
            return false;
        }
        let mut old = std::mem::take(&mut self.slots);
        self.slots = members
            .iter()
            .map(|m| {
                match old.iter().position(|s| s.member.address == m.address) {
                    Some(i) => {
                        let mut s = old.swap_remove(i);
                        s.endpoint.labels = m.labels.clone();
                        if s.member.metrics_address != m.metrics_address {
                            // Metrics from the old page no longer describe this member.
                            s.endpoint = m.to_endpoint();
                            s.in_flight = None;
                            s.failures = 0;
                        }
                        s.member = m.clone();
                        s
                    }
                    None => Slot::new(m, self.pages),
                }
            })
            .collect();
        self.last_stale.clear();
        self.dirty = true;
        true
    }

    /// Adopts the metrics and failure counts of a snapshot another scraper instance published,
    /// for every endpoint whose address is in both, and continues its generation count. Used when
    /// this instance takes the lease over (a standby in a worker after the bootstrap scraper
    /// stopped): without it, its first publish would mark every endpoint as never scraped and
    /// empty the candidate list until the first scrapes came back.
    pub fn adopt(&mut self, snap: &PoolSnapshot) {
        for slot in &mut self.slots {
            if let Some(e) = snap
                .endpoints
                .iter()
                .find(|e| e.endpoint.address == slot.member.address)
            {
                if slot.endpoint.metrics.update_time_ms < e.endpoint.metrics.update_time_ms {
                    slot.endpoint.metrics = e.endpoint.metrics.clone();
                    slot.failures = e.consecutive_failures;
                }
            }
        }
        self.generation = self.generation.max(snap.generation);
        self.dirty = true;
    }

    /// Staggered scraping: the endpoints whose scrape is due at `now_ms` (no callout in flight,
    /// and never scraped or their time has come), each with its next time set.
    ///
    /// The pool is cut into groups of `per_wake` endpoints (in slot order), and group `g` of `G`
    /// is scraped `g · interval_ms / G` ms after each multiple of `interval_ms` since the Unix
    /// epoch, so the callouts leave in `G` small groups spread over the interval instead of all
    /// together. Each endpoint still gets one scrape per interval; the host wakes at
    /// [`ScrapeState::next_tick_in_ms`]. Why: the responses are read on Envoy's main thread, and a
    /// burst of `n` of them (~50 µs of main-thread CPU each, mostly Envoy's HTTP client) stalls
    /// a worker sharing that core for `n` times as long; each wake-up costs about as much as one
    /// callout, hence groups rather than one endpoint per wake (BENCHMARKS.md, "Scrape bursts and
    /// the tail"). GIE's EPP spreads its scrapes too, in effect: one collector loop per endpoint,
    /// started when the endpoint joined.
    pub fn take_due(
        &mut self,
        now_ms: u64,
        interval_ms: u64,
        per_wake: u64,
    ) -> Vec<(usize, String)> {
        let interval = interval_ms.max(1);
        let n = (self.slots.len() as u64).max(1);
        let per_wake = per_wake.max(1);
        let groups = n.div_ceil(per_wake);
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.in_flight.is_some() || s.next_ms > now_ms {
                continue;
            }
            let group = i as u64 / per_wake;
            let phase = interval.saturating_mul(group) / groups;
            s.next_ms = next_on_grid(now_ms, phase, interval);
            out.push((i, s.member.metrics_address.clone()));
        }
        out
    }

    /// Whether a host ticking at `now_ms` should publish (build the snapshot with
    /// [`ScrapeState::snapshot_if_changed`]): at once when the pool changed, otherwise once per
    /// `interval_ms`, however often the staggered scrapes wake it. Records the time when true.
    pub fn publish_due(&mut self, now_ms: u64, interval_ms: u64, pool_changed: bool) -> bool {
        let due = pool_changed || now_ms.saturating_sub(self.last_publish_ms) >= interval_ms;
        if due {
            self.last_publish_ms = now_ms;
        }
        due
    }

    /// How long a host that ticked at `now_ms` sleeps before its next tick, ms (1 to
    /// `interval_ms`): until the next group of scrapes falls due or the next publish, whichever
    /// comes first (`scraping` false: no metrics are scraped, only the publish counts).
    pub fn next_tick_in_ms(&self, now_ms: u64, interval_ms: u64, scraping: bool) -> u64 {
        let interval = interval_ms.max(1);
        let publish = self.last_publish_ms.saturating_add(interval);
        let wake = match self.next_due_ms(now_ms).filter(|_| scraping) {
            Some(due) => due.min(publish),
            None => publish,
        };
        wake.saturating_sub(now_ms).clamp(1, interval)
    }

    /// The earliest time after `now_ms` a scrape [`ScrapeState::take_due`] would return falls
    /// due, ms since the Unix epoch. An endpoint whose callout is still in flight counts with its
    /// next turn while that is ahead (so a pool whose callouts are all out, as right after a
    /// round, keeps its spread); once its turn has passed it is left out until the callout ends
    /// (it goes at the host's next wake-up). `None`: none is waiting.
    fn next_due_ms(&self, now_ms: u64) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.in_flight.is_none() || s.next_ms > now_ms)
            .map(|s| s.next_ms)
            .min()
    }

    /// The page fetches due at `now_ms` for `sources` (same order as configured): `(slot,
    /// source, address)` for each endpoint whose fetch of that source is not in flight and
    /// whose last one is at least its interval old.
    pub fn due_pages(&self, now_ms: u64, sources: &[PageFetch<'_>]) -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            for (j, (p, src)) in s.pages.iter().zip(sources).enumerate() {
                let due = p.last_ms == 0 || now_ms.saturating_sub(p.last_ms) >= src.interval_ms;
                if p.in_flight.is_none() && due {
                    out.push((i, j, page_address(&s.member, src.port)));
                }
            }
        }
        out
    }

    /// Records that page source `j` of slot `i` has callout `token` in flight since `now_ms`.
    pub fn started_page(&mut self, i: usize, j: usize, token: u64, now_ms: u64) {
        if let Some(p) = self.slots.get_mut(i).and_then(|s| s.pages.get_mut(j)) {
            p.in_flight = Some(token);
            p.last_ms = now_ms.max(1);
        }
    }

    /// The `(slot, source)` whose page callout `token` just finished (and clears it).
    pub fn finished_page(&mut self, token: u64) -> Option<(usize, usize)> {
        for (i, s) in self.slots.iter_mut().enumerate() {
            for (j, p) in s.pages.iter_mut().enumerate() {
                if p.in_flight == Some(token) {
                    p.in_flight = None;
                    return Some((i, j));
                }
            }
        }
        None
    }

    /// The endpoint of slot `i` (to read a page with).
    pub fn endpoint(&self, i: usize) -> Option<&Endpoint> {
        self.slots.get(i).map(|s| &s.endpoint)
    }

    /// Stores what page source `j` read for slot `i`.
    pub fn record_page(&mut self, i: usize, j: usize, attributes: Vec<(String, f64)>) {
        if let Some(p) = self.slots.get_mut(i).and_then(|s| s.pages.get_mut(j)) {
            if p.attributes != attributes {
                p.attributes = attributes;
                self.dirty = true;
            }
        }
    }

    /// Records that slot `i` has callout `token` in flight.
    pub fn started(&mut self, i: usize, token: u64) {
        if let Some(s) = self.slots.get_mut(i) {
            s.in_flight = Some(token);
        }
    }

    /// Forgets every fetch in flight (their outcomes will never come: the transport that ran
    /// them stopped), so each endpoint and page is due again on its turn.
    pub fn abandon_in_flight(&mut self) {
        for s in &mut self.slots {
            s.in_flight = None;
            for p in &mut s.pages {
                p.in_flight = None;
            }
        }
    }

    /// The slot whose callout `token` just finished (and clears it).
    pub fn finished(&mut self, token: u64) -> Option<usize> {
        let i = self.slots.iter().position(|s| s.in_flight == Some(token))?;
        if let Some(s) = self.slots.get_mut(i) {
            s.in_flight = None;
        }
        Some(i)
    }

    /// Reads a 200 response body for slot `i` with `extractor`.
    pub fn record_body(
        &mut self,
        i: usize,
        extractor: &dyn MetricsExtraction,
        body: &[u8],
        now_ms: u64,
    ) -> ScrapeOutcome {
        let Some(slot) = self.slots.get_mut(i) else {
            return ScrapeOutcome::BadBody;
        };
        let extracted = std::str::from_utf8(body)
            .ok()
            .and_then(|text| extractor.extract_page(&slot.endpoint, text))
            .filter(|x| x.fields_found > 0);
        match extracted {
            Some(x) => {
                let before = &slot.endpoint.metrics;
                let average = load_average(
                    before.load_average,
                    before.update_time_ms,
                    &x.metrics,
                    now_ms,
                );
                slot.endpoint.metrics = x.metrics;
                slot.endpoint.metrics.update_time_ms = now_ms;
                slot.endpoint.metrics.load_average = average;
                slot.failures = 0;
                self.dirty = true;
                ScrapeOutcome::Ok
            }
            None => {
                self.record_failure(i);
                ScrapeOutcome::BadBody
            }
        }
    }

    /// Counts a failed scrape of slot `i`.
    pub fn record_failure(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            s.failures = s.failures.saturating_add(1);
            s.in_flight = None;
            self.dirty = true;
        }
    }

    /// The snapshot to publish at `now_ms`, if anything changed since the last one (new
    /// metrics, failures, or an endpoint crossing the staleness threshold).
    pub fn snapshot_if_changed(&mut self, now_ms: u64, staleness_ms: u64) -> Option<PoolSnapshot> {
        let stale: Vec<bool> = self
            .slots
            .iter()
            .map(|s| s.endpoint.metrics.is_stale(now_ms, staleness_ms))
            .collect();
        if !self.dirty && stale == self.last_stale {
            return None;
        }
        self.dirty = false;
        self.generation += 1;
        let endpoints = self
            .slots
            .iter()
            .zip(&stale)
            .map(|(s, &stale)| EndpointState {
                endpoint: s.published(),
                consecutive_failures: s.failures,
                stale,
            })
            .collect();
        self.last_stale = stale;
        Some(PoolSnapshot {
            generation: self.generation,
            published_ms: now_ms,
            endpoints,
        })
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True for an empty pool.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The first time after `now_ms` that is `phase_ms` past a multiple of `interval_ms` (all ms).
fn next_on_grid(now_ms: u64, phase_ms: u64, interval_ms: u64) -> u64 {
    let since = now_ms.saturating_sub(phase_ms);
    phase_ms.saturating_add(
        (since / interval_ms)
            .saturating_add(1)
            .saturating_mul(interval_ms),
    )
}

/// The next [`EndpointMetrics::load_average`] after a sample `m` taken at `now_ms`, from the
/// average `before` as of `before_ms` (0: none yet, the sample is the average): an exponential
/// average in continuous time, `before + (1 − e^(−Δt/τ)) · (sample − before)`, so irregular
/// scrape intervals weigh samples by the time they stood for.
fn load_average(
    before: f64,
    before_ms: u64,
    m: &scheduler_core::EndpointMetrics,
    now_ms: u64,
) -> f64 {
    let sample = f64::from(m.waiting_queue_size) + f64::from(m.running_requests);
    if before_ms == 0 || !before.is_finite() {
        return sample;
    }
    let dt = now_ms.saturating_sub(before_ms) as f64;
    let tau = scheduler_core::model::endpoint::LOAD_AVERAGE_MS as f64;
    before + (1.0 - (-dt / tau).exp()) * (sample - before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler_core::parse::engine::MetricsExtractor;
    use scheduler_core::PickerConfig;

    fn state() -> ScrapeState {
        let c = PickerConfig::from_json(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:2", "metricsPort": 9}]}}"#,
        )
        .unwrap();
        ScrapeState::new(&c.pool)
    }

    #[test]
    fn page_sources_are_fetched_on_their_port_and_interval_and_published_as_attributes() {
        let c = PickerConfig::from_json(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:8000"}, {"address": "10.0.0.2:8000"}]}}"#,
        )
        .unwrap();
        let mut s = ScrapeState::with_pages(&c.pool, 1);
        let src = [PageFetch {
            path: "/metrics",
            port: Some(9400),
            interval_ms: 1000,
        }];
        assert_eq!(
            s.due_pages(5_000, &src),
            [
                (0, 0, "10.0.0.1:9400".into()),
                (1, 0, "10.0.0.2:9400".into())
            ]
        );
        s.started_page(0, 0, 7, 5_000);
        s.started_page(1, 0, 8, 5_000);
        assert!(s.due_pages(5_500, &src).is_empty(), "in flight");
        assert_eq!(s.finished_page(7), Some((0, 0)));
        assert_eq!(s.finished_page(7), None);
        assert_eq!(s.finished(8), None, "a page token is not a metrics token");
        s.record_page(0, 0, vec![("dcgm-extractor/GPUUtilization".into(), 0.9)]);
        assert!(
            s.due_pages(5_500, &src).is_empty(),
            "interval not over for slot 0"
        );
        assert_eq!(s.due_pages(6_000, &src), [(0, 0, "10.0.0.1:9400".into())]);
        let snap = s.snapshot_if_changed(6_000, 60_000).unwrap();
        let e = &snap.endpoints[0].endpoint;
        assert_eq!(
            e.metrics.attribute("dcgm-extractor/GPUUtilization"),
            Some(0.9)
        );
        // Adopting a snapshot that already carries the attribute does not duplicate it.
        s.adopt(&snap);
        let again = s.snapshot_if_changed(6_001, 60_000).unwrap();
        assert_eq!(again.endpoints[0].endpoint.metrics.attributes.len(), 1);
    }

    #[test]
    fn one_callout_per_endpoint_and_metrics_port() {
        let mut s = state();
        assert_eq!(
            s.take_due(1_000, 50, SCRAPES_PER_WAKE),
            [(0, "127.0.0.1:1".into()), (1, "127.0.0.1:9".into())]
        );
        s.started(0, 11);
        assert_eq!(
            s.take_due(1_050, 50, SCRAPES_PER_WAKE).len(),
            1,
            "one in flight"
        );
        assert_eq!(s.finished(11), Some(0));
        assert_eq!(s.finished(11), None);
        assert_eq!(s.take_due(1_100, 50, SCRAPES_PER_WAKE).len(), 2);
    }

    #[test]
    fn abandoned_fetches_are_due_again() {
        let mut s = state();
        assert_eq!(s.take_due(1_000, 50, SCRAPES_PER_WAKE).len(), 2);
        s.started(0, 11);
        s.started(1, 12);
        assert!(
            s.take_due(2_000, 50, SCRAPES_PER_WAKE).is_empty(),
            "both in flight"
        );
        s.abandon_in_flight();
        assert_eq!(s.take_due(2_000, 50, SCRAPES_PER_WAKE).len(), 2);
        assert_eq!(
            s.finished(11),
            None,
            "a late outcome of an abandoned fetch is ignored"
        );
    }

    #[test]
    fn staggered_scrapes_spread_over_the_interval() {
        let c = PickerConfig::from_json(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "10.0.0.1:8000"}, {"address": "10.0.0.2:8000"}, {"address": "10.0.0.3:8000"}, {"address": "10.0.0.4:8000"}]}}"#,
        )
        .unwrap();
        let mut s = ScrapeState::new(&c.pool);
        // Never scraped: every endpoint at once, each then on its own quarter of the interval.
        let start = 1_000_000;
        assert_eq!(s.take_due(start, 100, 1).len(), 4);
        assert!(s.take_due(start, 100, 1).is_empty(), "not due again yet");
        assert_eq!(
            s.next_due_ms(start),
            Some(start + 25),
            "slot 1's phase, its callout still out"
        );
        let mut times = Vec::new();
        let mut now = start;
        for _ in 0..40 {
            now = s.next_due_ms(now).unwrap();
            for (i, _) in s.take_due(now, 100, 1) {
                times.push((now, i));
            }
        }
        // After the first round each tick dispatches one endpoint, 25 ms apart, in turn.
        assert!(times.windows(2).all(|w| w[1].0 - w[0].0 == 25), "{times:?}");
        assert_eq!(
            times.iter().take(8).map(|t| t.1).collect::<Vec<_>>(),
            [1, 2, 3, 0, 1, 2, 3, 0]
        );
        // Each endpoint once per interval: 10 intervals, 10 scrapes each.
        assert_eq!(now - start, 1_000);
        for i in 0..4 {
            assert_eq!(times.iter().filter(|t| t.1 == i).count(), 10);
        }
        // One in flight is skipped and does not hold the wake-up back.
        let mut s2 = state();
        let due = s2.take_due(start, 100, 1);
        s2.started(due[0].0, 7);
        assert_eq!(s2.next_due_ms(start), Some(start + 50));
        assert_eq!(
            s2.next_due_ms(start + 100),
            Some(start + 50),
            "slot 0's turn passed with its callout out: only slot 1 counts"
        );
        assert!(s2
            .take_due(start + 100, 100, 1)
            .iter()
            .all(|(i, _)| *i == 1));
        // Two per wake: slots 0 and 1 on the interval's start, 2 and 3 half-way.
        let mut pairs = ScrapeState::new(&c.pool);
        let mut slots_at =
            |t: u64| -> Vec<usize> { pairs.take_due(t, 100, 2).into_iter().map(|d| d.0).collect() };
        assert_eq!(slots_at(start), [0, 1, 2, 3]);
        assert_eq!(slots_at(start + 50), [2, 3]);
        assert_eq!(slots_at(start + 100), [0, 1]);
        assert_eq!(pairs.next_due_ms(start + 100), Some(start + 150));
        // A host that wakes late scrapes once and returns to the grid.
        let late = s.take_due(now + 1_000, 100, 1);
        assert_eq!(late.len(), 4);
        let next = s.next_due_ms(now + 1_000).unwrap();
        assert!(next > now + 1_000 && next <= now + 1_100);
    }

    #[test]
    fn publishing_once_per_interval_and_the_next_tick() {
        let mut s = state();
        let start = 1_000_000;
        assert!(s.publish_due(start, 100, false), "never published");
        assert!(!s.publish_due(start + 30, 100, false));
        assert!(
            s.publish_due(start + 30, 100, true),
            "a pool change at once"
        );
        assert!(!s.publish_due(start + 129, 100, false));
        assert!(s.publish_due(start + 130, 100, false));
        // Two endpoints, one per wake: slot 1's turn (50 ms in) comes before the next publish.
        s.take_due(start + 130, 100, 1);
        assert_eq!(s.next_tick_in_ms(start + 130, 100, true), 20);
        // Not scraping: only the publish wakes the host; never less than 1 ms.
        assert_eq!(s.next_tick_in_ms(start + 130, 100, false), 100);
        assert_eq!(s.next_tick_in_ms(start + 400, 100, false), 1);
    }

    #[test]
    fn success_failure_and_staleness_drive_publishing() {
        let mut s = state();
        let x = MetricsExtractor::default();
        let first = s.snapshot_if_changed(1000, 2000).unwrap();
        assert!(first.endpoints.iter().all(|e| e.stale), "never scraped");
        assert!(
            s.snapshot_if_changed(1000, 2000).is_none(),
            "nothing changed"
        );

        assert_eq!(
            s.record_body(0, &x, b"vllm:num_requests_waiting 4\n", 1100),
            ScrapeOutcome::Ok
        );
        assert_eq!(
            s.record_body(1, &x, b"<html>oops</html>", 1100),
            ScrapeOutcome::BadBody
        );
        assert_eq!(
            s.record_body(1, &x, b"unrelated_metric 1\n", 1100),
            ScrapeOutcome::BadBody,
            "no mapped metric"
        );
        let snap = s.snapshot_if_changed(1100, 2000).unwrap();
        assert_eq!(snap.endpoints[0].endpoint.metrics.waiting_queue_size, 4);
        assert!(!snap.endpoints[0].stale);
        assert_eq!(snap.endpoints[1].consecutive_failures, 2);
        assert!(snap.generation > first.generation);

        // No new scrape: nothing to publish until endpoint 0 crosses the threshold.
        assert!(s.snapshot_if_changed(3000, 2000).is_none());
        let later = s.snapshot_if_changed(3101, 2000).unwrap();
        assert!(later.endpoints[0].stale);
    }

    #[test]
    fn the_load_average_follows_the_samples_by_the_time_they_stood_for() {
        let mut s = state();
        let x = MetricsExtractor::default();
        let page = |w: u32, r: u32| {
            format!("vllm:num_requests_waiting {w}\nvllm:num_requests_running {r}\n")
        };
        let avg = |s: &mut ScrapeState| {
            s.snapshot_if_changed(1_000_000, 1_000_000)
                .unwrap()
                .endpoints[0]
                .endpoint
                .metrics
                .load_average
        };
        // The first sample is the average.
        s.record_body(0, &x, page(4, 2).as_bytes(), 1_000);
        assert_eq!(avg(&mut s), 6.0);
        // One time constant later the average has moved 1 − 1/e of the way to the new sample.
        let tau = scheduler_core::model::endpoint::LOAD_AVERAGE_MS;
        s.record_body(0, &x, page(0, 0).as_bytes(), 1_000 + tau);
        let before = avg(&mut s);
        assert!(
            (before - 6.0 / std::f64::consts::E).abs() < 1e-9,
            "{before}"
        );
        // A sample 50 ms later barely moves it (~1 %).
        s.record_body(0, &x, page(40, 0).as_bytes(), 1_050 + tau);
        let after = avg(&mut s);
        assert!(after > before && after < before + 0.5, "{before} → {after}");
    }

    #[test]
    fn a_takeover_keeps_the_published_metrics() {
        let mut a = state();
        let x = MetricsExtractor::default();
        a.record_body(0, &x, b"vllm:num_requests_waiting 4\n", 1100);
        let published = a.snapshot_if_changed(1100, 2000).unwrap();
        let mut b = state();
        b.adopt(&published);
        let snap = b.snapshot_if_changed(1150, 2000).unwrap();
        assert!(!snap.endpoints[0].stale, "fresh metrics carried over");
        assert_eq!(snap.endpoints[0].endpoint.metrics.waiting_queue_size, 4);
        assert!(snap.endpoints[1].stale, "never scraped stays stale");
        assert!(snap.generation > published.generation);
    }

    fn members(json: &str) -> Vec<PoolEndpoint> {
        PickerConfig::from_json(json).unwrap().pool.endpoints
    }

    #[test]
    fn pool_changes_keep_the_metrics_of_staying_members() {
        let mut s = state();
        let x = MetricsExtractor::default();
        s.started(0, 7);
        s.started(1, 8);
        assert_eq!(s.finished(7), Some(0));
        s.record_body(0, &x, b"vllm:num_requests_waiting 4\n", 1100);
        s.snapshot_if_changed(1100, 2000).unwrap();

        let same = members(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:2", "metricsPort": 9}]}}"#,
        );
        assert!(!s.set_members(&same), "an identical list is not a change");

        // Endpoint 2 leaves, endpoint 3 joins ahead of endpoint 1.
        let next = members(
            r#"{"pool": {"cluster": "c", "endpoints": [{"address": "127.0.0.1:3"}, {"address": "127.0.0.1:1"}]}}"#,
        );
        assert!(s.set_members(&next));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.finished(8),
            None,
            "the removed endpoint's callout is dropped"
        );
        assert_eq!(
            s.take_due(1_200, 50, SCRAPES_PER_WAKE),
            [(0, "127.0.0.1:3".into()), (1, "127.0.0.1:1".into())]
        );
        let snap = s
            .snapshot_if_changed(1200, 2000)
            .expect("membership change publishes");
        assert_eq!(snap.endpoints[0].endpoint.address, "127.0.0.1:3");
        assert!(snap.endpoints[0].stale, "new endpoint not scraped yet");
        assert_eq!(snap.endpoints[1].endpoint.metrics.waiting_queue_size, 4);
        assert!(
            !snap.endpoints[1].stale,
            "staying endpoint keeps its metrics"
        );
    }
}
