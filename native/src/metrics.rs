//! Envoy stats defined through the ABI: a metric is defined once on a configuration (name and
//! label names) and then updated with label values. A definition Envoy refuses leaves the metric
//! inert (every update is then a no-op), so a stats problem never affects a request.

use endpoint_picker_filter::telemetry::families::{self, Family};
use endpoint_picker_filter::telemetry::{label_value, StatSink};

use crate::abi::{self, ModuleBuffer, Ptr};

type Define = unsafe extern "C" fn(Ptr, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
type Update = unsafe extern "C" fn(Ptr, usize, *mut ModuleBuffer, usize, u64) -> u32;

fn define(f: Define, envoy: Ptr, name: &str, labels: &[&str]) -> Option<usize> {
    let mut names: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    // SAFETY: `envoy` is the configuration pointer of the current hook; every buffer is borrowed
    // for the call and `id` is a live local.
    let r = unsafe {
        f(
            envoy,
            ModuleBuffer::of(name.as_bytes()),
            if names.is_empty() {
                core::ptr::null_mut()
            } else {
                names.as_mut_ptr()
            },
            names.len(),
            &mut id,
        )
    };
    if r == abi::METRICS_SUCCESS {
        Some(id)
    } else {
        log::warn!("endpoint picker: Envoy refused the metric {name} (result {r})");
        None
    }
}

fn update(f: Update, envoy: Ptr, id: Option<usize>, labels: &[&str], value: u64) {
    let Some(id) = id else { return };
    let mut values: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    // SAFETY: as in `define`.
    unsafe {
        f(
            envoy,
            id,
            if values.is_empty() {
                core::ptr::null_mut()
            } else {
                values.as_mut_ptr()
            },
            values.len(),
            value,
        );
    }
}

/// A counter, labelled or not.
pub struct Counter {
    id: Option<usize>,
    update: Update,
}

impl Counter {
    /// Defined on an HTTP filter configuration.
    pub fn filter(config: Ptr, name: &str, labels: &[&str]) -> Counter {
        Counter {
            id: define(
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
                config,
                name,
                labels,
            ),
            update: abi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
        }
    }
    /// Defined on a bootstrap extension configuration.
    pub fn bootstrap(config: Ptr, name: &str, labels: &[&str]) -> Counter {
        Counter {
            id: define(
                abi::envoy_dynamic_module_callback_bootstrap_extension_config_define_counter,
                config,
                name,
                labels,
            ),
            update: abi::envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter,
        }
    }
    /// Adds `n` (label values in definition order).
    pub fn add(&self, config: Ptr, labels: &[&str], n: u64) {
        update(self.update, config, self.id, labels, n);
    }
}

/// An unlabelled gauge.
pub struct Gauge {
    id: Option<usize>,
    set: Update,
}

impl Gauge {
    /// Defined on a bootstrap extension configuration.
    pub fn bootstrap(config: Ptr, name: &str) -> Gauge {
        Gauge {
            id: define(
                abi::envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge,
                config,
                name,
                &[],
            ),
            set: abi::envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge,
        }
    }
    /// Defined on an HTTP filter configuration.
    pub fn filter(config: Ptr, name: &str) -> Gauge {
        Gauge {
            id: define(
                abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
                config,
                name,
                &[],
            ),
            set: abi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
        }
    }
    /// Sets the value.
    pub fn set(&self, config: Ptr, v: u64) {
        update(self.set, config, self.id, &[], v);
    }
}

/// The metric callbacks of one kind of configuration (HTTP filter or bootstrap extension).
struct ConfigAbi {
    define_counter: Define,
    define_gauge: Define,
    add: Update,
    set: Update,
    raise: Update,
    lower: Update,
}

/// Metrics defined on an HTTP filter configuration.
static FILTER_ABI: ConfigAbi = ConfigAbi {
    define_counter: abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
    define_gauge: abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
    add: abi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
    set: abi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
    raise: abi::envoy_dynamic_module_callback_http_filter_config_increment_gauge,
    lower: abi::envoy_dynamic_module_callback_http_filter_config_decrement_gauge,
};

/// Metrics defined on the bootstrap extension's configuration.
static BOOTSTRAP_ABI: ConfigAbi = ConfigAbi {
    define_counter: abi::envoy_dynamic_module_callback_bootstrap_extension_config_define_counter,
    define_gauge: abi::envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge,
    add: abi::envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter,
    set: abi::envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge,
    raise: abi::envoy_dynamic_module_callback_bootstrap_extension_config_increment_gauge,
    lower: abi::envoy_dynamic_module_callback_bootstrap_extension_config_decrement_gauge,
};

/// The telemetry families ([`endpoint_picker_filter::telemetry::families`]) as labelled Envoy
/// stats of one configuration: every family is defined when the configuration is created (the
/// ABI defines metrics only then) and updated with label values from any thread.
pub struct FamilySink {
    envoy: Ptr,
    /// (family name, id) sorted by name.
    ids: Vec<(&'static str, Option<usize>)>,
    abi: &'static ConfigAbi,
}

// SAFETY: `envoy` is the configuration pointer, which outlives this value; Envoy's metric
// callbacks are thread-safe.
unsafe impl Send for FamilySink {}
// SAFETY: as above.
unsafe impl Sync for FamilySink {}

impl FamilySink {
    /// The request path's families, on an HTTP filter configuration.
    pub fn filter(config: Ptr) -> FamilySink {
        FamilySink::define_all(config, families::request_families(), &FILTER_ABI)
    }

    /// The request path's families (as [`FamilySink::filter`]) on the bootstrap extension's
    /// configuration, which lives as long as the process: series kept there survive the
    /// replacement of a filter configuration, whose stats scope Envoy frees with it.
    pub fn bootstrap_requests(config: Ptr) -> FamilySink {
        FamilySink::define_all(config, families::request_families(), &BOOTSTRAP_ABI)
    }

    /// The pool gauges, on an HTTP filter configuration (filter-only mode: the scraper runs in
    /// the filter configuration).
    pub fn filter_pool(config: Ptr) -> FamilySink {
        FamilySink::define_all(config, families::POOL_FAMILIES.iter().copied(), &FILTER_ABI)
    }

    /// The pool gauges, on the bootstrap extension configuration.
    pub fn bootstrap(config: Ptr) -> FamilySink {
        FamilySink::define_all(
            config,
            families::POOL_FAMILIES.iter().copied(),
            &BOOTSTRAP_ABI,
        )
    }

    /// Defines every family of `all` on `envoy` (a counter or a gauge, by its kind) through
    /// `abi`, which also carries the updates.
    fn define_all(
        envoy: Ptr,
        all: impl Iterator<Item = &'static Family>,
        abi: &'static ConfigAbi,
    ) -> FamilySink {
        let mut ids: Vec<(&'static str, Option<usize>)> = all
            .map(|f| {
                let define_fn = match f.kind {
                    families::Kind::Counter => abi.define_counter,
                    families::Kind::Gauge => abi.define_gauge,
                };
                (f.name, define(define_fn, envoy, f.name, f.labels))
            })
            .collect();
        ids.sort_by_key(|(n, _)| *n);
        FamilySink { envoy, ids, abi }
    }

    fn id(&self, family: &Family) -> Option<usize> {
        self.ids
            .binary_search_by_key(&family.name, |(n, _)| n)
            .ok()
            .and_then(|i| self.ids.get(i))
            .and_then(|(_, id)| *id)
    }

    /// The counter `family{labels}` (a family of the request path) grows by `n`.
    pub fn add_to(&self, family: &'static Family, labels: &[&str], n: u64) {
        self.write(self.abi.add, family, labels, n);
    }

    /// Calls `f` with clean label values (copies only when one needs cleaning).
    fn write(&self, f: Update, family: &Family, labels: &[&str], v: u64) {
        let clean = |l: &&str| matches!(label_value(l), std::borrow::Cow::Borrowed(_));
        if labels.iter().all(clean) {
            update(f, self.envoy, self.id(family), labels, v);
            return;
        }
        let owned: Vec<std::borrow::Cow<'_, str>> = labels.iter().map(|l| label_value(l)).collect();
        let labels: Vec<&str> = owned.iter().map(|l| l.as_ref()).collect();
        update(f, self.envoy, self.id(family), &labels, v);
    }
}

impl StatSink for &FamilySink {
    fn add(&mut self, family: &'static Family, labels: &[&str], delta: u64) {
        // 0 too: it creates the series (a histogram's empty buckets must show).
        self.add_to(family, labels, delta);
    }
    fn set(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        self.write(self.abi.set, family, labels, value);
    }
    fn adjust(&mut self, family: &'static Family, labels: &[&str], delta: i64) {
        let f = if delta < 0 {
            self.abi.lower
        } else {
            self.abi.raise
        };
        self.write(f, family, labels, delta.unsigned_abs());
    }
}

/// Stat updates gathered while a telemetry shard is locked and sent to Envoy once the lock is
/// released ([`Deferred::send`]): computing a flush's deltas is quick, the labelled updates
/// through the ABI are not (each builds a stat name in Envoy), and a worker recording its next
/// request must not wait for them. One value serves every shard of a flush, so its buffers
/// keep their capacity from shard to shard.
#[derive(Default)]
pub struct Deferred {
    /// (what to do, family, number of labels); the labels are the next ones in `labels`, in
    /// order.
    updates: Vec<(Op, &'static Family, usize)>,
    labels: Vec<String>,
}

/// One gathered update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add(u64),
    Set(u64),
    Adjust(i64),
}

impl Deferred {
    /// Sends every gathered update to `sink`, in the order they came, and empties the buffers.
    pub fn send(&mut self, sink: &mut dyn StatSink) {
        let mut at = 0;
        let mut values: Vec<&str> = Vec::new();
        for &(op, family, n) in &self.updates {
            values.clear();
            values.extend(
                self.labels
                    .get(at..at + n)
                    .unwrap_or_default()
                    .iter()
                    .map(String::as_str),
            );
            at += n;
            match op {
                Op::Add(v) => sink.add(family, &values, v),
                Op::Set(v) => sink.set(family, &values, v),
                Op::Adjust(d) => sink.adjust(family, &values, d),
            }
        }
        self.updates.clear();
        self.labels.clear();
    }

    fn push(&mut self, op: Op, family: &'static Family, labels: &[&str]) {
        self.labels.extend(labels.iter().map(|l| String::from(*l)));
        self.updates.push((op, family, labels.len()));
    }
}

impl StatSink for Deferred {
    fn add(&mut self, family: &'static Family, labels: &[&str], delta: u64) {
        self.push(Op::Add(delta), family, labels);
    }
    fn set(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        self.push(Op::Set(value), family, labels);
    }
    fn adjust(&mut self, family: &'static Family, labels: &[&str], delta: i64) {
        self.push(Op::Adjust(delta), family, labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Shown(Vec<(Op, &'static str, Vec<String>)>);

    impl Shown {
        fn push(&mut self, op: Op, family: &'static Family, labels: &[&str]) {
            let labels = labels.iter().map(|l| String::from(*l)).collect();
            self.0.push((op, family.name, labels));
        }
    }

    impl StatSink for Shown {
        fn add(&mut self, family: &'static Family, labels: &[&str], delta: u64) {
            self.push(Op::Add(delta), family, labels);
        }
        fn set(&mut self, family: &'static Family, labels: &[&str], value: u64) {
            self.push(Op::Set(value), family, labels);
        }
        fn adjust(&mut self, family: &'static Family, labels: &[&str], delta: i64) {
            self.push(Op::Adjust(delta), family, labels);
        }
    }

    #[test]
    fn deferred_updates_arrive_in_order_with_their_labels() {
        let counter = &families::REQUEST_TOTAL;
        let gauge = families::POOL_FAMILIES[0];
        let mut d = Deferred::default();
        d.add(counter, &["m", "t"], 3);
        d.set(gauge, &[], 7);
        d.add(counter, &["a", "b"], 0);
        d.adjust(&families::RUNNING_REQUESTS, &["m"], -2);
        let mut shown = Shown::default();
        d.send(&mut shown);
        let s = |l: &[&str]| l.iter().map(|x| String::from(*x)).collect::<Vec<_>>();
        assert_eq!(
            shown.0,
            [
                (Op::Add(3), counter.name, s(&["m", "t"])),
                (Op::Set(7), gauge.name, s(&[])),
                (Op::Add(0), counter.name, s(&["a", "b"])),
                (Op::Adjust(-2), families::RUNNING_REQUESTS.name, s(&["m"])),
            ]
        );
        // Emptied: a second send shows nothing more.
        d.send(&mut shown);
        assert_eq!(shown.0.len(), 4);
    }
}
