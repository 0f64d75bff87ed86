//! A client can never choose the destination: forged `x-gateway-destination-endpoint` (single,
//! list, with spaces, duplicated) and forged `x-prefiller-host-port`, `x-encoder-hosts-ports` and
//! `x-kv-cache-source-host-port` never reach the host they name (nor the model server, which would
//! call it), whether that host is a busy pool member or outside the pool, with a body or
//! without.

use e2e::{Backend, Env, EnvSpec};
use serde_json::json;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

#[test]
fn forged_destination_headers_never_steer_the_request() {
    let env = Env::start(EnvSpec::default());
    // pod-a idle; pod-b and pod-c busy: the picker always wants pod-a.
    env.backends[0].set(json!({"waiting": 0, "kv": 0.1}));
    env.backends[1].set(json!({"waiting": 20, "kv": 0.9}));
    env.backends[2].set(json!({"waiting": 20, "kv": 0.9}));
    // A server outside the pool that a forged header might try to reach.
    let outsider = Backend::spawn("outsider");
    env.settle();

    let busy = env.backends[2].addr.to_string();
    let out = outsider.addr.to_string();
    let forged: Vec<String> = vec![
        busy.clone(),
        out.clone(),
        format!("{out},{busy}"),
        format!(" {out} "),
        format!("{out}, {busy}"),
    ];
    for f in &forged {
        let r = env.complete(
            MODEL,
            "hello",
            &[
                ("x-gateway-destination-endpoint", f),
                ("x-prefiller-host-port", &out),
                ("x-encoder-hosts-ports", &out),
                ("x-kv-cache-source-host-port", &out),
            ],
        );
        assert_eq!(r.status, 200, "{f}: {r:?}");
        assert_eq!(r.pod(), "pod-a", "forged {f:?} steered the request");
        let seen = r.header("x-seen-destination").unwrap();
        assert_eq!(
            seen,
            env.backends[0].addr.to_string(),
            "only the picker's value reaches the server"
        );
        for seen in ["x-seen-prefiller", "x-seen-encoders", "x-seen-kv-source"] {
            assert_eq!(r.header(seen), Some(""), "{seen}: forged header stripped");
        }
    }

    // The header twice, on a raw connection (clients can send duplicates).
    let body = json!({"model": MODEL, "prompt": "dup"}).to_string();
    let raw = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         x-gateway-destination-endpoint: {out}\r\nx-gateway-destination-endpoint: {busy}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = env.raw(raw.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-inference-pod"), Some("pod-a"));

    // A request without a body cannot steer either, and its forged headers do not reach the
    // server.
    let raw = format!(
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nx-gateway-destination-endpoint: {out}\r\n\
         x-prefiller-host-port: {out}\r\nx-encoder-hosts-ports: {out}\r\n\
         x-kv-cache-source-host-port: {out}\r\nConnection: close\r\n\r\n"
    );
    let r = env.raw(raw.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(r.header("x-inference-pod"), Some("outsider"));
    assert_ne!(r.header("x-seen-destination"), Some(out.as_str()), "{r:?}");
    for seen in ["x-seen-prefiller", "x-seen-encoders", "x-seen-kv-source"] {
        assert_eq!(r.header(seen), Some(""), "{seen}: {r:?}");
    }
}
