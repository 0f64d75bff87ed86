//! Approximate prefix-cache tracking: the xxh64 block chain a prompt hashes to ([`hash`]) and
//! the per-endpoint LRU index of blocks each endpoint is believed to hold ([`index`], over the
//! flat record table of [`table`]).
//! The algorithm and its defaults are GIE's (docs/SOURCES.md#gie-prefix, `approximateprefix/` at GIE@1748e829).

pub mod hash;
pub mod index;
pub mod table;

pub use hash::{prefix_hashes, prefix_hashes_of};
pub use index::PrefixIndex;
