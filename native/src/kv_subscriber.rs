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
//!   are dropped (and the plugin forgets them through `pool_changed`). A lost connection
//!   (noticed from the socket's monitor within 500 ms) is retried every second with a new
//!   socket, which catches up through the replay socket; when at least one of those attempts
//!   failed (refused, or no answer within 2 s), the server is taken to have restarted (vLLM's
//!   KV cache lives in its process), so its blocks are cleared before the new connection's
//!   batches are applied (`kv_events.publisher_restarts`). A network outage of that length
//!   clears them too: the index then relearns from new events, rather than keep blocks a new
//!   process may not hold.
//! - **Bind mode** (`zmqEndpoint`): one SUB socket bound there; a message is credited to the
//!   pool endpoint its topic names (`kv@<ip:port>@<model>`, or an endpoint with that IP);
//!   messages naming no pool endpoint are dropped.
//! - Sequence numbers, per endpoint (the next one expected is kept across reconnects):
//!   - a **gap** (messages lost by ZMQ's high-water mark, or sent while the connection was
//!     down) is counted in `kv_events.gaps`;
//!   - a number **lower** than expected means the server restarted (vLLM numbers batches from
//!     0 in each process, and a new process starts with an empty KV cache): the endpoint's
//!     blocks are cleared (`kv_events.publisher_restarts`);
//!   - with `podDiscoveryConfig.replayPort`, the batches missing before the one received are
//!     asked for on vLLM's replay socket at `tcp://<endpoint IP>:<replayPort>` and applied in
//!     order first (`kv_events.replayed`): after a gap, after a restart, and on the first
//!     message of a new subscription, so a proxy that starts after the servers learns what
//!     they stored before it (as far back as the server's replay buffer, vLLM's
//!     `buffer_steps`). vLLM's request: one frame, the first wanted sequence number (8 bytes,
//!     big-endian), after the empty delimiter a REQ socket sends; its answer: one message per
//!     buffered batch from there, `[sequence, payload]` (publishers modelled on it may put
//!     the topic first; both are read), then an end marker, sequence all ones and an empty
//!     payload. Without a replay port a gap is only counted: the index converges through
//!     later stores and removals, and it is bounded.
//! - Decoding (`kv_events`) treats every payload as untrusted; a bad one is counted and dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use scheduler_core::kvcache::KvEvent;
use scheduler_core::plugin::{KvEventFormat, KvEventSink};
use scheduler_core::Plugin;
use tokio::task::JoinHandle;
use zeromq::{DealerSocket, Socket, SocketEvent, SocketRecv, SocketSend, SubSocket, ZmqMessage};

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
    /// Batches recovered from replay sockets.
    pub replayed: AtomicU64,
    /// Sequence numbers that went back (a restarted server; its blocks were cleared).
    pub publisher_restarts: AtomicU64,
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
    crate::runtime_thread::spawn("picker-kv-events", "KV events", move |rt| {
        rt.block_on(manage(weak, t_stop, t_stats));
    })
    .ok()?;
    Some(Subscriptions { stop, stats })
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
                settings.replay_port,
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
                        settings.replay_port,
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

/// How long one replay may take before the rest is given up (the events wait meanwhile).
const REPLAY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting to a replay socket may take.
const REPLAY_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// After a replay socket did not answer (wrong `replayPort`, a server without replay), it is
/// not asked again for this long, so live events are not held up by every gap.
const REPLAY_PAUSE: Duration = Duration::from_secs(30);

/// Where a sequence is numbered: an endpoint, and in bind mode the publisher's data-parallel
/// rank too (every rank of a server numbers its own batches and may share its topic).
type Stream = (String, Option<u64>);

/// What one subscription knows about the sequences it reads.
#[derive(Default)]
struct Streams {
    /// Per stream, the sequence number expected next (kept across reconnects).
    next: HashMap<Stream, u64>,
    /// After a catch-up replay on connecting: messages numbered below it were applied from
    /// the replay and are skipped (until one at or above it arrives).
    replayed_below: Option<u64>,
    /// Streams are told apart by data-parallel rank (a bound socket, which every rank of a
    /// server may publish to).
    by_rank: bool,
    /// Where the servers' replay sockets are (`None`: no replay).
    replay_port: Option<u16>,
    /// Replay sockets that did not answer, and until when they are not asked.
    paused: HashMap<String, std::time::Instant>,
}

impl Streams {
    /// Replays batches `from..until` of `stream` from its server's replay socket into `sink`
    /// and counts them; nothing without a replay port or while that socket is paused. vLLM's
    /// data-parallel rank r binds its sockets at the base port + r.
    async fn replay(
        &mut self,
        stream: &Stream,
        from: u64,
        until: u64,
        sink: &dyn KvEventSink,
        stats: &SubscriberStats,
    ) -> Replayed {
        let Some(port) = self.replay_port else {
            return Replayed::default();
        };
        let (address, rank) = stream;
        let rank = rank.and_then(|r| u16::try_from(r).ok()).unwrap_or(0);
        let target = format!("tcp://{}:{}", host_of(address), port.saturating_add(rank));
        let now = std::time::Instant::now();
        if self.paused.get(&target).is_some_and(|&until| now < until) {
            return Replayed::default();
        }
        let format = sink.settings().format;
        let r = replay(&target, from, until, format, stats, |b| {
            sink.apply(address, &b.events)
        })
        .await;
        if r.answered {
            self.paused.remove(&target);
        } else {
            log::warn!(
                "endpoint picker: KV events: the replay socket {target} did not answer; not asking it for {} s",
                REPLAY_PAUSE.as_secs()
            );
            self.paused.insert(target, now + REPLAY_PAUSE);
        }
        stats.replayed.fetch_add(r.count, Ordering::Relaxed);
        stats.batches.fetch_add(r.count, Ordering::Relaxed);
        r
    }
}

/// Applies one message from `endpoint` (`None`: resolve it from the topic), after replaying
/// what is missing before it.
async fn handle(
    sink: &Weak<dyn Plugin>,
    endpoint: Option<&str>,
    frames: &[&[u8]],
    streams: &mut Streams,
    stats: &SubscriberStats,
) -> bool {
    let Some(plugin) = sink.upgrade() else {
        return false;
    };
    let Some(s) = plugin.as_kv_event_sink() else {
        return false;
    };
    let batch = match kv_events::decode(frames, s.settings().format) {
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
    if let Some(below) = streams.replayed_below {
        if batch.seq < below {
            return true;
        }
        streams.replayed_below = None;
    }
    let stream: Stream = (address, if streams.by_rank { batch.rank } else { None });
    let missing_from = match streams.next.get(&stream).copied() {
        Some(e) if batch.seq == e => None,
        Some(e) if batch.seq > e => {
            stats.gaps.fetch_add(1, Ordering::Relaxed);
            Some(e)
        }
        Some(_) => {
            stats.publisher_restarts.fetch_add(1, Ordering::Relaxed);
            s.apply(&stream.0, &[KvEvent::AllBlocksCleared]);
            Some(0)
        }
        // The first message of this subscription: earlier ones may be replayable.
        None => Some(0),
    };
    if let Some(from) = missing_from.filter(|&f| f < batch.seq) {
        let r = streams.replay(&stream, from, batch.seq, s, stats).await;
        log::debug!(
            "endpoint picker: KV events: replayed {} batches of {from}..{} for {}",
            r.count,
            batch.seq,
            stream.0
        );
    }
    let address = stream.0.as_str();
    s.apply(address, &batch.events);
    streams.next.insert(stream, batch.seq.wrapping_add(1));
    stats.batches.fetch_add(1, Ordering::Relaxed);
    true
}

/// The end-of-replay marker's sequence frame (-1 as a signed 64-bit number).
const END_SEQ: [u8; 8] = [0xFF; 8];

/// What one replay applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Replayed {
    /// Batches applied.
    count: u64,
    /// The sequence number of the last one.
    last: Option<u64>,
    /// The socket answered to the end (its end marker, or the batch asked up to).
    answered: bool,
}

/// Asks the replay socket at `target` for batches `from..until` and hands each one that
/// decodes to `apply`, in order. Gives up (keeping what it applied) when the socket cannot be
/// reached, on [`REPLAY_TIMEOUT`] or on a reply it cannot read.
async fn replay(
    target: &str,
    from: u64,
    until: u64,
    format: KvEventFormat,
    stats: &SubscriberStats,
    mut apply: impl FnMut(kv_events::Batch),
) -> Replayed {
    let applied = AtomicU64::new(0);
    let last = AtomicU64::new(u64::MAX);
    let run = async {
        // A port nobody listens on fails fast instead of retrying until the timeout.
        let mut options = zeromq::SocketOptions::default();
        options.connect_timeout(REPLAY_CONNECT_TIMEOUT);
        let mut sock = DealerSocket::with_options(options);
        sock.connect(target).await.ok()?;
        let ask = vec![
            bytes::Bytes::new(),
            bytes::Bytes::copy_from_slice(&from.to_be_bytes()),
        ];
        sock.send(ZmqMessage::try_from(ask).ok()?).await.ok()?;
        loop {
            let msg = sock.recv().await.ok()?;
            let frames: Vec<&[u8]> = msg.iter().map(|b| b.as_ref()).collect();
            // After the REQ-style empty delimiter: [seq, payload] or [topic, seq, payload].
            let rest = match frames.split_first() {
                Some((&[], rest)) => rest,
                _ => frames.as_slice(),
            };
            let (seq, payload) = match rest {
                [seq, payload] | [_, seq, payload] => (*seq, *payload),
                _ => return None,
            };
            if seq == END_SEQ && payload.is_empty() {
                return Some(());
            }
            match kv_events::decode(&[b"", seq, payload], format) {
                Ok(b) if b.seq >= until => return Some(()),
                Ok(b) if b.seq >= from => {
                    last.store(b.seq, Ordering::Relaxed);
                    apply(b);
                    applied.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("endpoint picker: KV events: bad replayed message: {e}");
                    return None;
                }
            }
        }
    };
    // Whatever way it ends, what was applied stays applied (batches are applied as they come).
    let answered = matches!(
        tokio::time::timeout(REPLAY_TIMEOUT, run).await,
        Ok(Some(()))
    );
    let last = last.load(Ordering::Relaxed);
    Replayed {
        count: applied.load(Ordering::Relaxed),
        last: (last != u64::MAX).then_some(last),
        answered,
    }
}

/// On (re)connecting to `endpoint`: replays from the next batch expected (from the first one
/// the server still holds, on a first connection), so a proxy that starts after the servers,
/// or lost its connection, learns what they stored meanwhile. Returns the sequence number
/// below which live messages are now duplicates.
async fn catch_up(
    sink: &Weak<dyn Plugin>,
    endpoint: &str,
    streams: &mut Streams,
    stats: &SubscriberStats,
) -> Option<u64> {
    let plugin = sink.upgrade()?;
    let s = plugin.as_kv_event_sink()?;
    let key: Stream = (endpoint.to_owned(), None);
    let from = streams.next.get(&key).copied().unwrap_or(0);
    let r = streams.replay(&key, from, u64::MAX, s, stats).await;
    if r.count > 0 {
        log::info!(
            "endpoint picker: KV events: caught up on {} batches from {endpoint}'s replay socket",
            r.count
        );
    }
    let last = r.last?;
    let below = last.wrapping_add(1);
    streams.next.insert(key, below);
    Some(below)
}

/// How long a dialled subscription waits for a message before it looks at its connection's
/// events (a publisher that went away is noticed within this).
const LIVENESS_CHECK: Duration = Duration::from_millis(500);

async fn dial(
    sink: Weak<dyn Plugin>,
    endpoint: String,
    target: String,
    filter: String,
    replay_port: Option<u16>,
    stats: Arc<SubscriberStats>,
) {
    // Kept across reconnects: a reconnect to the same server then shows a gap (replayed), one
    // to a restarted server a sequence that went back.
    let mut streams = Streams {
        replay_port,
        ..Streams::default()
    };
    // The publisher's connection was lost and at least one reconnect has failed since: its
    // process is taken to be gone (vLLM's KV cache lives in it), whatever its new process
    // numbers its batches from.
    let mut lost = false;
    let mut down = false;
    loop {
        let mut sock = SubSocket::new();
        let mut monitor = sock.monitor();
        let ready = async {
            sock.subscribe(&filter).await?;
            sock.connect(&target).await
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), ready).await {
            stats.connected.fetch_add(1, Ordering::Relaxed);
            if down {
                restarted(&sink, &endpoint, &mut streams, &stats);
            }
            (lost, down) = (false, false);
            streams.replayed_below = catch_up(&sink, &endpoint, &mut streams, &stats).await;
            // The zeromq crate reconnects a lost connection by itself, with a back-off of up to
            // 30 s and no catch-up: a loss is handled here instead, by a new socket.
            while !lost {
                match tokio::time::timeout(LIVENESS_CHECK, sock.recv()).await {
                    Ok(Ok(msg)) => {
                        let frames: Vec<&[u8]> = msg.iter().map(|b| b.as_ref()).collect();
                        if !handle(&sink, Some(&endpoint), &frames, &mut streams, &stats).await {
                            stats.connected.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Ok(Err(_)) => lost = true,
                    Err(_) => {}
                }
                // The socket's monitor: did the publisher's connection go since last asked?
                while let Ok(event) = monitor.try_recv() {
                    lost |= matches!(event, SocketEvent::Disconnected(_));
                }
            }
            stats.connected.fetch_sub(1, Ordering::Relaxed);
        } else if lost {
            down = true;
        }
        if sink.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The server at `endpoint` came back after a reconnect to it failed: its blocks are dropped
/// and its sequences start over (counted as a publisher restart).
fn restarted(
    sink: &Weak<dyn Plugin>,
    endpoint: &str,
    streams: &mut Streams,
    stats: &SubscriberStats,
) {
    if let Some(s) = sink.upgrade() {
        if let Some(s) = s.as_kv_event_sink() {
            s.apply(endpoint, &[KvEvent::AllBlocksCleared]);
        }
    }
    streams.next.retain(|(a, _), _| a != endpoint);
    stats.publisher_restarts.fetch_add(1, Ordering::Relaxed);
    log::info!("endpoint picker: KV events: {endpoint} is back after a failed reconnect: its blocks are cleared");
}

async fn listen(
    sink: Weak<dyn Plugin>,
    endpoint: String,
    filter: String,
    replay_port: Option<u16>,
    stats: Arc<SubscriberStats>,
) {
    let mut streams = Streams {
        by_rank: true,
        replay_port,
        ..Streams::default()
    };
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
                    let go_on = handle(&sink, None, &frames, &mut streams, &stats).await;
                    if !go_on {
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
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use rmpv::Value;
    use scheduler_core::kvcache::IndexStats;
    use scheduler_core::plugin::{KvEventCounters, KvEventSink, KvEventsSettings, TypedName};
    use zeromq::{PubSocket, RouterSocket};

    /// Records every batch it is given.
    struct Recorder {
        name: TypedName,
        settings: KvEventsSettings,
        got: Mutex<Vec<KvEvent>>,
    }

    impl Plugin for Recorder {
        fn typed_name(&self) -> &TypedName {
            &self.name
        }
        fn as_kv_event_sink(&self) -> Option<&dyn KvEventSink> {
            Some(self)
        }
    }

    impl KvEventSink for Recorder {
        fn settings(&self) -> &KvEventsSettings {
            &self.settings
        }
        fn apply(&self, _endpoint: &str, events: &[KvEvent]) {
            self.got.lock().unwrap().extend_from_slice(events);
        }
        fn counters(&self) -> KvEventCounters {
            KvEventCounters::default()
        }
        fn index_stats(&self) -> IndexStats {
            IndexStats::default()
        }
    }

    /// A recorder, and the same as the plugin the subscriber holds weakly.
    fn recorder() -> (Arc<Recorder>, Arc<dyn Plugin>) {
        let rec = Arc::new(Recorder {
            name: TypedName::new("recorder", "recorder"),
            settings: KvEventsSettings::default(),
            got: Mutex::new(Vec::new()),
        });
        let plugin: Arc<dyn Plugin> = rec.clone();
        (rec, plugin)
    }

    /// A batch removing block `n` (the block names the batch in the recording).
    fn payload(n: u64) -> Vec<u8> {
        ranked_payload(n, None)
    }

    /// [`payload`] from data-parallel rank `rank`.
    fn ranked_payload(n: u64, rank: Option<u64>) -> Vec<u8> {
        let ev = Value::Array(vec![
            Value::from("BlockRemoved"),
            Value::Array(vec![Value::from(n)]),
        ]);
        let mut batch = vec![Value::F64(0.0), Value::Array(vec![ev])];
        batch.extend(rank.map(Value::from));
        let batch = Value::Array(batch);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &batch).unwrap();
        out
    }

    fn removed(n: u64) -> KvEvent {
        KvEvent::BlockRemoved {
            block_hashes: vec![n],
            medium: None,
        }
    }

    /// Batches a publisher numbered: (sequence, payload).
    type Buffer = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

    /// A publisher shaped like vLLM's: PUB for the stream, ROUTER answering replays from a
    /// buffer of everything it numbered (published or not).
    struct Publisher {
        publish: PubSocket,
        buffer: Buffer,
        port: u16,
        replay_port: u16,
    }

    async fn publisher() -> Publisher {
        let mut publish = PubSocket::new();
        let ep = publish.bind("tcp://127.0.0.1:0").await.unwrap();
        let port = ep.to_string().rsplit(':').next().unwrap().parse().unwrap();
        let mut router = RouterSocket::new();
        let rep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let replay_port = rep.to_string().rsplit(':').next().unwrap().parse().unwrap();
        let buffer: Buffer = Arc::default();
        let b = buffer.clone();
        tokio::spawn(async move {
            while let Ok(req) = router.recv().await {
                let f = req.into_vec();
                let start = u64::from_be_bytes(f[2].as_ref().try_into().unwrap());
                let held: Vec<_> = b.lock().unwrap().clone();
                for (seq, p) in held.into_iter().filter(|(s, _)| *s >= start) {
                    let m = vec![
                        f[0].clone(),
                        bytes::Bytes::new(),
                        seq.to_be_bytes().to_vec().into(),
                        p.into(),
                    ];
                    router.send(ZmqMessage::try_from(m).unwrap()).await.unwrap();
                }
                let end = vec![
                    f[0].clone(),
                    bytes::Bytes::new(),
                    END_SEQ.to_vec().into(),
                    bytes::Bytes::new(),
                ];
                router
                    .send(ZmqMessage::try_from(end).unwrap())
                    .await
                    .unwrap();
            }
        });
        Publisher {
            publish,
            buffer,
            port,
            replay_port,
        }
    }

    impl Publisher {
        /// Numbers batch `seq` (naming block `block`); sends it only when `send`.
        async fn batch(&mut self, seq: u64, block: u64, send: bool) {
            self.buffer.lock().unwrap().push((seq, payload(block)));
            if send {
                let m = vec![
                    bytes::Bytes::from_static(b"kv@pod@m"),
                    seq.to_be_bytes().to_vec().into(),
                    payload(block).into(),
                ];
                self.publish
                    .send(ZmqMessage::try_from(m).unwrap())
                    .await
                    .unwrap();
            }
        }
    }

    async fn until(rec: &Recorder, n: usize) -> Vec<KvEvent> {
        for _ in 0..200 {
            if rec.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rec.got.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn earlier_and_lost_batches_are_replayed_in_order_and_a_restart_clears() {
        let mut p = publisher().await;
        p.batch(0, 100, false).await; // before the subscriber: only the replay has it
        let (rec, plugin) = recorder();
        let stats = Arc::new(SubscriberStats::default());
        let task = tokio::spawn(dial(
            Arc::downgrade(&plugin),
            "127.0.0.1:8000".into(),
            format!("tcp://127.0.0.1:{}", p.port),
            String::new(),
            Some(p.replay_port),
            stats.clone(),
        ));
        assert_eq!(
            until(&rec, 1).await,
            [removed(100)],
            "caught up on connecting"
        );
        // Give the subscription time to reach the publisher (a message sent before that is
        // lost too, and would then be replayed as well).
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.batch(1, 101, true).await;
        p.batch(2, 102, false).await; // lost on the way
        p.batch(3, 103, true).await;
        let got = until(&rec, 4).await;
        assert_eq!(
            got,
            [removed(100), removed(101), removed(102), removed(103)]
        );
        assert_eq!(stats.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(stats.replayed.load(Ordering::Relaxed), 2);

        // A restarted server numbers from 0 again: what it held before is gone.
        p.buffer.lock().unwrap().clear();
        p.batch(0, 200, false).await;
        p.batch(1, 201, true).await;
        let got = until(&rec, 7).await;
        assert_eq!(
            got[4..],
            [KvEvent::AllBlocksCleared, removed(200), removed(201)]
        );
        assert_eq!(stats.publisher_restarts.load(Ordering::Relaxed), 1);
        drop(plugin);
        task.abort();
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.1:8000"), "10.0.0.1");
        assert_eq!(host_of("[::1]:8000"), "[::1]");
        assert_eq!(host_of("pod"), "pod");
    }

    #[tokio::test]
    async fn ranks_sharing_a_bound_socket_are_separate_sequences_and_a_lower_one_is_a_restart() {
        let (rec, plugin) = recorder();
        let sink = Arc::downgrade(&plugin);
        for by_rank in [true, false] {
            let stats = SubscriberStats::default();
            let mut streams = Streams {
                by_rank,
                ..Streams::default()
            };
            for seq in 0..3u64 {
                for rank in 0..2u64 {
                    let payload = ranked_payload(seq * 10 + rank, Some(rank));
                    let frames: [&[u8]; 3] = [b"kv@p@m", &seq.to_be_bytes(), &payload];
                    let ok =
                        handle(&sink, Some("10.0.0.1:8000"), &frames, &mut streams, &stats).await;
                    assert!(ok);
                }
            }
            let restarts = stats.publisher_restarts.load(Ordering::Relaxed);
            if by_rank {
                assert_eq!((restarts, stats.gaps.load(Ordering::Relaxed)), (0, 0));
            } else {
                // One interleaved sequence: each rank's number looks like a step back.
                assert!(restarts >= 2, "{restarts}");
            }
        }
        let cleared = rec
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|e| **e == KvEvent::AllBlocksCleared)
            .count();
        assert!(cleared >= 2, "restarts clear the endpoint");
    }

    #[tokio::test]
    async fn a_replay_socket_that_does_not_answer_is_paused_and_events_still_flow() {
        let (rec, plugin) = recorder();
        let sink = Arc::downgrade(&plugin);
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut streams = Streams {
            replay_port: Some(closed),
            ..Streams::default()
        };
        let stats = SubscriberStats::default();
        for seq in [0u64, 5, 9] {
            let p = payload(seq);
            let frames: [&[u8]; 3] = [b"kv@p@m", &seq.to_be_bytes(), &p];
            assert!(handle(&sink, Some("127.0.0.1:8000"), &frames, &mut streams, &stats).await);
        }
        assert_eq!(
            *rec.got.lock().unwrap(),
            [removed(0), removed(5), removed(9)]
        );
        assert_eq!(stats.gaps.load(Ordering::Relaxed), 2);
        assert_eq!(stats.replayed.load(Ordering::Relaxed), 0);
        let target = format!("tcp://127.0.0.1:{closed}");
        assert!(
            streams.paused.contains_key(&target),
            "paused after it did not answer"
        );
    }
}
