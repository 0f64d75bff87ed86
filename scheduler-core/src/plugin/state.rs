//! Per-cycle and per-request state (GIE `CycleState` and `PluginState`).
//!
//! [`CycleState`] lives for one scheduling cycle: data producers write per-endpoint attributes
//! under a [`DataKey`] (usually a `Vec` indexed like the endpoint slice) and scorers read them.
//! [`RequestState`] lives as long as the request (in the filter: the HTTP context). Plugins keep
//! what their later hooks need under their instance name. Values are dropped with the state, so a
//! guard stored there releases its count even when the request is reset (tower
//! `pending_requests` shape).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;

/// Names one kind of data a producer writes and a consumer reads.
pub type DataKey = &'static str;

/// Attributes produced for one scheduling cycle.
#[derive(Default)]
pub struct CycleState {
    entries: Vec<(DataKey, Box<dyn Any>)>,
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
#[derive(Default)]
pub struct RequestState {
    entries: Vec<(String, Box<dyn Any>)>,
}

impl RequestState {
    /// An empty state.
    pub fn new() -> Self {
        RequestState::default()
    }

    /// Stores `value` under `owner` (a plugin instance name), replacing any previous value.
    pub fn put<T: Any>(&mut self, owner: &str, value: T) {
        self.entries.retain(|(k, _)| k != owner);
        self.entries.push((owner.into(), Box::new(value)));
    }

    /// The value under `owner` if present and of type `T`.
    pub fn get<T: Any>(&self, owner: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(k, _)| k == owner)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }

    /// Mutable access to the value under `owner`.
    pub fn get_mut<T: Any>(&mut self, owner: &str) -> Option<&mut T> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == owner)
            .and_then(|(_, v)| v.downcast_mut::<T>())
    }

    /// Removes and returns the value under `owner`.
    pub fn take<T: Any>(&mut self, owner: &str) -> Option<T> {
        let pos = self.entries.iter().position(|(k, _)| k == owner)?;
        let (_, v) = self.entries.swap_remove(pos);
        v.downcast::<T>().ok().map(|b| *b)
    }
}
