//! The metrics work in a real Prometheus: Debian's `prometheus` scrapes Envoy's
//! `/stats/prometheus` with `dashboards/prometheus-scrape.yaml`'s relabelling and rule files,
//! traffic flows through the picker (flow control on), and every PromQL expression of GIE's
//! dashboard that reads the endpoint picker's metrics (its flow-control panels included), and
//! every panel of `dashboards/endpoint-picker.json`, returns series. The rule files load without
//! errors.
//!
//! Needs `prometheus` and `promtool` (`make prometheus` installs Debian's package; the
//! binaries are found through `$PROMETHEUS_BIN` / `$PROMTOOL_BIN` or `PATH`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{free_port, Env, EnvSpec};
use serde_json::Value;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// The expressions of GIE v1.5.0's dashboard over the picker's own series
/// (`dashboards/gie-v1.5.0-queries.txt`, which says what it leaves out), with Grafana's
/// `$__rate_interval` as `1m`. The file's `vllm:*` expressions read the model servers' pages,
/// which this test's fake servers do not fill (`scripts/dashboard-snapshot.sh` checks them
/// against model-sim).
fn gie_dashboard() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("dashboards/gie-v1.5.0-queries.txt"))
        .expect("GIE queries");
    let all: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.replace("$__rate_interval", "1m"))
        .collect();
    assert_eq!(
        all.len(),
        31,
        "GIE v1.5.0's dashboard has 31 such expressions"
    );
    all.into_iter().filter(|e| !e.contains("vllm:")).collect()
}

/// The flow-control expressions of GIE v1.5.0's dashboard
/// (`dashboards/gie-v1.5.0-flow-control-queries.txt`), with Grafana's intervals filled in.
fn gie_flow_control_dashboard() -> Vec<String> {
    let text =
        std::fs::read_to_string(repo().join("dashboards/gie-v1.5.0-flow-control-queries.txt"))
            .expect("GIE flow-control queries");
    let all: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
        })
        .collect();
    assert_eq!(
        all.len(),
        15,
        "GIE v1.5.0's dashboard has 15 flow-control expressions"
    );
    all
}

/// Beyond the dashboard: the metrics issue 14 names, and flow control's series under GIE's and
/// llm-d's names (flow control is on in the test, and every request passes it).
const MORE: &[&str] = &[
    "inference_extension_scheduler_e2e_duration_seconds_bucket",
    "inference_extension_plugin_duration_seconds_bucket{extension_point=\"Scorer\"}",
    "inference_pool_ready_pods",
    "inference_extension_info",
    "llm_d_epp_flow_control_requests_total{outcome=\"Dispatched\"}",
    "llm_d_epp_flow_control_pool_saturation{stage=\"effective\"}",
    "llm_d_epp_flow_control_capacity_utilization_requests",
    "llm_d_epp_flow_control_request_queue_duration_seconds_count",
    "inference_extension_scheduler_attempts_total{status=\"success\",namespace=\"\",port!=\"\"}",
    "inference_pool_average_running_requests",
    "inference_objective_running_requests",
    "inference_extension_prefix_indexer_hit_bytes_sum",
    // llm-d-router's own names: exported (TTFT, streaming TPOT) or through the recording rules.
    "llm_d_epp_request_ttft_seconds_bucket{streaming=\"false\"}",
    "llm_d_epp_request_ttft_seconds_bucket{streaming=\"true\"}",
    "llm_d_epp_request_streaming_tpot_seconds_count",
    "llm_d_epp_request_streaming_itl_seconds_count",
    "llm_d_epp_request_processing_duration_seconds_count",
    "llm_d_epp_response_processing_duration_seconds_count",
    "llm_d_epp_request_total",
    "llm_d_epp_request_duration_seconds_count",
    "llm_d_epp_request_input_tokens_sum",
    "llm_d_epp_scheduler_attempts_total{endpoint_name!=\"\"}",
    "llm_d_epp_ready_endpoints",
    "llm_d_epp_average_queue_size",
    "llm_d_epp_std_dev_queue_size",
    "llm_d_epp_std_dev_kv_cache_utilization",
];

fn tool(env_var: &str, name: &str) -> PathBuf {
    std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Prometheus scraping `admin_port` every second with the committed scrape settings.
    fn start(admin_port: u16) -> Prometheus {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("e2e-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let dashboards = repo().join("dashboards");
        // The committed configuration, pointed at this Envoy and sped up for a test.
        let committed =
            std::fs::read_to_string(dashboards.join("prometheus-scrape.yaml")).expect("scrape");
        let config = committed
            .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin_port}"))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace(
                "- recording-rules.yaml",
                &format!("- {}", dashboards.join("recording-rules.yaml").display()),
            )
            .replace(
                "- alerts.yaml",
                &format!("- {}", dashboards.join("alerts.yaml").display()),
            );
        assert_ne!(config, committed);
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config).expect("write config");
        let child = Command::new(tool("PROMETHEUS_BIN", "prometheus"))
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (make prometheus installs Debian's package)");
        let p = Prometheus { child, port, dir };
        let start = Instant::now();
        while p.get("/-/ready").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn get(&self, path: &str) -> Option<String> {
        ureq::get(&format!("http://127.0.0.1:{}{path}", self.port))
            .call()
            .ok()?
            .into_string()
            .ok()
    }

    /// The value of the first series an instant query returns.
    fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr)
            .first()
            .and_then(|s| s["value"][1].as_str()?.parse().ok())
    }

    /// The series an instant query returns.
    fn query(&self, expr: &str) -> Vec<Value> {
        let r = ureq::get(&format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query("query", expr)
            .call();
        let body: Value = match r {
            Ok(r) => r
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null),
            Err(e) => panic!("query {expr}: {e}"),
        };
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("dashboards/endpoint-picker.json"))
        .expect("our dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| {
            t["expr"]
                .as_str()
                .map(|e| e.replace("$__rate_interval", "1m"))
        })
        .collect()
}

#[test]
fn rule_files_pass_promtool() {
    let dashboards = repo().join("dashboards");
    let out = Command::new(tool("PROMTOOL_BIN", "promtool"))
        .arg("check")
        .arg("rules")
        .arg(dashboards.join("recording-rules.yaml"))
        .arg(dashboards.join("alerts.yaml"))
        .output()
        .expect("promtool (make prometheus installs Debian's package)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gie_and_our_dashboard_queries_return_series_from_a_real_prometheus() {
    let env = Env::start(EnvSpec {
        picker: serde_json::json!({"featureGates": ["flowControl"]}),
        ..EnvSpec::default()
    });
    // The servers report cached prompt tokens, as vLLM does with
    // `--enable-prompt-tokens-details` (the prefix-cache panel reads them).
    for b in &env.backends {
        b.set(serde_json::json!({"cached_tokens": 8}));
    }
    env.settle();
    let prom = Prometheus::start(env.admin_port);

    // Traffic: routed chat and completion requests (JSON and streamed, with usage), and bad
    // bodies answered by the picker (400). Spread over several scrapes so rates exist.
    // One shared system prompt, long enough for whole prefix blocks (the prefix-indexer hit
    // ratio has an observation only for a prompt of at least one block).
    let system = "You are a helpful assistant for the billing team. ".repeat(8);
    let send_round = |i: u32| {
        let r = env.complete(
            MODEL,
            &format!("{system}Question {i}: what is my balance?"),
            &[],
        );
        assert_eq!(r.status, 200, "{r:?}");
        // Streamed (SSE with a usage event), its events 5 ms apart: llm-d's streaming TTFT,
        // TPOT and inter-token latency.
        let streamed = serde_json::json!({
            "model": MODEL, "prompt": format!("{system}Story {i}"), "stream": true, "max_tokens": 3
        });
        let r = env.post(
            "/v1/completions",
            &streamed.to_string(),
            &[("x-fake-stream-gap-ms", "5")],
        );
        assert!(r.status == 200 && r.body.contains("[DONE]"), "{r:?}");
        let bad = env.post(
            "/v1/completions",
            "{not json",
            &[("content-type", "application/json")],
        );
        assert_eq!(bad.status, 400);
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut i = 0;
    while Instant::now() < deadline {
        send_round(i);
        i += 1;
        std::thread::sleep(Duration::from_millis(150));
    }

    let mut expressions = gie_dashboard();
    assert_eq!(expressions.len(), 20);
    expressions.extend(dashboard_expressions());
    expressions.extend(gie_flow_control_dashboard());
    expressions.extend(MORE.iter().map(|e| e.to_string()));
    // Wait for the flushes (≤ 1 s), two scrapes and a rule evaluation to land. Traffic goes on
    // meanwhile: a series a recording rule derives is born at a rule evaluation, and a rate over
    // it needs growth after that (the rules run every 5 s; the first burst may end before).
    let start = Instant::now();
    let mut missing: Vec<&String>;
    loop {
        missing = expressions
            .iter()
            .filter(|e| prom.query(e).is_empty())
            .collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(45) {
            break;
        }
        send_round(i);
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(missing.is_empty(), "no series for: {missing:#?}");

    // The values are the traffic's: every routed request counted under its model, and every
    // bad body under BadRequest. The last requests land within a flush (≤ 1 s) and a scrape.
    let total_expr = format!("sum(inference_objective_request_total{{model_name=\"{MODEL}\"}})");
    let errors_expr = "sum(inference_objective_request_error_total{error_code=\"BadRequest\"})";
    // Each round sent two routed requests (one streamed) and one bad body.
    let (routed, bad) = (f64::from(2 * i), f64::from(i));
    let counted = |e: &str| prom.value(e).unwrap_or(0.0);
    let start = Instant::now();
    while (counted(&total_expr) < routed || counted(errors_expr) < bad)
        && start.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    let (total, errors) = (counted(&total_expr), counted(errors_expr));
    assert_eq!(total, routed, "{total} of {routed} routed requests counted");
    assert_eq!(errors, bad, "{errors} of {bad} bad requests counted");
    // llm-d's name for the same counter, through the recording rules (evaluated every 5 s).
    let llm_d_total = format!("sum(llm_d_epp_request_total{{model_name=\"{MODEL}\"}})");
    while counted(&llm_d_total) < routed && start.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(counted(&llm_d_total), routed, "llm_d_epp_request_total");
    // Half the routed requests were streamed, each with a first byte and 3 tokens 5 ms apart.
    let streamed_ttft = "sum(llm_d_epp_request_ttft_seconds_count{streaming=\"true\"})";
    assert_eq!(counted(streamed_ttft), bad, "{streamed_ttft}");
    // Scheduling time is in seconds: the p99 of an in-proxy decision is well under 100 ms.
    let p99 = prom
        .value("histogram_quantile(0.99, sum by (le) (rate(inference_extension_scheduler_e2e_duration_seconds_bucket[1m])))")
        .unwrap_or(f64::NAN);
    assert!(p99 > 0.0 && p99 < 0.1, "scheduling p99 {p99} s");
    // The shared system prompt is held after the first request, so the typical request finds
    // most of its prompt at the endpoint it goes to, and the index holds blocks.
    let hit_p50 = prom
        .value("histogram_quantile(0.5, sum by (le) (rate(inference_extension_prefix_indexer_hit_ratio_bucket[1m])))")
        .unwrap_or(f64::NAN);
    assert!(
        hit_p50 > 0.5 && hit_p50 <= 1.0,
        "prefix hit ratio p50 {hit_p50}"
    );
    let blocks = prom
        .value("sum(inference_extension_prefix_indexer_size)")
        .unwrap_or(0.0);
    assert!(blocks >= 6.0, "prefix index blocks {blocks}");

    // Every rule group loaded and evaluates.
    let rules: Value =
        serde_json::from_str(&prom.get("/api/v1/rules").expect("rules")).expect("rules JSON");
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The alerts, the rules giving GIE's names, llm-d's flow-control names, GIE's flow-control
    // names, and llm-d's request, scheduler and pool names.
    assert_eq!(groups.len(), 5, "{rules}");
    for g in &groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
}
