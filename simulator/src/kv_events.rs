//! vLLM's KV-cache event stream, published from the simulated block pool so the precise prefix
//! cache can be tested without a GPU: a ZMQ PUB socket bound at `--kv-events-endpoint` sends one
//! multipart message per batch, `[topic, sequence (8 bytes, big-endian), payload]`, as vLLM's
//! `ZmqEventPublisher` does; the topic is `kv@<listen address>@<model>` (llm-d's convention).
//!
//! The payload is a msgpack `KVEventBatch` in msgspec's `array_like` form:
//! `[ts, [event…]]`, each event an array whose first element is its tag:
//! `["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
//! lora_name]`, `["BlockRemoved", block_hashes, medium]`, `["AllBlocksCleared"]`. Block hashes
//! are the simulator's own 64-bit chain hashes of the block's token ids (see `kv.rs`).

use bytes::Bytes;
use rmpv::Value;
use tokio::sync::mpsc;
use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};

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
    },
    /// Blocks evicted.
    Removed {
        /// Their hashes.
        hashes: Vec<u64>,
    },
    /// The whole cache dropped.
    Cleared,
}

/// Encodes one batch at time `ts` (seconds since the Unix epoch) for blocks of `block_size`.
pub fn encode(ts: f64, events: &[KvEvent], block_size: usize) -> Vec<u8> {
    let hashes = |h: &[u64]| Value::Array(h.iter().map(|&x| Value::from(x)).collect());
    let events: Vec<Value> = events
        .iter()
        .map(|e| match e {
            KvEvent::Stored {
                hashes: h,
                parent,
                tokens,
                lora,
            } => Value::Array(vec![
                Value::from("BlockStored"),
                hashes(h),
                parent.map_or(Value::Nil, Value::from),
                Value::Array(tokens.iter().map(|&t| Value::from(t)).collect()),
                Value::from(block_size as u64),
                Value::Nil,
                Value::from("GPU"),
                lora.as_deref().map_or(Value::Nil, Value::from),
            ]),
            KvEvent::Removed { hashes: h } => Value::Array(vec![
                Value::from("BlockRemoved"),
                hashes(h),
                Value::from("GPU"),
            ]),
            KvEvent::Cleared => Value::Array(vec![Value::from("AllBlocksCleared")]),
        })
        .collect();
    let batch = Value::Array(vec![Value::F64(ts), Value::Array(events)]);
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &batch);
    out
}

/// Where the engine hands batches to the publishing task.
pub type Sender = mpsc::UnboundedSender<Vec<KvEvent>>;

/// Binds `endpoint` and publishes every batch sent to the returned channel under `topic`.
///
/// # Errors
/// The endpoint cannot be bound.
pub async fn start(endpoint: &str, topic: String, block_size: usize) -> Result<Sender, String> {
    let mut socket = PubSocket::new();
    socket
        .bind(endpoint)
        .await
        .map_err(|e| format!("kv events: bind {endpoint}: {e}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<KvEvent>>();
    tokio::spawn(async move {
        let mut seq: u64 = 0;
        while let Some(batch) = rx.recv().await {
            if batch.is_empty() {
                continue;
            }
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let frames = vec![
                Bytes::from(topic.clone().into_bytes()),
                Bytes::copy_from_slice(&seq.to_be_bytes()),
                Bytes::from(encode(ts, &batch, block_size)),
            ];
            seq += 1;
            if let Ok(msg) = ZmqMessage::try_from(frames) {
                // No subscriber yet is not an error for PUB (the message is dropped, as ZMQ does).
                let _ = socket.send(msg).await;
            }
        }
    });
    Ok(tx)
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
                },
                KvEvent::Removed { hashes: vec![7] },
                KvEvent::Cleared,
            ],
            2,
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
        assert_eq!(ev[1].as_array().unwrap()[0].as_str(), Some("BlockRemoved"));
        assert_eq!(ev[2].as_array().unwrap().len(), 1);
    }
}
