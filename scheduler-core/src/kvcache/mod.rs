//! Precise prefix-cache state: what each model server reports holding in its KV cache.
//!
//! - [`events`]: the KV-cache events a server publishes (vLLM's `BlockStored`, `BlockRemoved`,
//!   `AllBlocksCleared`), as a host decodes them;
//! - [`keys`]: the block-key chain computed from token ids, the same on the request side and on
//!   the event side;
//! - [`index`]: key → endpoints, bounded, shared by every worker, scored by longest prefix.
//!
//! The plugins over it are `token-producer` and `precise-prefix-cache-producer`
//! (`crate::plugins::producer`); the host feeds events through [`crate::plugin::KvEventSink`].

pub mod events;
pub mod index;
pub mod keys;

pub use events::{KvEvent, StoredExtras};
pub use index::{IndexStats, KvBlockIndex, Match};
pub use keys::RequestKeys;
