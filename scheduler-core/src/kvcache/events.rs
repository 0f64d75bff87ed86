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
        /// What the event's `extra_keys` say about keying these blocks.
        extras: StoredExtras,
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

/// What a `BlockStored` event's `extra_keys` tell the index. vLLM (since it added the field)
/// sends one entry per stored block: the values besides the token ids it mixed into that
/// block's hash, in the order LoRA adapter name, multimodal item identifiers, the request's
/// `cache_salt` (first block of a request only), prompt-embedding hashes; `None` for a block
/// with none. The LoRA name is already in the chain's root (see [`super::keys`]), so it is
/// left out here. Events without the field (older vLLM, SGLang) decode to the default: every
/// block keyable, nothing extra in the root.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredExtras {
    /// The text extras of the event's first block after the LoRA name, when that block starts
    /// a sequence (no parent): a request's `cache_salt`, or identifiers of images in its first
    /// block. They are mixed into the chain's root ([`super::keys::RequestKeys::root_with`]),
    /// so a salted prefix matches only requests with the same salt, as on the server.
    pub root: Vec<String>,
    /// Blocks from this position on (0-based, in the event's own blocks) carry extras the
    /// proxy cannot compute from a request (images, prompt embeddings, or any value that is
    /// not text) and are not indexed; `None`: every block is keyable.
    pub keyable_blocks: Option<usize>,
}
