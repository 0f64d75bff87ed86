//! vLLM's KV-cache event stream, published from the simulated block pool so the precise prefix
//! cache can be tested without a GPU: a ZMQ PUB socket bound at `--kv-events-endpoint` sends one
//! multipart message per batch, `[topic, sequence (8 bytes, big-endian), payload]`, as vLLM's
//! `ZmqEventPublisher` does; the topic is `kv@<listen address>@<model>` (llm-d's convention).
//!
//! The payload is a msgpack `KVEventBatch` in msgspec's `array_like` form:
//! `[ts, [event…]]`, each event an array whose first element is its tag:
//! `["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
//! lora_name, extra_keys?]`, `["BlockRemoved", block_hashes, medium]`, `["AllBlocksCleared"]`.
//! Block hashes are the simulator's own 64-bit chain hashes of the block's token ids (see
//! `kv.rs`). `extra_keys`, as newer vLLM sends it, holds per block the values besides the
//! tokens that went into its hash — the adapter name, then the request's `cache_salt` on a
//! request's first block — or nil; it is left out when no block has any.
//!
//! **Replay** (vLLM's `replay_endpoint`): with a replay endpoint, a ZMQ ROUTER socket bound
//! there keeps the last `buffer_steps` batches (vLLM's `buffer_steps`, default 10,000). A
//! client (REQ, or DEALER sending an empty delimiter first) asks with one frame, the first
//! sequence number it wants as 8 bytes big-endian; the answer is one message per buffered
//! batch from that number on, `[sequence, payload]` (after the empty delimiter), then an end
//! marker whose sequence is all ones (-1 as a signed 64-bit number) and whose payload is
//! empty. This is the request form every vLLM release with a replay socket answers.
//!
//! `drop_one_in` (a test knob, not vLLM's): every n-th batch is kept for replay but not
//! published, as if ZMQ's high-water mark had dropped it, so a subscriber sees a gap.

use std::collections::VecDeque;

use bytes::Bytes;
use rmpv::Value;
use tokio::sync::mpsc;
use zeromq::{PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub enum KvEvent {
    /// Blocks written.
    Stored {
        /// Block hashes, in order.
        hashes: Vec<u64>,
        /// Hash of the block before the first, if any.
        parent: Option<u64>,
        /// Token ids of all the blocks.
        tokens: Vec<u32>,
        /// Adapter name, `None` for the base model.
        lora: Option<String>,
        /// Per block, the extra keys hashed with its tokens (empty: none).
        extra_keys: Vec<Vec<String>>,
    },
    /// Blocks evicted.
    Removed {
        /// Their hashes.
        hashes: Vec<u64>,
    },
    /// The whole cache dropped.
    Cleared,
}

/// Whose event schema to publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// vLLM's: `BlockStored` with `lora_name` after `medium`; batches `[ts, events]`.
    #[default]
    Vllm,
    /// SGLang's: `BlockStored` ends at `medium`; batches `[ts, events, attn_dp_rank]`.
    Sglang,
}

/// Encodes one batch at time `ts` (seconds since the Unix epoch) for blocks of `block_size`.
pub fn encode(ts: f64, events: &[KvEvent], block_size: usize, format: Format) -> Vec<u8> {
    let hashes = |h: &[u64]| Value::Array(h.iter().map(|&x| Value::from(x)).collect());
    let events: Vec<Value> = events
        .iter()
        .map(|e| match e {
            KvEvent::Stored {
                hashes: h,
                parent,
                tokens,
                lora,
                extra_keys,
            } => {
                let mut f = vec![
                    Value::from("BlockStored"),
                    hashes(h),
                    parent.map_or(Value::Nil, Value::from),
                    Value::Array(tokens.iter().map(|&t| Value::from(t)).collect()),
                    Value::from(block_size as u64),
                    Value::Nil,
                    Value::from("GPU"),
                ];
                if format == Format::Vllm {
                    f.push(lora.as_deref().map_or(Value::Nil, Value::from));
                    if extra_keys.iter().any(|k| !k.is_empty()) {
                        f.push(Value::Array(
                            extra_keys
                                .iter()
                                .map(|k| match k.as_slice() {
                                    [] => Value::Nil,
                                    k => Value::Array(
                                        k.iter().map(|x| Value::from(x.as_str())).collect(),
                                    ),
                                })
                                .collect(),
                        ));
                    }
                }
                Value::Array(f)
            }
            KvEvent::Removed { hashes: h } => Value::Array(vec![
                Value::from("BlockRemoved"),
                hashes(h),
                Value::from("GPU"),
            ]),
            KvEvent::Cleared => Value::Array(vec![Value::from("AllBlocksCleared")]),
        })
        .collect();
    let mut batch = vec![Value::F64(ts), Value::Array(events)];
    if format == Format::Sglang {
        batch.push(Value::Nil);
    }
    let batch = Value::Array(batch);
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &batch);
    out
}

/// Where the engine hands batches to the publishing task.
pub type Sender = mpsc::UnboundedSender<Vec<KvEvent>>;

/// Where and how the stream is published.
pub struct PublishConfig {
    /// ZMQ endpoint the PUB socket binds (e.g. `tcp://127.0.0.1:5557`).
    pub endpoint: String,
    /// Topic frame of every message.
    pub topic: String,
    /// Tokens per KV block.
    pub block_size: usize,
    /// ZMQ endpoint the replay ROUTER socket binds; `None`: no replay.
    pub replay_endpoint: Option<String>,
    /// Batches kept for replay (vLLM's `buffer_steps`).
    pub buffer_steps: usize,
    /// Publish every batch except every n-th (0: none skipped); skipped ones stay replayable.
    pub drop_one_in: u64,
    /// Event schema.
    pub format: Format,
}

/// The end-of-replay marker's sequence frame: -1 as a signed 64-bit big-endian number.
const END_SEQ: [u8; 8] = [0xFF; 8];

/// Binds the sockets and publishes every batch sent to the returned channel.
///
/// # Errors
/// An endpoint cannot be bound.
pub async fn start(cfg: PublishConfig) -> Result<Sender, String> {
    let mut socket = PubSocket::new();
    socket
        .bind(&cfg.endpoint)
        .await
        .map_err(|e| format!("kv events: bind {}: {e}", cfg.endpoint))?;
    let mut replay = match &cfg.replay_endpoint {
        Some(ep) => {
            let mut r = RouterSocket::new();
            r.bind(ep)
                .await
                .map_err(|e| format!("kv events: bind replay {ep}: {e}"))?;
            Some(r)
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<KvEvent>>();
    tokio::spawn(async move {
        let mut seq: u64 = 0;
        let mut buffer: VecDeque<(u64, Bytes)> = VecDeque::new();
        loop {
            let request = async {
                match replay.as_mut() {
                    Some(r) => r.recv().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    if batch.is_empty() {
                        continue;
                    }
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let payload = Bytes::from(encode(ts, &batch, cfg.block_size, cfg.format));
                    let skipped = cfg.drop_one_in > 0 && (seq + 1) % cfg.drop_one_in == 0;
                    if !skipped {
                        let frames = vec![
                            Bytes::from(cfg.topic.clone().into_bytes()),
                            Bytes::copy_from_slice(&seq.to_be_bytes()),
                            payload.clone(),
                        ];
                        if let Ok(msg) = ZmqMessage::try_from(frames) {
                            // No subscriber yet is not an error for PUB (the message is
                            // dropped, as ZMQ does).
                            let _ = socket.send(msg).await;
                        }
                    }
                    if replay.is_some() {
                        if buffer.len() >= cfg.buffer_steps.max(1) {
                            buffer.pop_front();
                        }
                        buffer.push_back((seq, payload));
                    }
                    seq += 1;
                }
                Some(req) = request => {
                    if let Some(r) = replay.as_mut() {
                        answer_replay(r, req, &buffer).await;
                    }
                }
            }
        }
    });
    Ok(tx)
}

/// Answers one replay request (`[identity, "", start]` from REQ, or `[identity, start]`).
async fn answer_replay(
    router: &mut RouterSocket,
    req: ZmqMessage,
    buffer: &VecDeque<(u64, Bytes)>,
) {
    let frames: Vec<Bytes> = req.into_vec();
    let (identity, start) = match frames.as_slice() {
        [id, empty, start] if empty.is_empty() => (id.clone(), start.clone()),
        [id, start] => (id.clone(), start.clone()),
        _ => return,
    };
    let Ok(start) = <[u8; 8]>::try_from(start.as_ref()) else {
        return;
    };
    let start = u64::from_be_bytes(start);
    let reply = |seq: Bytes, payload: Bytes| {
        ZmqMessage::try_from(vec![identity.clone(), Bytes::new(), seq, payload])
    };
    for (seq, payload) in buffer.iter().filter(|(s, _)| *s >= start) {
        if let Ok(m) = reply(Bytes::copy_from_slice(&seq.to_be_bytes()), payload.clone()) {
            if router.send(m).await.is_err() {
                return;
            }
        }
    }
    if let Ok(m) = reply(Bytes::copy_from_slice(&END_SEQ), Bytes::new()) {
        let _ = router.send(m).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_msgspec_array_like_with_tagged_events() {
        let bytes = encode(
            1.5,
            &[
                KvEvent::Stored {
                    hashes: vec![7, 8],
                    parent: None,
                    tokens: vec![1, 2, 3, 4],
                    lora: None,
                    extra_keys: vec![vec![], vec![]],
                },
                KvEvent::Stored {
                    hashes: vec![9, 10],
                    parent: None,
                    tokens: vec![1, 2, 3, 4],
                    lora: Some("sql-lora".into()),
                    extra_keys: vec![
                        vec!["sql-lora".into(), "tenant-a".into()],
                        vec!["sql-lora".into()],
                    ],
                },
                KvEvent::Removed { hashes: vec![7] },
                KvEvent::Cleared,
            ],
            2,
            Format::Vllm,
        );
        let v = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a[0].as_f64(), Some(1.5));
        let ev = a[1].as_array().unwrap();
        let stored = ev[0].as_array().unwrap();
        assert_eq!(stored[0].as_str(), Some("BlockStored"));
        assert_eq!(stored[1].as_array().unwrap().len(), 2);
        assert!(stored[2].is_nil());
        assert_eq!(stored[4].as_u64(), Some(2));
        assert_eq!(stored.len(), 8, "no extra keys: the field is left out");
        let salted = ev[1].as_array().unwrap();
        assert_eq!(salted[7].as_str(), Some("sql-lora"));
        let extra = salted[8].as_array().unwrap();
        let block0: Vec<&str> = extra[0]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(block0, ["sql-lora", "tenant-a"]);
        assert_eq!(extra[1].as_array().unwrap().len(), 1);
        assert_eq!(ev[2].as_array().unwrap()[0].as_str(), Some("BlockRemoved"));
        assert_eq!(ev[3].as_array().unwrap().len(), 1);
    }
}
