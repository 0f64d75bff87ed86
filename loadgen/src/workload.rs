//! Request generators. Text is ~4 characters per token, as the simulator counts.
//!
//! - `shared-prefix` (inference-perf's shape): `groups` system prompts of `system_tokens`, each
//!   with `prompts_per_group` questions of `question_tokens`; every request picks a group and a
//!   question at random: groups uniformly, or with `zipf` = s > 0, group k (1-based) with
//!   probability ∝ 1/k^s (skewed popularity: one prefix alone can be more than one server can
//!   take, so load signals must override prefix stickiness).
//! - `random`: prompts of uniformly random length in `[min_tokens, max_tokens]`.
//! - `multi-turn`: `sessions` chats that grow by one question and one answer per turn.
//! - `lora-mix`: `shared-prefix` whose model is drawn from `models` (base model and adapters).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
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
    /// shared-prefix / lora-mix: Zipf exponent of group popularity (0: uniform).
    pub zipf: f64,
}

/// Produces request bodies.
pub struct Workload {
    spec: WorkloadSpec,
    rng: StdRng,
    systems: Vec<String>,
    questions: Vec<Vec<String>>,
    sessions: Vec<Vec<Value>>,
    next_session: usize,
    zipf: Option<Zipf<f64>>,
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
        let zipf = (spec.zipf > 0.0)
            .then(|| Zipf::new(systems.len() as u64, spec.zipf).ok())
            .flatten();
        Workload {
            zipf,
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
                let g = match &self.zipf {
                    // Zipf draws 1..=n; group 0 is the most popular.
                    Some(z) => (z.sample(&mut self.rng) as usize)
                        .saturating_sub(1)
                        .min(self.systems.len() - 1),
                    None => self.rng.gen_range(0..self.systems.len()),
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zipf: f64) -> WorkloadSpec {
        WorkloadSpec {
            kind: "shared-prefix".into(),
            models: vec!["m".into()],
            groups: 16,
            prompts_per_group: 4,
            system_tokens: 8,
            question_tokens: 4,
            output_tokens: 4,
            min_tokens: 1,
            max_tokens: 2,
            sessions: 1,
            zipf,
        }
    }

    /// How many of 4000 requests each group's system prompt got.
    fn counts(zipf: f64) -> Vec<usize> {
        let mut w = Workload::new(spec(zipf), 3);
        let systems = w.systems.clone();
        let mut n = vec![0; systems.len()];
        for _ in 0..4000 {
            let (_, body) = w.next_request();
            let sys = body["messages"][0]["content"].as_str().unwrap().to_string();
            n[systems.iter().position(|s| *s == sys).unwrap()] += 1;
        }
        n
    }

    #[test]
    fn zipf_skews_group_popularity() {
        let uniform = counts(0.0);
        assert!(
            uniform.iter().all(|&c| (150..350).contains(&c)),
            "{uniform:?}"
        );
        // s = 1 over 16 groups: group 1 has 1/H(16) ≈ 30 % of the requests, group 16 ≈ 1.9 %.
        let skewed = counts(1.0);
        assert!((1000..1400).contains(&skewed[0]), "{skewed:?}");
        assert!(
            skewed[0] > skewed[1] && skewed[1] > skewed[15],
            "{skewed:?}"
        );
    }
}
