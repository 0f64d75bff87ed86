//! The burst window's timer in the native module: a thread of the module's own
//! (`picker-burst`, one per filter configuration with a `burst-prefix-cache-producer`) that
//! sleeps until the open batch's deadline and seals it there, so every Envoy worker's requests
//! share one batch and none waits longer than the window (plus the thread's wake-up).
//!
//! Sealing places the batch and posts each held request's wake to its own worker through Envoy's
//! per-stream scheduler (thread-safe), as flow control's releases do; this thread calls no other
//! Envoy function.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use endpoint_picker_filter::burst::BurstGate;

/// How long the thread sleeps when no batch is open (a new batch unparks it at once).
const IDLE_PARK: Duration = Duration::from_secs(1);

/// The sealer thread; dropping it stops and joins the thread.
pub struct Sealer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Starts sealing `gate`'s batches. `None` (logged) when the thread cannot start: batches
    /// are then sealed by the next request that arrives after the deadline, and by the main
    /// thread's tick.
    pub fn start(gate: Arc<BurstGate>) -> Option<Sealer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("picker-burst".into())
            .spawn(move || {
                let run = || {
                    while !stopping.load(Ordering::Acquire) {
                        let now = crate::now_ms();
                        gate.seal_due(now);
                        match gate.deadline_ms() {
                            Some(d) if d > now => std::thread::park_timeout(Duration::from_millis(d - now)),
                            Some(_) => {}
                            None => std::thread::park_timeout(IDLE_PARK),
                        }
                    }
                };
                if catch_unwind(AssertUnwindSafe(run)).is_err() {
                    log::error!("endpoint picker: burst window: its thread panicked and stopped; batches now seal on the main thread's tick");
                }
            })
            .inspect_err(|e| log::error!("endpoint picker: burst window: cannot start its thread: {e}"))
            .ok()?;
        Some(Sealer {
            stop,
            thread: Some(thread),
        })
    }

    /// True while the thread runs (false after a panic ended it).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// A batch opened: the thread re-reads the deadline now.
    pub fn opened(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
