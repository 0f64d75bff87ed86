//! The step-level engine: continuous batching with a per-step token budget (chunked prefill),
//! a KV block pool with prefix caching, preemption when blocks run out, and LoRA adapters
//! limited by `max_loras`. Model: docs/SOURCES.md#step-model.
//!
//! Each step: running decodes take one token of budget each; unfinished prefills continue with
//! what is left; waiting requests are admitted in FIFO order (skipping ones whose adapter cannot
//! be loaded yet) while seats, budget and blocks last. The step then takes
//! `c0 + c_pf·P + c_dec·D + c_ctx·K` (+ adapter load time), real time, where P is prefill tokens,
//! D decode sequences and K their context tokens. Requests whose prefill completes emit their
//! first token; decodes emit one token; a decode that needs a block it cannot get preempts the
//! most recently admitted request (its blocks are freed, keeping their cache hashes, and it
//! restarts from the waiting queue's front).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::kv::{block_hashes, BlockPool};
use crate::kv_events::{self, KvEvent};
use crate::metrics::Stats;

/// Engine parameters. Defaults: docs/SOURCES.md#step-model.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Served model name.
    pub model: String,
    /// Most adapters loaded at once (`--max-loras`).
    pub max_loras: usize,
    /// Time to load an adapter, ms.
    pub lora_load_ms: f64,
    /// Most sequences in the running batch (`--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Token budget per step (`--max-num-batched-tokens`).
    pub max_batched_tokens: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV blocks on the "GPU".
    pub num_gpu_blocks: u32,
    /// Fixed cost per step, ms.
    pub c0_ms: f64,
    /// Prefill cost per token, ms.
    pub c_pf_ms: f64,
    /// Decode cost per running sequence, ms.
    pub c_dec_ms: f64,
    /// Attention cost per context token of the decodes, ms.
    pub c_ctx_ms: f64,
}

/// What a request hears from the engine.
#[derive(Debug)]
pub enum Event {
    /// The first output token (prefill done).
    First,
    /// One more output token.
    Token,
    /// Finished.
    Done {
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Output tokens.
        completion_tokens: usize,
        /// Prompt tokens served from the prefix cache.
        cached_tokens: usize,
    },
}

/// What the engine is asked to do.
pub enum Command {
    /// Serve a request.
    Run(Submission),
    /// Drop every cached block no request uses (vLLM's `POST /reset_prefix_cache`); publishes
    /// `AllBlocksCleared`.
    ResetPrefixCache,
}

/// A request handed to the engine.
pub struct Submission {
    /// Prompt token ids.
    pub tokens: Vec<u32>,
    /// Adapter, `None` for the base model.
    pub lora: Option<String>,
    /// The request's `cache_salt` (vLLM: mixed into its first block's hash).
    pub cache_salt: Option<String>,
    /// Output tokens to generate (at least 1).
    pub max_tokens: usize,
    /// Where events go.
    pub tx: mpsc::UnboundedSender<Event>,
}

struct Seq {
    tokens: usize,
    hashes: Vec<u64>,
    /// Prompt token ids (kept for the `BlockStored` events).
    token_ids: Vec<u32>,
    lora: Option<String>,
    cache_salt: Option<String>,
    max_tokens: usize,
    tx: mpsc::UnboundedSender<Event>,
    arrival: Instant,
    blocks: Vec<u32>,
    cached_tokens: usize,
    computed: usize,
    generated: usize,
    last_token: Instant,
    admitted: u64,
}

enum Work {
    Prefill(usize),
    Decode,
}

struct Engine {
    cfg: EngineConfig,
    pool: BlockPool,
    /// KV events to publish (`None`: publishing is off).
    events: Option<kv_events::Sender>,
    pending: Vec<KvEvent>,
    waiting: VecDeque<Seq>,
    running: Vec<(Seq, Option<Work>)>,
    admissions: u64,
}

impl Engine {
    fn active_loras(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .running
            .iter()
            .filter_map(|(s, _)| s.lora.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.cfg.block_size.max(1))
    }

    /// Aborts every request whose client went away (its response receiver was dropped), as vLLM
    /// does when the HTTP connection closes: a waiting request leaves the queue, a running one
    /// leaves the batch and frees its KV blocks (their prefix stays cached).
    fn abort_disconnected(&mut self, stats: &Mutex<Stats>) {
        let before = self.waiting.len() + self.running.len();
        self.waiting.retain(|s| !s.tx.is_closed());
        let mut i = 0;
        while i < self.running.len() {
            if self.running.get(i).is_some_and(|(s, _)| s.tx.is_closed()) {
                let (s, _) = self.running.remove(i);
                self.pool.release(&s.blocks);
            } else {
                i += 1;
            }
        }
        let aborted = before - (self.waiting.len() + self.running.len());
        if aborted > 0 {
            if let Ok(mut st) = stats.lock() {
                st.aborted += aborted as u64;
            }
        }
    }

    /// Plans one step; returns its duration.
    fn plan(&mut self, stats: &Mutex<Stats>) -> Duration {
        self.abort_disconnected(stats);
        let mut budget = self.cfg.max_batched_tokens;
        let (mut p, mut d, mut k) = (0usize, 0usize, 0usize);
        for (s, w) in &mut self.running {
            *w = None;
            if s.computed >= s.tokens && budget > 0 {
                budget -= 1;
                d += 1;
                k += s.tokens + s.generated;
                *w = Some(Work::Decode);
            }
        }
        for (s, w) in &mut self.running {
            if s.computed < s.tokens && budget > 0 {
                let n = (s.tokens - s.computed).min(budget);
                budget -= n;
                p += n;
                *w = Some(Work::Prefill(n));
            }
        }
        let mut lora_load = 0.0;
        let mut i = 0;
        while i < self.waiting.len() && self.running.len() < self.cfg.max_num_seqs && budget > 0 {
            let active = self.active_loras();
            let Some(cand) = self.waiting.get(i) else {
                break;
            };
            let new_adapter = cand.lora.as_ref().is_some_and(|l| !active.contains(l));
            if new_adapter && active.len() >= self.cfg.max_loras {
                i += 1; // its adapter cannot be loaded yet; later requests may proceed
                continue;
            }
            let mut cached = self.pool.lookup(&cand.hashes);
            // At least one prompt token is always computed (vLLM recomputes the last one).
            while !cached.is_empty() && cached.len() * self.cfg.block_size >= cand.tokens {
                cached.pop();
            }
            let need = self.blocks_for(cand.tokens).saturating_sub(cached.len()) as u32;
            self.pool.acquire(&cached);
            let Some(fresh) = self.pool.allocate(need) else {
                self.pool.release(&cached);
                break; // out of blocks: wait for running requests to finish
            };
            let Some(mut s) = self.waiting.remove(i) else {
                break;
            };
            s.blocks = cached.clone();
            s.blocks.extend(fresh);
            s.cached_tokens = cached.len() * self.cfg.block_size;
            s.computed = s.cached_tokens;
            self.admissions += 1;
            s.admitted = self.admissions;
            if let Ok(mut st) = stats.lock() {
                st.prefix_queries += s.tokens as u64;
                st.prefix_hits += s.cached_tokens as u64;
                st.prompt_tokens += s.tokens as u64;
            }
            if new_adapter {
                lora_load += self.cfg.lora_load_ms;
            }
            let n = (s.tokens - s.computed).min(budget);
            budget -= n;
            p += n;
            self.running.push((s, Some(Work::Prefill(n))));
        }
        let ms = self.cfg.c0_ms
            + self.cfg.c_pf_ms * p as f64
            + self.cfg.c_dec_ms * d as f64
            + self.cfg.c_ctx_ms * k as f64
            + lora_load;
        Duration::from_secs_f64(ms / 1000.0)
    }

    /// Applies the planned step at `now`.
    fn finish(&mut self, now: Instant, stats: &Mutex<Stats>) {
        let bs = self.cfg.block_size.max(1);
        let mut i = 0;
        while i < self.running.len() {
            let Some((s, w)) = self.running.get_mut(i) else {
                break;
            };
            let mut done = false;
            match w.take() {
                Some(Work::Prefill(n)) => {
                    s.computed += n;
                    if s.computed >= s.tokens {
                        let mut stored: Option<KvEvent> = None;
                        for (i, (b, h)) in s.blocks.iter().zip(&s.hashes).enumerate() {
                            let new = self.pool.register(*b, *h);
                            if self.events.is_none() {
                                continue;
                            }
                            let toks = s.token_ids.get(i * bs..(i + 1) * bs).unwrap_or_default();
                            // vLLM's extra keys of block i: the adapter, then the salt (block 0).
                            let extra: Vec<String> = s
                                .lora
                                .iter()
                                .chain(s.cache_salt.iter().filter(|_| i == 0))
                                .cloned()
                                .collect();
                            match (&mut stored, new) {
                                (
                                    Some(KvEvent::Stored {
                                        hashes,
                                        tokens,
                                        extra_keys,
                                        ..
                                    }),
                                    true,
                                ) => {
                                    hashes.push(*h);
                                    tokens.extend_from_slice(toks);
                                    extra_keys.push(extra);
                                }
                                (None, true) => {
                                    stored = Some(KvEvent::Stored {
                                        hashes: vec![*h],
                                        parent: i
                                            .checked_sub(1)
                                            .and_then(|p| s.hashes.get(p).copied()),
                                        tokens: toks.to_vec(),
                                        lora: s.lora.clone(),
                                        extra_keys: vec![extra],
                                    });
                                }
                                (_, false) => self.pending.extend(stored.take()),
                                _ => {}
                            }
                        }
                        self.pending.extend(stored);
                        if s.generated == 0 {
                            s.generated = 1;
                            let _ = s.tx.send(Event::First);
                            if let Ok(mut st) = stats.lock() {
                                st.ttft.observe(now.duration_since(s.arrival).as_secs_f64());
                            }
                        }
                        s.last_token = now;
                        done = s.generated >= s.max_tokens;
                    }
                }
                Some(Work::Decode) => {
                    s.generated += 1;
                    let _ = s.tx.send(Event::Token);
                    if let Ok(mut st) = stats.lock() {
                        st.itl
                            .observe(now.duration_since(s.last_token).as_secs_f64());
                        st.generation_tokens += 1;
                    }
                    s.last_token = now;
                    done = s.generated >= s.max_tokens;
                    if !done && (s.tokens + s.generated) > s.blocks.len() * bs {
                        match self.pool.allocate(1) {
                            Some(b) => s.blocks.extend(b),
                            None => {
                                self.preempt_latest(stats);
                                continue; // the list changed; re-examine index i
                            }
                        }
                    }
                }
                None => {}
            }
            if done {
                let (s, _) = self.running.remove(i);
                self.pool.release(&s.blocks);
                let _ = s.tx.send(Event::Done {
                    prompt_tokens: s.tokens,
                    completion_tokens: s.generated,
                    cached_tokens: s.cached_tokens,
                });
                if let Ok(mut st) = stats.lock() {
                    st.e2e.observe(now.duration_since(s.arrival).as_secs_f64());
                    st.success += 1;
                }
            } else {
                i += 1;
            }
        }
    }

    /// Preempts the most recently admitted running request (recompute mode).
    fn preempt_latest(&mut self, stats: &Mutex<Stats>) {
        let Some(pos) = self
            .running
            .iter()
            .enumerate()
            .max_by_key(|(_, (s, _))| s.admitted)
            .map(|(i, _)| i)
        else {
            return;
        };
        let (mut s, _) = self.running.remove(pos);
        self.pool.release(&s.blocks);
        s.blocks.clear();
        s.computed = 0;
        self.waiting.push_front(s);
        if let Ok(mut st) = stats.lock() {
            st.preemptions += 1;
        }
    }

    /// Sends the KV events of the last step (evictions included).
    fn flush_events(&mut self) {
        let Some(tx) = &self.events else { return };
        let evicted = self.pool.take_evicted();
        if !evicted.is_empty() {
            self.pending.push(KvEvent::Removed { hashes: evicted });
        }
        if !self.pending.is_empty() {
            let _ = tx.send(std::mem::take(&mut self.pending));
        }
    }

    /// Moves evictions into the pending events, keeping their order relative to stores.
    fn note_evictions(&mut self) {
        if self.events.is_some() {
            let evicted = self.pool.take_evicted();
            if !evicted.is_empty() {
                self.pending.push(KvEvent::Removed { hashes: evicted });
            }
        }
    }

    fn publish(&self, stats: &Mutex<Stats>) {
        if let Ok(mut st) = stats.lock() {
            st.running = self.running.len();
            st.waiting = self.waiting.len();
            st.kv_usage = self.pool.usage();
            st.running_loras = self.active_loras();
            let mut w: Vec<String> = self.waiting.iter().filter_map(|s| s.lora.clone()).collect();
            w.sort();
            w.dedup();
            st.waiting_loras = w;
        }
    }
}

/// Runs the engine until every submission sender is gone.
pub async fn run(
    cfg: EngineConfig,
    mut rx: mpsc::UnboundedReceiver<Command>,
    stats: Arc<Mutex<Stats>>,
    events: Option<kv_events::Sender>,
) {
    let pool = BlockPool::new(cfg.num_gpu_blocks);
    let mut e = Engine {
        cfg,
        pool,
        events,
        pending: Vec::new(),
        waiting: VecDeque::new(),
        running: Vec::new(),
        admissions: 0,
    };
    loop {
        while let Ok(cmd) = rx.try_recv() {
            e.command(cmd);
        }
        if e.running.is_empty() && e.waiting.is_empty() {
            e.publish(&stats);
            match rx.recv().await {
                Some(cmd) => e.command(cmd),
                None => return,
            }
            continue;
        }
        let step = e.plan(&stats);
        e.note_evictions();
        e.publish(&stats);
        tokio::time::sleep(step).await;
        e.finish(Instant::now(), &stats);
        e.flush_events();
        e.publish(&stats);
    }
}

impl Engine {
    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Run(sub) => self.enqueue(sub),
            Command::ResetPrefixCache => {
                self.pool.reset_prefix_cache();
                if self.events.is_some() {
                    self.pending.push(KvEvent::Cleared);
                    self.flush_events();
                }
            }
        }
    }

    fn enqueue(&mut self, sub: Submission) {
        let model = sub.lora.clone().unwrap_or_else(|| self.cfg.model.clone());
        let hashes = block_hashes(
            &model,
            sub.cache_salt.as_deref(),
            &sub.tokens,
            self.cfg.block_size,
        );
        let now = Instant::now();
        let tokens = sub.tokens.len().max(1);
        // A request that can never fit is still admitted once the cache is empty; cap it.
        self.waiting.push_back(Seq {
            tokens,
            hashes,
            token_ids: if self.events.is_some() {
                sub.tokens
            } else {
                Vec::new()
            },
            lora: sub.lora,
            cache_salt: sub.cache_salt,
            max_tokens: sub.max_tokens.max(1),
            tx: sub.tx,
            arrival: now,
            blocks: Vec::new(),
            cached_tokens: 0,
            computed: 0,
            generated: 0,
            last_token: now,
            admitted: 0,
        });
    }
}
