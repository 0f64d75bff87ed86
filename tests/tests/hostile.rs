//! Hostile input through real Envoy: each case gets its expected status, no Wasm VM fails or
//! reloads, and the picker keeps serving normal requests with consistent counters afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::{Env, EnvSpec, Resp};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn raw_send(env: &Env, bytes: &[u8], then_close: bool) {
    let mut s = TcpStream::connect(env.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let _ = s.write_all(bytes);
    if then_close {
        drop(s);
    } else {
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
}

fn assert_vms_healthy(env: &Env) {
    for stat in [
        "endpoint-picker.vm_reload_success",
        "endpoint-picker.vm_reload_failure",
        "metrics-scraper.vm_reload_success",
    ] {
        assert_eq!(
            env.stat(&format!("wasm.{stat}")).unwrap_or(0),
            0,
            "{stat}: a VM failed and was reloaded"
        );
    }
    let log = env.log();
    assert!(!log.contains("panicked at"), "a panic reached Envoy's log");
    assert!(
        !log.contains("wasm_fail_stream"),
        "a stream failed because of the VM"
    );
    let ok = env.complete(MODEL, "still alive?", &[]);
    assert_eq!(ok.status, 200, "normal requests still work: {ok:?}");
}

#[test]
fn hostile_bodies_get_their_status_and_never_fail_a_vm() {
    let env = Env::start(EnvSpec {
        pool: json!({"bodyLimitBytes": 1_048_576}),
        ..EnvSpec::default()
    });
    let before = env.stat_sum("endpoint_picker.picks.");

    // Thousands of nesting levels. In a field the picker does not read, serde_json skips the
    // value without recursion: valid JSON, forwarded (200). Where the picker reads it (model), a
    // 400. Neither can overflow the VM's stack.
    let (open, close) = ("[".repeat(5000), "]".repeat(5000));
    let deep = format!(r#"{{"model":"m","prompt":"x","extra":{open}{close}}}"#);
    assert_eq!(env.post("/v1/completions", &deep, &[]).status, 200);
    let deep_model = format!(r#"{{"model":{open}{close},"prompt":"x"}}"#);
    assert_eq!(env.post("/v1/completions", &deep_model, &[]).status, 400);

    // Not UTF-8 inside a JSON string.
    let bad: &[u8] = b"{\"model\":\"m\xff\xfe\",\"prompt\":\"x\"}";
    let r = match ureq::post(&format!("http://{}/v1/completions", env.listen)).send_bytes(bad) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r, 400);

    // A model with CR/LF (escaped in JSON) is data, never a header.
    let crlf = json!({"model": "m\r\nx-injected: 1", "prompt": "x"}).to_string();
    let r: Resp = env.post("/v1/completions", &crlf, &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("x-injected").is_none());
    // A very long model name.
    let long = json!({"model": "m".repeat(500_000), "prompt": "x"}).to_string();
    assert_eq!(env.post("/v1/completions", &long, &[]).status, 200);

    // Bodies over the limit: declared (413 at the headers) and chunked (413 once it grows).
    let huge = json!({"model": MODEL, "prompt": "x".repeat(3 << 20)}).to_string();
    assert_eq!(env.post("/v1/completions", &huge, &[]).status, 413);
    let chunk = "y".repeat(64 << 10);
    let mut chunked = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let start = "{\"model\":\"m\",\"prompt\":\"";
    chunked.extend_from_slice(format!("{:x}\r\n{start}\r\n", start.len()).as_bytes());
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    let r = env.raw(&chunked);
    assert_eq!(r.status, 413, "{:?}", r.headers);

    // Chunked body that ends early, and a client that leaves mid-body: the stream is reset.
    raw_send(&env, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"model\":\"m\",\"p", true);
    raw_send(&env, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"model\":\"m\",", true);

    // A client that leaves mid-stream.
    env.backends
        .iter()
        .for_each(|b| b.set(json!({"delay_ms": 200})));
    let body = json!({"model": MODEL, "prompt": "stream", "stream": true}).to_string();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(env.listen).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut first = [0u8; 64];
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    assert!(s.read(&mut first).unwrap_or(0) > 0, "the stream started");
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    env.backends.iter().for_each(|b| b.set(json!({})));

    assert_vms_healthy(&env);
    env.settle_stats();
    let picks = env.stat_sum("endpoint_picker.picks.") - before;
    let replies: u64 = [400, 413]
        .iter()
        .map(|s| {
            env.stat(&format!("endpoint_picker.local_replies.{s}"))
                .unwrap_or(0)
        })
        .sum();
    // Routed: deep `extra`, CR/LF model, long model, the mid-stream request, the final check.
    // Not routed: the two bodies the clients abandoned. Replies: 2 × 400 and 2 × 413.
    assert_eq!(picks, 5, "every decided request counted once");
    assert_eq!(replies, 4, "each rejected request counted once");
}
