//! Which endpoints are believed to hold which prefix blocks.
//!
//! A block table of `(block hash, endpoint)` records ([`super::table::BlockTable`]), and for every
//! endpoint an LRU list of the blocks it holds. When an endpoint's list is full, its least
//! recently used block is evicted and its record leaves the table, so the index never tracks more
//! than `capacity` blocks per endpoint. Unlike GIE@1748e829 (whose `makeserver` falls back to a
//! package constant), the configured capacity is honoured.
//!
//! Layout, chosen so that recording a block allocates nothing in the steady state and touches as
//! few cache lines as possible (this runs on every request in the Envoy worker): each endpoint's
//! LRU is an intrusive doubly linked list in a slab (`Vec<Node>`) whose slots are reused on
//! eviction; the table's records point at those nodes. Touch, insert and evict are O(1).
//!
//! Bounded in all, not only per endpoint: at most `max_blocks` records (a block held by two
//! endpoints is two records), each endpoint's list capped at its share, `max_blocks` divided by
//! the endpoints it holds lists for. A per-endpoint capacity alone bounds nothing: it comes from
//! a server's own metrics page (`num_gpu_blocks`, millions on a large GPU or on SGLang with
//! one-token pages), and it multiplies with the pool. Filled by clients with new prompts, such an
//! index outgrew the Wasm VM's linear memory (1 GiB by default in Envoy) and aborted the VM. When
//! the pool grows, endpoints holding more than the new share give blocks back as room is needed
//! and a step at a time on their own adds: a new block is recorded only after a record was
//! freed, so the total never passes the limit.
//!
//! Endpoints are keyed by their `ip:port` address; each gets a small integer id on first insert.
//! An endpoint that leaves the pool gives back its LRU's memory and its id, which the next new
//! endpoint reuses: under pod churn (every rollout or scale event brings new addresses) the
//! index stays the size of the pool it serves, not of every address it ever saw.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

use super::table::BlockTable;

const NIL: u32 = u32::MAX;

/// Blocks an `add` evicts from its endpoint's list beyond the prompt's own, when the list is
/// above its capacity or share (it then shrinks by at least this much per add).
const TRIM_STEP: usize = 64;

#[derive(Clone, Copy)]
struct Node {
    hash: u64,
    prev: u32,
    next: u32,
}

/// One endpoint's blocks, most recently used at `head`.
struct EndpointLru {
    address: String,
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
    free: Vec<u32>,
    len: usize,
}

impl EndpointLru {
    fn new(address: &str) -> Self {
        EndpointLru {
            address: address.into(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: Vec::new(),
            len: 0,
        }
    }

    fn unlink(&mut self, i: u32) {
        let Some(n) = self.nodes.get(i as usize).copied() else {
            return;
        };
        match self.nodes.get_mut(n.prev as usize) {
            Some(p) => p.next = n.next,
            None => self.head = n.next,
        }
        match self.nodes.get_mut(n.next as usize) {
            Some(x) => x.prev = n.prev,
            None => self.tail = n.prev,
        }
    }

    fn link_front(&mut self, i: u32) {
        let old = self.head;
        if let Some(n) = self.nodes.get_mut(i as usize) {
            n.prev = NIL;
            n.next = old;
        }
        match self.nodes.get_mut(old as usize) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    /// Links node `i` right after node `anchor` (which is linked).
    fn link_after(&mut self, anchor: u32, i: u32) {
        let Some(next) = self.nodes.get(anchor as usize).map(|a| a.next) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(i as usize) {
            n.prev = anchor;
            n.next = next;
        }
        if let Some(a) = self.nodes.get_mut(anchor as usize) {
            a.next = i;
        }
        match self.nodes.get_mut(next as usize) {
            Some(x) => x.prev = i,
            None => self.tail = i,
        }
    }

    /// How many of `hashes`, from the first, are already this list's most recent blocks in
    /// that order, and the node of the last of them.
    fn front_run(&self, hashes: &[u64]) -> (usize, u32) {
        let (mut k, mut at, mut last) = (0, self.head, NIL);
        for &h in hashes {
            match self.nodes.get(at as usize) {
                Some(n) if n.hash == h => {
                    k += 1;
                    last = at;
                    at = n.next;
                }
                _ => break,
            }
        }
        (k, last)
    }

    /// Takes a slot for `hash` (unlinked); the caller links it.
    fn alloc(&mut self, hash: u64) -> u32 {
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
        };
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.nodes.get_mut(i as usize) {
                    *slot = node;
                }
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    /// Removes the least recently used block; returns its hash and frees its slot.
    fn pop_back(&mut self) -> Option<u64> {
        let i = self.tail;
        let hash = self.nodes.get(i as usize)?.hash;
        self.unlink(i);
        self.free.push(i);
        self.len -= 1;
        Some(hash)
    }

    /// Hashes of the `n` least recently used blocks, oldest first.
    fn oldest(&self, n: usize) -> impl Iterator<Item = u64> + '_ {
        let mut i = self.tail;
        core::iter::from_fn(move || {
            let node = self.nodes.get(i as usize)?;
            i = node.prev;
            Some(node.hash)
        })
        .take(n)
    }

    /// Forgets every block and gives the list's memory back (the endpoint left the pool).
    fn release(&mut self) {
        self.nodes = Vec::new();
        self.free = Vec::new();
        self.address = String::new();
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
    }

    /// Heap bytes held, by capacity.
    fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * core::mem::size_of::<Node>()
            + self.free.capacity() * core::mem::size_of::<u32>()
            + self.address.capacity()
    }
}

/// The approximate prefix-cache index.
pub struct PrefixIndex {
    blocks: BlockTable,
    endpoints: Vec<EndpointLru>,
    ids: HashMap<String, u32>,
    /// Ids of endpoints that left the pool, free for the next new address.
    vacant: Vec<u32>,
    /// Records held at most, over all endpoints.
    max_blocks: usize,
    /// Where the next search for an endpoint above its share starts.
    cursor: usize,
}

impl Default for PrefixIndex {
    fn default() -> Self {
        PrefixIndex::new()
    }
}

/// A seed for the block table that clients cannot know: the host's `entropy` (see
/// [`crate::plugin::Services::entropy`]) mixed with the address of a fresh heap allocation
/// (randomised by ASLR in the native build; not in Wasm linear memory, where the host's clock
/// reading is what makes the seed unknown). `no_std` has no entropy of its own.
fn table_seed(entropy: u64) -> u64 {
    let probe = Box::new(0u8);
    let addr = &*probe as *const u8 as usize as u64;
    crate::rng::Rng::next_u64(&mut crate::rng::SplitMix64::new(addr ^ entropy))
}

impl PrefixIndex {
    /// An empty index (its table seeded from a heap address only; see [`Self::with_entropy`]).
    pub fn new() -> Self {
        PrefixIndex::with_entropy(0)
    }

    /// An empty index whose table seed mixes in the host's `entropy`
    /// ([`crate::plugin::Services::entropy`]).
    pub fn with_entropy(entropy: u64) -> Self {
        PrefixIndex {
            blocks: BlockTable::new(table_seed(entropy)),
            endpoints: Vec::new(),
            ids: HashMap::new(),
            vacant: Vec::new(),
            max_blocks: usize::MAX,
            cursor: 0,
        }
    }

    /// The same index holding at most `max_blocks` records (block × endpoint) in all; at least
    /// one. Each endpoint's list is then capped at `max_blocks` / endpoints as well as by the
    /// capacity [`Self::add`] is given. Without it the index is bounded per endpoint only.
    pub fn with_max_blocks(mut self, max_blocks: usize) -> Self {
        self.max_blocks = max_blocks.max(1);
        self
    }

    /// The most blocks one endpoint may hold now: its share of `max_blocks`.
    fn share(&self) -> usize {
        (self.max_blocks / self.ids.len().max(1)).max(1)
    }

    /// The id of `address`, if it was ever inserted.
    pub fn endpoint_id(&self, address: &str) -> Option<u32> {
        self.ids.get(address).copied()
    }

    /// Number of endpoint slots (ids are below this): the most endpoints held at one time, not
    /// every address ever seen (ids of removed endpoints are reused).
    pub fn endpoint_slots(&self) -> usize {
        self.endpoints.len()
    }

    /// Longest-prefix match: walks `hashes` in order, stops at the first hash no endpoint holds,
    /// and adds 1 to `counts[id]` for every holder of every hash before that.
    /// `counts` is resized to [`Self::endpoint_slots`] and zeroed first (on the stack up to
    /// [`crate::scratch::INLINE`] endpoints). Returns how many leading hashes had at least one
    /// holder.
    pub fn match_longest_prefix(
        &self,
        hashes: &[u64],
        counts: &mut crate::scratch::Scratch<u32>,
    ) -> usize {
        counts.clear();
        counts.resize(self.endpoints.len(), 0);
        let mut matched = 0;
        for &h in hashes {
            let held = self.blocks.holders(h, |id| {
                if let Some(c) = counts.get_mut(id as usize) {
                    *c += 1;
                }
            });
            if held == 0 {
                break;
            }
            matched += 1;
        }
        matched
    }

    fn id_for(&mut self, address: &str) -> u32 {
        if let Some(&id) = self.ids.get(address) {
            return id;
        }
        let id = match self.vacant.pop() {
            Some(id) => {
                if let Some(e) = self.endpoints.get_mut(id as usize) {
                    *e = EndpointLru::new(address);
                }
                id
            }
            None => {
                self.endpoints.push(EndpointLru::new(address));
                (self.endpoints.len() - 1) as u32
            }
        };
        self.ids.insert(address.into(), id);
        id
    }

    /// Records the new block `hash` for `id`: evicts `id`'s least recently used block when its
    /// list holds `cap`, or another endpoint's when the index holds `max_blocks`, then links the
    /// block at the front, or right after node `after`. False when `id` has no list, or when no
    /// record could be freed for it (the limit is below the number of endpoints).
    fn insert_new(&mut self, id: u32, hash: u64, cap: usize, after: Option<u32>) -> bool {
        if self
            .endpoints
            .get(id as usize)
            .is_some_and(|e| e.len >= cap)
        {
            self.evict_one(id);
        } else if self.blocks.len() >= self.max_blocks && !self.evict_above_share(id) {
            return false;
        }
        let Some(ep) = self.endpoints.get_mut(id as usize) else {
            return false;
        };
        let node = ep.alloc(hash);
        match after {
            Some(anchor) => ep.link_after(anchor, node),
            None => ep.link_front(node),
        }
        self.blocks.insert(hash, id, node);
        true
    }

    /// Evicts the least recently used block of an endpoint other than `except` that holds more
    /// than its share (after the pool grew, until the lists have shrunk to their new shares),
    /// searching round robin from where the last search stopped. False when none does: then
    /// every endpoint is within its share, which can only be when `max_blocks` is below the
    /// number of endpoints (each share is at least one block). `except` is the endpoint being
    /// added to; its own list is never touched here, as its recent nodes anchor the insert.
    fn evict_above_share(&mut self, except: u32) -> bool {
        let share = self.share();
        let n = self.endpoints.len();
        for step in 0..n {
            let j = (self.cursor + step) % n;
            let above =
                j != except as usize && self.endpoints.get(j).is_some_and(|e| e.len > share);
            if above {
                self.cursor = j;
                self.evict_one(j as u32);
                return true;
            }
        }
        false
    }

    /// Evicts `id`'s least recently used block.
    fn evict_one(&mut self, id: u32) {
        let Some(hash) = self
            .endpoints
            .get_mut(id as usize)
            .and_then(EndpointLru::pop_back)
        else {
            return;
        };
        self.blocks.remove(hash, id);
    }

    /// Records that `address` now holds every block in `hashes` (a prompt's block chain, first
    /// block first), evicting its least recently used blocks beyond `capacity` (at least 1) or
    /// beyond its share of the index's limit ([`Self::with_max_blocks`]), whichever is smaller.
    ///
    /// The blocks are touched last first, so a prompt's leading blocks are its most recent and
    /// its trailing blocks go first under eviction. That is the order vLLM frees a finished
    /// request's blocks in (its free queue takes them tail first), and the only order that
    /// keeps the index useful: a match stops at the first block an endpoint lacks, so losing a
    /// prompt's first block loses the whole prefix while its tail lingers unused. GIE's
    /// approximate index touches them first first; under memory pressure that evicts shared
    /// system prompts before the questions behind them.
    pub fn add(&mut self, address: &str, hashes: &[u64], capacity: usize) {
        if hashes.is_empty() {
            return;
        }
        let id = self.id_for(address);
        let cap = capacity.max(1).min(self.share());
        // Capacity learned later (autoTune from `num_gpu_blocks`), reconfigured smaller, or a
        // share that shrank as the pool grew: trimmed a step per add, so no one request pays
        // for a whole list's shrink (a 17th endpoint joining 16 that fill the default limit
        // takes ~15,000 blocks from each list; at the prefix_index bench's 4.7–7.7 µs for 64
        // inserts and 64 evictions that is up to 1–2 ms, under the lock every worker shares in
        // the native build). A list above `cap` does not grow meanwhile: `insert_new` evicts
        // one of its own blocks for each new one.
        let mut trim = hashes.len() + TRIM_STEP;
        while trim > 0 && self.endpoints.get(id as usize).is_some_and(|e| e.len > cap) {
            self.evict_one(id);
            trim -= 1;
        }
        if self.add_after_front_run(id, hashes, cap) {
            return;
        }
        // Fetch the cache lines this call will need together: the records of the new blocks and
        // of the blocks that may be evicted for them (the oldest of this endpoint's list).
        self.blocks.touch(hashes.iter().copied());
        if let Some(ep) = self.endpoints.get(id as usize) {
            let evictions = (ep.len + hashes.len()).saturating_sub(cap);
            self.blocks.touch(ep.oldest(evictions));
        }
        for &h in hashes.iter().rev() {
            if let Some(node) = self.blocks.find(h, id) {
                if let Some(ep) = self.endpoints.get_mut(id as usize) {
                    ep.touch(node);
                }
                continue;
            }
            if !self.insert_new(id, h, cap, None) {
                return;
            }
        }
    }

    /// The common case of typical chat, done without touching the shared part: the prompt's
    /// leading blocks are already the endpoint's most recent, in order (the previous request
    /// with this system prompt went here), and no block after them is held yet. Those blocks go
    /// right after the run, which leaves the list exactly as the general path in [`Self::add`]
    /// would (each block moved to the front, last first), without its ~60 table lookups and
    /// list moves for the run. Returns false, having changed nothing, when the case does not
    /// apply: no run, a later block already held, or a capacity not above the prompt's length
    /// (an eviction could then reach the run).
    fn add_after_front_run(&mut self, id: u32, hashes: &[u64], cap: usize) -> bool {
        let Some(ep) = self.endpoints.get(id as usize) else {
            return false;
        };
        let (k, anchor) = ep.front_run(hashes);
        let Some(rest) = hashes.get(k..) else {
            return false;
        };
        if k == 0 || cap <= hashes.len() {
            return false;
        }
        // As in `add`: the lines of the new blocks and of the blocks evicted for them, together.
        self.blocks.touch(rest.iter().copied());
        let evictions = (ep.len + rest.len()).saturating_sub(cap);
        self.blocks.touch(ep.oldest(evictions));
        if rest.iter().any(|&h| self.blocks.find(h, id).is_some()) {
            return false;
        }
        for &h in rest.iter().rev() {
            // Held now only if `rest` repeats it (placed a moment ago): move it, as `add` would.
            if let Some(node) = self.blocks.find(h, id) {
                if let Some(ep) = self.endpoints.get_mut(id as usize) {
                    ep.unlink(node);
                    ep.link_after(anchor, node);
                }
                continue;
            }
            if !self.insert_new(id, h, cap, Some(anchor)) {
                return true;
            }
        }
        true
    }

    /// Forgets `address` and every block it held (the endpoint left the pool); its memory is
    /// freed and its id is reused by the next new endpoint.
    pub fn remove_endpoint(&mut self, address: &str) {
        let Some(id) = self.ids.remove(address) else {
            return;
        };
        let Some(ep) = self.endpoints.get_mut(id as usize) else {
            return;
        };
        let mut i = ep.head;
        let mut hashes = Vec::with_capacity(ep.len);
        while let Some(n) = ep.nodes.get(i as usize) {
            hashes.push(n.hash);
            i = n.next;
        }
        ep.release();
        for h in hashes {
            self.blocks.remove(h, id);
        }
        self.vacant.push(id);
    }

    /// Forgets every endpoint whose address is not in `addresses`.
    pub fn retain_endpoints<'a>(&mut self, addresses: impl Iterator<Item = &'a str> + Clone) {
        let gone: Vec<String> = self
            .ids
            .keys()
            .filter(|known| !addresses.clone().any(|a| a == known.as_str()))
            .cloned()
            .collect();
        for a in gone {
            self.remove_endpoint(&a);
        }
    }

    /// Blocks tracked for `address`.
    pub fn blocks_of(&self, address: &str) -> usize {
        self.ids
            .get(address)
            .and_then(|&id| self.endpoints.get(id as usize))
            .map_or(0, |e| e.len)
    }

    /// Blocks held, summed over endpoints (a block two endpoints hold counts twice).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when no block is tracked.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Heap bytes the index holds, by capacity: the block table, every endpoint's LRU list and
    /// the address map (its keys, and per bucket a `(String, u32)` entry and a control byte:
    /// an estimate of hashbrown's layout). Grows with the blocks held, up to `capacity` per
    /// endpoint, and shrinks when an endpoint leaves.
    pub fn memory_bytes(&self) -> usize {
        let lists: usize = self.endpoints.iter().map(EndpointLru::heap_bytes).sum();
        let ids: usize = self.ids.keys().map(|k| k.capacity()).sum::<usize>()
            + self.ids.capacity() * (core::mem::size_of::<(String, u32)>() + 1);
        self.blocks.heap_bytes()
            + lists
            + self.endpoints.capacity() * core::mem::size_of::<EndpointLru>()
            + self.vacant.capacity() * core::mem::size_of::<u32>()
            + ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, SplitMix64};
    use alloc::{format, vec};

    #[test]
    fn match_stops_at_first_unheld_block() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2, 3], 100);
        idx.add("b:1", &[1, 9], 100);
        let mut counts = crate::scratch::Scratch::new();
        let matched = idx.match_longest_prefix(&[1, 2, 4, 3], &mut counts);
        assert_eq!(matched, 2);
        assert_eq!(counts[idx.endpoint_id("a:1").unwrap() as usize], 2);
        assert_eq!(counts[idx.endpoint_id("b:1").unwrap() as usize], 1);
    }

    #[test]
    fn capacity_is_honoured_and_eviction_updates_holders() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2, 3, 4, 5], 3);
        assert_eq!(idx.blocks_of("a:1"), 3);
        assert_eq!(idx.len(), 3, "evicted blocks leave the hash map");
        let mut counts = crate::scratch::Scratch::new();
        assert_eq!(
            idx.match_longest_prefix(&[4], &mut counts),
            0,
            "the prompt's tail was evicted"
        );
        assert_eq!(
            idx.match_longest_prefix(&[1, 2, 3, 4, 5], &mut counts),
            3,
            "its head was kept"
        );
        idx.add("a:1", &[6], 2); // shrink
        assert_eq!(idx.blocks_of("a:1"), 2);
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn touching_refreshes_recency() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2, 3], 3); // recency: 1, 2, 3 (the tail is the oldest)
        idx.add("a:1", &[3], 3); // 3 is now the most recent; 2 is the oldest
        idx.add("a:1", &[4], 3);
        let mut counts = crate::scratch::Scratch::new();
        assert_eq!(idx.match_longest_prefix(&[3], &mut counts), 1);
        assert_eq!(
            idx.match_longest_prefix(&[2], &mut counts),
            0,
            "2 was least recently used"
        );
    }

    #[test]
    fn remove_endpoint_forgets_its_blocks() {
        let mut idx = PrefixIndex::new();
        idx.add("a:1", &[1, 2], 10);
        idx.add("b:1", &[1], 10);
        idx.retain_endpoints(["b:1"].into_iter());
        assert_eq!(idx.blocks_of("a:1"), 0);
        assert_eq!(idx.len(), 1);
        idx.add("a:1", &[7], 10);
        assert_eq!(
            idx.blocks_of("a:1"),
            1,
            "a returning endpoint starts empty and works"
        );
    }

    /// Pod churn: each round a new address joins with a full list and the oldest leaves. The
    /// index keeps as many endpoint slots as endpoints held at once and no more memory than
    /// after the first rounds; an address that takes over a freed id starts empty.
    #[test]
    fn churn_reuses_ids_and_memory() {
        let cap = 500;
        let live = 4;
        let mut idx = PrefixIndex::new();
        let mut after_warm_up = 0;
        for round in 0..300u64 {
            let hashes: Vec<u64> = (0..cap as u64).map(|k| round * 1_000_000 + k).collect();
            idx.add(
                &format!("10.0.{}.{}:8000", round / 256, round % 256),
                &hashes,
                cap,
            );
            let keep: Vec<String> = (round.saturating_sub(live - 1)..=round)
                .map(|r| format!("10.0.{}.{}:8000", r / 256, r % 256))
                .collect();
            idx.retain_endpoints(keep.iter().map(String::as_str));
            assert!(idx.endpoint_slots() <= live as usize + 1);
            assert_eq!(idx.len(), keep.len() * cap);
            if round == 20 {
                after_warm_up = idx.memory_bytes();
            }
        }
        assert!(
            idx.memory_bytes() <= after_warm_up,
            "{} bytes after 300 rounds, {after_warm_up} after 20",
            idx.memory_bytes()
        );
        // The newest endpoint's blocks match; a departed one's do not, under any id.
        let mut counts = crate::scratch::Scratch::new();
        assert_eq!(
            idx.match_longest_prefix(&[299_000_000, 299_000_001], &mut counts),
            2
        );
        assert_eq!(idx.match_longest_prefix(&[100_000_000], &mut counts), 0);
        assert_eq!(idx.blocks_of("10.0.0.100:8000"), 0);
    }

    /// Chat-shaped traffic (a few shared system prompts, then short questions that repeat
    /// blocks now and then) takes the front-run path of `add` most of the time; the list must
    /// come out in exactly the order of a plain LRU model, every step.
    #[test]
    fn front_run_path_keeps_exact_lru_order() {
        let mut rng = SplitMix64::new(7);
        let mut idx = PrefixIndex::new();
        let cap = 12;
        let mut model: Vec<Vec<u64>> = vec![Vec::new(); 2];
        let prefixes: [&[u64]; 3] = [&[1, 2, 3, 4], &[1, 2, 5], &[6, 7, 8, 9]];
        let mut fast = 0;
        for _ in 0..20_000 {
            let ep = rng.below(2);
            let mut hashes: Vec<u64> = prefixes[rng.below(3)].to_vec();
            for _ in 0..rng.below(4) {
                hashes.push(100 + rng.below(30) as u64);
            }
            let addr = format!("e{ep}");
            let run = idx
                .endpoint_id(&addr)
                .and_then(|id| idx.endpoints.get(id as usize))
                .map_or(0, |e| e.front_run(&hashes).0);
            fast += usize::from(run > 0);
            idx.add(&addr, &hashes, cap);
            let m = &mut model[ep];
            for &h in hashes.iter().rev() {
                m.retain(|&x| x != h);
                if m.len() == cap {
                    m.remove(0);
                }
                m.push(h);
            }
            for (e, m) in model.iter().enumerate() {
                let Some(id) = idx.endpoint_id(&format!("e{e}")) else {
                    continue;
                };
                let lru = &idx.endpoints[id as usize];
                let mut order = Vec::new();
                let mut i = lru.head;
                while let Some(n) = lru.nodes.get(i as usize) {
                    order.push(n.hash);
                    i = n.next;
                }
                let want: Vec<u64> = m.iter().rev().copied().collect();
                assert_eq!(order, want, "endpoint {e}");
                assert_eq!(lru.len, m.len());
                for &h in m {
                    assert!(idx.blocks.find(h, id).is_some());
                }
            }
        }
        assert!(fast > 5_000, "the front-run path was taken {fast} times");
        assert_eq!(idx.len(), model.iter().map(Vec::len).sum::<usize>());
    }

    /// Compares against a plain model (one Vec per endpoint, most recent last) over random
    /// operations: same holders for every block, capacity never exceeded.
    #[test]
    fn agrees_with_a_reference_lru_model() {
        let mut rng = SplitMix64::new(99);
        let mut idx = PrefixIndex::new();
        let mut model: Vec<Vec<u64>> = vec![Vec::new(); 4];
        let cap = 7;
        // Blocks are touched last first (see `add`).
        for _ in 0..20_000 {
            let ep = rng.below(4);
            let n = 1 + rng.below(5);
            let hashes: Vec<u64> = (0..n).map(|_| rng.below(40) as u64).collect();
            idx.add(&format!("e{ep}"), &hashes, cap);
            let m = &mut model[ep];
            for h in hashes.into_iter().rev() {
                m.retain(|&x| x != h);
                if m.len() == cap {
                    m.remove(0);
                }
                m.push(h);
            }
            for (e, m) in model.iter().enumerate() {
                assert!(idx.blocks_of(&format!("e{e}")) <= cap);
                assert_eq!(idx.blocks_of(&format!("e{e}")), m.len());
            }
        }
        for h in 0..40u64 {
            let mut counts = crate::scratch::Scratch::new();
            idx.match_longest_prefix(&[h], &mut counts);
            for (e, m) in model.iter().enumerate() {
                let id = idx.endpoint_id(&format!("e{e}")).unwrap() as usize;
                assert_eq!(counts[id] == 1, m.contains(&h), "block {h} endpoint {e}");
            }
        }
    }

    /// Every list's nodes are the endpoint's records in the table, and the table holds no
    /// others: the index's own invariant, checked after cross-endpoint evictions.
    fn assert_consistent(idx: &PrefixIndex) {
        let mut listed = 0;
        for (id, lru) in idx.endpoints.iter().enumerate() {
            let mut i = lru.head;
            let mut n = 0;
            while let Some(node) = lru.nodes.get(i as usize) {
                assert_eq!(idx.blocks.find(node.hash, id as u32), Some(i));
                n += 1;
                i = node.next;
            }
            assert_eq!(n, lru.len, "endpoint {id}");
            listed += n;
        }
        assert_eq!(listed, idx.len());
    }

    /// A capacity from a server's metrics page can be anything; with a limit the index holds at
    /// most `max_blocks` records whatever it is told, and each endpoint its share.
    #[test]
    fn the_limit_caps_every_endpoint_at_its_share() {
        let mut idx = PrefixIndex::new().with_max_blocks(400);
        for round in 0..10u64 {
            for ep in 0..4u64 {
                let hashes: Vec<u64> = (0..100).map(|k| (ep << 40) | (round << 20) | k).collect();
                idx.add(&format!("e{ep}"), &hashes, usize::MAX);
                assert!(idx.len() <= 400);
            }
        }
        for ep in 0..4 {
            assert_eq!(idx.blocks_of(&format!("e{ep}")), 100);
        }
        assert_consistent(&idx);
    }

    /// The pool grows under a full index: the first endpoint holds the whole limit, then three
    /// more join. The total never passes the limit, not even for one `add`, and the first
    /// endpoint gives blocks back (its oldest first) until it is down to its share.
    #[test]
    fn a_growing_pool_takes_room_from_endpoints_above_their_share() {
        let mut idx = PrefixIndex::new().with_max_blocks(1_000);
        let first: Vec<u64> = (0..1_000).collect();
        idx.add("a", &first, usize::MAX);
        assert_eq!(idx.blocks_of("a"), 1_000);
        for round in 0..10u64 {
            for ep in ["b", "c", "d"] {
                let hashes: Vec<u64> = (0..50)
                    .map(|k| 1_000_000 * (round + 1) + k + 1_000 * u64::from(ep.as_bytes()[0]))
                    .collect();
                idx.add(ep, &hashes, usize::MAX);
                assert!(idx.len() <= 1_000, "{} records", idx.len());
            }
        }
        assert_eq!(idx.len(), 1_000);
        assert_eq!(idx.blocks_of("a"), 250, "down to a quarter");
        for ep in ["b", "c", "d"] {
            assert_eq!(idx.blocks_of(ep), 250);
        }
        // `a` gave back its oldest blocks (the chain's tail, added last first): its head remains.
        let mut counts = crate::scratch::Scratch::new();
        assert_eq!(idx.match_longest_prefix(&first, &mut counts), 250);
        assert_consistent(&idx);
    }

    /// A list left above its share when the pool grew shrinks a step per add, never grows, and
    /// reaches its share; the total stays within the limit throughout.
    #[test]
    fn a_list_above_its_share_shrinks_a_step_per_add() {
        let mut idx = PrefixIndex::new().with_max_blocks(1_000);
        idx.add("a", &(0..1_000).collect::<Vec<u64>>(), usize::MAX);
        idx.add("b", &[5_000], usize::MAX); // share now 500; `b` took one block of `a`'s
        assert_eq!(idx.blocks_of("a"), 999);
        let mut sizes = Vec::new();
        for k in 0..20u64 {
            idx.add("a", &[10_000 + k], usize::MAX);
            sizes.push(idx.blocks_of("a"));
            assert!(idx.len() <= 1_000);
        }
        // 1 + TRIM_STEP evicted ahead of the new block, which then replaces one more of its own.
        assert_eq!(
            sizes.first(),
            Some(&(999 - 1 - TRIM_STEP)),
            "one step: {sizes:?}"
        );
        assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "{sizes:?}");
        assert_eq!(sizes.last(), Some(&500));
        assert_consistent(&idx);
    }

    /// Random adds over a pool that grows and shrinks, capacities anywhere from 1 to unbounded:
    /// the total stays within the limit after every operation and the table matches the lists.
    #[test]
    fn random_traffic_and_churn_stay_within_the_limit() {
        let mut rng = SplitMix64::new(5);
        let limit = 300;
        let mut idx = PrefixIndex::new().with_max_blocks(limit);
        for step in 0..20_000u64 {
            let ep = rng.below(8);
            let n = 1 + rng.below(40);
            let start = rng.below(200) as u64;
            let hashes: Vec<u64> = (0..n as u64).map(|k| start + k).collect();
            let cap = [1, 50, 1_000, usize::MAX][rng.below(4)];
            idx.add(&format!("e{ep}"), &hashes, cap);
            assert!(idx.len() <= limit, "step {step}: {} records", idx.len());
            if rng.below(500) == 0 {
                let keep: Vec<String> = (0..8)
                    .filter(|_| rng.below(2) == 0)
                    .map(|e| format!("e{e}"))
                    .collect();
                idx.retain_endpoints(keep.iter().map(String::as_str));
            }
            if step % 1_000 == 0 {
                assert_consistent(&idx);
            }
        }
        assert_consistent(&idx);
    }

    /// Fewer records allowed than endpoints: each endpoint's share is one block; a block that
    /// finds no room is not recorded, and nothing else breaks.
    #[test]
    fn a_limit_below_the_pool_size_records_what_fits() {
        let mut idx = PrefixIndex::new().with_max_blocks(2);
        for ep in 0..5u64 {
            idx.add(&format!("e{ep}"), &[ep, ep + 100], usize::MAX);
            assert!(idx.len() <= 2);
        }
        assert_consistent(&idx);
    }

    /// What a record costs: an index filled to a limit of 2^16 records over 16 endpoints, by
    /// 64-block prompts as a chat workload sends them, holds about 60 bytes per record (the table
    /// slot at a load of one half to one quarter, the list node, the free-list entry).
    #[test]
    fn memory_per_record_at_the_limit() {
        let limit = 1 << 16;
        let mut idx = PrefixIndex::new().with_max_blocks(limit);
        let mut rng = SplitMix64::new(3);
        for _ in 0..4 * limit / 64 {
            let base = rng.next_u64();
            let hashes: Vec<u64> = (0..64).map(|k| base.wrapping_add(k)).collect();
            idx.add(
                &format!("10.0.0.{}:8000", rng.below(16)),
                &hashes,
                usize::MAX,
            );
        }
        assert_eq!(idx.len(), limit);
        let per_record = idx.memory_bytes() / limit;
        assert!(
            (32..=96).contains(&per_record),
            "{per_record} bytes per record"
        );
    }
}
