//! Milliseconds since the Unix epoch, the time unit of snapshots and staleness.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as milliseconds since the Unix epoch (0 before the epoch).
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `t` as microseconds since the Unix epoch (0 before the epoch).
pub fn to_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
