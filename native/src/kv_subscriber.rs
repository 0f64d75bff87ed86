//! Subscribes to every endpoint's KV-cache event stream and feeds the precise prefix cache
//! (`precise-prefix-cache-producer`), one thread per filter configuration that has such a
//! plugin, off Envoy's workers and main thread.
//!
//! - The thread runs a single-threaded tokio runtime with the pure-Rust `zeromq` crate (no C
//!   library to build or ship beside the `.so`; its SUB socket speaks ZMTP 3 with the NULL
//!   mechanism, which is what vLLM's publisher offers).
//! - **Dial mode** (`discoverPods`, default): every 500 ms the pool's current members are read
//!   (the same snapshot the workers schedule over, so EDS/DNS changes are followed) and one SUB
//!   connection per endpoint goes to `tcp://<endpoint IP>:<socketPort>`; endpoints that left
//!   are dropped (and the plugin forgets them through `pool_changed`). A lost connection is
//!   retried every second.
//! - **Bind mode** (`zmqEndpoint`): one SUB socket bound there; a message is credited to the
//!   pool endpoint its topic names (`kv@<ip:port>@<model>`, or an endpoint with that IP);
//!   messages naming no pool endpoint are dropped.
//! - Sequence numbers: a gap (a message lost by ZMQ's high-water mark or a reconnect) is counted
//!   in `kv_events_gaps`; the index then keeps what it had (vLLM's replay socket is not used:
//!   the cache converges through later stores and removals, and the index is bounded).
//! - Decoding (`kv_events`) treats every payload as untrusted; a bad one is counted and dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use scheduler_core::Plugin;
use tokio::task::JoinHandle;
use zeromq::{Socket, SocketRecv, SubSocket};

use crate::kv_events;

/// What the subscriber threads saw (read by the stats flush).
#[derive(Default)]
pub struct SubscriberStats {
    /// Batches applied.
    pub batches: AtomicU64,
    /// Messages that did not decode.
    pub decode_errors: AtomicU64,
    /// Sequence gaps seen.
    pub gaps: AtomicU64,
    /// Bind-mode messages naming no pool endpoint.
    pub unknown_pods: AtomicU64,
    /// Connections currently open.
    pub connected: AtomicU64,
}

/// The running subscriptions of one filter configuration; stopping them is dropping this.
pub struct Subscriptions {
    stop: Arc<AtomicBool>,
    /// Counters.
    pub stats: Arc<SubscriberStats>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts subscribing for `sinks` (plugins with `as_kv_event_sink`); `None` when there are none
/// or the thread cannot be started (logged).
pub fn start(sinks: &[Arc<dyn Plugin>]) -> Option<Subscriptions> {
    if sinks.is_empty() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SubscriberStats::default());
    let weak: Vec<Weak<dyn Plugin>> = sinks.iter().map(Arc::downgrade).collect();
    let (t_stop, t_stats) = (stop.clone(), stats.clone());
    let spawned = std::thread::Builder::new()
        .name("picker-kv-events".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("endpoint picker: KV events: no runtime: {e}");
                    return;
                }
            };
            rt.block_on(manage(weak, t_stop, t_stats));
        });
    match spawned {
        Ok(_) => Some(Subscriptions { stop, stats }),
        Err(e) => {
            log::error!("endpoint picker: KV events: cannot start the subscriber thread: {e}");
            None
        }
    }
}

fn members() -> Vec<String> {
    crate::pool::current()
        .as_ref()
        .map(|s| s.endpoints.iter().map(|e| e.address.clone()).collect())
        .unwrap_or_default()
}

/// The host part of `ip:port` (`[v6]:port` keeps its brackets).
fn host_of(address: &str) -> &str {
    if address.parse::<SocketAddr>().is_err() && !address.contains(':') {
        return address;
    }
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

async fn manage(sinks: Vec<Weak<dyn Plugin>>, stop: Arc<AtomicBool>, stats: Arc<SubscriberStats>) {
    let mut dialed: HashMap<(usize, String), JoinHandle<()>> = HashMap::new();
    let mut bound: Vec<JoinHandle<()>> = Vec::new();
    for (i, w) in sinks.iter().enumerate() {
        let Some(p) = w.upgrade() else { continue };
        let Some(settings) = p.as_kv_event_sink().map(|s| s.settings().clone()) else {
            continue;
        };
        if let Some(ep) = settings.bind.clone() {
            log::info!("endpoint picker: KV events: binding {ep} for sink {i}");
            bound.push(tokio::spawn(listen(
                w.clone(),
                ep,
                settings.topic_filter.clone(),
                stats.clone(),
            )));
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) || sinks.iter().all(|w| w.strong_count() == 0) {
            break;
        }
        let now = members();
        for (i, w) in sinks.iter().enumerate() {
            let Some(p) = w.upgrade() else { continue };
            let Some(settings) = p.as_kv_event_sink().map(|s| s.settings().clone()) else {
                continue;
            };
            if !settings.dial {
                continue;
            }
            for a in &now {
                dialed.entry((i, a.clone())).or_insert_with(|| {
                    let target = format!("tcp://{}:{}", host_of(a), settings.socket_port);
                    log::info!("endpoint picker: KV events: subscribing to {target} for {a}");
                    tokio::spawn(dial(
                        w.clone(),
                        a.clone(),
                        target,
                        settings.topic_filter.clone(),
                        stats.clone(),
                    ))
                });
            }
        }
        dialed.retain(|(_, a), task| {
            let keep = now.contains(a);
            if !keep {
                task.abort();
            }
            keep
        });
    }
    for (_, t) in dialed {
        t.abort();
    }
    for t in bound {
        t.abort();
    }
}

/// Applies one message from `endpoint` (`None`: resolve it from the topic).
fn handle(
    sink: &Weak<dyn Plugin>,
    endpoint: Option<&str>,
    frames: &[&[u8]],
    last_seq: &mut HashMap<String, u64>,
    stats: &SubscriberStats,
) -> bool {
    let Some(plugin) = sink.upgrade() else {
        return false;
    };
    let Some(s) = plugin.as_kv_event_sink() else {
        return false;
    };
    let batch = match kv_events::decode(frames) {
        Ok(b) => b,
        Err(e) => {
            stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            log::debug!("endpoint picker: KV events: dropped a message: {e}");
            return true;
        }
    };
    let address = match endpoint {
        Some(a) => a.to_owned(),
        None => {
            let m = members();
            let found = m.iter().find(|a| **a == batch.pod).or_else(|| {
                m.iter()
                    .find(|a| host_of(a) == batch.pod || host_of(a) == host_of(&batch.pod))
            });
            match found {
                Some(a) => a.clone(),
                None => {
                    stats.unknown_pods.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
        }
    };
    if let Some(prev) = last_seq.insert(address.clone(), batch.seq) {
        if batch.seq != prev.wrapping_add(1) {
            stats.gaps.fetch_add(1, Ordering::Relaxed);
        }
    }
    s.apply(&address, &batch.events);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    true
}

async fn dial(
    sink: Weak<dyn Plugin>,
    endpoint: String,
    target: String,
    filter: String,
    stats: Arc<SubscriberStats>,
) {
    let mut last_seq = HashMap::new();
    loop {
        let mut sock = SubSocket::new();
        let ready = async {
            sock.subscribe(&filter).await?;
            sock.connect(&target).await
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), ready).await {
            stats.connected.fetch_add(1, Ordering::Relaxed);
            // A new connection may be a restarted publisher: its sequence starts over.
            last_seq.clear();
            while let Ok(msg) = sock.recv().await {
                let frames: Vec<&[u8]> = msg.iter().map(|b| b.as_ref()).collect();
                if !handle(&sink, Some(&endpoint), &frames, &mut last_seq, &stats) {
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
            stats.connected.fetch_sub(1, Ordering::Relaxed);
        }
        if sink.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen(
    sink: Weak<dyn Plugin>,
    endpoint: String,
    filter: String,
    stats: Arc<SubscriberStats>,
) {
    let mut last_seq = HashMap::new();
    loop {
        let mut sock = SubSocket::new();
        let ready = async {
            sock.subscribe(&filter).await?;
            sock.bind(&endpoint).await.map(|_| ())
        };
        match ready.await {
            Ok(()) => {
                while let Ok(msg) = sock.recv().await {
                    let frames: Vec<&[u8]> = msg.iter().map(|b| b.as_ref()).collect();
                    if !handle(&sink, None, &frames, &mut last_seq, &stats) {
                        return;
                    }
                }
            }
            Err(e) => log::warn!("endpoint picker: KV events: cannot bind {endpoint}: {e}"),
        }
        if sink.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.1:8000"), "10.0.0.1");
        assert_eq!(host_of("[::1]:8000"), "[::1]");
        assert_eq!(host_of("pod"), "pod");
    }
}
