//! The `metrics-scraper` bootstrap extension of the native module. On the main thread: one
//! `/metrics` callout per endpoint per `pool.scrape.interval`, in groups spread over the
//! interval (a timer that wakes when the next group's turn comes; none while an endpoint's last
//! callout is in flight), the same bookkeeping as the Wasm scraper
//! ([`endpoint_picker_filter::scraper::state`]), and every new snapshot handed to the workers
//! through [`crate::pool`] (an `Arc` swap: no encoding, no copy per reader).
//!
//! A callout that did not end in `Success` (reset, connection closed mid-body, over the buffer
//! limit) is a failed scrape; so is a non-200 status (Envoy's synthetic 503/504 for refused and
//! timed-out calls), a body over `scrape.maxBodyBytes`, or a page the engine mapping rejects.
//! Pool changes: the scraper follows the member list the newest filter configuration published
//! ([`crate::pool::members`]) when it names the same `pool.cluster`; with no `pool.endpoints` it
//! follows the cluster's hosts as the `pool-membership` balancers report them ([`crate::hosts`]).
//!
//! With `pool.scrape.transport: "direct"` the same bookkeeping runs on the module's own scrape
//! thread ([`crate::scrape_client`]) instead: it decides what is due, fetches over its own
//! HTTP/1.1 connections, records and publishes; the main thread's timer then only moves the
//! counts and gauges into Envoy's stats (Envoy's stats are touched from Envoy's threads only)
//! and flushes the workers' telemetry, every [`DIRECT_MAIN_TICK_MS`].
//!
//! Filter-only mode (no bootstrap extension configured): the same scraper lives in the HTTP
//! filter configuration ([`Home::Filter`]), ticked by [`Ticker`] through Envoy's configuration
//! scheduler (which runs the tick on the main thread), with its callouts issued from the filter
//! configuration. [`bootstrap_present`] tells the filter whether a bootstrap scraper exists.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use endpoint_picker_filter::picker::headers::DESTINATION;
use endpoint_picker_filter::scraper::state::{ScrapeOutcome, ScrapeState, SCRAPES_PER_WAKE};
use scheduler_core::config::pool::{PoolConfig, ScrapeTransport};
use scheduler_core::plugin::SharedExtractor;
use scheduler_core::snapshot::PoolSnapshot;
use scheduler_core::{ConfigError, PickerConfig, Registry};

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader, Ptr};
use crate::hosts;
use crate::metrics::{Counter, FamilySink, Gauge};
use crate::now_ms;
use crate::pool::{self, Members, PoolState};
use crate::scrape_client::{DirectScraper, Fetch, Fetched, Limits, ScrapeDriver};
use endpoint_picker_filter::telemetry::PoolGauges;

struct ScraperStats {
    success: Counter,
    failure: Counter,
    /// Second-page fetches (e.g. DCGM) that failed or held nothing their source reads.
    page_failure: Counter,
    publishes: Counter,
    membership: Counter,
    total: Gauge,
    stale: Gauge,
    /// GIE's pool gauges and `inference_extension_info`.
    families: FamilySink,
}

/// What the scraper counted since the main thread last moved it into Envoy's stats (the
/// direct transport counts on its own thread, which must not call Envoy).
#[derive(Default)]
struct Counts {
    success: AtomicU64,
    failure: AtomicU64,
    page_failure: AtomicU64,
    publishes: AtomicU64,
    membership: AtomicU64,
}

struct Inner {
    state: ScrapeState,
    timer: Ptr,
    members: Option<Arc<Members>>,
    /// The cluster host list last applied (pool from the cluster).
    hosts: Option<hosts::HostList>,
    /// The newest published snapshot whose gauges the main thread has not set yet.
    gauges_due: Option<PoolSnapshot>,
}

/// The main thread's timer period (ms) while the direct transport scrapes: how often counts and
/// gauges reach Envoy's stats and the workers' telemetry is offered a flush.
pub const DIRECT_MAIN_TICK_MS: u64 = 250;

/// Where a scraper lives: which Envoy configuration defines its stats and issues its callouts.
#[derive(Clone, Copy)]
pub enum Home {
    /// The `metrics-scraper` bootstrap extension (timer of its own).
    Bootstrap(Ptr),
    /// The HTTP filter configuration (filter-only mode; ticked by a [`Ticker`]).
    Filter(Ptr),
}

impl Home {
    fn ptr(self) -> Ptr {
        match self {
            Home::Bootstrap(p) | Home::Filter(p) => p,
        }
    }
}

/// Set once a bootstrap scraper was configured in this process.
static BOOTSTRAP_PRESENT: AtomicBool = AtomicBool::new(false);

/// Whether a bootstrap extension scraper is configured (Envoy creates bootstrap extensions
/// before any listener's filter configuration).
pub fn bootstrap_present() -> bool {
    BOOTSTRAP_PRESENT.load(Ordering::Relaxed)
}

/// The scraper's configuration and state (main thread only; the lock is never contended).
pub struct Scraper {
    envoy: Ptr,
    home: Home,
    pool: PoolConfig,
    extractor: SharedExtractor,
    /// Second pages per endpoint (e.g. DCGM).
    pages: endpoint_picker_filter::scraper::PageSources,
    path: String,
    enabled: bool,
    stats: ScraperStats,
    counts: Counts,
    inner: Mutex<Inner>,
    /// GIE's pool gauges (main thread).
    gauges: Mutex<PoolGauges>,
    /// The direct transport is configured (`pool.scrape.transport: "direct"`, bootstrap
    /// scraper); it is in use while its thread runs ([`Scraper::direct_running`]).
    direct: bool,
    /// Its thread, once started; dropped (stopped and joined) by [`Scraper::stop`].
    direct_thread: Mutex<Option<DirectScraper>>,
    /// The last id given to a direct fetch.
    next_id: AtomicU64,
}

// SAFETY: `envoy` and the timer are Envoy objects used only on the main thread, where every
// bootstrap hook runs (the direct transport's thread calls only `plan` without callouts and
// `finish`, which touch neither); the rest is Send + Sync.
unsafe impl Send for Scraper {}
// SAFETY: as above.
unsafe impl Sync for Scraper {}

impl Scraper {
    /// Loads the picker JSON (the same document the filter gets).
    ///
    /// # Errors
    /// The scheduler-core [`ConfigError`]; Envoy then refuses to start.
    pub fn new(envoy: Ptr, json: &str, registry: &Registry) -> Result<Scraper, ConfigError> {
        BOOTSTRAP_PRESENT.store(true, Ordering::Relaxed);
        Scraper::new_in(Home::Bootstrap(envoy), json, registry)
    }

    /// A scraper living in `home` (its stats are defined there: call while Envoy creates that
    /// configuration).
    ///
    /// # Errors
    /// The scheduler-core [`ConfigError`].
    pub fn new_in(home: Home, json: &str, registry: &Registry) -> Result<Scraper, ConfigError> {
        let loaded = PickerConfig::load(json, registry)?;
        let (path, enabled) = endpoint_picker_filter::scraper::scrape_target(&loaded);
        let envoy = home.ptr();
        let counter = |name: &str| match home {
            Home::Bootstrap(p) => Counter::bootstrap(p, name, &[]),
            Home::Filter(p) => Counter::filter(p, name, &[]),
        };
        let gauge = |name: &str| match home {
            Home::Bootstrap(p) => Gauge::bootstrap(p, name),
            Home::Filter(p) => Gauge::filter(p, name),
        };
        let stats = ScraperStats {
            success: counter("endpoint_picker.scrape.success"),
            failure: counter("endpoint_picker.scrape.failure"),
            page_failure: counter("endpoint_picker.scrape.page_failure"),
            publishes: counter("endpoint_picker.snapshot.publishes"),
            membership: counter("endpoint_picker.pool.membership_changes"),
            total: gauge("endpoint_picker.endpoints.total"),
            stale: gauge("endpoint_picker.endpoints.stale"),
            families: match home {
                Home::Bootstrap(p) => {
                    // The request path's families too: they outlive filter configurations here.
                    crate::filter::set_process_sink(Some(FamilySink::bootstrap_requests(p)));
                    FamilySink::bootstrap(p)
                }
                Home::Filter(p) => FamilySink::filter_pool(p),
            },
        };
        log::info!(
            "endpoint picker {} ({}) scraper (native): {} endpoints via cluster '{}', every {} ms, path {path}",
            endpoint_picker_filter::version::VERSION,
            endpoint_picker_filter::version::COMMIT,
            loaded.pool.endpoints.len(),
            loaded.pool.metrics_cluster,
            loaded.pool.scrape.interval_ms
        );
        let pages = endpoint_picker_filter::scraper::PageSources::of(&loaded);
        let direct = loaded.pool.scrape.transport == ScrapeTransport::Direct;
        if direct && matches!(home, Home::Filter(_)) {
            log::warn!(
                "endpoint picker scraper: pool.scrape.transport \"direct\" needs the metrics-scraper bootstrap extension; scraping through cluster '{}' instead",
                loaded.pool.metrics_cluster
            );
        }
        let direct = direct && matches!(home, Home::Bootstrap(_));
        Ok(Scraper {
            envoy,
            home,
            enabled,
            extractor: loaded.picker.metrics_extractor().clone(),
            path,
            stats,
            counts: Counts::default(),
            inner: Mutex::new(Inner {
                state: ScrapeState::with_pages(&loaded.pool, pages.len()),
                timer: core::ptr::null_mut(),
                members: None,
                hosts: None,
                gauges_due: None,
            }),
            gauges: Mutex::new(PoolGauges::new(&loaded.pool.cluster)),
            direct,
            direct_thread: Mutex::new(None),
            next_id: AtomicU64::new(0),
            pool: loaded.pool,
            pages,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Envoy's servers are up (clusters exist): let Envoy finish initialising (listeners start
    /// only after every bootstrap extension signals), start the timer and scrape at once.
    pub fn start(&self) {
        // SAFETY: the configuration pointer, on the main thread.
        unsafe {
            abi::envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
                self.envoy,
            )
        };
        {
            let mut inner = self.inner();
            if inner.timer.is_null() {
                // SAFETY: the configuration pointer, on the main thread.
                inner.timer = unsafe {
                    abi::envoy_dynamic_module_callback_bootstrap_extension_timer_new(self.envoy)
                };
            }
        }
        self.tick();
    }

    /// Starts the direct transport's thread (`pool.scrape.transport: "direct"`; nothing
    /// otherwise). Call before [`Scraper::start`], whose first tick then leaves the scraping to
    /// the thread; if the thread cannot start, the callouts scrape.
    pub fn start_direct(self: &Arc<Self>) {
        if !self.direct {
            return;
        }
        let mut slot = self
            .direct_thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let driver: Weak<dyn ScrapeDriver> =
                Arc::downgrade(&(self.clone() as Arc<dyn ScrapeDriver>));
            let limits = Limits {
                timeout: std::time::Duration::from_millis(self.pool.scrape.timeout_ms.max(1)),
                max_body_bytes: self.pool.scrape.max_body_bytes,
            };
            *slot = DirectScraper::start(driver, limits);
        }
    }

    /// One tick of the main thread's timer: flush the workers' telemetry, move counts and
    /// gauges into Envoy's stats, and (callout transport) scrape: see [`Scraper::plan`]. Re-arms
    /// the timer for the next group of scrapes, or [`DIRECT_MAIN_TICK_MS`] with the direct
    /// transport (a filter-only scraper's [`Ticker`] keeps its own fixed period instead).
    pub fn tick(&self) {
        let now = now_ms();
        crate::filter::flush_all(now);
        let delay = if self.direct_running() {
            DIRECT_MAIN_TICK_MS
        } else {
            let timeout = self.pool.scrape.timeout_ms;
            self.plan(now, &mut |path, address| {
                self.dispatch(path, address, timeout)
            })
        };
        self.sync_stats();
        let timer = self.inner().timer;
        if !timer.is_null() {
            // SAFETY: our timer, on the main thread.
            unsafe {
                abi::envoy_dynamic_module_callback_bootstrap_extension_timer_enable(timer, delay);
            }
        }
    }

    /// True while the direct transport's thread scrapes. A thread that ended on its own (it
    /// could not build its runtime, or a panic it caught) hands the scraping back to the
    /// callouts: its fetches in flight are forgotten, so they are due again at once.
    fn direct_running(&self) -> bool {
        if !self.direct {
            return false;
        }
        let mut slot = self
            .direct_thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_ref() {
            Some(t) if t.is_finished() => {
                *slot = None;
                log::error!(
                    "endpoint picker scraper: the direct scrape thread stopped; scraping through cluster '{}' instead",
                    self.pool.metrics_cluster
                );
                self.inner().state.abandon_in_flight();
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Follows the member list, publishes what changed (at most once per interval, at once after
    /// a membership change), starts the scrapes due now (staggered over the interval,
    /// [`ScrapeState::take_due`]) and the due second pages through `start` (`None`: could not
    /// start, a failed scrape), and returns how long (ms) until the next group is due.
    fn plan(&self, now: u64, start: &mut dyn FnMut(&str, &str) -> Option<u64>) -> u64 {
        let interval = self.pool.scrape.interval_ms.max(1);
        let mut inner = self.inner();
        let joined_or_left = self.follow_members(&mut inner);
        if inner.state.publish_due(now, interval, joined_or_left) {
            self.publish(&mut inner);
        }
        if !self.pages.is_empty() {
            let fetches = self.pages.fetches();
            for (i, j, address) in inner.state.due_pages(now, &fetches) {
                let Some(f) = fetches.get(j) else { continue };
                match start(f.path, &address) {
                    Some(id) => inner.state.started_page(i, j, id, now),
                    None => {
                        self.counts.page_failure.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if self.enabled {
            for (i, address) in inner.state.take_due(now, interval, SCRAPES_PER_WAKE) {
                match start(&self.path, &address) {
                    Some(id) => inner.state.started(i, id),
                    None => {
                        inner.state.record_failure(i);
                        self.counts.failure.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        inner.state.next_tick_in_ms(now, interval, self.enabled)
    }

    /// Moves what was counted since the last call into Envoy's stats, and sets the gauges of the
    /// newest snapshot if one was published since (main thread).
    fn sync_stats(&self) {
        let e = self.envoy;
        for (n, c) in [
            (&self.counts.success, &self.stats.success),
            (&self.counts.failure, &self.stats.failure),
            (&self.counts.page_failure, &self.stats.page_failure),
            (&self.counts.publishes, &self.stats.publishes),
            (&self.counts.membership, &self.stats.membership),
        ] {
            let n = n.swap(0, Ordering::Relaxed);
            if n > 0 {
                c.add(e, &[], n);
            }
        }
        let Some(snap) = self.inner().gauges_due.take() else {
            return;
        };
        let total = snap.endpoints.len() as u64;
        let stale = snap.endpoints.iter().filter(|e| e.stale).count() as u64;
        self.gauges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .publish(&snap, &mut &self.stats.families);
        self.stats.total.set(e, total);
        self.stats.stale.set(e, stale);
    }

    fn dispatch(&self, path: &str, address: &str, timeout_ms: u64) -> Option<u64> {
        let mut headers = [
            ModuleHttpHeader::of(":method", b"GET"),
            ModuleHttpHeader::of(":path", path.as_bytes()),
            ModuleHttpHeader::of("host", address.as_bytes()),
            ModuleHttpHeader::of(DESTINATION, address.as_bytes()),
            ModuleHttpHeader::of("accept", b"text/plain;version=0.0.4"),
        ];
        let mut id = 0u64;
        let callout = match self.home {
            Home::Bootstrap(_) => {
                abi::envoy_dynamic_module_callback_bootstrap_extension_http_callout
            }
            Home::Filter(_) => abi::envoy_dynamic_module_callback_http_filter_config_http_callout,
        };
        // SAFETY: every pointer is borrowed for the call; on the main thread (a bootstrap hook,
        // or the filter configuration's scheduled hook).
        let r = unsafe {
            callout(
                self.envoy,
                &mut id,
                ModuleBuffer::of(self.pool.metrics_cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::NULL,
                timeout_ms,
            )
        };
        if r == abi::CALLOUT_INIT_SUCCESS {
            Some(id)
        } else {
            log::warn!(
                "endpoint picker scraper: cannot call cluster '{}' (result {r})",
                self.pool.metrics_cluster
            );
            None
        }
    }

    /// A callout finished.
    ///
    /// # Safety
    /// `headers`/`body` are Envoy's arrays of `headers_size`/`body_size` entries for this hook
    /// (or null).
    pub unsafe fn on_callout(
        &self,
        id: u64,
        result: u32,
        headers: *const EnvoyHttpHeader,
        headers_size: usize,
        body: *const EnvoyBuffer,
        body_size: usize,
    ) {
        let headers: &[EnvoyHttpHeader] = if headers.is_null() || headers_size == 0 {
            &[]
        } else {
            // SAFETY: per the contract above.
            unsafe { core::slice::from_raw_parts(headers, headers_size) }
        };
        let status = headers.iter().find_map(|h| {
            // SAFETY: Envoy's buffers of this hook.
            let (k, v) = unsafe {
                (
                    abi::bytes(EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    }),
                    abi::bytes(EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    }),
                )
            };
            (k == b":status")
                .then(|| std::str::from_utf8(v).ok()?.trim().parse::<u16>().ok())
                .flatten()
        });
        let ok = result == abi::CALLOUT_SUCCESS && status == Some(200);
        let chunks: &[EnvoyBuffer] = if !ok || body.is_null() || body_size == 0 {
            &[]
        } else {
            // SAFETY: per the contract above.
            unsafe { core::slice::from_raw_parts(body, body_size) }
        };
        let total: usize = chunks.iter().map(|c| c.length).sum();
        let fetched = if !ok {
            Fetched::Failed
        } else if total > self.pool.scrape.max_body_bytes {
            Fetched::TooLarge
        } else {
            // SAFETY: Envoy's buffers of this hook.
            let parts: Vec<&[u8]> = chunks.iter().map(|c| unsafe { abi::bytes(*c) }).collect();
            Fetched::Page(parts.concat().into())
        };
        self.finish(id, fetched);
    }

    /// Records how the page fetch `id` ended (either transport).
    fn finish(&self, id: u64, fetched: Fetched) {
        let mut inner = self.inner();
        if let Some((i, j)) = inner.state.finished_page(id) {
            let read = match &fetched {
                Fetched::Page(body) => inner
                    .state
                    .endpoint(i)
                    .and_then(|e| self.pages.read(j, e, body)),
                Fetched::Failed | Fetched::TooLarge => None,
            };
            match read {
                Some(attributes) => inner.state.record_page(i, j, attributes),
                None => {
                    self.counts.page_failure.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        let Some(i) = inner.state.finished(id) else {
            return;
        };
        let outcome = match fetched {
            Fetched::Page(page) => inner
                .state
                .record_body(i, &*self.extractor, &page, now_ms()),
            Fetched::Failed => {
                inner.state.record_failure(i);
                ScrapeOutcome::BadStatus
            }
            Fetched::TooLarge => {
                inner.state.record_failure(i);
                ScrapeOutcome::TooLarge
            }
        };
        let counter = if outcome == ScrapeOutcome::Ok {
            &self.counts.success
        } else {
            &self.counts.failure
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies the newest member list; true if the pool changed.
    fn follow_members(&self, inner: &mut Inner) -> bool {
        if self.pool.endpoints.is_empty() {
            return self.follow_cluster(inner);
        }
        let Some(m) = pool::members() else {
            return false;
        };
        if inner
            .members
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, &m))
        {
            return false;
        }
        inner.members = Some(m.clone());
        if m.cluster != self.pool.cluster {
            log::warn!(
                "endpoint picker scraper: ignoring the member list of cluster '{}' (this scraper serves '{}')",
                m.cluster,
                self.pool.cluster
            );
            return false;
        }
        let changed = inner.state.set_members(&m.endpoints);
        if changed {
            log::info!(
                "endpoint picker scraper: pool '{}' now has {} endpoints (filter configuration)",
                m.cluster,
                m.endpoints.len()
            );
            self.counts.membership.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// The pool is the cluster's hosts (no `pool.endpoints`): apply the newest list the
    /// `pool-membership` balancers reported; true if the pool changed.
    fn follow_cluster(&self, inner: &mut Inner) -> bool {
        let Some(list) = hosts::of(&self.pool.cluster) else {
            return false;
        };
        if inner
            .hosts
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, &list))
        {
            return false;
        }
        let members = hosts::members(&list, self.pool.metrics_port);
        inner.hosts = Some(list);
        let changed = inner.state.set_members(&members);
        if changed {
            log::info!(
                "endpoint picker scraper: pool '{}' now has {} endpoints (cluster hosts)",
                self.pool.cluster,
                members.len()
            );
            self.counts.membership.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    fn publish(&self, inner: &mut Inner) {
        let Some(snap) = inner
            .state
            .snapshot_if_changed(now_ms(), self.pool.scrape.staleness_ms)
        else {
            return;
        };
        // The gauges are set by the main thread (sync_stats), from the newest snapshot.
        inner.gauges_due = Some(snap.clone());
        pool::publish(PoolState::new(snap, self.pool.scrape.staleness_ms));
        self.counts.publishes.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the timer and the direct transport's thread (the extension is going away).
    pub fn stop(&self) {
        // Not under `inner`: the thread may be waiting for it.
        let thread = self
            .direct_thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(thread);
        let mut inner = self.inner();
        let timer = core::mem::replace(&mut inner.timer, core::ptr::null_mut());
        if !timer.is_null() {
            // SAFETY: our timer, deleted once, on the main thread.
            unsafe { abi::envoy_dynamic_module_callback_bootstrap_extension_timer_delete(timer) };
        }
    }
}

/// The direct transport's side: the same bookkeeping, on the scrape thread. Calls no Envoy
/// function (the counts and gauges wait for the main thread's [`Scraper::tick`]).
impl ScrapeDriver for Scraper {
    fn due(&self, now_ms: u64) -> (Vec<Fetch>, u64) {
        let mut fetches = Vec::new();
        let delay = self.plan(now_ms, &mut |path, address| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            fetches.push(Fetch {
                id,
                address: address.to_string(),
                path: path.to_string(),
            });
            Some(id)
        });
        (fetches, delay)
    }

    fn done(&self, id: u64, fetched: Fetched) {
        self.finish(id, fetched);
    }
}

/// Sub-ticks per scrape interval in filter-only mode: its [`Ticker`] keeps a fixed period (the
/// bootstrap scraper's timer instead wakes exactly when the next scrape is due), so the
/// staggered scrapes leave in up to this many groups per interval rather than all at once.
pub const FILTER_TICKS_PER_INTERVAL: u64 = 8;

/// The event id of a filter-only scrape tick.
pub const TICK_EVENT: u64 = 1;

/// Ticks a filter-only scraper: a thread that, every period, posts [`TICK_EVENT`] to the main
/// thread through Envoy's filter-configuration scheduler (an HTTP filter configuration has no
/// timer of its own). Dropping it stops the thread at once and waits for it.
pub struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Envoy's configuration scheduler handle, moved into the ticker thread.
struct ConfigScheduler(*mut core::ffi::c_void);

// SAFETY: Envoy's configuration scheduler posts to the main dispatcher (thread-safe) and holds
// the configuration only weakly, so it may be used and deleted from any thread.
unsafe impl Send for ConfigScheduler {}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: made by scheduler_new, deleted once.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

impl Ticker {
    /// Starts ticking the filter configuration `config` every `interval_ms` (≥ 1; called while Envoy
    /// creates the configuration, on the main thread). `None` if Envoy gave no scheduler or the
    /// thread could not start.
    pub(crate) fn start(config: Ptr, interval_ms: u64) -> Option<Ticker> {
        // SAFETY: the configuration pointer of the current hook.
        let raw =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config) };
        if raw.is_null() {
            return None;
        }
        let scheduler = ConfigScheduler(raw);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let interval = std::time::Duration::from_millis(interval_ms.max(1));
        let thread = std::thread::Builder::new()
            .name("picker-scrape-tick".into())
            .spawn(move || {
                let scheduler = scheduler;
                let (lock, cv) = &*flag;
                let mut stopped = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                loop {
                    // SAFETY: a live scheduler (deleted only when this thread ends).
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            scheduler.0,
                            TICK_EVENT,
                        )
                    };
                    let (guard, _) = cv
                        .wait_timeout(stopped, interval)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
