//! `log` records go to Envoy's own log (component `dynamic_modules`), at Envoy's level.

use crate::abi::{self, ModuleBuffer};

struct EnvoyLogger;

fn level(l: log::Level) -> u32 {
    match l {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug | log::Level::Trace => abi::LOG_DEBUG,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        // SAFETY: a plain value argument; callable from any thread.
        unsafe { abi::envoy_dynamic_module_callback_log_enabled(level(m.level())) }
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = r.args().to_string();
        // SAFETY: the message is borrowed for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                level(r.level()),
                ModuleBuffer::of(text.as_bytes()),
            )
        };
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Makes Envoy's log the sink of the `log` crate (once per process).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        // Debug records (the per-request decision log) reach `enabled`, which asks Envoy for
        // its current level: one cheap call, and `/logging?level=debug` works at once.
        log::set_max_level(log::LevelFilter::Debug);
    }
}
