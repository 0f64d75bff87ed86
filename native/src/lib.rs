//! # endpoint-picker-native (the hooks of `libendpoint_picker.so`)
//!
//! The LLM endpoint picker as a native Envoy dynamic module (Envoy 1.40, ABI `v0.2.0`, no SDK):
//!
//! - the bootstrap extension `metrics-scraper` ([`scraper`]) scrapes every endpoint's
//!   `/metrics` on Envoy's main thread and hands each new snapshot to the workers through
//!   process memory ([`pool`]);
//! - the HTTP filter `endpoint-picker` ([`filter`]) runs the same request flow as the Wasm
//!   build ([`endpoint_picker_filter::flow`]) with one scheduler state (prefix index, in-flight
//!   counts) shared by every worker thread;
//! - the load-balancing policy `pool-membership` ([`lb`]), set on the pool's cluster, reports
//!   the cluster's hosts ([`hosts`]) so the scraper follows EDS/DNS membership when the picker
//!   JSON lists no `pool.endpoints`.
//!
//! Both get the same picker JSON as the Wasm build. Envoy finds the library by name
//! (`dynamic_module_config.name: endpoint_picker` → `libendpoint_picker.so`) in
//! `$ENVOY_DYNAMIC_MODULES_SEARCH_PATH`. [`abi`] declares the C ABI, [`hooks`] implements every
//! hook Envoy calls, each behind `catch_unwind` (the crate is built with the `native` profile,
//! `panic = "unwind"`).

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

/// Now, ms since the Unix epoch (the scraper, its thread and the hooks).
pub(crate) fn now_ms() -> u64 {
    endpoint_picker_filter::time::to_ms(std::time::SystemTime::now())
}

pub mod abi;
pub mod burst_sealer;
pub mod filter;
pub mod hooks;
pub mod hosts;
pub mod kv_events;
pub mod kv_stats;
pub mod kv_subscriber;
pub mod lb;
pub mod logger;
pub mod metadata;
pub mod metrics;
pub mod pool;
pub mod runtime_thread;
pub mod scrape_client;
pub mod scraper;
pub mod tokenizer;

use std::sync::OnceLock;

use scheduler_core::Registry;

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Installs the plugin types this module knows (once; called at program init), lending them
/// this module's services (the tokenizer loader) unless the caller set its own.
pub fn install_registry(mut registry: Registry) {
    let mut services = registry.services().clone();
    if services.tokenizers.is_none() {
        services.tokenizers = tokenizer::services().tokenizers;
    }
    if services.expressions.is_none() {
        services = cel_expressions::with_cel(services);
    }
    registry.set_services(services);
    if REGISTRY.set(registry).is_err() {
        log::warn!("endpoint picker: registry installed twice; keeping the first");
    }
}

/// The installed registry (the built-ins when none was installed).
pub fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let mut r = Registry::with_builtins();
        r.set_services(cel_expressions::with_cel(tokenizer::services()));
        r
    })
}

/// Process start-up: Envoy's log as the `log` sink.
pub fn init() {
    logger::install();
}

/// Emits a loadable module's entry point (every other hook comes from this crate). The in-tree
/// module (`native/module`) passes the built-in registry; an out-of-tree crate adds plugins:
///
/// ```ignore
/// endpoint_picker_native::module!(|| {
///     let mut registry = scheduler_core::Registry::with_builtins();
///     registry.register(my_scorer::ENTRY).ok();
///     registry
/// });
/// ```
#[macro_export]
macro_rules! module {
    ($registry:expr) => {
        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const core::ffi::c_char {
            $crate::hooks::program_init($registry)
        }
    };
}
