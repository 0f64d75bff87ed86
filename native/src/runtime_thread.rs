//! Threads of the module's own, each running one single-threaded tokio runtime: the KV-event
//! subscriber and the direct scrape transport. They do their network I/O off Envoy's workers and
//! main thread, and call no Envoy function.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

/// Starts the thread `name` running `run` on a fresh current-thread runtime (I/O and timers
/// enabled). A panic in `run` is caught and logged: it ends the thread, never the process. `what`
/// names the job in log lines.
///
/// # Errors
/// The thread could not be spawned (logged).
pub fn spawn(
    name: &str,
    what: &'static str,
    run: impl FnOnce(&tokio::runtime::Runtime) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("endpoint picker: {what}: no runtime: {e}");
                    return;
                }
            };
            if catch_unwind(AssertUnwindSafe(|| run(&rt))).is_err() {
                log::error!("endpoint picker: {what}: its thread panicked and stopped");
            }
        })
        .inspect_err(|e| log::error!("endpoint picker: {what}: cannot start its thread: {e}"))
}
