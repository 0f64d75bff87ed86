//! Envoy stats defined through the ABI: a metric is defined once on a configuration (name and
//! label names) and then updated with label values. A definition Envoy refuses leaves the metric
//! inert (every update is then a no-op), so a stats problem never affects a request.

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

/// A gauge of a bootstrap extension configuration.
pub struct Gauge {
    id: Option<usize>,
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
        }
    }
    /// Sets the value.
    pub fn set(&self, config: Ptr, v: u64) {
        update(
            abi::envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge,
            config,
            self.id,
            &[],
            v,
        );
    }
}

/// A histogram of an HTTP filter configuration.
pub struct Histogram {
    id: Option<usize>,
}

impl Histogram {
    /// Defined on an HTTP filter configuration.
    pub fn filter(config: Ptr, name: &str) -> Histogram {
        Histogram {
            id: define(
                abi::envoy_dynamic_module_callback_http_filter_config_define_histogram,
                config,
                name,
                &[],
            ),
        }
    }
    /// Records one value.
    pub fn record(&self, config: Ptr, v: u64) {
        update(
            abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value,
            config,
            self.id,
            &[],
            v,
        );
    }
}
