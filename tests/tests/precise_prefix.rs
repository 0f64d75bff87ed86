//! The precise prefix cache in real Envoy 1.40: `model-sim` servers on their own loopback IPs
//! tokenise with a real (offline-trained) Hugging Face tokenizer and chat template and publish
//! vLLM's KV-cache events over ZMQ; the native module tokenises the same way, subscribes to
//! every endpoint's stream and routes on what the servers report, with 4 workers sharing one
//! index.
//!
//! Native build: a prefix a server stored when it was sent there directly (never through this
//! Envoy) draws the next requests with that prefix; after that server evicts it (its event says
//! so) they go elsewhere; after a server resets its prefix cache (`AllBlocksCleared`) it no
//! longer counts. Wasm build (which cannot hold sockets or tokenise): the same configuration
//! loads, warns, and serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{free_port, model_sim_bin, Backend, Env, EnvSpec};
use serde_json::{json, Value};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// The offline test tokenizer in a temporary directory, removed when the guard drops (after
/// the servers and Envoy it was given to: the tests declare it first, so it drops last).
fn tokenizer_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("e2e-precise-tokenizer-")
        .tempdir()
        .expect("temporary directory");
    prompt_tokenizer::train::write_test_tokenizer(d.path()).expect("test tokenizer");
    d
}

/// model-sim `i` on 127.0.0.`i`: 96 KV blocks of 16 tokens, events on port `kv_port`.
fn sim(i: u8, tokenizer: &PathBuf, kv_port: u16) -> Backend {
    sim_with(i, tokenizer, kv_port, &[])
}

/// [`sim`] with more model-sim arguments.
fn sim_with(i: u8, tokenizer: &PathBuf, kv_port: u16, extra: &[String]) -> Backend {
    let addr: SocketAddr = format!("127.0.0.{i}:{}", free_port()).parse().unwrap();
    sim_at(i, addr, tokenizer, kv_port, extra)
}

/// model-sim `i` listening on `addr` (as [`sim_with`]).
fn sim_at(i: u8, addr: SocketAddr, tokenizer: &PathBuf, kv_port: u16, extra: &[String]) -> Backend {
    let mut cmd = Command::new(model_sim_bin());
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--name",
        &format!("sim-{i}"),
        "--model",
        MODEL,
    ]);
    cmd.args([
        "--block-size",
        "16",
        "--num-gpu-blocks",
        "96",
        "--default-max-tokens",
        "2",
    ]);
    cmd.args(["--step-base-ms", "1", "--prefill-ms-per-token", "0.01"]);
    cmd.arg("--tokenizer").arg(tokenizer);
    cmd.args([
        "--kv-events-endpoint",
        &format!("tcp://127.0.0.{i}:{kv_port}"),
    ]);
    cmd.args(extra);
    Backend::spawn_command(&format!("sim-{i}"), addr, cmd)
}

fn picker(tokenizer: &PathBuf, kv_port: u16) -> Value {
    picker_with(tokenizer, json!({"socketPort": kv_port}))
}

/// [`picker`] with this `podDiscoveryConfig`.
fn picker_with(tokenizer: &PathBuf, discovery: Value) -> Value {
    picker_for(tokenizer, json!({"podDiscoveryConfig": discovery}))
}

/// [`picker`] with this `kvEventsConfig`.
fn picker_for(tokenizer: &PathBuf, kv_events: Value) -> Value {
    json!({
        "plugins": [
            {"type": "token-producer", "parameters": {"modelName": "test/tiny-chat", "tokenizerPath": tokenizer}},
            {"type": "precise-prefix-cache-producer", "parameters": {
                "tokenProcessorConfig": {"blockSize": 16},
                "kvEventsConfig": kv_events}},
            {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}},
            {"type": "max-score-picker"}
        ],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "prefix-cache-scorer", "weight": 10}, {"pluginRef": "max-score-picker"}]}]
    })
}

fn system_prompt() -> String {
    "You are a helpful assistant for the customer support team. Answer each question briefly and cite the policy document you used. ".repeat(8)
}

fn chat(question: &str) -> String {
    salted_chat(question, None)
}

/// The shared prefix and `question`, with `cache_salt` when `salt` is given.
fn salted_chat(question: &str, salt: Option<&str>) -> String {
    let mut body = json!({"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "system", "content": system_prompt()},
        {"role": "user", "content": question}]});
    if let Some(salt) = salt {
        body["cache_salt"] = json!(salt);
    }
    body.to_string()
}

/// Sends `body` straight to a model server (not through Envoy).
fn direct(b: &Backend, body: &str) {
    direct_to(b.addr, &b.name, body);
}

fn direct_to(addr: SocketAddr, name: &str, body: &str) {
    let r = ureq::post(&format!("http://{addr}/v1/chat/completions"))
        .set("content-type", "application/json")
        .timeout(Duration::from_secs(20))
        .send_string(body);
    assert!(r.is_ok(), "direct request to {name}: {r:?}");
}

/// `n` requests with the shared prefix through Envoy, over fresh connections from 4 threads
/// (so they land on different workers); the pods that served them.
fn through_envoy(listen: SocketAddr, n: usize, tag: &str) -> Vec<String> {
    salted_through_envoy(listen, n, tag, None)
}

/// As [`through_envoy`], every request with `cache_salt` when `salt` is given.
fn salted_through_envoy(
    listen: SocketAddr,
    n: usize,
    tag: &str,
    salt: Option<&str>,
) -> Vec<String> {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let tag = tag.to_string();
            let salt = salt.map(str::to_owned);
            std::thread::spawn(move || {
                (0..n / 4)
                    .map(|i| {
                        let agent = ureq::AgentBuilder::new().build();
                        match agent
                            .post(&format!("http://{listen}/v1/chat/completions"))
                            .set("content-type", "application/json")
                            .timeout(Duration::from_secs(20))
                            .send_string(&salted_chat(
                                &format!("{tag}: question {t}-{i}?"),
                                salt.as_deref(),
                            )) {
                            Ok(r) => r.header("x-inference-pod").unwrap_or("").to_string(),
                            Err(e) => format!("error: {e}"),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect()
}

/// Envoy with the precise profile over model-sims `ids` (`sim-<id>` on 127.0.0.`id`), all
/// publishing KV events on one port, with `concurrency` workers.
struct Precise {
    env: Env,
    tokenizer: PathBuf,
    kv_port: u16,
    /// Dropped last (fields drop in order): the servers and Envoy read it until they stop.
    _tmp: tempfile::TempDir,
}

fn precise_env(ids: std::ops::RangeInclusive<u8>, concurrency: u32) -> Precise {
    let tmp = tokenizer_dir();
    let tokenizer = tmp.path().to_path_buf();
    let kv_port = free_port();
    let backends: Vec<Backend> = ids.map(|i| sim(i, &tokenizer, kv_port)).collect();
    let env = Env::start_over(
        backends,
        EnvSpec {
            concurrency,
            picker: picker(&tokenizer, kv_port),
            ..EnvSpec::default()
        },
    );
    Precise {
        env,
        tokenizer,
        kv_port,
        _tmp: tmp,
    }
}

fn wait_stat(env: &Env, suffix: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if env.stat(suffix).unwrap_or(0) >= at_least {
            return;
        }
        // Stats are flushed by traffic and the scraper's tick.
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{suffix} stayed below {at_least}: {:?}\n{}",
        env.stat(suffix),
        env.log()
    );
}

#[test]
fn picks_follow_what_the_servers_report_in_their_kv_events() {
    let Precise { env, .. } = &precise_env(2..=4, 4);
    if !e2e::native() {
        // The proxy-wasm build has no tokenizer service: the configuration loads, says why
        // precise scoring is inactive, and every request is still served.
        let served = through_envoy(env.listen, 8, "wasm");
        assert!(served.iter().all(|p| p.starts_with("sim-")), "{served:?}");
        assert!(
            env.log().contains("cannot tokenise in the proxy"),
            "{}",
            env.log()
        );
        return;
    }
    let (sim2, sim3, sim4) = (&env.backends[0], &env.backends[1], &env.backends[2]);
    wait_stat(env, "endpoint_picker.kv_events.connections", 3);

    // sim-3 gets the prefix directly: this Envoy never routed it, yet it follows the event.
    direct(sim3, &chat("direct to sim-3"));
    wait_stat(env, "endpoint_picker.kv_events.blocks_stored", 20);
    let served = through_envoy(env.listen, 16, "after sim-3 stored it");
    assert!(
        served.iter().all(|p| p == "sim-3"),
        "all on sim-3: {served:?}"
    );

    // sim-2 stores it too; then sim-3 evicts it: three distinct prompts of ~70 blocks each
    // pass through its 96 blocks, so everything cached before them goes (LRU).
    direct(sim2, &chat("direct to sim-2"));
    let removed_before = env
        .stat("endpoint_picker.kv_events.blocks_removed")
        .unwrap_or(0);
    for i in 0..3 {
        let other = json!({"model": MODEL, "max_tokens": 2, "messages": [
            {"role": "user", "content": format!("{i} unrelated: {}", "please translate this order history to french. ".repeat(110))}]});
        direct(sim3, &other.to_string());
    }
    wait_stat(
        env,
        "endpoint_picker.kv_events.blocks_removed",
        removed_before + 60,
    );
    std::thread::sleep(Duration::from_millis(300));
    let served = through_envoy(env.listen, 16, "after sim-3 evicted it");
    assert!(
        served.iter().all(|p| p == "sim-2"),
        "all on sim-2 once sim-3 evicted the prefix: {served:?}"
    );

    // sim-2 resets its prefix cache (AllBlocksCleared) and sim-4 stores the prefix: sim-4 wins.
    let r = ureq::post(&format!("http://{}/reset_prefix_cache", sim2.addr)).call();
    assert!(r.is_ok(), "{r:?}");
    direct(sim4, &chat("direct to sim-4"));
    std::thread::sleep(Duration::from_millis(500));
    let served = through_envoy(env.listen, 16, "after sim-2 reset");
    assert!(
        served.iter().all(|p| p == "sim-4"),
        "all on sim-4: {served:?}"
    );
    assert_eq!(
        env.stat("endpoint_picker.kv_events.decode_errors")
            .unwrap_or(0),
        0
    );
    let keys = env.stat("endpoint_picker.kv_index.keys").unwrap_or(0);
    assert!(keys > 0 && keys < 1000, "index keys {keys}");
}

/// vLLM mixes a request's `cache_salt` into its first block's hash and names the salt in that
/// block's `extra_keys` (model-sim does both): the same prompt under two salts is two prefixes,
/// each followed to the server that cached it, although this Envoy routed neither.
#[test]
fn a_salted_prefix_is_followed_only_by_requests_with_the_same_salt() {
    if !e2e::native() {
        return; // the Wasm build subscribes to nothing (see the first test)
    }
    let Precise { env, .. } = &precise_env(2..=4, 4);
    let (sim2, sim3) = (&env.backends[0], &env.backends[1]);
    wait_stat(env, "endpoint_picker.kv_events.connections", 3);
    direct(sim3, &salted_chat("direct to sim-3", Some("tenant-a")));
    direct(sim2, &salted_chat("direct to sim-2", Some("tenant-b")));
    wait_stat(env, "endpoint_picker.kv_events.blocks_stored", 40);
    let a = salted_through_envoy(env.listen, 16, "tenant a", Some("tenant-a"));
    assert!(a.iter().all(|p| p == "sim-3"), "tenant-a on sim-3: {a:?}");
    let b = salted_through_envoy(env.listen, 16, "tenant b", Some("tenant-b"));
    assert!(b.iter().all(|p| p == "sim-2"), "tenant-b on sim-2: {b:?}");
    assert_eq!(
        env.stat("endpoint_picker.kv_events.decode_errors")
            .unwrap_or(0),
        0
    );
}

/// A server that goes away and comes back is a new process with an empty KV cache: once a
/// reconnect to it has failed, its blocks are dropped even though its new process has published
/// nothing yet (vLLM numbers a new process's batches from 0 again, but that is only seen when
/// one arrives).
#[test]
fn a_server_that_went_away_and_came_back_holds_nothing() {
    if !e2e::native() {
        return; // the Wasm build subscribes to nothing (see the first test)
    }
    let mut setup = precise_env(2..=3, 2);
    let (tokenizer, kv_port) = (setup.tokenizer.clone(), setup.kv_port);
    let env = &mut setup.env;
    wait_stat(env, "endpoint_picker.kv_events.connections", 2);
    direct(&env.backends[1], &chat("direct to sim-3"));
    wait_stat(env, "endpoint_picker.kv_events.blocks_stored", 20);
    let served = through_envoy(env.listen, 8, "before the restart");
    assert!(served.iter().all(|p| p == "sim-3"), "{served:?}");

    // sim-3 goes away; the subscriber's reconnects are refused for a few seconds.
    let addr = env.backends[1].addr;
    env.backends[1].kill();
    std::thread::sleep(Duration::from_secs(4));
    let _sim3 = sim_at(3, addr, &tokenizer, kv_port, &[]);
    wait_stat(env, "endpoint_picker.kv_events.publisher_restarts", 1);
    // sim-2 stores the prefix: it is the only holder now.
    direct(&env.backends[0], &chat("direct to sim-2"));
    std::thread::sleep(Duration::from_millis(500));
    let served = through_envoy(env.listen, 16, "after sim-3 came back");
    assert!(
        served.iter().all(|p| p == "sim-2"),
        "sim-3's blocks went with its process: {served:?}"
    );
}

/// vLLM's replay socket: what a server stored before this Envoy started is learnt on
/// connecting, and batches the PUB socket lost (model-sim leaves every second one unpublished)
/// are asked for when the sequence shows the gap.
#[test]
fn batches_stored_before_the_proxy_started_or_lost_on_the_way_are_replayed() {
    if !e2e::native() {
        return; // the Wasm build subscribes to nothing (see the test above)
    }
    let tmp = tokenizer_dir();
    let tokenizer = tmp.path().to_path_buf();
    let (kv_port, replay_port) = (free_port(), free_port());
    let backends: Vec<Backend> = (2..=4)
        .map(|i| {
            let extra = [
                "--kv-events-replay-endpoint".to_string(),
                format!("tcp://127.0.0.{i}:{replay_port}"),
                "--kv-events-drop-one-in".to_string(),
                "2".to_string(),
            ];
            sim_with(i, &tokenizer, kv_port, &extra)
        })
        .collect();
    // sim-3 stores the prefix before any Envoy subscribes: its batch is published to nobody.
    direct_to(backends[1].addr, "sim-3", &chat("before the proxy started"));
    let env = Env::start_over(
        backends,
        EnvSpec {
            concurrency: 4,
            picker: picker_with(
                &tokenizer,
                json!({"socketPort": kv_port, "replayPort": replay_port}),
            ),
            ..EnvSpec::default()
        },
    );
    wait_stat(&env, "endpoint_picker.kv_events.connections", 3);
    wait_stat(&env, "endpoint_picker.kv_events.replayed", 1);
    let served = through_envoy(env.listen, 16, "after the proxy started");
    assert!(
        served.iter().all(|p| p == "sim-3"),
        "learnt from sim-3's replay: {served:?}"
    );

    // sim-4 stores a longer prefix (the shared system prompt plus a long question); whichever
    // of its batches went unpublished, the next published one shows the gap and the replay
    // fills it, so requests continuing that question go to sim-4.
    let question =
        "Which of the refund rules apply to an order that was split over two shipments? ".repeat(6);
    let sim4 = &env.backends[2];
    direct(sim4, &chat(&question));
    for i in 0..4 {
        direct(
            sim4,
            &json!({"model": MODEL, "max_tokens": 2, "messages": [
            {"role": "user", "content": format!("unrelated {i}")}]})
            .to_string(),
        );
    }
    wait_stat(&env, "endpoint_picker.kv_events.gaps", 1);
    std::thread::sleep(Duration::from_millis(300));
    let served = through_envoy(env.listen, 16, &question);
    assert!(
        served.iter().all(|p| p == "sim-4"),
        "sim-4 holds the longer prefix: {served:?}"
    );
    let replayed = env.stat("endpoint_picker.kv_events.replayed").unwrap_or(0);
    assert!(replayed >= 2, "replayed {replayed}\n{}", env.log());
    assert_eq!(
        env.stat("endpoint_picker.kv_events.decode_errors")
            .unwrap_or(0),
        0
    );
}

/// SGLang publishes the same stream with its own schema (`BlockStored` ends at `medium`,
/// batches carry a data-parallel rank): with `engineType: sglang` picks follow it the same way.
#[test]
fn sglang_event_streams_are_read_with_engine_type_sglang() {
    if !e2e::native() {
        return;
    }
    let tmp = tokenizer_dir();
    let tokenizer = tmp.path().to_path_buf();
    let kv_port = free_port();
    let extra = ["--kv-events-format".to_string(), "sglang".to_string()];
    let backends: Vec<Backend> = (2..=3)
        .map(|i| sim_with(i, &tokenizer, kv_port, &extra))
        .collect();
    let env = Env::start_over(
        backends,
        EnvSpec {
            concurrency: 2,
            picker: picker_for(
                &tokenizer,
                json!({"engineType": "sglang", "podDiscoveryConfig": {"socketPort": kv_port}}),
            ),
            ..EnvSpec::default()
        },
    );
    wait_stat(&env, "endpoint_picker.kv_events.connections", 2);
    direct(&env.backends[1], &chat("direct to sim-3"));
    wait_stat(&env, "endpoint_picker.kv_events.blocks_stored", 20);
    let served = through_envoy(env.listen, 8, "sglang");
    assert!(served.iter().all(|p| p == "sim-3"), "{served:?}");
    assert_eq!(
        env.stat("endpoint_picker.kv_events.decode_errors")
            .unwrap_or(0),
        0
    );
}
