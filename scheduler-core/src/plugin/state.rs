//! Per-cycle and per-request state (GIE `CycleState` and `PluginState`).
//!
//! [`CycleState`] lives for one scheduling cycle: data producers write per-endpoint attributes
//! under a [`DataKey`] (usually a `Vec` indexed like the endpoint slice) and scorers read them.
//! [`RequestState`] lives as long as the request (in the filter: the HTTP context). Plugins keep
//! what their later hooks need under their instance name. Values are dropped with the state, so a
//! guard stored there releases its count even when the request is reset (tower
//! `pending_requests` shape).

use alloc::boxed::Box;
use core::any::Any;

use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

/// Entries kept inline before a state's list moves to the heap: a typical profile stores one
/// or two, so the list itself costs a request no allocation (each value is still boxed).
const INLINE_ENTRIES: usize = 4;

/// Names one kind of data a producer writes and a consumer reads.
pub type DataKey = &'static str;

/// Attributes produced for one scheduling cycle.
#[derive(Default)]
pub struct CycleState {
    entries: SmallVec<[(DataKey, Box<dyn Any>); INLINE_ENTRIES]>,
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        CycleState::default()
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put<T: Any>(&mut self, key: DataKey, value: T) {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, Box::new(value)));
    }

    /// The value under `key` if present and of type `T`.
    pub fn get<T: Any>(&self, key: DataKey) -> Option<&T> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }

    /// The value under `key` if present and of type `T`, to update in place.
    pub fn get_mut<T: Any>(&mut self, key: DataKey) -> Option<&mut T> {
        self.entries
            .iter_mut()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_mut::<T>())
    }

    /// Removes every entry (keeps the allocation).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// State a request carries from scheduling to the end of its response.
///
/// Entries are keyed by the xxh3 hash of the owner's name rather than a copy of it (no
/// allocation per entry for the key); two plugin names of one configuration sharing a 64-bit
/// hash, and storing values of the same type, is the only way two owners could meet.
#[derive(Default)]
pub struct RequestState {
    entries: SmallVec<[(u64, Box<dyn Any>); INLINE_ENTRIES]>,
}

impl RequestState {
    /// An empty state.
    pub fn new() -> Self {
        RequestState::default()
    }

    /// Stores `value` under `owner` (a plugin instance name), replacing any previous value.
    pub fn put<T: Any>(&mut self, owner: &str, value: T) {
        let key = xxh3_64(owner.as_bytes());
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, Box::new(value)));
    }

    /// The value under `owner` if present and of type `T`.
    pub fn get<T: Any>(&self, owner: &str) -> Option<&T> {
        let key = xxh3_64(owner.as_bytes());
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }

    /// Mutable access to the value under `owner`.
    pub fn get_mut<T: Any>(&mut self, owner: &str) -> Option<&mut T> {
        let key = xxh3_64(owner.as_bytes());
        self.entries
            .iter_mut()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_mut::<T>())
    }

    /// Removes and returns the value under `owner`.
    pub fn take<T: Any>(&mut self, owner: &str) -> Option<T> {
        let key = xxh3_64(owner.as_bytes());
        let pos = self.entries.iter().position(|(k, _)| *k == key)?;
        let (_, v) = self.entries.swap_remove(pos);
        v.downcast::<T>().ok().map(|b| *b)
    }
}
