//! One active scraper per Envoy process.
//!
//! Envoy instantiates a singleton Wasm service twice on the main thread (a base VM and the
//! running instance; `on_configure` runs in both, docs/SOURCES.md#wasm-singleton), and a reload
//! can briefly leave an old instance ticking. Two instances that both ticked would scrape every
//! endpoint twice. The instances hold a lease in shared data: 16 bytes, the holder's
//! id and its last renewal (ms). A tick proceeds only for the holder; another instance takes over
//! when the lease is older than its duration, and writes use the shared-data CAS so two
//! instances cannot both win the same round.

/// Shared-data key of the lease.
pub const LEASE_KEY: &str = "endpoint-picker/v1/scraper-lease";
/// Shared-data key of the counter that hands each scraper instance a distinct id (the clock is
/// not enough: both instances are configured in the same event-loop turn).
pub const INSTANCE_COUNTER_KEY: &str = "endpoint-picker/v1/scraper-instances";

/// The next instance id after the counter value `current` (8 bytes little-endian; absent or
/// malformed counts as 0).
pub fn next_instance(current: Option<&[u8]>) -> u64 {
    current
        .and_then(|b| b.get(0..8))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
        .wrapping_add(1)
}

/// The holder id and last renewal (ms since the epoch) of a lease value; `None` if malformed.
pub fn holder(value: &[u8]) -> Option<(u64, u64)> {
    let id = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
    let renewed = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    Some((id, renewed))
}

/// Decides whether instance `me` may hold the lease at `now_ms`, given the current value.
/// Returns the value to write (with the read CAS) when it may; `None` when another live
/// instance holds it.
pub fn claim(current: Option<&[u8]>, me: u64, now_ms: u64, lease_ms: u64) -> Option<[u8; 16]> {
    let free = match current.and_then(holder) {
        None => true,
        Some((id, _)) if id == me => true,
        Some((_, renewed)) => now_ms.saturating_sub(renewed) > lease_ms,
    };
    free.then(|| {
        // Holder id, then renewal time; written without slice indexing (no panic path).
        let mut v = [0u8; 16];
        let bytes = me.to_le_bytes().into_iter().chain(now_ms.to_le_bytes());
        for (slot, b) in v.iter_mut().zip(bytes) {
            *slot = b;
        }
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_renews_others_wait_then_take_over() {
        let a = claim(None, 1, 100, 150).unwrap();
        assert!(claim(Some(&a), 2, 200, 150).is_none(), "live lease of 1");
        let a2 = claim(Some(&a), 1, 200, 150).unwrap();
        assert!(claim(Some(&a2), 2, 349, 150).is_none());
        let b = claim(Some(&a2), 2, 351, 150).unwrap();
        assert_eq!(
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            2,
            "1 stopped renewing"
        );
        assert!(
            claim(Some(b"short"), 3, 0, 150).is_some(),
            "garbage is a free lease"
        );
    }
}
