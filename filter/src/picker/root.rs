//! The picker VM's long-lived state: the loaded scheduler, the pool view decoded from shared
//! data, the RNG and the stats. Built once in `on_configure`; HTTP contexts hold an `Rc` to it.

use std::cell::{Cell, RefCell};

use scheduler_core::membership::{Membership, MEMBERSHIP_KEY};
use scheduler_core::snapshot::{GENERATION_KEY, SNAPSHOT_KEY};
use scheduler_core::{ConfigError, PickerConfig, Registry, RequestState, SplitMix64};

use crate::flow::Picking;
use crate::host;
use crate::picker::decide::{Outcome, PickerCore, RequestInput};
use crate::picker::subset::EndpointSubset;
use crate::picker::view::PoolView;
use crate::stats::{PickerStats, WasmSink};
use crate::telemetry::{RequestLabels, RequestRecord, Telemetry, Timing};

/// See the module docs.
pub struct PickerShared {
    /// Scheduler and pool settings.
    pub core: PickerCore,
    view: RefCell<PoolView>,
    rng: RefCell<SplitMix64>,
    /// Envoy stats.
    pub stats: PickerStats,
    /// Request-body bytes reserved by this VM's requests still waiting for their body
    /// (bounded by `pool.maxBufferedBodyBytes`).
    buffered: Cell<usize>,
    /// This VM's GIE-named series between flushes, and the stats they go to.
    telemetry: RefCell<Telemetry>,
    sink: RefCell<WasmSink>,
    /// This VM's flow-control queues (`flowControl` gate).
    gate: Option<crate::waiting::FlowGate>,
    /// This VM's burst batch (`burst-prefix-cache-producer`), sealed on the tick.
    burst: Option<crate::burst::BurstGate>,
    /// The saturation stages this VM has set a gauge for.
    stages_shown: std::sync::atomic::AtomicU8,
}

impl PickerShared {
    /// Parses and loads the configuration.
    ///
    /// # Errors
    /// The scheduler-core [`ConfigError`] (logged by the caller; Envoy then refuses the config).
    pub fn configure(json: &str, registry: &Registry) -> Result<PickerShared, ConfigError> {
        let mut loaded = PickerConfig::load(json, registry)?;
        for w in &loaded.report.warnings {
            log::warn!("endpoint picker: {w}");
        }
        if core::mem::take(&mut loaded.pool.emit_endpoint_scores) {
            // Off, so no request collects scores it cannot publish.
            log::warn!("endpoint picker: pool.emitEndpointScores is ignored by the Wasm build: proxy-wasm cannot write dynamic metadata (the native build publishes the scores)");
        }
        publish_membership(&loaded.pool);
        let staleness = loaded.pool.scrape.staleness_ms;
        // Seeded per VM from the clock: tie-breaks differ between workers, as they should.
        let seed = host::now_us() ^ 0x5DEE_CE66_D1CE_5EED;
        let telemetry = RefCell::new(Telemetry::new(&loaded.picker));
        let gate = loaded.picker.flow_control().map(|fc| {
            crate::waiting::FlowGate::new(fc.clone(), loaded.pool.scrape.lag_ms(), host::clock_ns)
        });
        let burst = loaded
            .picker
            .batch_window()
            .and_then(|w| crate::burst::BurstGate::new(w.clone()));
        if let Some(w) = burst.as_ref().and_then(|b| b.window()) {
            if w.window_ms() < loaded.pool.scrape.interval_ms {
                log::warn!(
                    "endpoint picker: the burst window ({} ms) is shorter than the scrape interval ({} ms), which paces this Wasm module's tick: a batch is sealed on the first tick or request after its window, so requests may wait up to the interval",
                    w.window_ms(),
                    loaded.pool.scrape.interval_ms
                );
            }
        }
        Ok(PickerShared {
            gate,
            burst,
            telemetry,
            sink: RefCell::default(),
            core: PickerCore::new(loaded.picker, loaded.pool),
            view: RefCell::new(PoolView::new(staleness)),
            rng: RefCell::new(SplitMix64::new(seed)),
            stats: PickerStats::default(),
            buffered: Cell::new(0),
            stages_shown: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// Re-reads the snapshot if its generation changed (one small shared-data read otherwise).
    fn refresh(&self, view: &mut PoolView, now_ms: u64) {
        let (_, cas) = host::shared_data(GENERATION_KEY);
        if cas.is_none() || cas == view.cas {
            return;
        }
        let (bytes, _) = host::shared_data(SNAPSHOT_KEY);
        let Some(bytes) = bytes else { return };
        match view.update(cas, &bytes, now_ms) {
            Ok(membership_changed) => {
                self.stats.decode(true);
                if membership_changed {
                    self.core.picker.pool_changed(&view.all_endpoints());
                }
            }
            Err(e) => {
                self.stats.decode(false);
                log::warn!("endpoint picker: keeping the previous snapshot: {e}");
            }
        }
    }

    /// The scrape tick of a picker VM: re-reads the snapshot if it changed and reports its age
    /// and generation (`snapshot.age_ms`, `snapshot.generation`), so a scraper that stopped
    /// publishing shows without any request.
    pub fn on_tick(&self, now_ms: u64) {
        let Ok(mut view) = self.view.try_borrow_mut() else {
            return;
        };
        self.refresh(&mut view, now_ms);
        if let Some((published, generation)) = view.published() {
            self.stats
                .snapshot_seen(now_ms.saturating_sub(published), generation);
        }
        let empty = view.candidates(now_ms).is_empty();
        drop(view);
        if let Some(g) = &self.gate {
            g.tick(now_ms, empty, &mut || self.saturation(now_ms));
        }
        if let Some(b) = &self.burst {
            b.seal_due(now_ms);
        }
        if self.gate.is_some() || self.burst.is_some() {
            crate::picker::http::drain_ready(self, None);
        }
        if let Ok(mut t) = self.telemetry.try_borrow_mut() {
            if t.due(now_ms) {
                self.flush_to(&mut t, now_ms);
            }
        }
    }

    /// Sends this VM's metric changes to Envoy.
    fn flush_to(&self, t: &mut Telemetry, now_ms: u64) {
        if let Ok(mut sink) = self.sink.try_borrow_mut() {
            t.flush(now_ms, &mut *sink);
            // Each worker VM has its own prefix index; the gauge is their sum.
            if let Some(n) = self.core.picker.prefix_index_blocks() {
                t.share_index_blocks(n, &mut *sink);
            }
            if let Some(g) = &self.gate {
                g.publish_depths(&mut *sink);
                crate::telemetry::set_capacity_utilization(&g.capacity_utilization(), &mut *sink);
                g.take_timings().flush(&mut *sink);
                if let Some(r) = g.take_eviction_report().filter(|r| !r.is_empty()) {
                    crate::telemetry::add_eviction_report(&r, &mut *sink);
                }
                if let Some(e) = g.eviction_gauges() {
                    crate::telemetry::set_eviction_gauges(&e, &mut *sink);
                }
                // Not while a scheduling cycle holds the view (a flush from the request path).
                if let Ok(mut view) = self.view.try_borrow_mut() {
                    self.refresh(&mut view, now_ms);
                    let s = self
                        .core
                        .picker
                        .pool_saturation_by_stage(view.candidates(now_ms), now_ms);
                    crate::telemetry::set_pool_saturation(&s, &self.stages_shown, &mut *sink);
                    let all = view.all_endpoints();
                    if let Some((detector, n)) = self.core.picker.pool_stale_endpoints(&all, now_ms)
                    {
                        crate::telemetry::set_stale_endpoints(detector, n, &mut *sink);
                    }
                }
            }
        }
    }
}

impl Picking for PickerShared {
    fn core(&self) -> &PickerCore {
        &self.core
    }

    fn route_headers_only(
        &self,
        now_ms: u64,
        subset: Option<&EndpointSubset>,
        explain: bool,
    ) -> Outcome {
        let Ok(mut view) = self.view.try_borrow_mut() else {
            return self.core.route_headers_only(&[], subset, explain);
        };
        self.refresh(&mut view, now_ms);
        self.core
            .route_headers_only(view.candidates(now_ms), subset, explain)
    }

    fn route_request(
        &self,
        input: RequestInput<'_>,
        state: &mut RequestState,
        record: &mut RequestRecord,
    ) -> Outcome {
        let clock = || crate::abi::current_time_ns().unwrap_or(0);
        let mut timing = Timing {
            clock: &clock,
            record,
        };
        let now_ms = input.now_ms;
        let (Ok(mut view), Ok(mut rng)) = (self.view.try_borrow_mut(), self.rng.try_borrow_mut())
        else {
            return self.core.route_request(
                &[],
                input,
                &mut SplitMix64::new(now_ms),
                state,
                &mut timing,
            );
        };
        self.refresh(&mut view, now_ms);
        self.core.route_request(
            view.candidates(now_ms),
            input,
            &mut *rng,
            state,
            &mut timing,
        )
    }

    fn reserve_body(&self, bytes: usize) -> bool {
        let now = self.buffered.get().saturating_add(bytes);
        if now > self.core.pool.max_buffered_body_bytes {
            return false;
        }
        self.buffered.set(now);
        true
    }

    fn release_body(&self, bytes: usize) {
        self.buffered.set(self.buffered.get().saturating_sub(bytes));
    }

    fn count_pick(&self, primary: &str, profile: &str) {
        self.stats.pick(primary, profile);
    }

    fn count_routed(&self, labels: &RequestLabels, primary: &str) -> bool {
        // This VM's share; every VM moves the same Envoy gauge by its changes.
        let Ok(mut t) = self.telemetry.try_borrow_mut() else {
            return false;
        };
        t.started(labels, primary);
        true
    }

    fn count_reply(&self, status: u32) {
        self.stats.reply(status);
    }

    fn count_fail_open(&self) {
        self.stats.fail_open();
    }

    fn record(&self, record: &RequestRecord, now_ms: u64) {
        if let Ok(mut t) = self.telemetry.try_borrow_mut() {
            t.record(record);
            if t.due(now_ms) {
                self.flush_to(&mut t, now_ms);
            }
        }
    }

    fn flow_gate(&self) -> Option<&crate::waiting::FlowGate> {
        self.gate.as_ref()
    }

    fn burst_gate(&self) -> Option<&crate::burst::BurstGate> {
        self.burst.as_ref()
    }

    fn saturation(&self, now_ms: u64) -> f64 {
        match self.view.try_borrow_mut() {
            Ok(mut view) => {
                self.refresh(&mut view, now_ms);
                self.core
                    .picker
                    .pool_saturation(view.candidates(now_ms), now_ms)
            }
            // Called while the view is in use (inside a scheduling cycle): saturated, so
            // nothing is released on a stale answer.
            Err(_) => 1.0,
        }
    }

    fn record_queue_wait(
        &self,
        fairness_id: Option<&str>,
        priority: i32,
        outcome: &'static str,
        waited_ms: u64,
    ) {
        if let Ok(mut t) = self.telemetry.try_borrow_mut() {
            t.queue_wait(fairness_id, priority, outcome, waited_ms);
        }
    }
}

/// Publishes the configuration's member list for the scraper ([`scheduler_core::membership`]).
/// Every worker loads the same configuration, so the value is written only when it differs
/// from the stored one; the newest configuration loaded wins.
fn publish_membership(pool: &scheduler_core::PoolConfig) {
    let Some(m) = Membership::of_pool(pool) else {
        return;
    };
    let bytes = m.encode();
    let (current, _) = host::shared_data(MEMBERSHIP_KEY);
    if current.as_deref() == Some(bytes.as_slice()) {
        return;
    }
    if host::set_shared_data(MEMBERSHIP_KEY, &bytes) {
        log::info!(
            "endpoint picker: published {} endpoints of pool '{}' for the scraper",
            m.endpoints.len(),
            m.cluster
        );
    } else {
        log::warn!("endpoint picker: could not publish the pool's member list");
    }
}
