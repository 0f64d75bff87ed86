//! `p2p-source-producer` through the real loader and director, over the approximate prefix
//! index: the KV-source header names an endpoint that holds the prompt's prefix when the
//! scheduler sends the request elsewhere, and nothing when the computing endpoint holds as much.

use scheduler_core::model::endpoint::{Endpoint, EndpointMetrics};
use scheduler_core::plugin::RequestState;
use scheduler_core::rng::SplitMix64;
use scheduler_core::{load, EndpointPicker, Registry};

const HEADER: &str = "x-kv-cache-source-host-port";

/// Three endpoints with these waiting-queue lengths.
fn fleet(waiting: [u32; 3]) -> Vec<Endpoint> {
    waiting
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            Endpoint::new(format!("10.0.0.{i}:8000")).with_metrics(EndpointMetrics {
                waiting_queue_size: w,
                update_time_ms: 1,
                ..Default::default()
            })
        })
        .collect()
}

/// Placement by queue only, so a request can be computed away from its cached prefix.
fn picker(params: &str) -> EndpointPicker {
    let cfg = format!(
        r#"{{"plugins": [
            {{"type": "approx-prefix-cache-producer", "parameters": {{"blockSizeTokens": 4}}}},
            {{"type": "p2p-source-producer", "parameters": {params}}},
            {{"type": "queue-scorer"}}, {{"type": "max-score-picker"}}],
          "schedulingProfiles": [{{"name": "default", "plugins": [
            {{"pluginRef": "queue-scorer"}}, {{"pluginRef": "max-score-picker"}}]}}]}}"#
    );
    load(&cfg, &Registry::with_builtins())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// Sends one completion of `prompt`; (destination, the header's value if set).
fn send(
    p: &EndpointPicker,
    eps: &[Endpoint],
    prompt: &str,
    headers: &[(&str, &str)],
) -> (String, Option<String>) {
    let body = format!(r#"{{"model":"m","prompt":"{prompt}"}}"#);
    let hs = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    let req = p
        .parse_request("/v1/completions", body.as_bytes(), hs)
        .unwrap();
    let mut state = RequestState::new();
    let r = p
        .schedule(&req, eps, 1, &mut SplitMix64::new(1), &mut state)
        .unwrap();
    let header = r
        .headers
        .iter()
        .find(|(k, _)| k == HEADER)
        .map(|(_, v)| v.clone());
    (p.destination(&r, eps), header)
}

const LONG: &str =
    "You are a helpful assistant for the billing team. Answer briefly and cite the invoice number.";

#[test]
fn the_holder_is_named_when_the_request_is_computed_elsewhere() {
    let p = picker("{}");
    // First request: the idle endpoint 0 computes it and now holds the prefix.
    let (first, h) = send(&p, &fleet([0, 5, 5]), LONG, &[]);
    assert_eq!(first, "10.0.0.0:8000");
    assert_eq!(h, None, "nobody held it: no header");
    // Endpoint 0 is busy now; endpoint 1 computes the same prompt and can pull from 0.
    let (second, h) = send(&p, &fleet([9, 0, 5]), LONG, &[("x-request-id", "r2")]);
    assert_eq!(second, "10.0.0.1:8000");
    assert_eq!(h.as_deref(), Some("10.0.0.0:8000"));
    // A prompt nobody holds: no header; a client's own value is removed (empty value).
    let other = "Completely different words that share no block with the billing prompt at all.";
    assert_eq!(send(&p, &fleet([9, 0, 5]), other, &[]).1, None);
    let (_, h) = send(
        &p,
        &fleet([9, 0, 5]),
        "Yet another fresh prompt, nothing cached",
        &[(HEADER, "10.9.9.9:1")],
    );
    assert_eq!(h.as_deref(), Some(""));
}

#[test]
fn no_header_when_the_computing_endpoint_holds_as_much_or_the_gain_is_small() {
    let p = picker("{}");
    send(&p, &fleet([0, 5, 5]), LONG, &[]);
    // Endpoint 0 computes it again: it is its own best source.
    let (dest, h) = send(&p, &fleet([0, 5, 5]), LONG, &[]);
    assert_eq!((dest.as_str(), h), ("10.0.0.0:8000", None));
    // A gain below minCachedTokenDelta tokens is not worth a pull.
    let p = picker(r#"{"minCachedTokenDelta": 100000}"#);
    send(&p, &fleet([0, 5, 5]), LONG, &[]);
    assert_eq!(send(&p, &fleet([9, 0, 5]), LONG, &[]).1, None);
}

#[test]
fn sources_within_the_band_share_the_pulls_by_queue_length() {
    // Endpoints 0 and 1 both hold the prompt (each computed it once), endpoint 2 computes it
    // next. Weights 1/(1+queue): endpoint 0 (queue 1) 0.5, endpoint 1 (queue 4) 0.2, so 0 is
    // named 5/7 of the time; the request id fixes the choice per request.
    let mut named = [0u32; 2];
    for i in 0..600 {
        let p = picker("{}");
        send(&p, &fleet([0, 5, 5]), LONG, &[]);
        send(&p, &fleet([5, 0, 5]), LONG, &[]);
        let id = format!("req-{i}");
        let (dest, h) = send(&p, &fleet([1, 4, 0]), LONG, &[("x-request-id", &id)]);
        assert_eq!(dest, "10.0.0.2:8000");
        match h.as_deref() {
            Some("10.0.0.0:8000") => named[0] += 1,
            Some("10.0.0.1:8000") => named[1] += 1,
            other => panic!("{other:?}"),
        }
    }
    let share = f64::from(named[0]) / f64::from(named[0] + named[1]);
    assert!((0.65..0.78).contains(&share), "{named:?}");
}

#[test]
fn bad_parameters_are_errors() {
    let cfg = r#"{"plugins": [{"type": "p2p-source-producer", "parameters": {"minCachedTokenDelta": 0}}]}"#;
    assert!(load(cfg, &Registry::with_builtins()).is_err());
}
