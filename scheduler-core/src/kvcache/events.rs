//! KV-cache events as a model server reports them (vLLM's `vllm.distributed.kv_events`:
//! `BlockStored`, `BlockRemoved`, `AllBlocksCleared`, sent in a `KVEventBatch`), decoded by the
//! host that receives them (the native module's subscriber) into these owned values.

use alloc::string::String;
use alloc::vec::Vec;

/// One event. Block hashes are the server's own ("engine keys"): 64-bit integers, or the last
/// 8 bytes (big-endian) of a byte-string hash, as llm-d-kv-cache reads them.
#[derive(Clone, Debug, PartialEq)]
pub enum KvEvent {
    /// Blocks were written to the server's KV cache.
    BlockStored {
        /// One engine key per stored block, in order.
        block_hashes: Vec<u64>,
        /// Engine key of the block before the first one; `None` at the start of a sequence.
        parent: Option<u64>,
        /// Token ids of all stored blocks, concatenated.
        token_ids: Vec<u32>,
        /// Tokens per block on the server.
        block_size: u32,
        /// LoRA adapter the blocks belong to (`None`: the base model).
        lora_name: Option<String>,
        /// Where the blocks live (`GPU`, `CPU`…; `None`: GPU).
        medium: Option<String>,
    },
    /// Blocks were evicted.
    BlockRemoved {
        /// Engine keys of the evicted blocks.
        block_hashes: Vec<u64>,
        /// Medium they were evicted from (`None`: GPU).
        medium: Option<String>,
    },
    /// The server dropped its whole cache (restart, reset).
    AllBlocksCleared,
}
