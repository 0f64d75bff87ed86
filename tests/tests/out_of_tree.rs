//! The out-of-tree example module (`examples/out_of_tree_scorer`, built to
//! `dist/out_of_tree_scorer.wasm` and `dist/libout_of_tree_scorer.so`) loads in Envoy and its
//! scorer changes the picks, in either build.

use e2e::{repo_root, Env, EnvSpec};
use serde_json::json;

#[test]
fn out_of_tree_module_loads_and_its_scorer_takes_effect() {
    let wasm = std::env::var_os("OUT_OF_TREE_WASM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist/out_of_tree_scorer.wasm"));
    let env = Env::start(EnvSpec {
        backends: vec!["pod-a".into(), "pod-b".into()],
        labels: vec![json!({"zone": "a"}), json!({"zone": "b"})],
        picker: json!({
            "featureGates": ["labelPreferenceScorer"],
            "plugins": [
                {"type": "queue-scorer"},
                {"type": "label-preference-scorer", "parameters": {"key": "zone", "value": "b"}}
            ],
            "schedulingProfiles": [{"name": "default", "plugins": [
                {"pluginRef": "queue-scorer", "weight": 1},
                {"pluginRef": "label-preference-scorer", "weight": 5}
            ]}]
        }),
        wasm: Some(wasm),
        // With E2E_BUILD=native: libout_of_tree_scorer.so from the same crate.
        native_module: Some("out_of_tree_scorer".into()),
        ..EnvSpec::default()
    });
    // zone b is busier, but the out-of-tree scorer (weight 5) outweighs the queue (weight 1).
    env.backends[0].set(json!({"waiting": 0}));
    env.backends[1].set(json!({"waiting": 4}));
    env.settle();
    for i in 0..10 {
        let r = env.complete("m", &format!("q{i}"), &[]);
        assert_eq!(
            r.pod(),
            "pod-b",
            "{:?}",
            r.header("x-endpoint-picker-debug")
        );
        assert!(r
            .header("x-endpoint-picker-debug")
            .unwrap()
            .contains("label-preference-scorer=1.000x5"));
    }
    assert!(env
        .log()
        .contains("loaded plugin label-preference-scorer/label-preference-scorer (Alpha)"));
}
