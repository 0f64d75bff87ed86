//! Scratch vectors of one scheduling cycle (candidate indices, per-candidate scores) that live
//! on the stack while the pool has at most [`INLINE`] endpoints, so a cycle over a typical pool
//! does not call the allocator for them (every allocation in the Envoy worker is a call into
//! Envoy's allocator and fresh cache lines; `filter/tests/allocations.rs` counts them). A
//! larger pool spills to the heap as a `Vec` would.

use smallvec::SmallVec;

/// Endpoints held inline before a scratch vector moves to the heap.
pub const INLINE: usize = 32;

/// A per-cycle vector with [`INLINE`] elements on the stack.
pub type Scratch<T> = SmallVec<[T; INLINE]>;
