//! KV-cache events from model servers into plugins. A plugin that keeps state from them (the
//! precise prefix cache) offers a [`KvEventSink`] through `Plugin::as_kv_event_sink`; a host that
//! can hold sockets (the native module) subscribes to every endpoint as [`KvEventsSettings`]
//! says and hands each decoded batch to [`KvEventSink::apply`]. Hosts that cannot (proxy-wasm)
//! never call it, and the sink stays empty.

use alloc::string::String;

use crate::kvcache::{IndexStats, KvEvent};

/// Which engine's event schema the servers publish (`kvEventsConfig.engineType`). Both send
/// msgpack batches of tagged events; they differ in the fields after `medium`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvEventFormat {
    /// vLLM: `BlockStored` goes on with `lora_name`, `extra_keys`, `group_idx`, ….
    #[default]
    Vllm,
    /// SGLang: `BlockStored` ends at `medium` (a later field, when present, is SGLang's own
    /// `metadata`, not vLLM's `lora_name`); adapters are named by id only.
    Sglang,
}

/// Where a host finds the servers' event streams (llm-d-kv-cache's `kvEventsConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEventsSettings {
    /// Dial every endpoint of the pool (`discoverPods`, default true).
    pub dial: bool,
    /// Dial every endpoint of the pool at its IP and this port (`discoverPods` with
    /// `podDiscoveryConfig.socketPort`; vLLM's publisher binds `tcp://*:5557` by default).
    pub socket_port: u16,
    /// Instead of dialling: bind this ZMQ endpoint and let servers connect (`zmqEndpoint`,
    /// e.g. `tcp://0.0.0.0:5557`); the endpoint is then named by the topic (`kv@<ip:port>@<model>`).
    pub bind: Option<String>,
    /// ZMQ subscription prefix (`topicFilter`, default `kv@`; empty receives every topic).
    pub topic_filter: String,
    /// vLLM's replay socket at every endpoint's IP and this port (`podDiscoveryConfig.replayPort`,
    /// ours; vLLM's `replay_endpoint`, commonly `tcp://*:5558`): batches lost to a sequence
    /// gap, and those a server published before the subscription began, are asked for there.
    /// `None`: no replay (a gap is only counted).
    pub replay_port: Option<u16>,
    /// The servers' event schema (`engineType`, default `vllm`).
    pub format: KvEventFormat,
}

impl Default for KvEventsSettings {
    fn default() -> Self {
        KvEventsSettings {
            dial: true,
            socket_port: 5557,
            bind: None,
            topic_filter: "kv@".into(),
            replay_port: None,
            format: KvEventFormat::Vllm,
        }
    }
}

/// Counters a sink keeps about what it was fed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvEventCounters {
    /// Batches applied.
    pub batches: u64,
    /// Blocks added.
    pub blocks_stored: u64,
    /// Blocks removed.
    pub blocks_removed: u64,
    /// `BlockStored` events skipped: parent block unknown.
    pub orphans: u64,
    /// `AllBlocksCleared` events.
    pub cleared: u64,
}

/// Receives KV-cache events.
pub trait KvEventSink: Send + Sync {
    /// Where the host should read events from.
    fn settings(&self) -> &KvEventsSettings;
    /// Applies one batch reported by the server at `endpoint` (`ip:port`, the address requests
    /// are routed to).
    fn apply(&self, endpoint: &str, events: &[KvEvent]);
    /// Counters so far.
    fn counters(&self) -> KvEventCounters;
    /// Size of the state kept from events.
    fn index_stats(&self) -> IndexStats;
}
