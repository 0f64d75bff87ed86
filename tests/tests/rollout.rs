//! `disaggregatedset-rollout-screener` in real Envoy: a request pinned by its strict revision
//! header reaches only that revision, an unpinned request never reaches an endpoint outside the
//! covered revisions, a revision that matches nothing is refused with 503, and the serving
//! endpoint's revision comes back in the response header.

use e2e::{Env, EnvSpec};
use serde_json::json;

const REV: &str = "disaggregatedset.x-k8s.io/revision";

fn env() -> Env {
    let set = "disaggregatedset.x-k8s.io/name";
    let role = "disaggregatedset.x-k8s.io/role";
    Env::start(EnvSpec {
        backends: vec!["rev-a".into(), "rev-b".into(), "stray".into()],
        labels: vec![
            json!({set: "my-set", REV: "A", role: "decode"}),
            json!({set: "my-set", REV: "B", role: "decode"}),
            json!({"app": "other"}),
        ],
        picker: json!({
            "plugins": [
                {"type": "disaggregatedset-rollout-screener", "parameters": {
                    "scope": {"labelSelector": format!("{set}=my-set")},
                    "headerSelectors": [{"name": "revision", "headerName": "x-disagg-revision", "labelKey": REV, "mode": "strict"}],
                    "revisionGating": {"mode": "sum", "requireRoles": {"values": ["decode"]}}}},
                {"type": "random-picker"}
            ],
            "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "random-picker"}]}]
        }),
        ..EnvSpec::default()
    })
}

fn body(i: usize) -> String {
    json!({"model": "m", "prompt": format!("request {i}")}).to_string()
}

#[test]
fn requests_stay_on_a_covered_revision_and_learn_it() {
    let env = env();
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let r = env.post("/v1/completions", &body(i), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        let pod = r.header("x-inference-pod").unwrap_or_default().to_string();
        assert_ne!(
            pod, "stray",
            "an endpoint outside the rollout's scope was picked"
        );
        let rev = if pod == "rev-a" { "A" } else { "B" };
        assert_eq!(r.header("x-disagg-revision"), Some(rev), "{r:?}");
        seen.insert(pod);
    }
    assert_eq!(
        seen.len(),
        2,
        "both covered revisions get traffic: {seen:?}"
    );
    for i in 0..10 {
        let r = env.post("/v1/completions", &body(i), &[("x-disagg-revision", "B")]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-inference-pod"), Some("rev-b"), "{r:?}");
    }
    let r = env.post("/v1/completions", &body(0), &[("x-disagg-revision", "C")]);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.json()["error"]["message"].is_string(), "{r:?}");
}
