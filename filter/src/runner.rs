//! The module's runtime: one root context type that becomes the scraper or the picker depending
//! on the plugin's root id. Public so an out-of-tree crate can build its own module:
//!
//! ```ignore
//! proxy_wasm::main! {{
//!     let mut registry = scheduler_core::Registry::with_builtins();
//!     registry.register(my_scorer::ENTRY).ok();
//!     endpoint_picker_filter::runner::run(registry);
//! }}
//! ```

use std::rc::Rc;
use std::sync::{Mutex, OnceLock};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use scheduler_core::Registry;

use crate::host;
use crate::picker::http::PickerHttp;
use crate::picker::root::PickerShared;
use crate::scraper::root::ScraperRoot;

/// Root id of the scraper role (Envoy bootstrap Wasm service, `singleton: true`).
pub const SCRAPER_ROOT_ID: &str = "metrics-scraper";
/// Root id of the HTTP filter role.
pub const PICKER_ROOT_ID: &str = "endpoint-picker";

/// The registry `run` installs, until the first configuration completes it ([`registry`]).
static PENDING: Mutex<Option<Registry>> = Mutex::new(None);
static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The registry, with the host's entropy added on first use: proxy-wasm has no random source,
/// so the host clock's nanoseconds at the first configuration are what clients cannot know
/// (they seed the prefix index's table). Host calls are refused while the module initialises,
/// which is when `run` is called, hence not there.
fn registry() -> Option<&'static Registry> {
    if let Some(r) = REGISTRY.get() {
        return Some(r);
    }
    let mut registry = PENDING.lock().ok()?.take()?;
    if registry.services().entropy == 0 {
        let mut services = registry.services().clone();
        services.entropy = crate::abi::current_time_ns().unwrap_or(0);
        registry.set_services(services);
    }
    Some(REGISTRY.get_or_init(|| registry))
}

/// Installs `registry` (the plugin types this module knows) and the root context factory.
/// Call once from `proxy_wasm::main!`.
pub fn run(registry: Registry) {
    proxy_wasm::set_log_level(LogLevel::Info);
    #[cfg(feature = "cel")]
    let registry = {
        let mut registry = registry;
        if registry.services().expressions.is_none() {
            registry.set_services(cel_expressions::with_cel(registry.services().clone()));
        }
        registry
    };
    match PENDING.lock() {
        Ok(mut p) if p.is_none() && REGISTRY.get().is_none() => *p = Some(registry),
        _ => log::warn!("runner::run called twice; keeping the first registry"),
    }
    proxy_wasm::set_root_context(|_| Box::new(RoleRoot::Unconfigured));
}

/// Lets `log::debug!` through (the decision log) only while Envoy logs this plugin at debug
/// level or finer; checked on configure and on every tick, so `/logging?level=debug`
/// on Envoy's admin takes effect within a scrape interval.
fn follow_host_log_level() {
    let level = match crate::abi::log_level() {
        Ok(0) => log::LevelFilter::Trace,
        Ok(1) => log::LevelFilter::Debug,
        Ok(2) | Err(_) => log::LevelFilter::Info,
        Ok(3) => log::LevelFilter::Warn,
        Ok(_) => log::LevelFilter::Error,
    };
    if log::max_level() != level {
        log::set_max_level(level);
    }
}

enum RoleRoot {
    Unconfigured,
    Scraper(Box<ScraperRoot>),
    /// The picker, with a standby scraper: every picker VM runs a [`ScraperRoot`] that ticks
    /// but scrapes only while it holds the scraper lease, i.e. when the bootstrap scraper has
    /// not renewed it for [`crate::scraper::root::lease_ms`] (it stopped, or there is none:
    /// filter-only deployments). One standby wins the lease by CAS and scrapes for every worker.
    Picker(Rc<PickerShared>, Box<ScraperRoot>),
}

impl Context for RoleRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        match self {
            RoleRoot::Scraper(s) | RoleRoot::Picker(_, s) => {
                s.on_response(token, headers, body_size)
            }
            RoleRoot::Unconfigured => {}
        }
    }
}

impl RootContext for RoleRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        follow_host_log_level();
        let Some(registry) = registry() else {
            log::error!("endpoint picker: no plugin registry installed");
            return false;
        };
        let root_id = host::property_string(&["plugin_root_id"]).unwrap_or_default();
        let json = host::plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let role = match root_id.as_str() {
            SCRAPER_ROOT_ID => {
                ScraperRoot::configure(&json, registry).map(|s| RoleRoot::Scraper(Box::new(s)))
            }
            PICKER_ROOT_ID => PickerShared::configure(&json, registry).and_then(|p| {
                let standby = ScraperRoot::configure(&json, registry)?;
                Ok(RoleRoot::Picker(Rc::new(p), Box::new(standby)))
            }),
            other => {
                log::error!(
                    "endpoint picker: unknown root_id '{other}'; use '{SCRAPER_ROOT_ID}' (bootstrap service) or '{PICKER_ROOT_ID}' (HTTP filter)"
                );
                return false;
            }
        };
        match role {
            Ok(r) => {
                *self = r;
                true
            }
            Err(e) => {
                // Envoy refuses the configuration; this line is what the operator reads.
                log::error!("endpoint picker ({root_id}): invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        follow_host_log_level();
        match self {
            RoleRoot::Scraper(s) => s.on_tick(),
            RoleRoot::Picker(p, standby) => {
                standby.on_tick();
                p.on_tick(host::now_ms());
            }
            RoleRoot::Unconfigured => {}
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never None: the SDK panics on None. A filter without a picker role passes through.
        Some(match self {
            RoleRoot::Picker(shared, _) => Box::new(PickerHttp::new(shared.clone(), context_id)),
            _ => Box::new(PassThrough),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PassThrough;
impl Context for PassThrough {}
impl HttpContext for PassThrough {}
