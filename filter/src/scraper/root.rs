//! The scraper's root context: one `/metrics` callout per endpoint per scrape interval, in
//! groups spread over the interval (the tick period follows the next group;
//! [`ScrapeState::take_due`]), none while the endpoint's last one is in flight; what changed is
//! published at most once per interval.
//!
//! Callouts go to `pool.metricsCluster` (default `pool.cluster`) with the endpoint's metrics
//! address in `x-gateway-destination-endpoint`, which both an ORIGINAL_DST cluster
//! (`use_http_header`) and an `override_host` cluster honour, and ask for
//! `text/plain;version=0.0.4`. Publishing writes the snapshot, then its generation, so a reader
//! that sees a new generation finds the new snapshot.
//!
//! Pool changes: the scraper starts with the `pool.endpoints` of its own (bootstrap)
//! configuration and, from then on, follows the member list the picker filter publishes under
//! [`MEMBERSHIP_KEY`] whenever an xDS update loads a new filter configuration
//! ([`scheduler_core::membership`]). A list for another `pool.cluster` is ignored.

use std::time::Duration;

use scheduler_core::config::pool::PoolConfig;
use scheduler_core::membership::{Membership, MEMBERSHIP_KEY};
use scheduler_core::plugin::SharedExtractor;
use scheduler_core::snapshot::{encode_generation, PoolSnapshot, GENERATION_KEY, SNAPSHOT_KEY};
use scheduler_core::{ConfigError, PickerConfig, Registry};

use crate::host;
use crate::picker::headers::DESTINATION;
use crate::scraper::lease::{claim, holder, next_instance, INSTANCE_COUNTER_KEY, LEASE_KEY};
use crate::scraper::state::{ScrapeOutcome, ScrapeState, SCRAPES_PER_WAKE};
use crate::stats::{ScraperStats, WasmSink};
use crate::telemetry::PoolGauges;

/// See the module docs.
pub struct ScraperRoot {
    pool: PoolConfig,
    extractor: SharedExtractor,
    /// Second pages per endpoint (e.g. DCGM).
    pages: crate::scraper::PageSources,
    path: String,
    enabled: bool,
    state: ScrapeState,
    stats: ScraperStats,
    instance: u64,
    /// CAS of [`MEMBERSHIP_KEY`] when it was last read.
    membership_cas: Option<u32>,
    /// Whether this instance held the lease at its last tick.
    active: bool,
    /// GIE's pool gauges, set on each publish.
    gauges: PoolGauges,
    sink: WasmSink,
    /// The tick period last set, ms.
    tick_ms: u64,
}

impl ScraperRoot {
    /// Parses the (shared) configuration and starts the tick.
    ///
    /// # Errors
    /// The scheduler-core [`ConfigError`]; Envoy then refuses the bootstrap extension.
    pub fn configure(json: &str, registry: &Registry) -> Result<ScraperRoot, ConfigError> {
        let loaded = PickerConfig::load(json, registry)?;
        let (path, enabled) = crate::scraper::scrape_target(&loaded);
        if !enabled {
            log::warn!(
                "endpoint picker scraper: dataLayer has no sources; metrics are not scraped"
            );
        }
        if loaded.pool.scrape.transport == scheduler_core::config::pool::ScrapeTransport::Direct {
            log::warn!(
                "endpoint picker scraper: pool.scrape.transport \"direct\" is a native-build transport (a Wasm VM has no threads or sockets); scraping through cluster '{}'",
                loaded.pool.metrics_cluster
            );
        }
        host::set_tick_period(Duration::from_millis(loaded.pool.scrape.interval_ms));
        log::info!(
            "endpoint picker {} ({}) scraper (proxy-wasm): {} endpoints via cluster '{}', every {} ms, path {path}",
            crate::version::VERSION,
            crate::version::COMMIT,
            loaded.pool.endpoints.len(),
            loaded.pool.metrics_cluster,
            loaded.pool.scrape.interval_ms
        );
        let gauges = PoolGauges::new(&loaded.pool.cluster);
        let tick_ms = loaded.pool.scrape.interval_ms;
        let pages = crate::scraper::PageSources::of(&loaded);
        Ok(ScraperRoot {
            state: ScrapeState::with_pages(&loaded.pool, pages.len()),
            extractor: loaded.picker.metrics_extractor().clone(),
            pages,
            pool: loaded.pool,
            path,
            enabled,
            stats: ScraperStats::default(),
            instance: allocate_instance(),
            membership_cas: None,
            active: false,
            gauges,
            sink: WasmSink::default(),
            tick_ms,
        })
    }

    /// True while this instance holds the scraper lease (see [`crate::scraper::lease`]). Taking
    /// over a lease another instance let lapse counts in `scraper.takeovers`, and the new holder
    /// first adopts the last published snapshot.
    fn hold_lease(&mut self, now_ms: u64) -> bool {
        let lease = lease_ms(self.pool.scrape.interval_ms);
        let (current, cas) = host::shared_data(LEASE_KEY);
        let previous = current.as_deref().and_then(holder);
        let won = match claim(current.as_deref(), self.instance, now_ms, lease) {
            Some(v) => host::set_shared_data_cas(LEASE_KEY, &v, cas),
            None => false,
        };
        if won && !self.active {
            if let Some((id, renewed)) = previous.filter(|(id, _)| *id != self.instance) {
                log::warn!(
                    "endpoint picker scraper: instance {} takes over from instance {id}, whose lease was last renewed {} ms ago",
                    self.instance,
                    now_ms.saturating_sub(renewed)
                );
                self.stats.takeover();
            }
            if let (Some(bytes), _) = host::shared_data(SNAPSHOT_KEY) {
                if let Ok(snap) = PoolSnapshot::decode(&bytes) {
                    self.state.adopt(&snap);
                }
            }
        }
        self.active = won;
        won
    }

    /// One tick: if this instance is the active scraper, publish what changed (at most once per
    /// interval, at once after a membership change), dispatch the scrapes due now (in groups
    /// spread over the interval, [`ScrapeState::take_due`]) and the due second pages, and set the
    /// tick period to the time until the next group. A standby keeps the interval as its period.
    pub fn on_tick(&mut self) {
        let now = host::now_ms();
        let interval = self.pool.scrape.interval_ms.max(1);
        if !self.hold_lease(now) {
            self.set_period(interval);
            return;
        }
        let joined_or_left = self.follow_membership();
        if self.state.publish_due(now, interval, joined_or_left) {
            self.publish(now);
        }
        if self.enabled {
            let timeout = Duration::from_millis(self.pool.scrape.timeout_ms);
            self.dispatch_pages(now, timeout);
            for (i, address) in self.state.take_due(now, interval, SCRAPES_PER_WAKE) {
                let headers = [
                    (":method", "GET"),
                    (":path", self.path.as_str()),
                    (":authority", address.as_str()),
                    (DESTINATION, address.as_str()),
                    ("accept", "text/plain;version=0.0.4"),
                ];
                match host::dispatch_http_call(&self.pool.metrics_cluster, &headers, timeout) {
                    Ok(token) => self.state.started(i, u64::from(token)),
                    Err(s) => {
                        log::warn!(
                            "endpoint picker scraper: cannot call cluster '{}': status {s}",
                            self.pool.metrics_cluster
                        );
                        self.state.record_failure(i);
                        self.stats.scrape(false);
                    }
                }
            }
        }
        self.set_period(self.state.next_tick_in_ms(now, interval, self.enabled));
    }

    /// Sets this root context's tick period to `ms` when it differs from the current one.
    fn set_period(&mut self, ms: u64) {
        if self.tick_ms != ms {
            self.tick_ms = ms;
            host::set_tick_period(Duration::from_millis(ms));
        }
    }

    /// A callout finished with `num_headers` response headers and `body_size` body bytes.
    ///
    /// A callout that ended in a stream reset (the server closed the connection after the
    /// headers, a body shorter than its `Content-Length`, a cut chunk, a stall past the timeout
    /// after the headers arrived, a response over the buffer limit) is delivered with no
    /// headers: it is a failed scrape, and its header map is not read (Envoy has none and
    /// answers `BadArgument`). Timeouts and refusals before any header arrive as Envoy's
    /// synthetic 504/503 and are failures by status.
    pub fn on_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        if let Some((i, j)) = self.state.finished_page(u64::from(token)) {
            let status = if num_headers == 0 {
                None
            } else {
                host::call_response_status()
            };
            let read = match status {
                Some(200) if body_size <= self.pool.scrape.max_body_bytes => {
                    host::call_response_body(body_size).and_then(|body| {
                        let e = self.state.endpoint(i)?;
                        self.pages.read(j, e, &body)
                    })
                }
                _ => None,
            };
            match read {
                Some(attributes) => self.state.record_page(i, j, attributes),
                None => self.stats.page_failed(),
            }
            return;
        }
        let Some(i) = self.state.finished(u64::from(token)) else {
            return;
        };
        let status = if num_headers == 0 {
            None
        } else {
            host::call_response_status()
        };
        let outcome = match status {
            Some(200) if body_size > self.pool.scrape.max_body_bytes => {
                self.state.record_failure(i);
                ScrapeOutcome::TooLarge
            }
            Some(200) => match host::call_response_body(body_size) {
                Some(body) if body.len() == body_size => {
                    self.state
                        .record_body(i, &*self.extractor, &body, host::now_ms())
                }
                _ => {
                    self.state.record_failure(i);
                    ScrapeOutcome::BadBody
                }
            },
            _ => {
                self.state.record_failure(i);
                ScrapeOutcome::BadStatus
            }
        };
        self.stats.scrape(outcome == ScrapeOutcome::Ok);
    }

    /// Dispatches the page fetches (second pages such as DCGM) due at `now_ms`.
    fn dispatch_pages(&mut self, now_ms: u64, timeout: Duration) {
        if self.pages.is_empty() {
            return;
        }
        let fetches = self.pages.fetches();
        for (i, j, address) in self.state.due_pages(now_ms, &fetches) {
            let Some(f) = fetches.get(j) else { continue };
            let headers = [
                (":method", "GET"),
                (":path", f.path),
                (":authority", address.as_str()),
                (DESTINATION, address.as_str()),
                ("accept", "text/plain;version=0.0.4"),
            ];
            match host::dispatch_http_call(&self.pool.metrics_cluster, &headers, timeout) {
                Ok(token) => self.state.started_page(i, j, u64::from(token), now_ms),
                Err(_) => self.stats.page_failed(),
            }
        }
    }

    /// Adopts the member list the picker filter published, if it changed since the last tick
    /// (one small CAS read otherwise); true if the pool changed.
    fn follow_membership(&mut self) -> bool {
        let (bytes, cas) = host::shared_data(MEMBERSHIP_KEY);
        if cas.is_none() || cas == self.membership_cas {
            return false;
        }
        self.membership_cas = cas;
        let Some(bytes) = bytes else { return false };
        match Membership::decode(&bytes) {
            Ok(m) if m.cluster != self.pool.cluster => {
                log::warn!(
                    "endpoint picker scraper: ignoring the member list of cluster '{}' (this scraper serves '{}')",
                    m.cluster,
                    self.pool.cluster
                );
                false
            }
            Ok(m) => {
                let changed = self.state.set_members(&m.endpoints);
                if changed {
                    log::info!(
                        "endpoint picker scraper: pool '{}' now has {} endpoints (filter configuration update)",
                        m.cluster,
                        m.endpoints.len()
                    );
                    self.stats.membership_changed();
                }
                changed
            }
            Err(e) => {
                log::warn!("endpoint picker scraper: ignoring the published member list: {e}");
                false
            }
        }
    }

    fn publish(&mut self, now_ms: u64) {
        let Some(snap) = self
            .state
            .snapshot_if_changed(now_ms, self.pool.scrape.staleness_ms)
        else {
            return;
        };
        let bytes = snap.encode();
        if host::set_shared_data(SNAPSHOT_KEY, &bytes) {
            host::set_shared_data(GENERATION_KEY, &encode_generation(snap.generation));
        }
        let stale = snap.endpoints.iter().filter(|e| e.stale).count();
        self.stats.published(snap.endpoints.len(), stale);
        self.gauges.publish(&snap, &mut self.sink);
    }
}

/// How long a lease lasts without renewal: four scrape intervals, at least 200 ms. A holder
/// that misses that many ticks (crashed, or its thread stuck) is replaced by a standby.
pub fn lease_ms(interval_ms: u64) -> u64 {
    interval_ms.saturating_mul(4).max(200)
}

/// A process-unique instance id from a CAS-incremented counter in shared data.
fn allocate_instance() -> u64 {
    for _ in 0..16 {
        let (current, cas) = host::shared_data(INSTANCE_COUNTER_KEY);
        let id = next_instance(current.as_deref());
        if host::set_shared_data_cas(INSTANCE_COUNTER_KEY, &id.to_le_bytes(), cas) {
            return id;
        }
    }
    // Contention that never settles is not expected on one thread; fall back to the clock.
    host::now_us()
}
