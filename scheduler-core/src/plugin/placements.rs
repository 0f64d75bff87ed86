//! A host service: where the pickers of one proxy process first sent each prompt prefix.
//!
//! The native build's workers share one prefix index, so they follow one placement by
//! construction. The proxy-wasm build runs one VM per Envoy worker, each with its own index, and
//! measured across 2 gateway replicas × 4 workers its VMs sent one system prompt to more servers
//! than 2 replicas × 1 worker did (`BENCHMARKS.md`, "Prefix affinity across gateway replicas").
//! A host that can share a little memory between its pickers (proxy-wasm shared data) offers
//! this board so that `prefix-rendezvous-scorer` can make every picker of the process follow the
//! first placement of a prefix, as one picker would.

/// Prefix key → endpoint, shared by the pickers of one process (see the module docs).
///
/// Keys are `prefix-rendezvous-scorer`'s prefix keys; endpoints are named by
/// [`endpoint_id`] of their address. Implementations are bounded (old entries are forgotten)
/// and may lose a write under contention: a missing entry only means the rendezvous order
/// decides, as without a board.
pub trait PlacementBoard: Send + Sync {
    /// The endpoint recorded for `key`, if any.
    fn get(&self, key: u64) -> Option<u64>;
    /// Records `endpoint` as `key`'s placement, replacing the one recorded before.
    fn put(&self, key: u64, endpoint: u64);
}

/// How an endpoint is named on a [`PlacementBoard`]: xxh64 of its address (`host:port`), seed 0.
pub fn endpoint_id(address: &str) -> u64 {
    xxhash_rust::xxh64::xxh64(address.as_bytes(), 0)
}
