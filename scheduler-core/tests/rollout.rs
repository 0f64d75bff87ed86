//! `disaggregatedset-rollout-screener` through the real director: revision coverage and
//! weights (the 2P:10D rollout step of llm-d's README), one revision for every profile of a
//! request, strict headers, fail-closed 503, and the response-header stamp.

use scheduler_core::model::endpoint::Endpoint;
use scheduler_core::model::response::ResponseInfo;
use scheduler_core::plugin::RequestState;
use scheduler_core::rng::SplitMix64;
use scheduler_core::{load, EndpointPicker, Registry, RequestError};

const REV: &str = "disaggregatedset.x-k8s.io/revision";
const ROLE: &str = "disaggregatedset.x-k8s.io/role";

fn ep(i: usize, rev: &str, role: &str) -> Endpoint {
    Endpoint::new(format!(
        "10.0.{}.{}:8000",
        if rev == "A" { 1 } else { 2 },
        i
    ))
    .with_label("disaggregatedset.x-k8s.io/name", "my-set")
    .with_label(REV, rev)
    .with_label(ROLE, role)
    .with_label("llm-d.ai/role", role)
    .with_label(
        "disaggregatedset.x-k8s.io/slice",
        if i % 2 == 0 { "s0" } else { "s1" },
    )
}

/// Old revision A: 2 prefill, 9 decode; new revision B: 1 prefill, 1 decode.
fn fleet() -> Vec<Endpoint> {
    let mut eps = vec![];
    for i in 0..2 {
        eps.push(ep(i, "A", "prefill"));
    }
    for i in 2..11 {
        eps.push(ep(i, "A", "decode"));
    }
    eps.push(ep(11, "B", "prefill"));
    eps.push(ep(12, "B", "decode"));
    eps
}

fn picker(mode: &str) -> EndpointPicker {
    let cfg = format!(
        r#"{{"plugins": [
            {{"type": "disaggregatedset-rollout-screener", "name": "rollout", "parameters": {{
              "scope": {{"labelSelector": "disaggregatedset.x-k8s.io/name=my-set"}},
              "headerSelectors": [
                {{"name": "revision", "headerName": "X-Disagg-Revision", "labelKey": "{REV}", "mode": "strict"}},
                {{"name": "slice", "headerName": "x-disagg-slice", "labelKey": "disaggregatedset.x-k8s.io/slice", "mode": "prefer"}}],
              "revisionGating": {{"mode": "{mode}", "requireRoles": {{"values": ["prefill", "decode"]}}}}}}}},
            {{"type": "prefill-filter"}}, {{"type": "decode-filter"}},
            {{"type": "random-picker"}},
            {{"type": "always-disagg-pd-decider"}},
            {{"type": "disagg-profile-handler", "parameters": {{"deciders": {{"prefill": "always-disagg-pd-decider"}}}}}}],
          "schedulingProfiles": [
            {{"name": "prefill", "plugins": [{{"pluginRef": "prefill-filter"}}, {{"pluginRef": "random-picker"}}]}},
            {{"name": "decode", "plugins": [{{"pluginRef": "decode-filter"}}, {{"pluginRef": "random-picker"}}]}}]}}"#
    );
    load(&cfg, &Registry::with_builtins())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// What one scheduled request gives: the decode address, the prefill header, the stamped
/// response headers.
type Run = (String, Option<String>, Vec<(String, String)>);

/// Schedules one request.
fn run(
    p: &EndpointPicker,
    eps: &[Endpoint],
    headers: &[(&str, &str)],
    seed: u64,
) -> Result<Run, RequestError> {
    let body = r#"{"model":"m","prompt":"hello there"}"#;
    let hs = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    let req = p
        .parse_request("/v1/completions", body.as_bytes(), hs)
        .unwrap();
    let mut state = RequestState::new();
    let r = p.schedule(&req, eps, 1, &mut SplitMix64::new(seed), &mut state)?;
    let decode = p.destination(&r, eps);
    let prefill = r
        .headers
        .iter()
        .find(|(k, _)| k == "x-prefiller-host-port")
        .map(|(_, v)| v.clone());
    let mut out = vec![];
    let info = ResponseInfo {
        status: 200,
        served_endpoint: Some(&decode),
        now_ms: 2,
    };
    p.response_headers(&mut state, &info, &mut out);
    Ok((decode, prefill, out))
}

fn revision_of<'a>(eps: &'a [Endpoint], addr: &str) -> &'a str {
    eps.iter()
        .find(|e| e.address == addr)
        .and_then(|e| e.label(REV))
        .unwrap()
}

#[test]
fn shares_follow_the_dominant_role_or_the_sum() {
    for (mode, want_b) in [("max-role", 0.10), ("sum", 2.0 / 13.0)] {
        let p = picker(mode);
        let eps = fleet();
        let n = 4000;
        let mut b = 0;
        for seed in 0..n {
            let (decode, prefill, stamped) = run(&p, &eps, &[], seed).unwrap();
            let rev = revision_of(&eps, &decode);
            // Prefill and decode always come from the same revision.
            let prefill = prefill.expect("always-disagg sets the prefill header");
            assert_eq!(
                revision_of(&eps, &prefill),
                rev,
                "{mode}: crossed revisions"
            );
            assert!(
                stamped.contains(&("x-disagg-revision".to_string(), rev.to_string())),
                "{stamped:?}"
            );
            if rev == "B" {
                b += 1;
            }
        }
        let share = b as f64 / n as f64;
        assert!(
            (share - want_b).abs() < 0.02,
            "{mode}: B got {share}, want {want_b}"
        );
    }
}

#[test]
fn an_incomplete_revision_gets_nothing_and_an_empty_pool_fails_closed() {
    let p = picker("max-role");
    // B loses its only prefill pod: B is not covered, every request goes to A.
    let eps: Vec<Endpoint> = fleet()
        .into_iter()
        .filter(|e| e.address != "10.0.2.11:8000")
        .collect();
    for seed in 0..200 {
        let (decode, _, _) = run(&p, &eps, &[], seed).unwrap();
        assert_eq!(revision_of(&eps, &decode), "A");
    }
    // No revision covered (only decode pods): 503, never an uncovered pair.
    let decodes: Vec<Endpoint> = fleet()
        .into_iter()
        .filter(|e| e.label(ROLE) == Some("decode"))
        .collect();
    assert_eq!(
        run(&p, &decodes, &[], 1).unwrap_err(),
        RequestError::NoCandidates
    );
}

#[test]
fn a_strict_header_pins_the_revision_and_fails_closed_when_nothing_matches() {
    let p = picker("max-role");
    let eps = fleet();
    for seed in 0..200 {
        let (decode, prefill, _) = run(&p, &eps, &[("x-disagg-revision", "B")], seed).unwrap();
        assert_eq!(revision_of(&eps, &decode), "B");
        assert_eq!(revision_of(&eps, &prefill.unwrap()), "B");
    }
    assert_eq!(
        run(&p, &eps, &[("x-disagg-revision", "C")], 1).unwrap_err(),
        RequestError::NoCandidates
    );
    // `prefer` selectors do not screen: a slice header alone changes nothing here, but the
    // slice of the serving endpoint is stamped.
    let (decode, _, stamped) = run(&p, &eps, &[("x-disagg-slice", "s0")], 3).unwrap();
    let slice = eps
        .iter()
        .find(|e| e.address == decode)
        .and_then(|e| e.label("disaggregatedset.x-k8s.io/slice"))
        .unwrap();
    assert!(
        stamped.contains(&("x-disagg-slice".to_string(), slice.to_string())),
        "{stamped:?}"
    );
}

#[test]
fn bad_parameters_name_the_field() {
    let err = |params: &str| {
        load(
            &format!(r#"{{"plugins": [{{"type": "disaggregatedset-rollout-screener", "parameters": {params}}}]}}"#),
            &Registry::with_builtins(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert!(
        err(r#"{"revisionGating": {"mode": "sum", "requireRoles": {"values": ["decode"]}}}"#)
            .contains("scope.labelSelector")
    );
    assert!(err(r#"{"scope": {"labelSelector": "a in b"}, "revisionGating": {"mode": "sum", "requireRoles": {"values": ["decode"]}}}"#).contains("scope.labelSelector"));
    assert!(err(r#"{"scope": {"labelSelector": "a=b"}}"#).contains("revisionGating"));
    assert!(
        err(r#"{"scope": {"labelSelector": "a=b"}, "revisionGating": {"mode": "sum"}}"#)
            .contains("requireRoles")
    );
    assert!(
        err(r#"{"scope": {"labelSelector": "a=b"}, "revisionGating": {"mode": "half"}}"#)
            .contains("mode")
    );
    assert!(err(r#"{"scope": {"labelSelector": "a=b"}, "revisionGating": {"mode": "disabled"}, "headerSelectors": [{"name": "r", "headerName": "h", "labelKey": "k", "mode": "hard"}]}"#).contains("headerSelectors[0].mode"));
}
