//! Envoy stats of the precise prefix cache, per filter configuration (set at each telemetry
//! flush): the index's size as gauges, the event stream's progress as counters.
//!
//! | stat | kind | meaning |
//! |---|---|---|
//! | `endpoint_picker.kv_index.keys` | gauge | block keys held |
//! | `endpoint_picker.kv_index.bytes` | gauge | approximate heap bytes of the index |
//! | `endpoint_picker.kv_index.endpoints` | gauge | endpoints with blocks |
//! | `endpoint_picker.kv_events.connections` | gauge | event connections open |
//! | `endpoint_picker.kv_events.batches` | counter | event batches applied |
//! | `endpoint_picker.kv_events.blocks_stored` / `.blocks_removed` | counter | blocks added / removed |
//! | `endpoint_picker.kv_events.orphans` | counter | `BlockStored` events with an unknown parent |
//! | `endpoint_picker.kv_events.decode_errors` | counter | messages that did not decode |
//! | `endpoint_picker.kv_events.gaps` | counter | sequence gaps (lost messages) |
//! | `endpoint_picker.kv_events.replayed` | counter | batches recovered from the servers' replay sockets |
//! | `endpoint_picker.kv_events.publisher_restarts` | counter | sequence numbers that went back (restarted server: its blocks cleared) |

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use scheduler_core::Plugin;

use crate::abi::Ptr;
use crate::kv_subscriber::SubscriberStats;
use crate::metrics::{Counter, Gauge};

const COUNTERS: [&str; 8] = [
    "endpoint_picker.kv_events.batches",
    "endpoint_picker.kv_events.blocks_stored",
    "endpoint_picker.kv_events.blocks_removed",
    "endpoint_picker.kv_events.orphans",
    "endpoint_picker.kv_events.decode_errors",
    "endpoint_picker.kv_events.gaps",
    "endpoint_picker.kv_events.replayed",
    "endpoint_picker.kv_events.publisher_restarts",
];

/// The stats of one configuration.
pub struct KvStats {
    keys: Gauge,
    bytes: Gauge,
    endpoints: Gauge,
    connections: Gauge,
    counters: Vec<Counter>,
    last: Mutex<[u64; 8]>,
}

impl KvStats {
    /// Defines the stats on filter configuration `envoy`.
    pub fn define(envoy: Ptr) -> KvStats {
        KvStats {
            keys: Gauge::filter(envoy, "endpoint_picker.kv_index.keys"),
            bytes: Gauge::filter(envoy, "endpoint_picker.kv_index.bytes"),
            endpoints: Gauge::filter(envoy, "endpoint_picker.kv_index.endpoints"),
            connections: Gauge::filter(envoy, "endpoint_picker.kv_events.connections"),
            counters: COUNTERS
                .iter()
                .map(|n| Counter::filter(envoy, n, &[]))
                .collect(),
            last: Mutex::new([0; 8]),
        }
    }

    /// Sends the current values of `sinks` and `sub` to Envoy.
    pub fn flush(&self, envoy: Ptr, sinks: &[Arc<dyn Plugin>], sub: &SubscriberStats) {
        let (mut keys, mut bytes, mut endpoints) = (0, 0, 0);
        let mut totals = [0u64; 8];
        for s in sinks.iter().filter_map(|p| p.as_kv_event_sink()) {
            let st = s.index_stats();
            keys += st.keys as u64;
            bytes += st.approx_bytes as u64;
            endpoints += st.endpoints as u64;
            let c = s.counters();
            totals[1] += c.blocks_stored;
            totals[2] += c.blocks_removed;
            totals[3] += c.orphans;
        }
        totals[0] = sub.batches.load(Ordering::Relaxed);
        totals[4] = sub.decode_errors.load(Ordering::Relaxed);
        totals[5] = sub.gaps.load(Ordering::Relaxed);
        totals[6] = sub.replayed.load(Ordering::Relaxed);
        totals[7] = sub.publisher_restarts.load(Ordering::Relaxed);
        self.keys.set(envoy, keys);
        self.bytes.set(envoy, bytes);
        self.endpoints.set(envoy, endpoints);
        self.connections
            .set(envoy, sub.connected.load(Ordering::Relaxed));
        if let Ok(mut last) = self.last.lock() {
            for ((c, t), l) in self.counters.iter().zip(totals).zip(last.iter_mut()) {
                if t > *l {
                    c.add(envoy, &[], t - *l);
                    *l = t;
                }
            }
        }
    }
}
