//! Request generators. Text is ~4 characters per token, as the simulator counts.
//!
//! - `shared-prefix` (inference-perf's shape): `groups` system prompts of `system_tokens`, each
//!   with `prompts_per_group` questions of `question_tokens`; every request picks a group and a
//!   question at random.
//! - `random`: prompts of uniformly random length in `[min_tokens, max_tokens]`.
//! - `multi-turn`: `sessions` chats that grow by one question and one answer per turn.
//! - `lora-mix`: `shared-prefix` whose model is drawn from `models` (base model and adapters).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

const WORDS: &[&str] = &[
    "account", "billing", "invoice", "policy", "refund", "shipping", "order", "customer",
    "support", "product", "warranty", "delivery", "payment", "balance", "service", "contract",
    "renewal", "discount", "region", "report",
];

/// `tokens` tokens (×4 characters) of deterministic text from `rng`.
fn text(rng: &mut StdRng, tokens: usize) -> String {
    let mut s = String::with_capacity(tokens * 4 + 16);
    while s.len() < tokens * 4 {
        s.push_str(WORDS.choose(rng).copied().unwrap_or("word"));
        s.push(' ');
    }
    s.truncate(tokens * 4);
    s
}

/// Workload parameters.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSpec {
    /// Generator name.
    pub kind: String,
    /// Model names (first is the base model).
    pub models: Vec<String>,
    /// shared-prefix: number of groups.
    pub groups: usize,
    /// shared-prefix: questions per group.
    pub prompts_per_group: usize,
    /// shared-prefix: system prompt tokens.
    pub system_tokens: usize,
    /// shared-prefix: question tokens.
    pub question_tokens: usize,
    /// Output tokens per request.
    pub output_tokens: usize,
    /// random: shortest prompt, tokens.
    pub min_tokens: usize,
    /// random: longest prompt, tokens.
    pub max_tokens: usize,
    /// multi-turn: concurrent sessions.
    pub sessions: usize,
}

/// Produces request bodies.
pub struct Workload {
    spec: WorkloadSpec,
    rng: StdRng,
    systems: Vec<String>,
    questions: Vec<Vec<String>>,
    sessions: Vec<Vec<Value>>,
    next_session: usize,
}

impl Workload {
    /// A generator seeded with `seed` (same seed, same requests).
    pub fn new(spec: WorkloadSpec, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let systems: Vec<String> = (0..spec.groups.max(1))
            .map(|g| format!("Group {g}. {}", text(&mut rng, spec.system_tokens)))
            .collect();
        let questions = (0..spec.groups.max(1))
            .map(|_| {
                (0..spec.prompts_per_group.max(1))
                    .map(|q| format!("Q{q}: {}", text(&mut rng, spec.question_tokens)))
                    .collect()
            })
            .collect();
        let sessions = (0..spec.sessions.max(1))
            .map(|i| vec![json!({"role": "system", "content": format!("Session {i}. {}", text(&mut rng, spec.system_tokens))})])
            .collect();
        Workload {
            spec,
            rng,
            systems,
            questions,
            sessions,
            next_session: 0,
        }
    }

    /// The next request: `(path, JSON body)`.
    pub fn next_request(&mut self) -> (&'static str, Value) {
        let base = self.spec.models.first().cloned().unwrap_or_default();
        let out = self.spec.output_tokens;
        let stream_opts = json!({"include_usage": true});
        match self.spec.kind.as_str() {
            "random" => {
                let n = self.rng.gen_range(
                    self.spec.min_tokens..=self.spec.max_tokens.max(self.spec.min_tokens),
                );
                let prompt = text(&mut self.rng, n);
                (
                    "/v1/completions",
                    json!({"model": base, "prompt": prompt, "max_tokens": out, "stream": true, "stream_options": stream_opts}),
                )
            }
            "multi-turn" => {
                let i = self.next_session % self.sessions.len().max(1);
                self.next_session += 1;
                let q = text(&mut self.rng, self.spec.question_tokens);
                let msgs = &mut self.sessions[i];
                msgs.push(json!({"role": "user", "content": q}));
                let body = json!({"model": base, "messages": msgs.clone(), "max_tokens": out, "stream": true, "stream_options": stream_opts});
                let answer = text(&mut self.rng, out);
                msgs.push(json!({"role": "assistant", "content": answer}));
                ("/v1/chat/completions", body)
            }
            _ => {
                let g = self.rng.gen_range(0..self.systems.len());
                let q = self.rng.gen_range(0..self.questions[g].len());
                let model = if self.spec.kind == "lora-mix" {
                    self.spec
                        .models
                        .choose(&mut self.rng)
                        .cloned()
                        .unwrap_or(base)
                } else {
                    base
                };
                let body = json!({
                    "model": model,
                    "messages": [
                        {"role": "system", "content": self.systems[g]},
                        {"role": "user", "content": self.questions[g][q]}
                    ],
                    "max_tokens": out, "stream": true, "stream_options": stream_opts
                });
                ("/v1/chat/completions", body)
            }
        }
    }
}
