//! Every Envoy stat the module defines, in one place. Envoy shows them under the `wasmcustom.`
//! prefix (Prometheus: `envoy_wasmcustom_…`).
//!
//! | stat | type | meaning |
//! |---|---|---|
//! | `endpoint_picker_picks;endpoint=<ip:port>;profile=<name>` | counter | requests routed to that endpoint (primary) |
//! | `endpoint_picker_local_replies;status=<code>` | counter | local replies by status (400, 413, 429, 500, 503) |
//! | `endpoint_picker.fail_open` | counter | requests passed through without a pick (FailOpen) |
//! | GIE's series ([`crate::telemetry::families`]) | counter, gauge | `<name>;<label>=<value>…` |
//! | `endpoint_picker.snapshot.decodes` / `.decode_errors` | counter | snapshot decodes in picker VMs |
//! | `endpoint_picker.scrape.success` / `.failure` | counter | scrape results |
//! | `endpoint_picker.endpoints.total` / `.stale` | gauge | pool size, endpoints whose metrics are stale |
//! | `endpoint_picker.snapshot.publishes` | counter | snapshots the scraper published |
//! | `endpoint_picker.scraper.takeovers` | counter | times a scraper instance took over a lapsed lease (a standby in a worker replacing a stopped bootstrap scraper) |
//! | `endpoint_picker.snapshot.age_ms` | gauge | age of the newest snapshot a picker VM has seen, ms (set on every scrape tick; grows while no scraper publishes) |
//! | `endpoint_picker.snapshot.generation` | gauge | generation of that snapshot |
//! | `endpoint_picker.vm_memory_bytes.picker` / `.scraper` | gauge | linear memory of a picker VM (last one to record) / the scraper VM, bytes |

//!
//! Proxy-wasm metrics have no labels. A labelled series is defined under the name
//! `<family>;<label>=<value>;<label>=<value>` and the rendered bootstrap's `stats_tags` (one
//! rule per label name, [`crate::telemetry::stats_tag_regex`]) move each `;<label>=<value>` into a tag, so
//! `/stats/prometheus` shows `<family>{<label>="<value>",…}`. Envoy strips the `wasmcustom.`
//! namespace of Wasm stats from Prometheus names (no `envoy_` prefix either).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::abi;
use crate::telemetry::families::{self, Family, Kind};
use crate::telemetry::{label_value, StatSink};

/// Metric kinds of the ABI.
#[derive(Clone, Copy)]
enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    fn code(self) -> u32 {
        match self {
            MetricType::Counter => abi::METRIC_COUNTER,
            MetricType::Gauge => abi::METRIC_GAUGE,
        }
    }
}

const PREFIX: &str = "endpoint_picker";

/// Most (endpoint, profile) pick series one VM looks up at once; when churn of addresses fills
/// it, it is emptied and series are defined again as they are picked.
const MAX_PICK_SERIES: usize = 4096;

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

/// The stat name carrying `family{labels}` (see the module docs).
pub fn labelled_name(family: &Family, labels: &[&str]) -> String {
    let mut name = String::from(family.name);
    for (k, v) in family.labels.iter().zip(labels) {
        name.push(';');
        name.push_str(k);
        name.push('=');
        name.push_str(&label_value(v));
    }
    name
}

/// A labelled-metric cache over the ABI: ids by full stat name.
#[derive(Default)]
pub struct WasmSink {
    ids: HashMap<String, Metric>,
}

impl WasmSink {
    fn metric(&mut self, family: &Family, labels: &[&str]) -> &Metric {
        let name = labelled_name(family, labels);
        let kind = match family.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        self.ids
            .entry(name)
            .or_insert_with_key(|n| Metric(abi::define_metric(kind.code(), n).ok()))
    }
}

impl StatSink for WasmSink {
    fn add(&mut self, family: &'static Family, labels: &[&str], delta: u64) {
        self.metric(family, labels)
            .add(i64::try_from(delta).unwrap_or(i64::MAX));
    }
    fn set(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        self.metric(family, labels).set(value);
    }
    fn adjust(&mut self, family: &'static Family, labels: &[&str], delta: i64) {
        // proxy-wasm's increment on a gauge adds a positive offset and subtracts a negative one.
        self.metric(family, labels).add(delta);
    }
}

/// Stats of the picker filter.
pub struct PickerStats {
    /// By endpoint, then (profile, metric): found with no allocation once known.
    picks: RefCell<HashMap<String, Vec<(String, Metric)>>>,
    pick_series: std::cell::Cell<usize>,
    replies: RefCell<HashMap<u32, Metric>>,
    fail_open: Metric,
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
            pick_series: std::cell::Cell::new(0),
            replies: RefCell::default(),
            fail_open: Metric::define(MetricType::Counter, "fail_open"),
            decodes: Metric::define(MetricType::Counter, "snapshot.decodes"),
            decode_errors: Metric::define(MetricType::Counter, "snapshot.decode_errors"),
            memory: Metric::define(MetricType::Gauge, "vm_memory_bytes.picker"),
            snapshot_age: Metric::define(MetricType::Gauge, "snapshot.age_ms"),
            snapshot_generation: Metric::define(MetricType::Gauge, "snapshot.generation"),
        }
    }
}

impl PickerStats {
    /// One request routed to `endpoint` by `profile`.
    pub fn pick(&self, endpoint: &str, profile: &str) {
        if let Ok(mut m) = self.picks.try_borrow_mut() {
            if let Some((_, metric)) = m
                .get(endpoint)
                .and_then(|v| v.iter().find(|(p, _)| p == profile))
            {
                metric.add(1);
                return;
            }
            if self.pick_series.get() >= MAX_PICK_SERIES {
                // Pod churn filled the table: start it afresh. The counters live in Envoy, so a
                // series defined again continues where it was; only the lookups are rebuilt.
                m.clear();
                self.pick_series.set(0);
            }
            self.pick_series.set(self.pick_series.get() + 1);
            let name = labelled_name(&families::PICKS, &[endpoint, profile]);
            let metric = Metric(abi::define_metric(MetricType::Counter.code(), &name).ok());
            metric.add(1);
            m.entry(endpoint.to_string())
                .or_default()
                .push((profile.to_string(), metric));
        }
    }
    /// One local reply with `status`.
    pub fn reply(&self, status: u32) {
        if let Ok(mut m) = self.replies.try_borrow_mut() {
            m.entry(status)
                .or_insert_with(|| {
                    let name = labelled_name(&families::LOCAL_REPLIES, &[&status.to_string()]);
                    Metric(abi::define_metric(MetricType::Counter.code(), &name).ok())
                })
                .add(1);
        }
    }
    /// One FailOpen pass-through.
    pub fn fail_open(&self) {
        self.fail_open.add(1);
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
    page_failures: Metric,
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
            page_failures: Metric::define(MetricType::Counter, "scrape.page_failure"),
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
    /// A second-page fetch (e.g. DCGM) failed or held nothing its source reads.
    pub fn page_failed(&self) {
        self.page_failures.add(1);
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
