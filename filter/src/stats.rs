//! Every Envoy stat the module defines, in one place. Envoy shows them under the `wasmcustom.`
//! prefix (Prometheus: `envoy_wasmcustom_…`).
//!
//! | stat | type | meaning |
//! |---|---|---|
//! | `endpoint_picker.picks.<ip_port>` | counter | requests routed to that endpoint (primary) |
//! | `endpoint_picker.local_replies.<status>` | counter | local replies by status (400, 413, 429, 500, 503) |
//! | `endpoint_picker.fail_open` | counter | requests passed through without a pick (FailOpen) |
//! | `endpoint_picker.scheduling_us` | histogram | time to parse and schedule one request, µs |
//! | `endpoint_picker.snapshot.decodes` / `.decode_errors` | counter | snapshot decodes in picker VMs |
//! | `endpoint_picker.scrape.success` / `.failure` | counter | scrape results |
//! | `endpoint_picker.endpoints.total` / `.stale` | gauge | pool size, endpoints whose metrics are stale |
//! | `endpoint_picker.snapshot.publishes` | counter | snapshots the scraper published |
//! | `endpoint_picker.scraper.takeovers` | counter | times a scraper instance took over a lapsed lease (a standby in a worker replacing a stopped bootstrap scraper) |
//! | `endpoint_picker.snapshot.age_ms` | gauge | age of the newest snapshot a picker VM has seen, ms (set on every scrape tick; grows while no scraper publishes) |
//! | `endpoint_picker.snapshot.generation` | gauge | generation of that snapshot |
//! | `endpoint_picker.vm_memory_bytes.picker` / `.scraper` | gauge | linear memory of a picker VM (last one to record) / the scraper VM, bytes |

use std::cell::RefCell;
use std::collections::HashMap;

use crate::abi;

/// Metric kinds of the ABI.
#[derive(Clone, Copy)]
enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn code(self) -> u32 {
        match self {
            MetricType::Counter => abi::METRIC_COUNTER,
            MetricType::Gauge => abi::METRIC_GAUGE,
            MetricType::Histogram => abi::METRIC_HISTOGRAM,
        }
    }
}

const PREFIX: &str = "endpoint_picker";

/// A metric defined on first use; a host refusal leaves it undefined (and silent).
struct Metric(Option<u32>);

impl Metric {
    fn define(kind: MetricType, name: &str) -> Metric {
        Metric(abi::define_metric(kind.code(), &format!("{PREFIX}.{name}")).ok())
    }
    fn add(&self, n: i64) {
        if let Some(id) = self.0 {
            let _ = abi::increment_metric(id, n);
        }
    }
    fn set(&self, v: u64) {
        if let Some(id) = self.0 {
            let _ = abi::record_metric(id, v);
        }
    }
}

/// Size of this VM's linear memory, bytes (0 off wasm32).
pub fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size::<0>() as u64) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// `10.0.0.1:8000` → `10_0_0_1_8000` (stat names use `.` as separator).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Stats of the picker filter.
pub struct PickerStats {
    picks: RefCell<HashMap<String, Metric>>,
    replies: RefCell<HashMap<u32, Metric>>,
    fail_open: Metric,
    scheduling_us: Metric,
    decodes: Metric,
    decode_errors: Metric,
    memory: Metric,
    snapshot_age: Metric,
    snapshot_generation: Metric,
}

impl Default for PickerStats {
    fn default() -> Self {
        PickerStats {
            picks: RefCell::default(),
            replies: RefCell::default(),
            fail_open: Metric::define(MetricType::Counter, "fail_open"),
            scheduling_us: Metric::define(MetricType::Histogram, "scheduling_us"),
            decodes: Metric::define(MetricType::Counter, "snapshot.decodes"),
            decode_errors: Metric::define(MetricType::Counter, "snapshot.decode_errors"),
            memory: Metric::define(MetricType::Gauge, "vm_memory_bytes.picker"),
            snapshot_age: Metric::define(MetricType::Gauge, "snapshot.age_ms"),
            snapshot_generation: Metric::define(MetricType::Gauge, "snapshot.generation"),
        }
    }
}

impl PickerStats {
    /// One request routed to `endpoint`.
    pub fn pick(&self, endpoint: &str) {
        if let Ok(mut m) = self.picks.try_borrow_mut() {
            if let Some(metric) = m.get(endpoint) {
                metric.add(1);
                return;
            }
            let metric = Metric::define(
                MetricType::Counter,
                &format!("picks.{}", sanitize(endpoint)),
            );
            metric.add(1);
            m.insert(endpoint.to_string(), metric);
        }
    }
    /// One local reply with `status`.
    pub fn reply(&self, status: u32) {
        if let Ok(mut m) = self.replies.try_borrow_mut() {
            m.entry(status)
                .or_insert_with(|| {
                    Metric::define(MetricType::Counter, &format!("local_replies.{status}"))
                })
                .add(1);
        }
    }
    /// One FailOpen pass-through.
    pub fn fail_open(&self) {
        self.fail_open.add(1);
    }
    /// Scheduling time of one request.
    pub fn scheduling_us(&self, us: u64) {
        self.scheduling_us.set(us);
    }
    /// Age (ms) and generation of the newest snapshot this VM has seen.
    pub fn snapshot_seen(&self, age_ms: u64, generation: u64) {
        self.snapshot_age.set(age_ms);
        self.snapshot_generation.set(generation);
    }
    /// A snapshot decode, successful or not (also samples the VM's memory).
    pub fn decode(&self, ok: bool) {
        if ok {
            &self.decodes
        } else {
            &self.decode_errors
        }
        .add(1);
        self.memory.set(vm_memory_bytes());
    }
}

/// Stats of the scraper.
pub struct ScraperStats {
    success: Metric,
    failure: Metric,
    total: Metric,
    stale: Metric,
    publishes: Metric,
    memory: Metric,
    membership: Metric,
    takeovers: Metric,
}

impl Default for ScraperStats {
    fn default() -> Self {
        ScraperStats {
            success: Metric::define(MetricType::Counter, "scrape.success"),
            failure: Metric::define(MetricType::Counter, "scrape.failure"),
            total: Metric::define(MetricType::Gauge, "endpoints.total"),
            stale: Metric::define(MetricType::Gauge, "endpoints.stale"),
            publishes: Metric::define(MetricType::Counter, "snapshot.publishes"),
            memory: Metric::define(MetricType::Gauge, "vm_memory_bytes.scraper"),
            membership: Metric::define(MetricType::Counter, "pool.membership_changes"),
            takeovers: Metric::define(MetricType::Counter, "scraper.takeovers"),
        }
    }
}

impl ScraperStats {
    /// One scrape result.
    pub fn scrape(&self, ok: bool) {
        if ok { &self.success } else { &self.failure }.add(1);
    }
    /// One publish of a snapshot with `total` endpoints, `stale` of them stale.
    pub fn published(&self, total: usize, stale: usize) {
        self.publishes.add(1);
        self.memory.set(vm_memory_bytes());
        self.total.set(total as u64);
        self.stale.set(stale as u64);
    }
    /// This instance took over a lease another instance let lapse.
    pub fn takeover(&self) {
        self.takeovers.add(1);
    }
    /// The scraper adopted a new member list published by a filter configuration.
    pub fn membership_changed(&self) {
        self.membership.add(1);
    }
}
