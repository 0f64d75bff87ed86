//! `loadgen`: an OpenAI streaming load generator that measures what LLM users measure.
//!
//! ```text
//! loadgen run --target http://127.0.0.1:8080 --workload shared-prefix --qps 20 --duration 60 \
//!     --json out.json --label picker --sim-metrics http://127.0.0.1:8001/metrics,...
//! loadgen report --svg ttft.svg rr.json lr.json picker.json
//! ```
//!
//! Per request: TTFT (first streamed token), TPOT ((E2E − TTFT) / (tokens − 1)), E2E, output
//! tokens, the endpoint that served (`x-inference-pod`). Arrivals are Poisson at `--qps` (one or
//! more `qps:seconds` stages) or a fixed `--concurrency`. The prefix-cache hit rate is read from
//! the servers' `vllm:prefix_cache_{hits,queries}[_total]` before and after the run; where the
//! servers do not name themselves in `x-inference-pod`, the share per endpoint comes from their
//! `vllm:request_success_total`. Goodput counts the requests that met both `--slo-ttft-ms` and
//! `--slo-tpot-ms`; `--cpu-pids` measures the CPU the routing processes used during the run.

mod fleet;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use workload::{Workload, WorkloadSpec};

#[derive(Parser)]
#[command(
    version,
    about = "LLM load generator: TTFT, TPOT, E2E under realistic workloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload against a target and print (and optionally save) the summary.
    Run(Box<RunArgs>),
    /// Compare saved runs: a table, and a TTFT chart (SVG).
    Report {
        /// Saved runs (`--json` outputs).
        inputs: Vec<String>,
        /// Write a TTFT-percentile chart here.
        #[arg(long)]
        svg: Option<String>,
        /// Write the markdown table here too.
        #[arg(long)]
        markdown: Option<String>,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Base URL (Envoy's listener or one server); several, comma-separated, spread the
    /// requests over them in turn (one client in front of several gateway replicas).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    target: Vec<String>,
    /// shared-prefix | random | multi-turn | lora-mix.
    #[arg(long, default_value = "shared-prefix")]
    workload: String,
    /// Models (the first is the base model; lora-mix draws among all).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "meta-llama/Llama-3.1-8B-Instruct"
    )]
    models: Vec<String>,
    #[arg(long, default_value_t = 8)]
    groups: usize,
    #[arg(long, default_value_t = 32)]
    prompts_per_group: usize,
    #[arg(long, default_value_t = 1000)]
    system_tokens: usize,
    #[arg(long, default_value_t = 50)]
    question_tokens: usize,
    #[arg(long, default_value_t = 32)]
    output_tokens: usize,
    #[arg(long, default_value_t = 16)]
    min_tokens: usize,
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Poisson arrival rate, requests/s (used with --duration).
    #[arg(long)]
    qps: Option<f64>,
    /// Stages `qps:seconds,qps:seconds` (overrides --qps/--duration).
    #[arg(long)]
    stages: Option<String>,
    /// Closed loop with this many concurrent clients instead of Poisson arrivals.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Run length, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// With --concurrency: stop after this many requests (the duration still caps the run).
    #[arg(long)]
    requests: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Save the summary as JSON.
    #[arg(long)]
    json: Option<String>,
    /// Name of this run in reports.
    #[arg(long, default_value = "run")]
    label: String,
    /// Simulator /metrics URLs to read the prefix-cache hit rate from.
    #[arg(long, value_delimiter = ',')]
    sim_metrics: Vec<String>,
    /// shared-prefix / lora-mix: Zipf exponent of group popularity (0: uniform).
    #[arg(long, default_value_t = 0.0)]
    zipf: f64,
    /// Goodput's TTFT objective, ms.
    #[arg(long, default_value_t = 500.0)]
    slo_ttft_ms: f64,
    /// Goodput's TPOT objective, ms.
    #[arg(long, default_value_t = 50.0)]
    slo_tpot_ms: f64,
    /// Processes whose CPU time during the run is reported (Envoy, an EPP, a router).
    #[arg(long, value_delimiter = ',')]
    cpu_pids: Vec<u32>,
    /// Request header `name: value` sent with every request (repeatable), e.g. a tenant's
    /// `x-llm-d-inference-fairness-id` or an objective's `x-llm-d-inference-objective`.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// One request's outcome.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    ok: bool,
    ttft_s: f64,
    e2e_s: f64,
    tokens: usize,
    endpoint: String,
    /// HTTP status (0: no response).
    #[serde(default)]
    status: u16,
    /// The request's `model` (base model or LoRA adapter).
    #[serde(default)]
    model: String,
    /// Hash of the request's leading text ([`prefix_of`]): requests of one shared-prefix group
    /// share it.
    #[serde(default)]
    prefix: u64,
}

/// Hash of what a request begins with: its first message's content (the system prompt of a
/// `shared-prefix` group), else the first 256 bytes of its `prompt`. Two requests of one group
/// give the same value; the hash never leaves this process.
fn prefix_of(body: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let lead = body["messages"][0]["content"]
        .as_str()
        .or_else(|| body["prompt"].as_str())
        .unwrap_or("");
    let end = (0..=lead.len().min(256))
        .rev()
        .find(|&i| lead.is_char_boundary(i))
        .unwrap_or(0);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    lead[..end].hash(&mut h);
    h.finish()
}

/// Over the prefixes of `ok` with at least `min_requests` requests: how many endpoints served
/// each, on average (1.0 = every such prefix stayed on one endpoint). `None` when no prefix had
/// that many.
fn endpoints_per_prefix(ok: &[&Sample], min_requests: usize) -> Option<f64> {
    let mut by_prefix: BTreeMap<u64, (usize, std::collections::BTreeSet<&str>)> = BTreeMap::new();
    for s in ok {
        let e = by_prefix.entry(s.prefix).or_default();
        e.0 += 1;
        e.1.insert(&s.endpoint);
    }
    let spread: Vec<usize> = by_prefix
        .values()
        .filter(|(n, _)| *n >= min_requests)
        .map(|(_, eps)| eps.len())
        .collect();
    (!spread.is_empty()).then(|| spread.iter().sum::<usize>() as f64 / spread.len() as f64)
}

/// One model's (or LoRA adapter's) requests in a run: how many, their TTFT, and which
/// endpoints served them (fraction 0..1 of this model's successful requests).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelBreakdown {
    pub requests: usize,
    pub ttft: Pcts,
    pub share_per_endpoint: BTreeMap<String, f64>,
}

/// Percentiles of one measure, seconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pcts {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
}

/// A run's summary (what `--json` saves and `report` reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub label: String,
    pub workload: String,
    pub offered_qps: f64,
    pub duration_s: f64,
    pub requests: usize,
    pub errors: usize,
    pub ttft: Pcts,
    pub tpot: Pcts,
    pub e2e: Pcts,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    pub share_per_endpoint: BTreeMap<String, f64>,
    pub prefix_cache_hit_rate: Option<f64>,
    /// Requests per second that met both objectives (`slo_ttft_ms`, `slo_tpot_ms`).
    #[serde(default)]
    pub goodput_rps: f64,
    /// The objectives goodput was counted against, ms: (TTFT, TPOT).
    #[serde(default)]
    pub slo_ms: (f64, f64),
    /// CPU seconds the `--cpu-pids` processes used during the run, per successful request, ms.
    #[serde(default)]
    pub router_cpu_ms_per_request: Option<f64>,
    /// Mean number of endpoints that served each prompt prefix (see [`prefix_of`]) among the
    /// prefixes with at least 4 successful requests: 1.0 when every shared prefix stayed on one
    /// endpoint (cached once in the fleet). `None` when no prefix repeated that often.
    #[serde(default)]
    pub endpoints_per_prefix: Option<f64>,
    /// Requests answered 429 (shed or refused by a gateway's flow control).
    #[serde(default)]
    pub rejected_429: usize,
    /// Requests answered 200 with a complete stream.
    #[serde(default)]
    pub served: usize,
    /// The successful requests split by `model` (e.g. the LoRA mix's base model and adapters).
    #[serde(default)]
    pub by_model: BTreeMap<String, ModelBreakdown>,
}

fn pcts(mut v: Vec<f64>) -> Pcts {
    if v.is_empty() {
        return Pcts::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Pcts {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        mean: v.iter().sum::<f64>() / v.len() as f64,
    }
}

async fn one_request(client: &reqwest::Client, url: &str, body: serde_json::Value) -> Sample {
    let start = Instant::now();
    let resp = match client.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(_) => return Sample::default(),
    };
    let endpoint = resp
        .headers()
        .get("x-inference-pod")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Sample {
            endpoint,
            status,
            ..Sample::default()
        };
    }
    let mut stream = resp.bytes_stream();
    let mut carry = String::new();
    let (mut ttft, mut tokens, mut done) = (None, 0usize, false);
    while let Some(chunk) = stream.next().await {
        let chunk: reqwest::Result<bytes_crate::Bytes> = chunk;
        let Ok(chunk) = chunk else {
            return Sample {
                endpoint,
                status,
                ..Sample::default()
            };
        };
        carry.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = carry.find('\n') {
            let line: String = carry.drain(..=nl).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let has_token = serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| {
                    v.get("choices")
                        .and_then(|c| c.as_array())
                        .map(|c| !c.is_empty())
                })
                .unwrap_or(false);
            if has_token {
                tokens += 1;
                ttft.get_or_insert_with(|| start.elapsed().as_secs_f64());
            }
        }
    }
    let e2e = start.elapsed().as_secs_f64();
    Sample {
        ok: done && tokens > 0,
        ttft_s: ttft.unwrap_or(e2e),
        e2e_s: e2e,
        tokens,
        endpoint,
        status,
        model: String::new(),
        prefix: 0,
    }
}

fn stages(args: &RunArgs) -> Vec<(f64, f64)> {
    if let Some(s) = &args.stages {
        return s
            .split(',')
            .filter_map(|st| {
                let (q, d) = st.split_once(':')?;
                Some((q.trim().parse().ok()?, d.trim().parse().ok()?))
            })
            .collect();
    }
    vec![(args.qps.unwrap_or(1.0), args.duration)]
}

async fn run(args: RunArgs) -> Summary {
    let mut default_headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("loadgen: --header wants 'name: value', got '{h}'");
            std::process::exit(2);
        };
        match (
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
            reqwest::header::HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                default_headers.insert(n, v);
            }
            _ => {
                eprintln!("loadgen: invalid header '{h}'");
                std::process::exit(2);
            }
        }
    }
    let client = reqwest::Client::builder()
        .default_headers(default_headers)
        .pool_max_idle_per_host(1024)
        // Requests leave at once (no Nagle delay on the small request bodies' last segment).
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let spec = WorkloadSpec {
        kind: args.workload.clone(),
        models: args.models.clone(),
        groups: args.groups,
        prompts_per_group: args.prompts_per_group,
        system_tokens: args.system_tokens,
        question_tokens: args.question_tokens,
        output_tokens: args.output_tokens,
        min_tokens: args.min_tokens,
        max_tokens: args.max_tokens,
        sessions: args.sessions,
        zipf: args.zipf,
    };
    let workload = Arc::new(Mutex::new(Workload::new(spec, args.seed)));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let before = fleet::read(&args.sim_metrics, &client).await;
    let cpu_before = fleet::cpu_total(&args.cpu_pids);
    let plan = stages(&args);
    let total_s: f64 = if args.concurrency.is_some() {
        args.duration
    } else {
        plan.iter().map(|(_, d)| d).sum()
    };
    let expected = if args.concurrency.is_some() {
        0
    } else {
        plan.iter().map(|(q, d)| (q * d) as u64).sum()
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(expected.max(1))
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    if let Some(c) = args.concurrency {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let deadline = started + Duration::from_secs_f64(args.duration);
        let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
        if let Some(n) = args.requests {
            bar.set_length(n);
        }
        for task in 0..c {
            let (client, workload, samples, bar, target) = (
                client.clone(),
                workload.clone(),
                samples.clone(),
                bar.clone(),
                args.target
                    .get(task % args.target.len().max(1))
                    .cloned()
                    .unwrap_or_default(),
            );
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline
                    && budget
                        .fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let (path, body) = workload.lock().await.next_request();
                    let model = body["model"].as_str().unwrap_or("").to_string();
                    let prefix = prefix_of(&body);
                    let mut s = one_request(&client, &format!("{target}{path}"), body).await;
                    s.model = model;
                    s.prefix = prefix;
                    samples.lock().await.push(s);
                    bar.inc(1);
                }
            }));
        }
    } else {
        let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ 0xA5A5);
        let mut at = started;
        let mut sent = 0usize;
        for (qps, secs) in plan {
            let end = at + Duration::from_secs_f64(secs);
            let Ok(exp) = Exp::new(qps.max(1e-6)) else {
                continue;
            };
            loop {
                at += Duration::from_secs_f64(exp.sample(&mut rng));
                if at >= end {
                    at = end;
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let (path, body) = workload.lock().await.next_request();
                let target = args
                    .target
                    .get(sent % args.target.len().max(1))
                    .map_or("", String::as_str);
                sent += 1;
                let (client, samples, bar, url) = (
                    client.clone(),
                    samples.clone(),
                    bar.clone(),
                    format!("{target}{path}"),
                );
                tasks.push(tokio::spawn(async move {
                    let model = body["model"].as_str().unwrap_or("").to_string();
                    let prefix = prefix_of(&body);
                    let mut s = one_request(&client, &url, body).await;
                    s.model = model;
                    s.prefix = prefix;
                    samples.lock().await.push(s);
                    bar.inc(1);
                }));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64().max(total_s);
    let after = fleet::read(&args.sim_metrics, &client).await;
    let cpu_used = fleet::cpu_total(&args.cpu_pids) - cpu_before;
    let samples = samples.lock().await.clone();
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let mut share = BTreeMap::new();
    for s in &ok {
        *share.entry(s.endpoint.clone()).or_insert(0.0) += 1.0 / ok.len().max(1) as f64;
    }
    let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
    if share.keys().all(|k| k == "?") && !after.is_empty() {
        // The servers do not name themselves: count what each one says it finished.
        share = fleet::served_share(&before, &after);
    }
    let mut by_model: BTreeMap<String, ModelBreakdown> = BTreeMap::new();
    for s in &ok {
        by_model.entry(s.model.clone()).or_default().requests += 1;
    }
    for (model, b) in by_model.iter_mut() {
        let mine: Vec<&&Sample> = ok.iter().filter(|s| &s.model == model).collect();
        b.ttft = pcts(mine.iter().map(|s| s.ttft_s).collect());
        for s in &mine {
            *b.share_per_endpoint
                .entry(s.endpoint.clone())
                .or_insert(0.0) += 1.0 / mine.len().max(1) as f64;
        }
    }
    let tpot_of = |s: &Sample| (s.e2e_s - s.ttft_s) / (s.tokens.max(2) - 1) as f64;
    let (slo_ttft, slo_tpot) = (args.slo_ttft_ms / 1e3, args.slo_tpot_ms / 1e3);
    let good = ok
        .iter()
        .filter(|s| s.ttft_s <= slo_ttft && (s.tokens < 2 || tpot_of(s) <= slo_tpot))
        .count();
    let offered = if args.concurrency.is_some() {
        0.0
    } else {
        expected as f64 / total_s.max(1e-9)
    };
    Summary {
        label: args.label.clone(),
        workload: args.workload.clone(),
        offered_qps: offered,
        duration_s: wall,
        requests: samples.len(),
        errors: samples.len() - ok.len(),
        ttft: pcts(ok.iter().map(|s| s.ttft_s).collect()),
        tpot: pcts(
            ok.iter()
                .filter(|s| s.tokens > 1)
                .map(|s| tpot_of(s))
                .collect(),
        ),
        e2e: pcts(ok.iter().map(|s| s.e2e_s).collect()),
        output_tokens_per_s: ok.iter().map(|s| s.tokens as f64).sum::<f64>() / wall,
        requests_per_s: ok.len() as f64 / wall,
        share_per_endpoint: share,
        prefix_cache_hit_rate: fleet::hit_rate(&before, &after),
        goodput_rps: good as f64 / wall,
        slo_ms: (args.slo_ttft_ms, args.slo_tpot_ms),
        router_cpu_ms_per_request: (!args.cpu_pids.is_empty() && !ok.is_empty())
            .then(|| cpu_used * 1e3 / ok.len() as f64),
        endpoints_per_prefix: endpoints_per_prefix(&ok, 4),
        rejected_429: samples.iter().filter(|s| s.status == 429).count(),
        served: ok.len(),
        by_model,
    }
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Run(args) => {
            let json_out = args.json.clone();
            let s = run(*args).await;
            println!("{}", report::table(std::slice::from_ref(&s)));
            if let Some(path) = json_out {
                if let Err(e) =
                    std::fs::write(&path, serde_json::to_string_pretty(&s).unwrap_or_default())
                {
                    eprintln!("{path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Report {
            inputs,
            svg,
            markdown,
        } => {
            let mut runs = Vec::new();
            for p in &inputs {
                match std::fs::read_to_string(p)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<Summary>(&t).map_err(|e| e.to_string()))
                {
                    Ok(s) => runs.push(s),
                    Err(e) => {
                        eprintln!("{p}: {e}");
                        std::process::exit(1);
                    }
                }
            }
            let table = report::table(&runs);
            println!("{table}");
            if let Some(m) = markdown {
                let _ = std::fs::write(m, &table);
            }
            if let Some(path) = svg {
                if let Err(e) = report::chart(&runs, &path) {
                    eprintln!("{path}: {e}");
                    std::process::exit(1);
                }
                println!("chart: {path}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served(prefix: u64, endpoint: &str) -> Sample {
        Sample {
            ok: true,
            endpoint: endpoint.to_string(),
            prefix,
            ..Sample::default()
        }
    }

    #[test]
    fn one_group_shares_a_prefix_and_a_prompt_counts_too() {
        let chat = |sys: &str, q: &str| json!({"messages": [{"role": "system", "content": sys}, {"role": "user", "content": q}]});
        assert_eq!(
            prefix_of(&chat("sys A", "q1")),
            prefix_of(&chat("sys A", "q2"))
        );
        assert_ne!(
            prefix_of(&chat("sys A", "q1")),
            prefix_of(&chat("sys B", "q1"))
        );
        let long = "é".repeat(200); // 400 bytes: cut at a character boundary
        let a = prefix_of(&json!({"prompt": format!("{long} one")}));
        assert_eq!(a, prefix_of(&json!({"prompt": format!("{long} two")})));
    }

    #[test]
    fn endpoints_per_prefix_averages_over_repeated_prefixes() {
        let samples = [
            served(1, "a"),
            served(1, "a"),
            served(1, "b"),
            served(1, "a"),
            served(2, "c"),
            served(2, "c"),
            served(2, "c"),
            served(2, "c"),
            served(3, "d"), // one request: not counted
        ];
        let ok: Vec<&Sample> = samples.iter().collect();
        assert_eq!(endpoints_per_prefix(&ok, 4), Some(1.5));
        assert_eq!(endpoints_per_prefix(&ok, 5), None);
    }
}
