//! Envoy refuses an invalid picker configuration, and its log carries the scheduler-core error
//! with the field path, the same text the offline CLI prints.

use e2e::{Backend, Env, StartOptions};
use serde_json::json;

#[test]
fn envoy_refuses_an_invalid_config_with_the_field_path_in_its_log() {
    let backends = vec![Backend::spawn("pod-a")];
    let picker = json!({
        "pool": {"cluster": "inference_pool", "endpoints": [{"address": backends[0].addr.to_string()}]},
        "plugins": [{"type": "queue-scorer"}],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}, {"pluginRef": "kv-scorer"}]}]
    });
    // The renderer validates too, so render a valid document and break it in the YAML, as a
    // hand-edited envoy.yaml would be.
    let valid = {
        let mut p = picker.clone();
        p["schedulingProfiles"][0]["plugins"]
            .as_array_mut()
            .unwrap()
            .pop();
        p
    };
    let opts = StartOptions {
        edit_yaml: Some(Box::new(|y: String| {
            y.replace(r#""pluginRef": "queue-scorer""#, r#""pluginRef": "foo""#)
        })),
        wait_for_scrape: false,
        ..StartOptions::default()
    };
    let err = match Env::start_with(backends, valid, opts) {
        Ok(_) => panic!("Envoy accepted an invalid configuration"),
        Err(log) => log,
    };
    assert!(
        err.contains("schedulingProfiles[0].plugins[0].pluginRef: undefined plugin 'foo'"),
        "{err}"
    );

    // The CLI prints the same text for the same mistake.
    let cli = envoy_config::validate::validate(&picker.to_string()).unwrap_err();
    assert_eq!(
        cli,
        "schedulingProfiles[0].plugins[1].pluginRef: undefined plugin 'kv-scorer'"
    );
}
