//! The burst window for the hosts (`burst-prefix-cache-producer`): one [`BurstGate`] per picker
//! state — process-wide in the native module, per worker VM in Wasm — holding the open batch
//! behind a short lock, and the [`BurstSlot`] each held request leaves there.
//!
//! A request with a body joins the open batch once flow control (if on) let it through, and
//! stays paused in Envoy with its body buffered, as a queued request does. The first request
//! opens a batch; it seals `windowDurationMs` later ([`BurstGate::seal_due`]: the native module's
//! sealer thread sleeps until the deadline, the Wasm module seals on its VM's tick and whenever a
//! request arrives after the deadline). Sealing places the whole batch with the plugin's
//! [`BatchWindow::place`] outside the lock, writes each request's placement into its slot and
//! calls its [`Wake`]; the request then reads the slot (`RequestFlow::on_wake`), hands the
//! placement to the plugin and is scheduled.
//!
//! A request that finds the batch full (`maxBatchSize`) is not held. A request that ends while
//! held stays in its batch (its placement counts for the others, as upstream's does) and its
//! wake finds nothing to resume.

use std::sync::{Arc, Mutex};

use scheduler_core::plugin::BatchWindow;
use scheduler_core::{Endpoint, Plugin};

use crate::waiting::Wake;

/// How a held request's wait ended: where the batch placed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BurstEnd {
    /// The endpoint's address; `None`: no affinity (a lone prompt, no prompt, the pool empty).
    pub endpoint: Option<String>,
    /// Blocks the request's key has.
    pub blocks: usize,
    /// How long it was held, ms.
    pub waited_ms: u64,
}

/// Where the gate leaves a held request's [`BurstEnd`].
pub type BurstSlot = crate::waiting::Slot<BurstEnd>;

/// One held request.
struct Member {
    key: Vec<u64>,
    joined_ms: u64,
    slot: Arc<BurstSlot>,
    wake: Box<dyn Wake>,
}

/// The open batch.
struct Batch {
    /// Its window, ms.
    window_ms: u64,
    /// When it seals, ms since the epoch.
    deadline_ms: u64,
    /// The candidates when it opened: what it is placed over.
    endpoints: Vec<Endpoint>,
    members: Vec<Member>,
}

impl Batch {
    /// True at or after the deadline, and also when the deadline is more than a window ahead:
    /// the wall clock stepped back, and the batch must not wait for it to catch up.
    fn due(&self, now_ms: u64) -> bool {
        self.deadline_ms <= now_ms || self.deadline_ms > now_ms.saturating_add(self.window_ms)
    }
}

/// Why a request was not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotHeld {
    /// The open batch has `maxBatchSize` requests.
    Full,
    /// The gate's lock is poisoned (never loses a request: it goes on unplaced).
    Unavailable,
}

/// The open batch of one picker state; see the module docs.
pub struct BurstGate {
    plugin: Arc<dyn Plugin>,
    open: Mutex<Option<Batch>>,
}

impl BurstGate {
    /// A gate for `plugin`, or `None` when it is not a [`BatchWindow`].
    pub fn new(plugin: Arc<dyn Plugin>) -> Option<Self> {
        plugin.as_batch_window()?;
        Some(BurstGate {
            plugin,
            open: Mutex::new(None),
        })
    }

    /// The plugin's window contract.
    pub fn window(&self) -> Option<&dyn BatchWindow> {
        self.plugin.as_batch_window()
    }

    /// Holds a request with placement `key` in the open batch (opening one over `candidates`
    /// if none is open, or if the open one is past its deadline — that one is sealed first).
    /// Returns the request's slot and, when it opened the batch, the batch's deadline (ms since
    /// the epoch; the native sealer is then told).
    ///
    /// # Errors
    /// [`NotHeld`]: the request goes on at once with no placement.
    pub fn join(
        &self,
        key: Vec<u64>,
        candidates: &[Endpoint],
        wake: Box<dyn Wake>,
        now_ms: u64,
    ) -> Result<(Arc<BurstSlot>, Option<u64>), NotHeld> {
        let Some(window) = self.window() else {
            return Err(NotHeld::Unavailable);
        };
        let slot = Arc::new(BurstSlot::default());
        let (overdue, opened) = {
            let Ok(mut open) = self.open.lock() else {
                return Err(NotHeld::Unavailable);
            };
            let overdue = open
                .as_ref()
                .is_some_and(|b| b.due(now_ms))
                .then(|| open.take())
                .flatten();
            let opened = open.is_none();
            let batch = open.get_or_insert_with(|| Batch {
                window_ms: window.window_ms(),
                deadline_ms: now_ms.saturating_add(window.window_ms()),
                endpoints: candidates.to_vec(),
                members: Vec::new(),
            });
            if window.max_batch().is_some_and(|m| batch.members.len() >= m) {
                drop(open);
                if let Some(b) = overdue {
                    self.release(window, b, now_ms);
                }
                return Err(NotHeld::Full);
            }
            batch.members.push(Member {
                key,
                joined_ms: now_ms,
                slot: slot.clone(),
                wake,
            });
            (overdue, opened.then_some(batch.deadline_ms))
        };
        if let Some(b) = overdue {
            self.release(window, b, now_ms);
        }
        Ok((slot, opened))
    }

    /// When the open batch seals, ms since the epoch; `None` when none is open.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.open
            .lock()
            .ok()
            .and_then(|o| o.as_ref().map(|b| b.deadline_ms))
    }

    /// Seals the open batch if its deadline is `now_ms` or earlier (or more than a window
    /// ahead: the clock stepped back): places it and wakes every request in it. Returns how many
    /// it released.
    pub fn seal_due(&self, now_ms: u64) -> usize {
        let Some(window) = self.window() else {
            return 0;
        };
        let due = match self.open.lock() {
            Ok(mut open) if open.as_ref().is_some_and(|b| b.due(now_ms)) => open.take(),
            _ => None,
        };
        due.map_or(0, |b| self.release(window, b, now_ms))
    }

    /// Requests held now.
    pub fn len(&self) -> usize {
        self.open
            .lock()
            .ok()
            .and_then(|o| o.as_ref().map(|b| b.members.len()))
            .unwrap_or(0)
    }

    /// True when no request is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Places a sealed batch (no lock held) and wakes its requests.
    fn release(&self, window: &dyn BatchWindow, batch: Batch, now_ms: u64) -> usize {
        let keys: Vec<&[u64]> = batch.members.iter().map(|m| m.key.as_slice()).collect();
        let placed = window.place(&keys, &batch.endpoints);
        let n = batch.members.len();
        for (i, m) in batch.members.into_iter().enumerate() {
            let endpoint = placed
                .get(i)
                .copied()
                .flatten()
                .and_then(|e| batch.endpoints.get(e))
                .map(|e| e.address.clone());
            m.slot.put(BurstEnd {
                endpoint,
                blocks: m.key.len(),
                waited_ms: now_ms.saturating_sub(m.joined_ms),
            });
            m.wake.wake();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(Arc<AtomicUsize>);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn gate(params: serde_json::Value) -> BurstGate {
        let cfg = serde_json::json!({"plugins": [
            {"type": "burst-prefix-cache-producer", "parameters": params},
            {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "burst-prefix-cache-producer"}},
        ]});
        let (picker, _) =
            scheduler_core::load(&cfg.to_string(), &scheduler_core::Registry::with_builtins())
                .unwrap();
        BurstGate::new(picker.batch_window().unwrap().clone()).unwrap()
    }

    fn pool() -> Vec<Endpoint> {
        ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
            .into_iter()
            .map(Endpoint::new)
            .collect()
    }

    #[test]
    fn a_batch_seals_at_its_deadline_and_wakes_every_request_with_its_placement() {
        let g = gate(serde_json::json!({"windowDurationMs": 50}));
        let woken = Arc::new(AtomicUsize::new(0));
        let join = |key: Vec<u64>, now| {
            g.join(key, &pool(), Box::new(Count(woken.clone())), now)
                .unwrap()
        };
        let (a1, opened) = join(vec![1, 2], 1000);
        assert_eq!(opened, Some(1050));
        let (a2, opened) = join(vec![1, 2], 1020);
        assert_eq!(opened, None);
        let (lone, _) = join(vec![9], 1030);
        assert_eq!(g.deadline_ms(), Some(1050));
        assert_eq!(g.seal_due(1049), 0, "not before the deadline");
        assert_eq!(g.len(), 3);
        assert_eq!(g.seal_due(1050), 3);
        assert_eq!(woken.load(Ordering::SeqCst), 3);
        let (e1, e2) = (a1.take().unwrap(), a2.take().unwrap());
        assert!(e1.endpoint.is_some());
        assert_eq!(e1.endpoint, e2.endpoint);
        assert_eq!((e1.blocks, e1.waited_ms, e2.waited_ms), (2, 50, 30));
        assert_eq!(lone.take().unwrap().endpoint, None);
        assert!(g.is_empty());
        assert_eq!(g.deadline_ms(), None);
    }

    #[test]
    fn a_request_after_the_deadline_seals_the_old_batch_and_opens_a_new_one() {
        let g = gate(serde_json::json!({"windowDurationMs": 10}));
        let woken = Arc::new(AtomicUsize::new(0));
        let (first, _) = g
            .join(vec![1], &pool(), Box::new(Count(woken.clone())), 100)
            .unwrap();
        let (second, opened) = g
            .join(vec![1], &pool(), Box::new(Count(woken.clone())), 115)
            .unwrap();
        assert_eq!(opened, Some(125));
        assert!(first.take().is_some(), "the overdue batch sealed");
        assert!(second.take().is_none());
        assert_eq!(g.deadline_ms(), Some(125));
    }

    #[test]
    fn a_clock_stepped_back_does_not_hold_a_batch_until_it_catches_up() {
        let g = gate(serde_json::json!({"windowDurationMs": 100}));
        let woken = Arc::new(AtomicUsize::new(0));
        let (slot, _) = g
            .join(vec![1], &pool(), Box::new(Count(woken.clone())), 10_000_000)
            .unwrap();
        // An hour earlier by the wall clock: the batch is sealed, not kept for an hour.
        assert_eq!(g.seal_due(10_000_000 - 3_600_000), 1);
        assert!(slot.take().is_some());
    }

    #[test]
    fn a_full_batch_lets_the_request_go_on() {
        let g = gate(serde_json::json!({"maxBatchSize": 2}));
        let woken = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            g.join(vec![1], &pool(), Box::new(Count(woken.clone())), 0)
                .unwrap();
        }
        let third = g.join(vec![1], &pool(), Box::new(Count(woken.clone())), 0);
        assert_eq!(third.err(), Some(NotHeld::Full));
        assert_eq!(g.len(), 2);
    }
}
