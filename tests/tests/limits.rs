//! Downstream limits of the rendered configuration (issue 17): only inference API paths reach
//! the model servers, and clients that upload slowly or stall mid-body are cut off by the request
//! timeout while Envoy's memory stays bounded by the overload manager.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Env, EnvSpec, StartOptions};
use envoy_config::limits::Limits;
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

#[test]
fn only_inference_paths_reach_the_model_servers() {
    let env = Env::start(EnvSpec::default());
    for path in [
        "/metrics",
        "/health",
        "/sleep",
        "/reset_prefix_cache",
        "/admin/state",
    ] {
        let r = env.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"]["code"], "path_not_found", "{path}");
        assert_eq!(r.pod(), "", "{path} must not reach a model server");
    }
    let r = env.post("/v1/load_lora_adapter", r#"{"lora_name":"x"}"#, &[]);
    assert_eq!(r.status, 404);
    assert_eq!(env.get("/v1/models").status, 200);
    assert_eq!(
        env.get("/v1/models?limit=1").status,
        200,
        "query strings match"
    );
    assert_eq!(env.complete(MODEL, "hello", &[]).status, 200);
}

/// Resident memory of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Sends headers declaring `declared` body bytes, then `send` bytes (in `chunk`-byte writes every
/// `every`), then waits; returns how long until Envoy closed the connection (`None`: still open
/// after `give_up`).
fn upload(
    addr: std::net::SocketAddr,
    declared: usize,
    send: usize,
    chunk: usize,
    every: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(50))).ok();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).ok()?;
    let data = vec![b' '; chunk];
    let mut sent = 0;
    let mut buf = [0u8; 4096];
    while start.elapsed() < give_up {
        if sent < send {
            let n = chunk.min(send - sent);
            if s.write_all(&data[..n]).is_err() {
                return Some(start.elapsed());
            }
            sent += n;
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {
                // A response (408, 413, 503): the stream is over; wait for the close.
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
        if sent < send || !every.is_zero() {
            std::thread::sleep(every);
        }
    }
    None
}

#[test]
fn slow_and_stalled_uploads_are_cut_off_and_memory_stays_bounded() {
    let limits = Limits {
        request_headers_timeout_s: 2,
        request_timeout_s: 3,
        max_heap_bytes: 256 << 20,
        ..Limits::default()
    };
    // Each of the 2 workers may hold 32 MiB of incomplete request bodies.
    let (backends, picker) = e2e::three_backends(json!({"maxBufferedBodyBytes": 32 << 20}));
    let mut env = Env::start_with(
        backends,
        picker,
        StartOptions {
            limits,
            ..StartOptions::default()
        },
    )
    .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"));
    let pid = env.envoy_pid().expect("envoy runs");
    let rss_idle = rss_bytes(pid);
    let addr = env.listen;
    let give_up = Duration::from_secs(15);
    let closed = Arc::new(AtomicU32::new(0));
    let slowest = Arc::new(AtomicU32::new(0));
    let mut clients = Vec::new();
    // 150 clients that send 4,000,000 of a declared 4,001,000 bytes and go idle ...
    for _ in 0..150 {
        let (closed, slowest) = (closed.clone(), slowest.clone());
        clients.push(std::thread::spawn(move || {
            let t = upload(
                addr,
                4_001_000,
                4_000_000,
                256 << 10,
                Duration::ZERO,
                give_up,
            );
            if let Some(t) = t {
                closed.fetch_add(1, Ordering::Relaxed);
                slowest.fetch_max(t.as_millis() as u32, Ordering::Relaxed);
            }
        }));
    }
    // ... and 300 that send one byte every 100 ms.
    for _ in 0..300 {
        let (closed, slowest) = (closed.clone(), slowest.clone());
        clients.push(std::thread::spawn(move || {
            let t = upload(addr, 1000, 1000, 1, Duration::from_millis(100), give_up);
            if let Some(t) = t {
                closed.fetch_add(1, Ordering::Relaxed);
                slowest.fetch_max(t.as_millis() as u32, Ordering::Relaxed);
            }
        }));
    }
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        peak = peak.max(rss_bytes(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in clients {
        let _ = c.join();
    }
    let timeouts = env
        .stat("http.inference.downstream_rq_timeout")
        .unwrap_or(0);
    env.settle_stats();
    let refused = env.stat("endpoint_picker.local_replies.503").unwrap_or(0);
    let closed = closed.load(Ordering::Relaxed);
    let slowest = slowest.load(Ordering::Relaxed);
    println!(
        "450 hostile uploads: {closed} cut off ({timeouts} by the request timeout, {refused} refused by the body-buffer budget), the last after {slowest} ms (request timeout 3 s); Envoy RSS idle {} MiB, peak {} MiB (budget 2 workers x 32 MiB)",
        rss_idle >> 20,
        peak >> 20
    );
    assert_eq!(closed, 450, "every hostile upload is cut off");
    assert!(
        u64::from(slowest) < 6_000,
        "cut off within the request timeout plus slack ({slowest} ms)"
    );
    assert!(refused > 0, "the budget refused uploads beyond it");
    assert!(
        peak < rss_idle + (192 << 20),
        "memory bounded: peak RSS {} MiB over an idle {} MiB",
        peak >> 20,
        rss_idle >> 20
    );
    // Healthy clients are served afterwards.
    let ok = (0..6)
        .filter(|i| env.complete(MODEL, &format!("after {i}"), &[]).status == 200)
        .count();
    assert_eq!(ok, 6);
    let log = env.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// The approximate prefix index inside Envoy stays within `maxIndexBlocks` when the servers'
/// metrics say their caches are enormous (`num_gpu_blocks` 50 million, which `autoTune` takes as
/// each endpoint's capacity) and every prompt is new: the gauge of the blocks it holds fills to
/// the limit and stops there. One worker, so one index in either build.
#[test]
fn the_prefix_index_stays_within_its_limit_when_servers_report_huge_caches() {
    let limit = 500;
    let env = Env::start(EnvSpec {
        concurrency: 1,
        picker: json!({
            "plugins": [
                {"type": "prefix-cache-scorer", "parameters": {"maxIndexBlocks": limit}},
                {"type": "max-score-picker"}
            ],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "max-score-picker"}
            ]}]
        }),
        ..EnvSpec::default()
    });
    for b in &env.backends {
        b.set(json!({"num_gpu_blocks": 50_000_000u64}));
    }
    env.settle();
    // 40 prompts of ~4 KiB, none like another: ~64 blocks of 16 tokens each, ~2,500 records.
    for i in 0..40u64 {
        let prompt: String = (0..240)
            .map(|k| {
                format!(
                    "{:016x} ",
                    (i << 32 | k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                )
            })
            .collect();
        let r = env.complete(MODEL, &prompt, &[]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    // The gauge is set on the module's periodic flush: wait for it to show the fill.
    let held = |e: &Env| {
        e.stat("inference_extension_prefix_indexer_size")
            .unwrap_or(0)
    };
    env.wait_until(Duration::from_secs(10), |e| held(e) >= limit * 9 / 10);
    let blocks = held(&env);
    assert!(
        (limit * 9 / 10..=limit).contains(&blocks),
        "the index holds {blocks} blocks; its limit is {limit}"
    );
}
