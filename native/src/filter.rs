//! The `endpoint-picker` HTTP filter of the native module: [`FilterConfig`] is shared by every
//! worker (one scheduler state for the whole process), [`NativeHost`] offers Envoy's callbacks to
//! the common request flow ([`endpoint_picker_filter::flow`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use endpoint_picker_filter::headers::HeaderBlock;
use endpoint_picker_filter::telemetry::{
    QueueGauges, RequestLabels, RequestRecord, Telemetry, Timing, FLUSH_INTERVAL_MS,
};

use endpoint_picker_filter::flow::{HttpHost, Picking};
use endpoint_picker_filter::picker::decide::{Outcome, PickerCore, RequestInput};
use endpoint_picker_filter::picker::subset::{self, EndpointSubset};
use scheduler_core::flowcontrol::eviction::EvictionGauges;
use scheduler_core::flowcontrol::queues::FlowDepth;
use scheduler_core::{ConfigError, PickerConfig, Registry, RequestState, SplitMix64};

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader, Ptr};
use crate::metrics::{Counter, FamilySink};
use crate::pool::{self, Members};

use smallvec::SmallVec;

/// The first value of each of `names` (matched case-insensitively) among `all`, into the same
/// position of `out`, borrowed unless it is not UTF-8.
fn first_values<'a>(all: &'a [EnvoyHttpHeader], names: &[&str], out: &mut [Option<Cow<'a, str>>]) {
    for h in all {
        // SAFETY: Envoy filled these buffers for the current hook, which `all` lives in.
        let key = unsafe { abi::bytes(h.key()) };
        for (name, slot) in names.iter().zip(out.iter_mut()) {
            if slot.is_none() && key.eq_ignore_ascii_case(name.as_bytes()) {
                // SAFETY: as above.
                *slot = Some(String::from_utf8_lossy(unsafe { abi::bytes(h.value()) }));
            }
        }
    }
}

/// Body slices listed on the stack; Envoy buffers a 4 KiB request in one or two.
const INLINE_CHUNKS: usize = 8;

/// A body's slices, as Envoy holds them.
type Chunks = SmallVec<[EnvoyBuffer; INLINE_CHUNKS]>;

/// Stats of the filter, named as in the Wasm build; per-endpoint and per-status counts are
/// labels here instead of name parts.
struct FilterStats {
    fail_open: Counter,
    /// The GIE-named families (picks and local replies among them).
    families: FamilySink,
}

/// Telemetry shards per filter configuration: each worker thread records into its own shard
/// (uncontended lock), a flush visits them all.
const SHARDS: usize = 8;

thread_local! {
    /// This thread's shard index.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// Monotonic nanoseconds since the first call (plugin timings).
fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One loaded filter configuration. Envoy creates it on the main thread and every worker's
/// streams use it concurrently: everything mutable in it is atomic or behind the scheduler's
/// own short locks.
pub struct FilterConfig {
    envoy: Ptr,
    core: PickerCore,
    /// Request-body bytes reserved by streams waiting for their body (process-wide).
    buffered: AtomicUsize,
    /// The saturation stages this configuration's own series has a gauge for.
    stages_shown: std::sync::atomic::AtomicU8,
    /// [`pool::PoolState::members`] last passed to `pool_changed`.
    members_seen: AtomicU64,
    stats: FilterStats,
    telemetry: Vec<Mutex<Telemetry>>,
    /// When the shards were last flushed, ms since the epoch.
    last_flush_ms: AtomicU64,
    /// When the main thread's tick last offered to flush ([`flush_all`]), ms since the epoch;
    /// while it ticks, requests leave the flush to it (see [`FilterConfig::record`]).
    main_tick_ms: AtomicU64,
    /// False once Envoy destroyed its side of this configuration ([`FilterConfig::retire`]).
    /// Envoy frees the configuration — and the stats scope every metric update goes through —
    /// when its last holder lets go, which can be a worker ending the last stream of a drained
    /// listener; the main thread's tick may hold this value alive a moment longer. Its flush
    /// holds the read side and updates Envoy's stats only while this is true; retiring takes
    /// the write side, so it waits for a flush in progress and no update follows it.
    alive: RwLock<bool>,
    /// Flow control's queues, shared by every worker (`flowControl` gate).
    gate: Option<endpoint_picker_filter::waiting::FlowGate>,
    /// The burst window's batch, shared by every worker, and the thread that seals it
    /// (`burst-prefix-cache-producer`). The sealer is dropped first (it stops and joins).
    burst: Option<(
        Option<crate::burst_sealer::Sealer>,
        Arc<endpoint_picker_filter::burst::BurstGate>,
    )>,
    /// Filter-only mode (no bootstrap scraper): the scraper living in this configuration and
    /// the thread that ticks it. The ticker is dropped first (it stops and joins its thread).
    scraper: Option<(crate::scraper::Ticker, Arc<crate::scraper::Scraper>)>,
    /// The precise prefix cache: the plugins fed by the servers' KV events, their subscriber
    /// thread (stopped when this configuration is dropped) and their stats.
    kv: Option<KvFeed>,
}

struct KvFeed {
    sinks: Vec<Arc<dyn scheduler_core::Plugin>>,
    subscriptions: crate::kv_subscriber::Subscriptions,
    stats: crate::kv_stats::KvStats,
}

/// The filter-only scraper that scrapes: the newest configuration's (older ones stand by, so
/// an xDS update or several listeners never scrape the pool twice).
static ACTIVE_SCRAPER: Mutex<Option<Weak<crate::scraper::Scraper>>> = Mutex::new(None);

/// True when `s` is the filter-only scraper that scrapes; takes over from one that is gone.
fn active(s: &Arc<crate::scraper::Scraper>) -> bool {
    let Ok(mut a) = ACTIVE_SCRAPER.lock() else {
        return false;
    };
    match a.as_ref().and_then(Weak::upgrade) {
        Some(cur) => Arc::ptr_eq(&cur, s),
        None => {
            *a = Some(Arc::downgrade(s));
            true
        }
    }
}

// SAFETY: `envoy` is Envoy's DynamicModuleHttpFilterConfig, which outlives this value and whose
// metric callbacks are thread-safe; every other field is Send + Sync.
unsafe impl Send for FilterConfig {}
// SAFETY: as above.
unsafe impl Sync for FilterConfig {}

thread_local! {
    /// Per-worker random numbers for tie-breaks, seeded from the clock and the thread.
    static RNG: RefCell<SplitMix64> = RefCell::new(SplitMix64::new(seed()));
}

fn seed() -> u64 {
    let t = endpoint_picker_filter::time::to_us(std::time::SystemTime::now());
    let id = format!("{:?}", std::thread::current().id());
    id.bytes().fold(t ^ 0x5DEE_CE66_D1CE_5EED, |h, b| {
        h.rotate_left(5) ^ u64::from(b)
    })
}

impl FilterConfig {
    /// Loads the picker JSON and defines the stats.
    ///
    /// # Errors
    /// The scheduler-core [`ConfigError`]; Envoy then rejects the filter configuration.
    pub fn new(envoy: Ptr, json: &str, registry: &Registry) -> Result<FilterConfig, ConfigError> {
        let loaded = PickerConfig::load(json, registry)?;
        for w in &loaded.report.warnings {
            log::warn!("endpoint picker: {w}");
        }
        if !loaded.pool.endpoints.is_empty() {
            pool::publish_members(Members {
                cluster: loaded.pool.cluster.clone(),
                endpoints: loaded.pool.endpoints.clone(),
            });
        }
        let stats = FilterStats {
            fail_open: Counter::filter(envoy, "endpoint_picker.fail_open", &[]),
            families: FamilySink::filter(envoy),
        };
        let telemetry = (0..SHARDS)
            .map(|_| Mutex::new(Telemetry::new(&loaded.picker)))
            .collect();
        let gate = loaded.picker.flow_control().map(|fc| {
            endpoint_picker_filter::waiting::FlowGate::new(
                fc.clone(),
                loaded.pool.scrape.lag_ms(),
                monotonic_ns,
            )
        });
        // Filter-only mode: no bootstrap scraper in this Envoy, so this configuration scrapes.
        let scraper = if crate::scraper::bootstrap_present() {
            None
        } else {
            let s = Arc::new(crate::scraper::Scraper::new_in(
                crate::scraper::Home::Filter(envoy),
                json,
                registry,
            )?);
            let period = loaded.pool.scrape.interval_ms / crate::scraper::FILTER_TICKS_PER_INTERVAL;
            match crate::scraper::Ticker::start(envoy, period) {
                Some(t) => {
                    if let Ok(mut a) = ACTIVE_SCRAPER.lock() {
                        *a = Some(Arc::downgrade(&s));
                    }
                    log::info!("endpoint picker: no bootstrap scraper configured; this filter configuration scrapes the pool (filter-only mode)");
                    Some((t, s))
                }
                None => {
                    log::warn!("endpoint picker: no bootstrap scraper and no configuration scheduler: endpoint metrics will not be scraped");
                    None
                }
            }
        };
        let burst = loaded
            .picker
            .batch_window()
            .and_then(|w| endpoint_picker_filter::burst::BurstGate::new(w.clone()))
            .map(|g| {
                let g = Arc::new(g);
                (crate::burst_sealer::Sealer::start(g.clone()), g)
            });
        let sinks = loaded.picker.kv_event_sinks();
        let kv = crate::kv_subscriber::start(&sinks).map(|subscriptions| KvFeed {
            sinks,
            subscriptions,
            stats: crate::kv_stats::KvStats::define(envoy),
        });
        Ok(FilterConfig {
            kv,
            envoy,
            core: PickerCore::new(loaded.picker, loaded.pool),
            buffered: AtomicUsize::new(0),
            stages_shown: std::sync::atomic::AtomicU8::new(0),
            members_seen: AtomicU64::new(0),
            stats,
            telemetry,
            last_flush_ms: AtomicU64::new(0),
            main_tick_ms: AtomicU64::new(0),
            alive: RwLock::new(true),
            gate,
            burst,
            scraper,
        })
    }

    /// Runs `f` with the candidates at `now_ms` and this worker's RNG, after telling the
    /// plugins about a membership change (once per change, whichever worker sees it first).
    fn with_candidates<R>(
        &self,
        now_ms: u64,
        f: impl FnOnce(&[scheduler_core::Endpoint], &mut SplitMix64) -> R,
    ) -> R {
        let snap = pool::current();
        let mut scratch = Vec::new();
        let candidates = match snap.as_ref() {
            Some(s) => {
                let seen = self.members_seen.load(Ordering::Relaxed);
                if seen != s.members
                    && self
                        .members_seen
                        .compare_exchange(seen, s.members, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    self.core.picker.pool_changed(&s.endpoints);
                }
                s.candidates(now_ms, &mut scratch)
            }
            None => &[],
        };
        RNG.with(|r| match r.try_borrow_mut() {
            Ok(mut rng) => f(candidates, &mut rng),
            Err(_) => f(candidates, &mut SplitMix64::new(now_ms)),
        })
    }
}

impl Picking for FilterConfig {
    fn core(&self) -> &PickerCore {
        &self.core
    }

    fn route_headers_only(
        &self,
        now_ms: u64,
        subset: Option<&EndpointSubset>,
        explain: bool,
    ) -> Outcome {
        self.with_candidates(now_ms, |c, _| {
            self.core.route_headers_only(c, subset, explain)
        })
    }

    fn route_request(
        &self,
        input: RequestInput<'_>,
        state: &mut RequestState,
        record: &mut RequestRecord,
    ) -> Outcome {
        let mut timing = Timing {
            clock: &monotonic_ns,
            record,
        };
        let now_ms = input.now_ms;
        self.with_candidates(now_ms, |c, rng| {
            self.core.route_request(c, input, rng, state, &mut timing)
        })
    }

    fn reserve_body(&self, bytes: usize) -> bool {
        let limit = self.core.pool.max_buffered_body_bytes;
        self.buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_add(bytes).filter(|&n| n <= limit)
            })
            .is_ok()
    }

    fn release_body(&self, bytes: usize) {
        let _ = self
            .buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_sub(bytes))
            });
    }

    fn count_pick(&self, primary: &str, profile: &str) {
        // Counted in this worker's shard and flushed with the other families: a labelled Envoy
        // counter costs a stat-name lookup in Envoy on every update (~2 µs per request).
        self.with_shard(|t| t.pick(primary, profile));
    }

    fn count_routed(&self, labels: &RequestLabels, primary: &str) -> bool {
        // The stream ends on this worker, so its record reaches the same shard.
        let mut counted = false;
        self.with_shard(|t| {
            t.started(labels, primary);
            counted = true;
        });
        counted
    }

    fn count_reply(&self, status: u32) {
        self.with_shard(|t| t.reply(status));
    }

    fn count_fail_open(&self) {
        self.stats.fail_open.add(self.envoy, &[], 1);
    }

    fn record(&self, record: &RequestRecord, now_ms: u64) {
        self.with_shard(|t| t.record(record));
        // A flush sends every changed series to Envoy (hundreds of labelled updates, ~1.6M
        // instructions with 16 endpoints): on a worker it stalls the request that wins it. The
        // main thread's tick (the scraper's timer) flushes instead whenever it runs; a request
        // flushes only when no tick came for a while (no scraper, or the main thread stuck).
        let tick = self.main_tick_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(tick) > MAIN_TICK_GRACE_MS {
            self.flush_if_due(now_ms);
        }
    }

    fn flow_gate(&self) -> Option<&endpoint_picker_filter::waiting::FlowGate> {
        self.gate.as_ref()
    }

    fn burst_gate(&self) -> Option<&endpoint_picker_filter::burst::BurstGate> {
        self.burst.as_ref().map(|(_, g)| &**g)
    }

    fn burst_opened(&self, _deadline_ms: u64) {
        if let Some((Some(s), _)) = &self.burst {
            s.opened();
        }
    }

    fn saturation(&self, now_ms: u64) -> f64 {
        self.with_candidates(now_ms, |c, _| self.core.picker.pool_saturation(c, now_ms))
    }

    fn record_queue_wait(
        &self,
        fairness_id: Option<&str>,
        priority: i32,
        outcome: &'static str,
        waited_ms: u64,
    ) {
        self.with_shard(|t| t.queue_wait(fairness_id, priority, outcome, waited_ms));
    }
}

impl FilterConfig {
    /// The pool's saturation per stage, for the metrics.
    fn saturation_by_stage(&self, now_ms: u64) -> scheduler_core::PoolSaturation {
        self.with_candidates(now_ms, |c, _| {
            self.core.picker.pool_saturation_by_stage(c, now_ms)
        })
    }

    /// The saturation detector's name and how many of the pool's endpoints (fresh or not) it
    /// scores saturated for missing or stale metrics; `None` when it reads no scraped metrics.
    fn stale_endpoints(&self, now_ms: u64) -> Option<(String, usize)> {
        let snap = pool::current();
        let endpoints = snap.as_ref().map_or(&[][..], |s| &s.endpoints[..]);
        self.core
            .picker
            .pool_stale_endpoints(endpoints, now_ms)
            .map(|(d, n)| (d.to_string(), n))
    }

    /// Filter-only mode: one scrape tick (main thread, from the configuration scheduler).
    pub fn scrape_tick(&self) {
        if let Some((_, s)) = &self.scraper {
            if active(s) {
                s.tick();
            }
        }
    }

    /// Filter-only mode: the scraper of this configuration, for its callouts' completions.
    pub fn scraper(&self) -> Option<&crate::scraper::Scraper> {
        self.scraper.as_ref().map(|(_, s)| &**s)
    }

    /// Flow control's tick (the scraper's timer, main thread): expires waits that ran out and
    /// releases what the pool has room for.
    fn flow_tick(&self, now_ms: u64) {
        // Without its thread (it could not start, or stopped) the burst window seals here.
        if let Some((sealer, b)) = &self.burst {
            if !sealer.as_ref().is_some_and(|s| s.running()) {
                b.seal_due(now_ms);
            }
        }
        if let Some(g) = &self.gate {
            let empty = self.with_candidates(now_ms, |c, _| c.is_empty());
            g.tick(now_ms, empty, &mut || self.saturation(now_ms));
        }
    }
}

/// How long after the main thread's last tick requests take the telemetry flush back, ms (five
/// flush intervals: a scrape interval longer than that leaves flushing to requests between
/// ticks; both paths go through [`FilterConfig::flush_if_due`], so a flush never runs twice).
const MAIN_TICK_GRACE_MS: u64 = 5 * FLUSH_INTERVAL_MS;

/// The request families defined on the bootstrap extension's configuration, while it lives
/// ([`set_process_sink`]). Flushes go there instead of to the filter configuration's own
/// families: Envoy frees a replaced filter configuration's stats scope, and with it every series
/// the new configuration has not updated yet, so totals would drop at each ECDS or LDS update.
/// A flush holds the read side for its duration; clearing takes the write side, so no update
/// follows the bootstrap configuration's destruction.
static PROCESS_SINK: RwLock<Option<FamilySink>> = RwLock::new(None);

/// Installs (bootstrap configuration created) or removes (destroyed) [`PROCESS_SINK`].
pub fn set_process_sink(sink: Option<FamilySink>) {
    match PROCESS_SINK.write() {
        Ok(mut s) => *s = sink,
        Err(poisoned) => *poisoned.into_inner() = sink,
    }
}

/// Every live filter configuration, for the scraper's timer to flush (an idle worker's last
/// records would otherwise wait for its next request).
static CONFIGS: Mutex<Vec<Weak<FilterConfig>>> = Mutex::new(Vec::new());

/// Lists `config` for [`flush_all`].
pub fn register(config: &Arc<FilterConfig>) {
    if let Ok(mut list) = CONFIGS.lock() {
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(config));
    }
}

/// Flushes every live configuration's telemetry that is due (the scraper's tick, main thread).
pub fn flush_all(now_ms: u64) {
    let live: Vec<Arc<FilterConfig>> = match CONFIGS.lock() {
        Ok(list) => list.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    let mut depths = Vec::new();
    let mut utilization = Vec::new();
    let mut stale: Vec<(String, usize)> = Vec::new();
    let mut eviction: Option<EvictionGauges> = None;
    // The highest saturation of any configuration with flow control, at the flush cadence.
    let saturation_due =
        now_ms.saturating_sub(LAST_SATURATION_MS.load(Ordering::Relaxed)) >= FLUSH_INTERVAL_MS;
    let mut saturation: Option<scheduler_core::PoolSaturation> = None;
    // Blocks of every configuration's prefix index (each its own), at the same cadence.
    let mut index_blocks: Option<usize> = None;
    for c in &live {
        let Ok(alive) = c.alive.read() else { continue };
        if !*alive {
            continue;
        }
        c.main_tick_ms.store(now_ms, Ordering::Relaxed);
        c.flow_tick(now_ms);
        c.flush_if_due(now_ms);
        if saturation_due {
            if let Some(n) = c.core.picker.prefix_index_blocks() {
                *index_blocks.get_or_insert(0) += n;
            }
        }
        if let Some(g) = &c.gate {
            depths.push(g.depths());
            if saturation_due {
                let s = c.saturation_by_stage(now_ms);
                saturation = Some(saturation.map_or(s, |m| {
                    endpoint_picker_filter::telemetry::max_saturation(m, s)
                }));
                utilization.push(g.capacity_utilization());
                if let Some((detector, n)) = c.stale_endpoints(now_ms) {
                    match stale.iter_mut().find(|(d, _)| *d == detector) {
                        Some((_, m)) => *m = (*m).max(n),
                        None => stale.push((detector, n)),
                    }
                }
            }
            if let Some(e) = g.eviction_gauges() {
                let sum = eviction.get_or_insert_with(EvictionGauges::default);
                sum.reclaim_target += e.reclaim_target;
                sum.pending_reclaim += e.pending_reclaim;
            }
        }
        drop(alive);
    }
    set_process_queue_depths(depths);
    set_process_eviction_gauges(eviction);
    if saturation_due {
        LAST_SATURATION_MS.store(now_ms, Ordering::Relaxed);
        if let (Some(n), Ok(process)) = (index_blocks, PROCESS_SINK.read()) {
            if let Some(families) = process.as_ref() {
                set_index_size(families, n);
            }
        }
        if let (Some(s), Ok(process)) = (saturation, PROCESS_SINK.read()) {
            if let Some(families) = process.as_ref() {
                endpoint_picker_filter::telemetry::set_pool_saturation(
                    &s,
                    &PROCESS_STAGES_SHOWN,
                    &mut &*families,
                );
                // The fullest gate per band, and per detector the most stale endpoints.
                let u = endpoint_picker_filter::telemetry::max_utilization(utilization);
                endpoint_picker_filter::telemetry::set_capacity_utilization(&u, &mut &*families);
                for (detector, n) in &stale {
                    endpoint_picker_filter::telemetry::set_stale_endpoints(
                        detector,
                        *n,
                        &mut &*families,
                    );
                }
            }
        }
    }
}

/// Sets `inference_extension_prefix_indexer_size` to `blocks`.
fn set_index_size(families: &FamilySink, blocks: usize) {
    use endpoint_picker_filter::telemetry::{families::PREFIX_INDEXER_SIZE, StatSink};
    let mut sink = families;
    sink.set(&PREFIX_INDEXER_SIZE, &[], blocks as u64);
}

/// The saturation stages the process-wide series has a gauge for.
static PROCESS_STAGES_SHOWN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// When [`flush_all`] last set the process-wide pool saturation, ms since the epoch.
static LAST_SATURATION_MS: AtomicU64 = AtomicU64::new(0);

/// The eviction gauges [`set_process_eviction_gauges`] last set (main thread).
static REPORTED_EVICTION: Mutex<Option<EvictionGauges>> = Mutex::new(None);

/// Eviction's sizing gauges in the process-wide series (when the bootstrap configuration owns
/// it): the sum over every live configuration with eviction on, sent when it changed. Without
/// the process-wide series each configuration sets its own at its flush.
fn set_process_eviction_gauges(sum: Option<EvictionGauges>) {
    let Some(sum) = sum else { return };
    let Ok(process) = PROCESS_SINK.read() else {
        return;
    };
    let Some(families) = process.as_ref() else {
        return;
    };
    let Ok(mut reported) = REPORTED_EVICTION.lock() else {
        return;
    };
    if *reported != Some(sum) {
        endpoint_picker_filter::telemetry::set_eviction_gauges(&sum, &mut &*families);
        *reported = Some(sum);
    }
}

/// The process-wide series' share of the queue gauges (main thread).
static PROCESS_QUEUE_GAUGES: Mutex<Option<QueueGauges>> = Mutex::new(None);

/// The flow-control queue gauges in the process-wide series (when the bootstrap configuration
/// owns it): the sum over every live configuration's gate, so two listeners with flow control
/// add up instead of overwriting each other; a flow no gate reports any more drops to 0. Only
/// flows whose depth changed since the last tick are sent (each is a labelled update). Without
/// the process-wide series each configuration's gate moves its own at its flush.
fn set_process_queue_depths(gates: Vec<Vec<FlowDepth>>) {
    let Ok(process) = PROCESS_SINK.read() else {
        return;
    };
    let Some(families) = process.as_ref() else {
        return;
    };
    let Ok(mut gauges) = PROCESS_QUEUE_GAUGES.lock() else {
        return;
    };
    gauges
        .get_or_insert_with(QueueGauges::default)
        .publish(gates.into_iter().flatten(), &mut &*families);
}

impl FilterConfig {
    /// Envoy is destroying its side of this configuration (the `config_destroy` hook, called
    /// while that side is still valid; `now_ms` since the epoch): waits for a main-thread flush
    /// in progress, sends what the shards gathered since the last flush (a configuration
    /// replaced by ECDS would otherwise lose up to a second of counts), then keeps
    /// [`flush_all`] from touching Envoy through it again. The request path needs no check: a
    /// stream's filter keeps Envoy's configuration alive.
    pub fn retire(&self, now_ms: u64) {
        let mut alive = match self.alive.write() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *alive {
            self.last_flush_ms.store(now_ms, Ordering::Relaxed);
            self.flush(now_ms);
        }
        *alive = false;
    }

    /// Runs `f` on this worker thread's telemetry shard.
    fn with_shard(&self, f: impl FnOnce(&mut Telemetry)) {
        let shard = SHARD.with(|s| *s);
        if let Some(Ok(mut t)) = self.telemetry.get(shard).map(|m| m.lock()) {
            f(&mut t);
        }
    }

    /// Sends every shard's changes to Envoy when the last flush is [`FLUSH_INTERVAL_MS`] old
    /// (one caller wins the flush).
    fn flush_if_due(&self, now_ms: u64) {
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < FLUSH_INTERVAL_MS
            || self
                .last_flush_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.flush(now_ms);
    }

    /// Sends every shard's changes to Envoy, each shard's gathered under its lock and sent
    /// after it is released; then the precise prefix cache's stats and the queue gauges.
    fn flush(&self, now_ms: u64) {
        let process = PROCESS_SINK.read().ok();
        let families: &FamilySink = process
            .as_ref()
            .and_then(|s| s.as_ref())
            .unwrap_or(&self.stats.families);
        let mut deferred = crate::metrics::Deferred::default();
        for m in &self.telemetry {
            if let Ok(mut t) = m.lock() {
                t.flush(now_ms, &mut deferred);
            }
            deferred.send(&mut &*families);
        }
        if let Some(kv) = &self.kv {
            kv.stats
                .flush(self.envoy, &kv.sinks, &kv.subscriptions.stats);
        }
        // In the process-wide series the queue gauges are the sum over every configuration's
        // gate, set by [`flush_all`]; a configuration only sets its own series' gauges.
        if let (Some(g), Some(None)) = (&self.gate, process.as_ref().map(|s| s.as_ref())) {
            g.publish_depths(&mut &*families);
            if let Some(e) = g.eviction_gauges() {
                endpoint_picker_filter::telemetry::set_eviction_gauges(&e, &mut &*families);
            }
            endpoint_picker_filter::telemetry::set_pool_saturation(
                &self.saturation_by_stage(now_ms),
                &self.stages_shown,
                &mut &*families,
            );
            endpoint_picker_filter::telemetry::set_capacity_utilization(
                &g.capacity_utilization(),
                &mut &*families,
            );
            if let Some((detector, n)) = self.stale_endpoints(now_ms) {
                endpoint_picker_filter::telemetry::set_stale_endpoints(
                    &detector,
                    n,
                    &mut &*families,
                );
            }
        }
        // Without the process-wide series each configuration sets its own index size.
        if let (Some(n), Some(None)) = (
            self.core.picker.prefix_index_blocks(),
            process.as_ref().map(|s| s.as_ref()),
        ) {
            set_index_size(families, n);
        }
        // Timings are counters too: each configuration adds its own.
        if let Some(g) = &self.gate {
            g.take_timings().flush(&mut &*families);
        }
        // Eviction counters are counters: every configuration adds its own to whichever series
        // it writes, and the process-wide one sums them.
        if let Some(r) = self
            .gate
            .as_ref()
            .and_then(|g| g.take_eviction_report())
            .filter(|r| !r.is_empty())
        {
            endpoint_picker_filter::telemetry::add_eviction_report(&r, &mut &*families);
        }
    }
}

/// Envoy's callbacks for one stream (`filter` is the DynamicModuleHttpFilter pointer of the
/// current hook).
pub struct NativeHost {
    /// Envoy's filter pointer.
    pub filter: Ptr,
    /// True inside the request-body hook, the only time Envoy has a "received" body frame (its
    /// pointer is not valid in other hooks).
    pub in_body_hook: bool,
}

/// Resumes one paused stream through Envoy's per-filter scheduler (flow control): `wake` posts
/// `on_http_filter_scheduled` to the stream's worker; the handle may be used and dropped on any
/// thread, and an event for a stream that already ended is dropped by Envoy. (Envoy 1.40's
/// scheduler holds a weak reference to the filter and its worker's dispatcher; a commit posts a
/// task that captures only that weak reference and the event id, so dropping the handle right
/// after a commit is safe.)
struct StreamWake {
    scheduler: *mut core::ffi::c_void,
}

// SAFETY: Envoy's filter scheduler posts to the worker's dispatcher, which is thread-safe, and
// holds the filter only weakly; deleting it frees that handle, also thread-safe.
unsafe impl Send for StreamWake {}

impl endpoint_picker_filter::waiting::Wake for StreamWake {
    fn wake(&self) {
        // SAFETY: a live scheduler made by scheduler_new (deleted only on drop).
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(
                self.scheduler,
                WAKE_EVENT,
            )
        }
    }
}

impl Drop for StreamWake {
    fn drop(&mut self) {
        // SAFETY: made by scheduler_new, deleted once.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.scheduler) }
    }
}

/// The event id of a flow-control wake.
pub const WAKE_EVENT: u64 = 1;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl NativeHost {
    fn header(&self, header_type: u32, name: &str) -> Option<String> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: `filter` is the pointer of the current hook; `out` is a live local; the key is
        // borrowed for the call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.filter,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                &mut out,
                0,
                core::ptr::null_mut(),
            )
        };
        // SAFETY: Envoy filled `out` for the current hook.
        (found && !out.ptr.is_null()).then(|| lossy(unsafe { abi::bytes(out) }))
    }

    fn set(&self, header_type: u32, name: &str, value: Option<&str>) -> bool {
        let v = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: pointers borrowed for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                v,
            )
        }
    }

    /// Calls `f` with every header of `header_type` (Envoy's own buffers, valid for this hook),
    /// read with one host call (one `get_header` call per name costs ~0.4 µs each in Envoy);
    /// not called when there are none.
    fn each_header(&self, header_type: u32, f: impl FnOnce(&[EnvoyHttpHeader])) {
        const NONE: EnvoyHttpHeader = EnvoyHttpHeader {
            key_ptr: core::ptr::null(),
            key_length: 0,
            value_ptr: core::ptr::null(),
            value_length: 0,
        };
        // SAFETY: the filter pointer of the current hook.
        let n = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(self.filter, header_type)
        };
        if n == 0 {
            return;
        }
        let mut on_stack = [NONE; 32];
        let mut on_heap = Vec::new();
        let all: &mut [EnvoyHttpHeader] = match on_stack.get_mut(..n) {
            Some(s) => s,
            None => {
                on_heap.resize(n, NONE);
                &mut on_heap
            }
        };
        // SAFETY: `all` has room for the `n` headers Envoy reported.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                header_type,
                all.as_mut_ptr(),
            )
        };
        if ok {
            f(all);
        }
    }

    /// The first value of each of `names` among the headers of `header_type`.
    fn find(&self, header_type: u32, names: &[&str], out: &mut [Option<String>]) {
        self.each_header(header_type, |all| {
            let mut found: SmallVec<[Option<Cow<'_, str>>; 8]> =
                smallvec::smallvec![None; names.len()];
            first_values(all, names, &mut found);
            for (slot, v) in out.iter_mut().zip(found) {
                *slot = v.map(Cow::into_owned);
            }
        });
    }

    /// The chunks of body `body_type` (Envoy's own buffers, valid for this hook); a body of up
    /// to [`INLINE_CHUNKS`] slices is listed without an allocation.
    fn chunks(&self, body_type: u32) -> Chunks {
        // SAFETY: the filter pointer of the current hook.
        let n = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.filter, body_type)
        };
        if n == 0 {
            return Chunks::new();
        }
        let mut v: Chunks = smallvec::smallvec![
            EnvoyBuffer::EMPTY;
            n
        ];
        // SAFETY: `v` has room for the `n` buffers Envoy reported.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.filter,
                body_type,
                v.as_mut_ptr(),
            )
        };
        if ok {
            v
        } else {
            Chunks::new()
        }
    }

    /// Bytes of body `body_type` (buffered or just received).
    pub fn body_size(&self, body_type: u32) -> usize {
        // SAFETY: the filter pointer of the current hook.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.filter, body_type) }
    }
}

impl HttpHost for NativeHost {
    fn request_header(&mut self, name: &str) -> Option<String> {
        self.header(abi::REQUEST_HEADER, name)
    }

    fn request_headers(&mut self) -> HeaderBlock {
        let mut block = HeaderBlock::default();
        self.each_header(abi::REQUEST_HEADER, |all| {
            let bytes = all.iter().map(|h| h.key_length + h.value_length).sum();
            block = HeaderBlock::with_capacity(all.len(), bytes);
            for h in all {
                // SAFETY: Envoy filled these buffers for the current hook.
                let (k, v) = unsafe { (abi::bytes(h.key()), abi::bytes(h.value())) };
                block.push(k, v);
            }
        });
        block
    }

    fn find_request_headers(&mut self, names: &[&str], out: &mut [Option<String>]) {
        self.find(abi::REQUEST_HEADER, names, out);
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool {
        self.set(abi::REQUEST_HEADER, name, value)
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> bool {
        // SAFETY: pointers borrowed for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    fn with_request_body(&mut self, _size: usize, f: &mut dyn FnMut(&[u8])) {
        // The body is what was buffered so far plus, in the body hook, the frame of this hook,
        // which Envoy has not added to the buffer yet.
        let mut chunks = self.chunks(abi::BUFFERED_REQUEST_BODY);
        if self.in_body_hook {
            chunks.extend(self.chunks(abi::RECEIVED_REQUEST_BODY));
        }
        // SAFETY: every chunk is an Envoy buffer of the current hook.
        let slices: SmallVec<[&[u8]; INLINE_CHUNKS]> =
            chunks.iter().map(|c| unsafe { abi::bytes(*c) }).collect();
        match slices.as_slice() {
            [] => f(&[]),
            [one] => f(one),
            many => f(&many.concat()),
        }
    }

    fn replace_request_body(&mut self, _size: usize, body: &[u8]) -> bool {
        // As in `with_request_body`: the body is the buffer plus, in the body hook, this hook's
        // frame. Both are emptied; the new body goes where the next part would have gone.
        let target = if self.in_body_hook {
            abi::RECEIVED_REQUEST_BODY
        } else {
            abi::BUFFERED_REQUEST_BODY
        };
        let parts: &[u32] = if self.in_body_hook {
            &[abi::BUFFERED_REQUEST_BODY, abi::RECEIVED_REQUEST_BODY]
        } else {
            &[abi::BUFFERED_REQUEST_BODY]
        };
        let mut ok = true;
        for &body_type in parts {
            let size = self.body_size(body_type);
            // SAFETY: the filter pointer of the current hook.
            ok &= size == 0
                || unsafe {
                    abi::envoy_dynamic_module_callback_http_drain_body(self.filter, body_type, size)
                };
        }
        // SAFETY: as above; `body` is borrowed for the call and Envoy copies it.
        ok && unsafe {
            abi::envoy_dynamic_module_callback_http_append_body(
                self.filter,
                target,
                ModuleBuffer::of(body),
            )
        }
    }

    fn response_header(&mut self, name: &str) -> Option<String> {
        self.header(abi::RESPONSE_HEADER, name)
    }

    fn find_response_headers(&mut self, names: &[&str], out: &mut [Option<String>]) {
        self.find(abi::RESPONSE_HEADER, names, out);
    }

    fn with_response_headers(&mut self, names: &[&str], f: &mut dyn FnMut(&[Option<&str>])) {
        let mut called = false;
        self.each_header(abi::RESPONSE_HEADER, |all| {
            // Borrowed from Envoy's buffers (valid for this hook); copied only when a value is
            // not UTF-8 and has to be decoded lossily.
            let mut found: SmallVec<[Option<Cow<'_, str>>; 8]> =
                smallvec::smallvec![None; names.len()];
            first_values(all, names, &mut found);
            let values: SmallVec<[Option<&str>; 8]> = found.iter().map(|v| v.as_deref()).collect();
            f(&values);
            called = true;
        });
        if !called {
            // No headers (or Envoy could not list them): every value absent.
            let none: SmallVec<[Option<&str>; 8]> = smallvec::smallvec![None; names.len()];
            f(&none);
        }
    }

    fn set_response_header(&mut self, name: &str, value: &str) -> bool {
        self.set(abi::RESPONSE_HEADER, name, Some(value))
    }

    fn with_response_body(&mut self, _size: usize, f: &mut dyn FnMut(&[u8])) {
        for c in self.chunks(abi::RECEIVED_RESPONSE_BODY) {
            // SAFETY: an Envoy buffer of the current hook.
            f(unsafe { abi::bytes(c) });
        }
    }

    fn upstream_address(&mut self) -> Option<String> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: the filter pointer of the current hook; `out` is a live local.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                abi::ATTRIBUTE_UPSTREAM_ADDRESS,
                &mut out,
            )
        };
        // SAFETY: Envoy filled `out` for the current hook.
        let text = found.then(|| lossy(unsafe { abi::bytes(out) }))?;
        // Only an `ip:port` is an endpoint; anything else is not trusted as one.
        text.parse::<std::net::SocketAddr>().is_ok().then_some(text)
    }

    fn send_json_reply(&mut self, status: u32, body: &str, extra: &[(&str, &str)]) {
        let mut headers = vec![
            ModuleHttpHeader::of("content-type", b"application/json"),
            ModuleHttpHeader::of("x-endpoint-picker", b"local-reply"),
        ];
        for (k, v) in extra {
            headers.push(ModuleHttpHeader::of(k, v.as_bytes()));
        }
        // SAFETY: every pointer is borrowed for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(body.as_bytes()),
                ModuleBuffer::of(b"endpoint_picker"),
            );
        }
    }

    fn send_grpc_reply(
        &mut self,
        http_status: u32,
        grpc_status: u32,
        message: &str,
        extra: &[(&str, &str)],
    ) {
        // The dynamic-module ABI's local reply has no gRPC status argument; Envoy does turn a
        // local reply to a gRPC request into a trailers-only response, but with `grpc-status: 0`
        // (measured on Envoy 1.40), so the status goes in as a header of ours.
        let code = grpc_status.to_string();
        let mut headers = vec![
            ModuleHttpHeader::of("x-endpoint-picker", b"local-reply"),
            ModuleHttpHeader::of("grpc-status", code.as_bytes()),
        ];
        for (k, v) in extra {
            headers.push(ModuleHttpHeader::of(k, v.as_bytes()));
        }
        // SAFETY: every pointer is borrowed for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                http_status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(message.as_bytes()),
                ModuleBuffer::of(b"endpoint_picker"),
            );
        }
    }

    fn endpoint_subset(&mut self) -> Option<EndpointSubset> {
        let namespace = ModuleBuffer::of(subset::NAMESPACE.as_bytes());
        let key = ModuleBuffer::of(subset::KEY.as_bytes());
        let mut len = 0usize;
        // SAFETY: the filter pointer of the current hook; the buffers are borrowed for the call
        // and `len` outlives it.
        let listed = unsafe {
            abi::envoy_dynamic_module_callback_http_get_metadata_list_size(
                self.filter,
                abi::METADATA_DYNAMIC,
                namespace,
                key,
                &mut len,
            )
        };
        if !listed {
            return None;
        }
        let entries = (0..len.min(subset::MAX_ENTRIES)).filter_map(|index| {
            let mut entry = EnvoyBuffer::EMPTY;
            // SAFETY: as above; `entry` outlives the call and points into Envoy's metadata,
            // valid for this hook, where it is copied. False for an element that is not a
            // string, which is skipped, as upstream's EPP skips it.
            let is_string = unsafe {
                abi::envoy_dynamic_module_callback_http_get_metadata_list_string(
                    self.filter,
                    abi::METADATA_DYNAMIC,
                    namespace,
                    key,
                    index,
                    &mut entry,
                )
            };
            // SAFETY: Envoy filled `entry` for the current hook, which outlives this iterator
            // (consumed below); borrowed, not copied, until the subset keeps its IP part.
            is_string.then(|| String::from_utf8_lossy(unsafe { abi::bytes(entry) }))
        });
        Some(EndpointSubset::from_host_list(len, entries))
    }

    fn set_destination_metadata(&mut self, destination: &str, scores: &[(String, f64)]) {
        let namespace = ModuleBuffer::of(crate::metadata::NAMESPACE.as_bytes());
        if scores.is_empty() {
            // One string, without building a Struct for Envoy to parse.
            // SAFETY: the filter pointer of the current hook; the buffers are borrowed for the call.
            unsafe {
                abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                    self.filter,
                    namespace,
                    ModuleBuffer::of(crate::metadata::DESTINATION.as_bytes()),
                    ModuleBuffer::of(destination.as_bytes()),
                );
            }
            return;
        }
        let encoded = crate::metadata::decision(destination, scores);
        // SAFETY: as above.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_struct(
                self.filter,
                namespace,
                ModuleBuffer::of(&encoded),
            );
        }
    }

    fn report_attribute(&mut self, namespace: &str, name: &str, value: f64) -> bool {
        // SAFETY: the filter pointer of the current hook; the buffers are borrowed for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
                self.filter,
                ModuleBuffer::of(namespace.as_bytes()),
                ModuleBuffer::of(name.as_bytes()),
                value,
            );
        }
        true
    }

    fn now_us(&mut self) -> u64 {
        endpoint_picker_filter::time::to_us(std::time::SystemTime::now())
    }

    fn waker(&mut self) -> Option<Box<dyn endpoint_picker_filter::waiting::Wake>> {
        // SAFETY: the filter pointer of the current hook.
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.filter) };
        (!scheduler.is_null()).then(|| {
            Box::new(StreamWake { scheduler }) as Box<dyn endpoint_picker_filter::waiting::Wake>
        })
    }

    fn continue_request(&mut self) {
        // SAFETY: the filter pointer of the current hook.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.filter) }
    }
}

/// The per-stream state the module keeps for Envoy.
pub struct Stream {
    /// The shared configuration.
    pub config: Arc<FilterConfig>,
    /// The common request flow.
    pub flow: endpoint_picker_filter::flow::RequestFlow,
}
